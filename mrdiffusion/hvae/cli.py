"""``mrdiffusion train`` and ``mrdiffusion sample``.

Importing this module registers both subcommands with :mod:`mrdiffusion.cli`.
``python -m mrdiffusion.hvae train|sample ...`` runs them without the plugin
table, e.g. under ``torchrun --nproc_per_node 2 -m mrdiffusion.hvae train ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from .. import _args as A

__all__ = ["add_train_arguments", "run_train", "add_sample_arguments", "run_sample", "spread_steps", "main"]


def _default_blocks(image_size):
    """One encoder block per resolution; top-down steps 1 (1×1), 2 (2×2), 3 (finer): (1, 2, 3, 3) for 8×8."""
    n = max(1, image_size.bit_length())
    return (1,) * n, tuple(min(k + 1, 3) for k in range(n))


def _ema_decay(text):
    v = A.finite_float(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return v


def add_train_arguments(p):
    from .model import SUPPORTED_SOLVERS

    from ..data import DATA_HELP, add_data_arguments

    add_data_arguments(p, data_help=DATA_HELP + "; images that are not a power of two are padded (MNIST to 32×32) "
                                                "and bits/dim counts the real pixels only (784 for MNIST)")
    p.add_argument("--test-images", type=A.nonnegative_int, default=None,
                   help="held-out images for the final test bits/dim in summary.json, the first N of the test "
                        "set (default: all; 0: none)")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, log.jsonl, summary.json")
    p.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in --out bit-exactly (same options as the first run)")
    g = p.add_argument_group("model")
    g.add_argument("--solver", default="TwoStepEuler", choices=SUPPORTED_SOLVERS,
                   help="scheme of the top-down pass (TwoStepEuler: VDVAE); the others cannot step its "
                        "latent noise")
    g.add_argument("--share", default="none", choices=("none", "resolution", "all"),
                   help="weight sharing across top-down steps")
    g.add_argument("--time-embedding", default=None, choices=("none", "fourier"),
                   help="time conditioning of the blocks (default: fourier when weights are shared, else none)")
    g.add_argument("--width", type=A.positive_int, default=32, help="channels of the state")
    g.add_argument("--mid-width", type=A.positive_int, default=16, help="channels inside a block")
    g.add_argument("--zdim", type=A.positive_int, default=4, help="latent channels per step")
    g.add_argument("--enc-blocks", type=A.counts, default=None,
                   help="encoder blocks per resolution, coarsest first, e.g. 1,1,1,1 (default: one each)")
    g.add_argument("--dec-blocks", type=A.counts, default=None,
                   help="top-down steps per resolution, coarsest first, e.g. 1,2,3,3 (default: 1, 2, then 3)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=A.positive_int, default=2000, help="training steps")
    g.add_argument("--batch-size", type=A.positive_int, default=64, help="global batch (split across processes)")
    g.add_argument("--lr", type=A.positive_float, default=3e-3, help="peak learning rate (AdamW)")
    g.add_argument("--warmup", type=A.nonnegative_int, default=50, help="linear warm-up steps (0: none)")
    g.add_argument("--grad-clip", type=A.positive_float, default=100.0, help="gradient-norm clip")
    g.add_argument("--skip-threshold", type=A.finite_float, default=400.0,
                   help="skip updates with a larger gradient norm (<= 0: skip only non-finite ones)")
    g.add_argument("--ema", type=_ema_decay, default=0.998, help="EMA decay, in [0, 1)")
    g.add_argument("--ckpt-every", type=A.positive_int, default=250, help="steps between checkpoints")
    g.add_argument("--budget-seconds", type=A.positive_float, default=None,
                   help="stop after this much training time, summed over resumes (default: no limit)")
    g.add_argument("--budget-clock", default="wall", choices=("wall", "cpu"),
                   help="clock of --budget-seconds: wall time, or the CPU time of the process (reproducible "
                        "on a busy machine)")
    g.add_argument("--seed", type=A.seed, default=0, help="seed of weights, data order and noise")
    p.add_argument("--device", type=A.device, default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--threads", type=A.positive_int, default=None,
                   help="torch CPU threads per process (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--save-rank-weights", action="store_true",
                   help="each process writes rank<R>_weights.pt at the end (to check DDP replicas)")
    from ..diffusion.cli import add_train_options

    add_train_options(p)  # --model and the diffusion options (each option records whether it was given)


def _configs(args, data):
    from .model import HVAEConfig
    from .train import TrainConfig

    real = int(data.train.shape[-1])
    if tuple(data.train.shape[-2:]) != (real, real):
        raise ValueError(f"data: {data.name!r} has images of shape {tuple(data.train.shape[1:])}; the HVAE needs "
                         f"square images")
    size = 1 << (real - 1).bit_length()  # the Haar stack's power of two; smaller images are padded
    enc, dec = _default_blocks(size)
    share = args.share
    time_embedding = args.time_embedding or ("fourier" if share != "none" else "none")
    try:
        model_config = HVAEConfig(
            image_size=size, channels=int(data.train.shape[1]), levels=data.levels, width=args.width,
            mid_width=args.mid_width, zdim=args.zdim, enc_blocks=args.enc_blocks or enc,
            dec_blocks=args.dec_blocks or dec, share=share, time_embedding=time_embedding, solver=args.solver,
            real_size=None if real == size else real)
    except ValueError as err:
        raise ValueError(f"{err} (data {data.name!r} has images of shape {tuple(data.train.shape[1:])})") from None
    train_config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, grad_clip=args.grad_clip,
        skip_threshold=args.skip_threshold, ema_decay=args.ema, ckpt_every=args.ckpt_every, seed=args.seed,
        budget_seconds=args.budget_seconds, budget_clock=args.budget_clock)
    return model_config, train_config


def _resume_command(out):
    """The command line that continues this run: the same arguments plus ``--resume``."""
    argv = [a for a in sys.argv[1:] if a != "--resume"]
    prog = "mrdiffusion" if "train" in argv else "mrdiffusion train"
    return " ".join(shlex.quote(a) for a in [prog, *argv, "--resume"]) if argv else \
        f"mrdiffusion train --out {shlex.quote(out)} --resume (with the options of the first run)"


def run_train(args):
    import torch

    from .data import load_dataset
    from .train import TrainingInterrupted, train

    rank0 = int(os.environ.get("RANK", "0")) == 0
    if getattr(args, "model", "hvae") == "diffusion":
        from ..diffusion.cli import run_train as run_diffusion

        return run_diffusion(args)
    try:
        from ..diffusion.cli import refuse_other_kind

        refuse_other_kind(args, "hvae")
        if args.out is None:
            raise ValueError("--out: required (the run folder: checkpoint.pt, log.jsonl, summary.json)")
        A.check_out_dir(args.out)
        if args.resume and not os.path.isfile(os.path.join(args.out, "checkpoint.pt")):
            raise ValueError(f"--resume: {os.path.join(args.out, 'checkpoint.pt')} does not exist; drop --resume "
                             f"to start a new run in {args.out}")
        if args.threads:
            torch.set_num_threads(args.threads)
        data = load_dataset(args.data, levels=args.levels)
        if args.test_images is not None:
            data.test = data.test[:args.test_images]
            if data.test_labels is not None:
                data.test_labels = data.test_labels[:args.test_images]
        model_config, train_config = _configs(args, data)
        _check_train_memory(model_config, args)  # before the run folder exists
        summary = train(model_config, train_config, data, args.out, resume=args.resume, device=args.device,
                        progress=not args.no_progress, save_rank_weights=args.save_rank_weights)
    except ValueError as err:
        if rank0:
            print(f"mrdiffusion train: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        if rank0:
            print(f"mrdiffusion train: interrupted at step {stop.step}; checkpoint saved to {stop.checkpoint}; "
                  f"continue with: {_resume_command(args.out)}", file=sys.stderr)
        return 130
    if rank0:
        print(json.dumps(summary, indent=2))
    return 0


def _check_train_memory(model_config, args):
    """``ValueError`` with the estimate if a training step cannot fit (the estimator of ``bench``)."""
    from ..bench.memory import check_bytes, hvae_bytes

    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    batch = max(1, args.batch_size // world)
    check_bytes(hvae_bytes(model_config, batch, train=True),
                f"train: a step of the model (width {model_config.width}, {model_config.levels} grey levels, "
                f"{model_config.image_size}×{model_config.image_size} images) on a batch of {batch}",
                "lower --width, --mid-width, --zdim, --levels, --batch-size or the blocks", device=args.device)


#: Most top-down steps ``sample --steps`` accepts in all (trained models use tens).
MAX_SAMPLE_STEPS = 10_000


def _one_line(err):
    return " ".join(str(err).split())


def spread_steps(total, dec_blocks):
    """Spread ``total`` top-down steps over the resolutions in proportion to ``dec_blocks`` (as trained).

    Largest remainders; every trained resolution gets at least one step. 18 over
    ``(1, 2, 3, 3)`` gives ``(2, 4, 6, 6)``.
    """
    active = [n for n in dec_blocks if n > 0]
    if total < len(active):
        raise ValueError(f"--steps: {total} steps cannot cover the {len(active)} trained resolutions; give at "
                         f"least {len(active)}, or one count per resolution such as "
                         f"{','.join(str(n) for n in dec_blocks)}")
    whole = sum(dec_blocks)
    quota = [total * n / whole for n in dec_blocks]
    steps = [max(1, int(q)) if n > 0 else 0 for q, n in zip(quota, dec_blocks)]
    while sum(steps) > total:  # the minimum of one step overshot: take from the most over-served
        i = max((i for i, m in enumerate(steps) if m > 1), key=lambda i: steps[i] - quota[i])
        steps[i] -= 1
    while sum(steps) < total:
        i = max((i for i, n in enumerate(dec_blocks) if n > 0), key=lambda i: quota[i] - steps[i])
        steps[i] += 1
    return tuple(steps)


def add_sample_arguments(p):
    from .model import SUPPORTED_SOLVERS

    p.add_argument("checkpoint", help="checkpoint.pt of a training run, or its run directory")
    p.add_argument("--n", type=A.positive_int, default=64,
                   help="number of samples (refused, with the estimate, if they cannot fit in memory); exit code 3 "
                        "if every sample is non-finite")
    p.add_argument("--solver", default=None, choices=SUPPORTED_SOLVERS,
                   help="sample with another scheme (default: the trained one)")
    p.add_argument("--steps", type=A.counts, default=None,
                   help="top-down steps: one total such as 18, spread over the resolutions in proportion to "
                        "training, or one count per resolution, coarsest first, such as 2,4,6,6 "
                        "(default: as trained); at most 10,000 in all")
    p.add_argument("--temperature", type=A.nonnegative_float, default=1.0, help="scale of the prior noise")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--seed", type=A.seed, default=0, help="seed of the prior noise")
    p.add_argument("--device", type=A.device, default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--out", default=None,
                   help="output prefix: writes PREFIX.png and PREFIX.npz (default: <run dir>/samples)")
    from ..diffusion.cli import add_sample_options

    add_sample_options(p)  # --nfe, --ode; --solver also names the diffusion samplers


def run_sample(args):
    import io

    import numpy as np
    import torch

    import solvers

    from .._io import atomic_write
    from .checkpoint import model_from_checkpoint
    from .plots import image_grid

    path = os.path.join(args.checkpoint, "checkpoint.pt") if os.path.isdir(args.checkpoint) else args.checkpoint
    try:
        if not os.path.isfile(path):
            raise ValueError(f"checkpoint: {path} does not exist; expected a checkpoint.pt written by "
                             f"mrdiffusion train, or its run directory")
        from ..diffusion.api import checkpoint_kind
        from ..diffusion.cli import check_hvae_sample, run_sample as run_diffusion

        if checkpoint_kind(path) == "diffusion":
            return run_diffusion(args, path)
        check_hvae_sample(args)
        if args.out is not None and not args.out.strip():
            raise ValueError("--out: expected an output prefix such as samples/run1, got an empty string")
        if args.steps is not None and sum(args.steps) > MAX_SAMPLE_STEPS:
            raise ValueError(f"--steps: {sum(args.steps)} top-down steps in all; expected at most "
                             f"{MAX_SAMPLE_STEPS:,} (trained models use tens)")
        prefix = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), "samples")
        A.check_out_dir(os.path.dirname(os.path.abspath(prefix)), "--out")
        solver = solvers.SCHEMES[args.solver]() if args.solver else None
        model, _ = model_from_checkpoint(path, ema=not args.raw, solver=solver, device=args.device)
        steps = args.steps
        if steps is not None and len(steps) == 1 and len(model.config.dec_blocks) > 1:
            steps = spread_steps(steps[0], model.config.dec_blocks)
        model.schedule(steps)  # checks the counts before any work
        from ..bench.memory import check_bytes, hvae_bytes

        c = model.config
        check_bytes(hvae_bytes(c, args.n, steps=steps),
                    f"sample: {args.n} samples of a {c.image_size}×{c.image_size} model of width {c.width}",
                    "lower --n (and run several seeds)", device=args.device)
        g = torch.Generator(device=args.device).manual_seed(args.seed)
        images, info = model.sample(args.n, steps=steps, generator=g, temperature=args.temperature,
                                    record=True)
    except ValueError as err:
        print(f"mrdiffusion sample: error: {_one_line(err)}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, images=images.cpu().numpy(), nonfinite=info["nonfinite"].cpu().numpy(),
             norms=info["norms"].cpu().numpy(), levels=model.config.levels)
    image_grid(images.cpu(), model.config.levels, prefix + ".png")
    atomic_write(prefix + ".npz", buf.getvalue())
    bad = int(info["nonfinite"].sum())
    frac = bad / args.n
    shown = "as trained" if steps is None else ",".join(str(m) for m in steps)
    if bad == args.n:  # ran, but nothing usable came out: exit 3, one line
        print(f"mrdiffusion sample: every one of the {args.n} samples is non-finite (NaN or infinite state: "
              f"non-finite weights, or a --temperature too large); wrote {prefix}.png and {prefix}.npz anyway "
              f"(exit 3)", file=sys.stderr)
        return 3
    if bad:
        print(f"mrdiffusion sample: {bad} of {args.n} samples are non-finite (flagged in 'nonfinite' of "
              f"{prefix}.npz)", file=sys.stderr)
    print(f"wrote {prefix}.png and {prefix}.npz ({args.n} samples, steps {shown}, "
          f"non-finite fraction {frac:.3f})")
    return 0


def main(argv=None):
    from ..cli import HelpFormatter, Parser

    parser = Parser(prog="python -m mrdiffusion.hvae")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(sub.add_parser("train", help=TRAIN_HELP, formatter_class=HelpFormatter))
    add_sample_arguments(sub.add_parser("sample", help=SAMPLE_HELP, formatter_class=HelpFormatter))
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
