"""Does a point-mass start make HVAE training unstable? A controlled experiment.

Five variants of one small digits HVAE, the same data (scikit-learn digits),
architecture, optimiser (AdamW, the settings of :class:`TrainConfig`) and the
same number of updates — a step budget, not a time budget — over several seeds:

(a) ``vdvae``     VDVAE: a learned point mass ``bias_xs[res]`` for every new resolution, ``TwoStepEuler``;
(b) ``gaussian``  a learned Gaussian start at ``t = 0`` and at every new band, ``TwoStepEuler``;
(c) ``expo``      (a) plus a learned per-channel decay ``−κx`` in the top-down SDE, stepped by
                  ``ExponentialEuler`` (exact on the linear part, stable for any ``κh``);
(d) ``graded``    (a) on a time grid refined right after each activation (``t_k + n (i/n)²``),
                  the same number of steps;
(e) ``shared``    (a) with one block per resolution and a Fourier time embedding.

Telemetry, every update and every top-down step ``i``: the norm of the
gradient of the loss with respect to the state after the step
(``‖∂L/∂x_i‖``, defined for every variant), the gradient norm of the block
that step uses (per step for the unshared variants), the KL of the step and
``‖x_i‖``. Across training: the total gradient norm (p50, p99, max), the
skipped updates (norm above ``skip_threshold`` or non-finite) and non-finite
losses. A *normal* and a *stress* setting (higher learning rate, twice the
depth, no warm-up) are run with the same seeds.

    python -m benchmarks.hvae_instability            # results/hvae/instability.{md,json,png}
    python -m benchmarks.hvae_instability --quick    # smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch

from mrdiffusion.hvae import HVAEConfig
from mrdiffusion.hvae.data import Dataset, digits
from mrdiffusion.hvae.topdown import l2_norm
from mrdiffusion.hvae.train import TrainConfig, train

from benchmarks.hvae_instability_report import concentration, write_outputs

VARIANTS = {
    "a-vdvae": dict(start="bias_xs"),
    "b-gaussian": dict(start="gaussian"),
    "c-expo": dict(start="bias_xs", decay=True, solver="ExponentialEuler"),
    "d-graded": dict(start="bias_xs", grid="graded"),
    "e-shared": dict(start="bias_xs", share="resolution", time_embedding="fourier"),
}

#: name -> (model overrides, training overrides, updates)
SETTINGS = {
    "normal": (dict(dec_blocks=(1, 2, 3, 3)), dict(lr=3e-3, warmup=50), 300),
    "stress": (dict(dec_blocks=(2, 4, 6, 6)), dict(lr=3e-2, warmup=1), 150),
}
ARCH = dict(width=16, mid_width=8, zdim=4, enc_blocks=(1, 1, 1, 1))


class Telemetry:
    """Per-update, per-step records, filled by ``model.step_callback`` and the ``on_backward`` hook."""

    def __init__(self):
        self.states, self.kl, self.xnorm = [], [], []
        self.rows = {"state_grad": [], "block_grad": [], "kl": [], "xnorm": []}

    def on_step(self, i, st, x, step_kl):
        if x.requires_grad:
            x.retain_grad()
            self.states.append((st.block, x))
            self.kl.append(float(step_kl.detach().mean()) if step_kl is not None else float("nan"))
            self.xnorm.append(float(l2_norm(x.detach()).mean()))

    def on_backward(self, step, model):
        sg = [float(x.grad.norm()) if x.grad is not None else 0.0 for _, x in self.states]
        block_norms = [math.sqrt(sum(float(p.grad.square().sum()) for p in b.parameters() if p.grad is not None))
                       for b in model.blocks]
        self.rows["state_grad"].append(sg)
        self.rows["block_grad"].append([block_norms[b] for b, _ in self.states])
        self.rows["kl"].append(self.kl)
        self.rows["xnorm"].append(self.xnorm)
        self.states, self.kl, self.xnorm = [], [], []


def run_one(variant, setting, seed, updates, data, out, batch_size):
    """Train one (variant, setting, seed); return its record (cached in ``out/runs``)."""
    model_over, train_over, _ = SETTINGS[setting]
    tag = f"d{''.join(map(str, model_over['dec_blocks']))}_lr{train_over['lr']:g}"
    path = os.path.join(out, "runs", f"{setting}_{tag}_{variant}_s{seed}_u{updates}")
    done = os.path.join(path, "record.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    config = HVAEConfig(**ARCH, **model_over, **VARIANTS[variant])
    cfg = TrainConfig(steps=updates, batch_size=batch_size, seed=seed, ckpt_every=10**6, log_every=1,
                      **train_over)
    tel = Telemetry()
    if os.path.exists(os.path.join(path, "checkpoint.pt")):
        os.remove(os.path.join(path, "checkpoint.pt"))  # a half-done run is redone from scratch
    if os.path.exists(os.path.join(path, "log.jsonl")):
        os.remove(os.path.join(path, "log.jsonl"))

    def hook(step, model):  # the callback is installed at the first backward: update 0 has no per-step rows
        if model.step_callback is None:
            model.step_callback = tel.on_step
            n = len(model.schedule())
            for key in tel.rows:
                tel.rows[key].append([float("nan")] * n)
            return
        tel.on_backward(step, model)

    t0 = time.process_time()
    summary = train(config, cfg, data, path, progress=False, on_backward=hook)
    with open(os.path.join(path, "log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    g = np.array([r["grad_norm"] for r in log], dtype=float)
    losses = np.array([r["loss"] for r in log], dtype=float)
    fin = g[np.isfinite(g)]
    sched = _schedule(config)
    rec = {"variant": variant, "setting": setting, "seed": seed, "updates": updates,
           "config": config.to_dict(), "train": cfg.to_dict(),
           "test_bpd": summary.get("test_bpd"), "test_bpd_raw": summary.get("test_bpd_raw"),
           "skipped": summary["skipped"], "skipped_nonfinite": summary["skipped_nonfinite"],
           "skip_rate": summary["skipped"] / max(1, summary["steps"]),
           "nonfinite_losses": int((~np.isfinite(losses)).sum()),
           "grad_norm_p50": float(np.percentile(fin, 50)) if fin.size else float("nan"),
           "grad_norm_p99": float(np.percentile(fin, 99)) if fin.size else float("nan"),
           "grad_norm_max": float(fin.max()) if fin.size else float("nan"),
           "grad_norm": g.tolist(), "cpu_seconds": time.process_time() - t0,
           "step_times": [s[0] for s in sched], "step_ends": [s[1] for s in sched],
           "activation": [s[2] for s in sched], **{k: v for k, v in tel.rows.items()}}
    with open(done, "w") as f:
        json.dump(rec, f)
    return rec


def _schedule(config):
    from mrdiffusion.hvae import HVAE

    steps = HVAE(config).schedule()
    return [(s.t, s.t + s.h, i == 0 or s.res != steps[i - 1].res) for i, s in enumerate(steps)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (CI): 2 variants' worth of seconds")
    p.add_argument("--updates", type=int, default=None, help="updates per run (default: 300 normal, 150 stress)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--out", default="results/hvae")
    p.add_argument("--stress-lr", type=float, default=None, help="override the stress learning rate")
    p.add_argument("--stress-dec", default=None, help="override the stress dec_blocks, e.g. 4,8,12,12")
    args = p.parse_args(argv)
    if args.stress_lr is not None or args.stress_dec is not None:
        model_over, train_over, n = SETTINGS["stress"]
        if args.stress_dec is not None:
            model_over = dict(model_over, dec_blocks=tuple(int(n) for n in args.stress_dec.split(",")))
        if args.stress_lr is not None:
            train_over = dict(train_over, lr=args.stress_lr)
        SETTINGS["stress"] = (model_over, train_over, n)
    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    data = digits()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    variants = [v for v in args.variants.split(",") if v]
    settings = [s for s in args.settings.split(",") if s]
    for name, known in (("variants", VARIANTS), ("settings", SETTINGS)):
        bad = [v for v in (variants if name == "variants" else settings) if v not in known]
        if bad:
            raise SystemExit(f"hvae_instability: error: {name}: unknown {bad}; expected some of {list(known)}")
    if args.quick:
        data = Dataset("digits-quick", data.train[:64], data.test[:32], data.levels)
        args.updates, seeds, args.batch_size = 3, [0], 16
        prefix = "instability_quick"
    else:
        prefix = "instability"
    os.makedirs(args.out, exist_ok=True)
    records = []
    for setting in settings:
        for variant in variants:
            for seed in seeds:
                updates = args.updates or SETTINGS[setting][2]
                rec = run_one(variant, setting, seed, updates, data, args.out, args.batch_size)
                c = concentration(rec)
                print(f"[instability] {setting:6s} {variant:10s} seed {seed}: test {rec['test_bpd']:.3f} bits/dim, "
                      f"skip {rec['skip_rate']:.3f}, |g| p99 {rec['grad_norm_p99']:.3g} max "
                      f"{rec['grad_norm_max']:.3g}, nonfinite {rec['nonfinite_losses']}, "
                      f"post-activation ratio {c['ratio_median']:.2f}", flush=True)
                records.append(rec)
    write_outputs(records, args.out, prefix, VARIANTS)


if __name__ == "__main__":
    main()
