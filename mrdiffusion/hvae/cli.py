"""``mrdiffusion train`` and ``mrdiffusion sample``.

Importing this module registers both subcommands with :mod:`mrdiffusion.cli`.
``python -m mrdiffusion.hvae train|sample ...`` runs them without the plugin
table, e.g. under ``torchrun --nproc_per_node 2 -m mrdiffusion.hvae train ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_train_arguments", "run_train", "add_sample_arguments", "run_sample", "main"]


def _counts(text):
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _default_blocks(image_size):
    """One encoder block per resolution; top-down steps 1 (1×1), 2 (2×2), 3 (finer): (1, 2, 3, 3) for 8×8."""
    n = max(1, image_size.bit_length())
    return (1,) * n, tuple(min(k + 1, 3) for k in range(n))


def add_train_arguments(p):
    import solvers

    p.add_argument("--data", default="digits",
                   help="'digits' (default), 'synthetic', a .npz file or a folder of images")
    p.add_argument("--levels", type=int, default=None, help="grey levels of a .npz/folder data set")
    p.add_argument("--out", required=True, help="run directory (checkpoint.pt, log.jsonl, summary.json)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out bit-exactly")
    g = p.add_argument_group("model")
    g.add_argument("--solver", default="TwoStepEuler", choices=sorted(solvers.SCHEMES),
                   help="scheme of the top-down pass (TwoStepEuler: VDVAE)")
    g.add_argument("--share", default="none", choices=("none", "resolution", "all"))
    g.add_argument("--time-embedding", default=None, choices=("none", "fourier"),
                   help="default: fourier when weights are shared")
    g.add_argument("--width", type=int, default=32)
    g.add_argument("--mid-width", type=int, default=16)
    g.add_argument("--zdim", type=int, default=4)
    g.add_argument("--enc-blocks", type=_counts, default=None, help="per resolution, coarsest first")
    g.add_argument("--dec-blocks", type=_counts, default=None, help="per resolution, coarsest first")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=2000)
    g.add_argument("--batch-size", type=int, default=64, help="global batch (split across processes)")
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--warmup", type=int, default=50)
    g.add_argument("--grad-clip", type=float, default=100.0)
    g.add_argument("--skip-threshold", type=float, default=400.0, help="skip updates with a larger gradient norm")
    g.add_argument("--ema", type=float, default=0.998, help="EMA decay")
    g.add_argument("--ckpt-every", type=int, default=250)
    g.add_argument("--budget-seconds", type=float, default=None, help="stop after this much training time")
    g.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--save-rank-weights", action="store_true",
                   help="each process writes rank<R>_weights.pt at the end (to check DDP replicas)")


def _configs(args, data):
    from .model import HVAEConfig
    from .train import TrainConfig

    size = int(data.train.shape[-1])
    enc, dec = _default_blocks(size)
    share = args.share
    time_embedding = args.time_embedding or ("fourier" if share != "none" else "none")
    try:
        model_config = HVAEConfig(
            image_size=size, channels=int(data.train.shape[1]), levels=data.levels, width=args.width,
            mid_width=args.mid_width, zdim=args.zdim, enc_blocks=args.enc_blocks or enc,
            dec_blocks=args.dec_blocks or dec, share=share, time_embedding=time_embedding, solver=args.solver)
    except ValueError as err:
        raise ValueError(f"{err} (data {data.name!r} has images of shape {tuple(data.train.shape[1:])})") from None
    train_config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, grad_clip=args.grad_clip,
        skip_threshold=args.skip_threshold, ema_decay=args.ema, ckpt_every=args.ckpt_every, seed=args.seed,
        budget_seconds=args.budget_seconds)
    return model_config, train_config


def run_train(args):
    import torch

    from .data import load_dataset
    from .train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data = load_dataset(args.data, levels=args.levels)
        model_config, train_config = _configs(args, data)
        summary = train(model_config, train_config, data, args.out, resume=args.resume, device=args.device,
                        progress=not args.no_progress, save_rank_weights=args.save_rank_weights)
    except ValueError as err:
        print(f"mrdiffusion train: error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return 0


def add_sample_arguments(p):
    import solvers

    p.add_argument("checkpoint", help="checkpoint.pt of a training run (or its directory)")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--solver", default=None, choices=sorted(solvers.SCHEMES),
                   help="sample with another scheme (default: the trained one)")
    p.add_argument("--steps", type=_counts, default=None,
                   help="top-down steps per resolution (default: as trained)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output prefix (default: <run dir>/samples): .png and .npz")


def run_sample(args):
    import numpy as np
    import torch

    import solvers

    from .checkpoint import model_from_checkpoint
    from .plots import image_grid

    path = os.path.join(args.checkpoint, "checkpoint.pt") if os.path.isdir(args.checkpoint) else args.checkpoint
    try:
        solver = solvers.SCHEMES[args.solver]() if args.solver else None
        model, _ = model_from_checkpoint(path, ema=not args.raw, solver=solver, device=args.device)
        g = torch.Generator(device=args.device).manual_seed(args.seed)
        images, info = model.sample(args.n, steps=args.steps, generator=g, temperature=args.temperature,
                                    record=True)
    except ValueError as err:
        print(f"mrdiffusion sample: error: {err}", file=sys.stderr)
        return 2
    prefix = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), "samples")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    np.savez(prefix + ".npz", images=images.cpu().numpy(), nonfinite=info["nonfinite"].cpu().numpy(),
             norms=info["norms"].cpu().numpy(), levels=model.config.levels)
    image_grid(images.cpu(), model.config.levels, prefix + ".png")
    frac = float(info["nonfinite"].float().mean())
    print(f"wrote {prefix}.png and {prefix}.npz ({args.n} samples, non-finite fraction {frac:.3f})")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mrdiffusion.hvae")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help=TRAIN_HELP))
    add_sample_arguments(sub.add_parser("sample", help=SAMPLE_HELP))
    args = parser.parse_args(argv)
    return (run_train if args.command == "train" else run_sample)(args)


TRAIN_HELP = "train a multi-resolution HVAE whose top-down pass is a solver step (torchrun-ready)"
SAMPLE_HELP = "draw prior samples from a trained HVAE checkpoint (any scheme, any number of steps)"

try:
    from ..cli import register
except ImportError:  # pragma: no cover - the package CLI is optional here
    register = None
if register is not None:
    register("train", TRAIN_HELP, add_train_arguments, run_train)
    register("sample", SAMPLE_HELP, add_sample_arguments, run_sample)
