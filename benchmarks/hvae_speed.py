"""Cost of the abstraction: training throughput of the solver-step HVAE against a hand-written VDVAE loop.

Both contenders compute the same training loss from the same weights and the
same noise — encoder, top-down pass, categorical likelihood, KL — and
backpropagate it: ``ours`` through :meth:`HVAE.forward` (the top-down pass
as a level schedule of :class:`TopDownSDE` run by :func:`solvers.integrate`), ``plain`` through
:func:`vdvae_loss`, a VDVAE-style loop over the same modules with no SDE, no
solver and no context object (``bias_xs`` + ``mixin``, posterior, prior,
``x += xpp``, ``x += z_proj(z)``, ``x += resnet(x)``). Before timing the two
losses are checked equal to rounding. The ratio ``ours / plain`` of the median
seconds per training step (forward + backward), measured alternately in one
process (:func:`benchmarks._timing.compare`), is the cost; the target is ≤ 1.1
on CPU at the default model size.

    python -m benchmarks.hvae_speed [--quick] [--json FILE]

``measure()`` returns the numbers for the speed suite (``benchmarks.speed``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import torch
import torch.nn.functional as F

from benchmarks._timing import compare
from mrdiffusion import haar
from mrdiffusion.hvae import HVAE, HVAEConfig

__all__ = ["vdvae_loss", "contenders", "measure", "main"]


def vdvae_loss(model, x, generator):
    """The training loss of ``model`` (bits/dim) computed by a plain VDVAE-style top-down loop."""
    c = model.config
    acts = model.encoder(model.scale_input(x))
    batch, zdim = x.shape[0], c.zdim
    state, kl = None, 0.0
    for st in model.schedule():
        if state is None or state.shape[-1] != st.res:  # bias_xs[res] + mixin
            bias = model.bias_xs[str(st.res)]
            state = bias if state is None else bias + haar.embed(state, levels=int(math.log2(st.res // state.shape[-1])))
        blk = model.blocks[st.block]
        qm, qv = blk.posterior_net(torch.cat([state.expand(batch, -1, -1, -1), acts[st.res]], dim=1)).chunk(2, dim=1)
        feats = blk.prior_net(state)
        pm, pv, xpp = feats[:, :zdim], feats[:, zdim:2 * zdim], feats[:, 2 * zdim:]
        state = state + xpp
        eps = torch.randn(pm.expand(batch, -1, -1, -1).shape, generator=generator, dtype=pm.dtype)
        z = qm + qv.exp() * eps
        kl = kl + (-0.5 + pv - qv + 0.5 * (qv.exp() ** 2 + (qm - pm) ** 2) / pv.exp() ** 2).flatten(1).sum(1)
        state = state + blk.z_proj(z)
        state = state + blk.resnet(state)
    if state.shape[-1] != c.image_size:
        state = haar.embed(state, levels=int(math.log2(c.image_size // state.shape[-1])))
    logits = model.logits(state)
    recon = F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none").flatten(1).sum(1)
    return (recon + kl).mean() / (math.log(2.0) * x[0].numel())


def contenders(*, batch=64, config=None, seed=0):
    """``({"ours": fn, "plain": fn}, loss difference, model)``: one training step (forward + backward) each, same
    weights, data and noise; the two losses are checked equal to rounding first."""
    config = config or HVAEConfig()
    if config.start != "bias_xs" or config.share != "none" or config.decay or config.grid != "uniform":
        raise ValueError("config: the plain loop is written for start='bias_xs', share='none', no decay, "
                         "uniform grid")
    torch.manual_seed(seed)
    model = HVAE(config)
    x = torch.randint(0, config.levels, (batch, config.channels, config.image_size, config.image_size),
                      generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        ours = float(model(x, torch.Generator().manual_seed(7))[0])
        plain = float(vdvae_loss(model, x, torch.Generator().manual_seed(7)))
    if not math.isclose(ours, plain, rel_tol=1e-5):
        raise AssertionError(f"the two losses differ: ours {ours} vs plain {plain}")

    def step(fn):
        def run():
            model.zero_grad(set_to_none=True)
            fn().backward()
        return run

    return ({"ours": step(lambda: model(x, torch.Generator().manual_seed(7))[0]),
             "plain": step(lambda: vdvae_loss(model, x, torch.Generator().manual_seed(7)))},
            abs(ours - plain), model)


def measure(*, batch=64, repeats=15, config=None, seed=0):
    """``{"ours_s", "plain_s", "ratio", "loss_difference"}``: median seconds per training step and their ratio."""
    fns, difference, model = contenders(batch=batch, config=config, seed=seed)
    times = compare(fns, repeats=repeats, max_inner=1)
    ours_s, plain_s = statistics.median(times["ours"]), statistics.median(times["plain"])
    ratios = [a / b for a, b in zip(times["ours"], times["plain"])]
    return {"ours_s": ours_s, "plain_s": plain_s, "ratio": ours_s / plain_s,
            "ratio_median_of_pairs": statistics.median(ratios), "loss_difference": difference,
            "batch": batch, "repeats": repeats, "threads": torch.get_num_threads(),
            "parameters": model.num_parameters()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = measure(repeats=3 if args.quick else 31, batch=16 if args.quick else 64)
    print(f"HVAE training step (forward + backward), default model ({res['parameters']} parameters), "
          f"batch {res['batch']}, {res['threads']} thread(s), median of {res['repeats']}:\n"
          f"  solver-step HVAE  {res['ours_s'] * 1e3:8.2f} ms\n"
          f"  plain VDVAE loop  {res['plain_s'] * 1e3:8.2f} ms\n"
          f"  ratio {res['ratio']:.3f} (median of paired ratios {res['ratio_median_of_pairs']:.3f}); "
          f"losses agree to {res['loss_difference']:.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
