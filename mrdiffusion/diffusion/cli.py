"""Command-line hooks: ``mrdiffusion train --model diffusion`` and ``mrdiffusion sample RUN`` for diffusion runs.

:func:`add_train_options` adds the diffusion options (and ``--model``) to the
``train`` parser that :mod:`mrdiffusion.hvae.cli` builds; every option records
whether it was given, so that an option of the other model kind is refused
(one line, exit 2) instead of being silently ignored. Options shared by both
kinds (data, optimisation, device) keep one name; where the diffusion default
differs, it applies when the option is not given. ``--print-config`` prints the
resolved diffusion configuration as JSON, ``--config FILE`` reads one (the
options given on the command line override it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .. import _args as A

__all__ = ["add_train_options", "run_train", "add_sample_options", "run_sample", "draw", "HVAE_TRAIN_ONLY",
           "DIFFUSION_TRAIN_ONLY"]

HVAE_TRAIN_ONLY = ("solver", "share", "time_embedding", "mid_width", "zdim", "enc_blocks", "dec_blocks",
                   "skip_threshold", "save_rank_weights")
DIFFUSION_TRAIN_ONLY = ("noising", "band_ratio", "activations", "blocks", "mults", "dropout", "print_config",
                        "config")
HVAE_SAMPLE_ONLY = ("steps", "temperature")
DIFFUSION_SAMPLE_ONLY = ("nfe", "ode")

#: diffusion defaults of options shared with the HVAE (whose parser holds the HVAE's defaults)
SHARED_DEFAULTS = {"steps": 20000, "batch_size": 128, "lr": 1e-3, "warmup": 200, "grad_clip": 1.0, "ema": 0.999,
                   "ckpt_every": 500, "width": None}
CONFIG_KEYS = ("noising", "band_ratio", "activations", "blocks", "mults", "dropout", "width", "steps", "batch_size",
               "lr", "warmup", "grad_clip", "ema", "ckpt_every", "seed", "budget_seconds", "budget_clock")


def _record_given(parser):
    """Make every option of ``parser`` note its ``dest`` in ``namespace._given`` when it is on the command line."""
    for action in parser._actions:
        if action.option_strings and not getattr(type(action), "_records", False):
            base = type(action)

            def call(self, p, ns, values, option_string=None, _base=base):
                given = getattr(ns, "_given", None)
                if given is None:
                    given = set()
                    setattr(ns, "_given", given)
                given.add(self.dest)
                return _base.__call__(self, p, ns, values, option_string)

            action.__class__ = type(base.__name__, (base,), {"__call__": call, "_records": True})


def _floats(text):
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 2,0.8,0.32, got {text!r}") \
            from None


def add_train_options(p):
    """``--model`` and the diffusion-only options of ``mrdiffusion train``."""
    p.add_argument("--model", default="hvae", choices=("hvae", "diffusion"),
                   help="model kind: the multi-resolution HVAE, or the learned multi-resolution diffusion")
    g = p.add_argument_group("diffusion model (--model diffusion; see docs/diffusion.md)")
    g.add_argument("--noising", default=None, choices=("scalar", "perband", "pointmass"),
                   help="noising family: scalar (EDM, one σ for all bands), perband (band k noised 2^k times "
                        "faster), pointmass (detail bands cut to exactly zero at activation times 2, 0.8, 0.32, …; "
                        "generation runs coarse to fine). Default scalar")
    g.add_argument("--band-ratio", type=A.positive_float, default=None,
                   help="perband: σ_k = ratio^k · t (default 2)")
    g.add_argument("--activations", type=_floats, default=None,
                   help="pointmass: activation time of each detail level, coarsest first, decreasing, in (0, 80) "
                        "(default 2·0.4^k)")
    g.add_argument("--blocks", type=A.positive_int, default=None, help="U-Net residual blocks per resolution "
                                                                       "(default 2)")
    g.add_argument("--mults", type=A.counts, default=None,
                   help="U-Net channel multipliers per resolution, finest first (default 1,2,2 down to 2×2 or 4×4)")
    g.add_argument("--dropout", type=A.nonnegative_float, default=None, help="dropout in the blocks (default 0)")
    g.add_argument("--config", default=None, metavar="FILE",
                   help="JSON file of diffusion options (see --print-config); options on the command line win")
    g.add_argument("--print-config", action="store_true",
                   help="print the resolved diffusion configuration as JSON for --config, and exit")
    for action in p._actions:  # --print-config needs no run folder; the HVAE path checks --out itself
        if action.dest == "out":
            action.required = False
    _record_given(p)


def _resolve(args, given):
    """The flat diffusion option dict: defaults < --config file < command line."""
    defaults = {"noising": "scalar", "band_ratio": 2.0, "activations": None, "blocks": 2, "mults": None,
                "dropout": 0.0, "width": None, "seed": 0, "budget_seconds": None, "budget_clock": "wall",
                **SHARED_DEFAULTS}
    conf = dict(defaults)
    if args.config:
        try:
            with open(args.config) as fh:
                loaded = json.load(fh)
        except OSError as err:
            raise ValueError(f"--config: cannot read {args.config} ({err.strerror})") from None
        except ValueError as err:
            raise ValueError(f"--config: {args.config} is not valid JSON ({err})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"--config: {args.config} must hold a JSON object of options")
        bad = sorted(set(loaded) - set(CONFIG_KEYS) - {"model"})
        if bad:
            raise ValueError(f"--config: unknown keys {', '.join(bad)}; expected some of {', '.join(CONFIG_KEYS)}")
        conf.update({k: v for k, v in loaded.items() if k != "model"})
    for k in CONFIG_KEYS:
        if k in given:
            conf[k] = getattr(args, k)
    for k in ("activations", "mults"):
        if conf[k] is not None:
            conf[k] = list(conf[k])
    return conf


def _build(conf, data):
    from .families import make_family
    from .model import DiffusionConfig, band_rms, images_to_data
    from .train import DiffusionTrainConfig
    from .unet import UNetConfig, default_mults
    from ..multires import BandLayout

    x = data.train
    C, H, W = (int(v) for v in x.shape[1:])
    if H != W or H & (H - 1) or H < 2:
        raise ValueError(f"--data: the diffusion model needs square images of a power-of-two size >= 2; "
                         f"{data.name!r} has {H}×{W}")
    levels = int(math.log2(H))
    fam = make_family(conf["noising"], (C, H, W), levels,
                      scales=[conf["band_ratio"] ** k for k in range(levels + 1)] if conf["noising"] == "perband"
                      else None, activations=conf["activations"])
    width = conf["width"] or (32 if H <= 8 else 64)
    unet = UNetConfig(channels=C, size=H, bands=levels + 1, width=int(width),
                      mults=tuple(conf["mults"] or default_mults(H)), blocks=int(conf["blocks"]),
                      dropout=float(conf["dropout"]))
    layout = BandLayout((H, W), levels, 2)
    sigma_data = band_rms(layout.pack(images_to_data(x, data.levels)), layout)
    cfg = DiffusionTrainConfig(steps=int(conf["steps"]), batch_size=int(conf["batch_size"]), lr=float(conf["lr"]),
                               warmup=int(conf["warmup"]), grad_clip=float(conf["grad_clip"]),
                               ema_decay=float(conf["ema"]), ckpt_every=int(conf["ckpt_every"]),
                               seed=int(conf["seed"]), budget_seconds=conf["budget_seconds"],
                               budget_clock=conf["budget_clock"])
    return DiffusionConfig(unet, fam, sigma_data, int(data.levels)), cfg


def _one_line(err):
    return " ".join(str(err).split())


def run_train(args):
    """``mrdiffusion train --model diffusion …``; exit code."""
    import torch

    from ..hvae.data import load_dataset
    from ..hvae.train import TrainingInterrupted
    from .train import train

    rank0 = int(os.environ.get("RANK", "0")) == 0
    given = getattr(args, "_given", set())
    try:
        wrong = sorted(d for d in given if d in HVAE_TRAIN_ONLY)
        if wrong:
            raise ValueError(f"--{wrong[0].replace('_', '-')}: an HVAE option; --model diffusion does not take it "
                             f"(see docs/diffusion.md for the diffusion options)")
        conf = _resolve(args, given)
        if args.print_config:
            print(json.dumps({"model": "diffusion", **conf}, indent=2))
            return 0
        if args.out is None:
            raise ValueError("--out: required (the run folder: checkpoint.pt, log.jsonl, run.json, summary.json)")
        A.check_out_dir(args.out)
        if args.resume and not os.path.isfile(os.path.join(args.out, "checkpoint.pt")):
            raise ValueError(f"--resume: {os.path.join(args.out, 'checkpoint.pt')} does not exist; drop --resume "
                             f"to start a new run in {args.out}")
        if args.threads:
            torch.set_num_threads(args.threads)
        data = load_dataset(args.data, levels=args.levels)
        config, cfg = _build(conf, data)
        summary = train(config, cfg, data, args.out, resume=args.resume, device=args.device,
                        progress=not args.no_progress,
                        announce=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as err:
        if rank0:
            print(f"mrdiffusion train: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        if rank0:
            argv = " ".join(a for a in sys.argv[1:] if a != "--resume")
            print(f"mrdiffusion train: interrupted at step {stop.step}; checkpoint saved to {stop.checkpoint}; "
                  f"continue with: mrdiffusion {argv} --resume", file=sys.stderr)
        return 130
    if rank0:
        print(json.dumps(summary, indent=2))
    return 0


def refuse_other_kind(args, kind):
    """``ValueError`` if an option of the other model kind was given to ``mrdiffusion train``/``sample``."""
    given = getattr(args, "_given", set())
    other = DIFFUSION_TRAIN_ONLY if kind == "hvae" else HVAE_TRAIN_ONLY
    wrong = sorted(d for d in given if d in other)
    if wrong:
        what = "a diffusion option; the HVAE" if kind == "hvae" else "an HVAE option; a diffusion run"
        raise ValueError(f"--{wrong[0].replace('_', '-')}: {what} does not take it")


def add_sample_options(p):
    """``--nfe`` and ``--ode`` for diffusion runs; ``--solver`` opened to the one registry."""
    g = p.add_argument_group("diffusion runs")
    g.add_argument("--nfe", type=A.positive_int, default=None,
                   help="model evaluations (default 35); must fit the solver's evaluations per step exactly")
    g.add_argument("--ode", action="store_true",
                   help="with a solvers scheme (Heun, EulerMaruyama, …): the probability-flow ODE instead of the "
                        "reverse SDE")
    for action in p._actions:
        if action.dest == "solver":
            p._hvae_solvers = tuple(action.choices or ())
            action.choices = None
            from .solvers_registry import names

            action.help = (f"HVAE: a scheme of its top-down pass ({', '.join(p._hvae_solvers)}); diffusion: "
                           f"NAME or NAME:key=value,... from {names()}")
    p.set_defaults(_hvae_solvers=getattr(p, "_hvae_solvers", ()))
    _record_given(p)


def check_hvae_sample(args):
    """For HVAE runs: no diffusion-only option, and ``--solver`` one of the HVAE's schemes."""
    given = getattr(args, "_given", set())
    wrong = sorted(d for d in given if d in DIFFUSION_SAMPLE_ONLY)
    if wrong:
        raise ValueError(f"--{wrong[0]}: a diffusion option; an HVAE run samples with --steps")
    if args.solver is not None and args.solver not in args._hvae_solvers:
        raise ValueError(f"--solver: {args.solver!r} is not a scheme the HVAE can use; expected one of "
                         f"{', '.join(args._hvae_solvers)}")


def default_solver(run):
    from ..sampling import DEFAULT_SOLVER, ExponentialAdams

    return ExponentialAdams(order=3) if run.activation_times else DEFAULT_SOLVER


def draw(run, n, *, nfe=35, solver=None, seed=0, ode=False):
    """``(x_0 packed (n, C, n_coef), info)``: ``n`` samples of a loaded diffusion run (no autograd graph)."""
    import torch

    with torch.no_grad():
        return _draw(run, n, nfe=nfe, solver=solver, seed=seed, ode=ode)


def _draw(run, n, *, nfe, solver, seed, ode):
    import solvers as S

    from ..sampling import SamplerScheme
    from .sample import sample_bands

    solver = default_solver(run) if solver is None else solver
    x_T = run.prior(n, seed=seed)
    D = run.denoiser
    if isinstance(solver, SamplerScheme):
        if ode:
            raise ValueError("--ode: for the solvers schemes only; a few-step sampler is an ODE or SDE by itself "
                             "(e.g. ExponentialAdams:eta=1 for the SDE)")
        return sample_bands(D, run.noising, x_T, nfe=nfe, solver=solver, activations=run.activation_times,
                            seed=seed)
    if not isinstance(solver, S.Scheme):
        raise ValueError(f"--solver: expected a scheme, got {solver!r}")
    if run.activation_times:
        raise ValueError(f"--solver: {solver!r} integrates the reverse SDE through the point-mass activations, "
                         f"where its drift is singular; use ExponentialAdams or DPMSolverPP2M")
    return _classical(D, run.noising, x_T, nfe, solver, ode, seed)


def _classical(D, noising, x_T, nfe, scheme, ode, seed):
    """A :mod:`solvers` scheme on the reverse SDE / PF ODE down to ``σ̂ = 0.002``, then ``x_0 = D(x, t_min)``."""
    import solvers as S

    from ..sampling import DenoisingProblem, EDMRho, StepNoise

    e = scheme.drift_evals
    if nfe < 1 + e or (nfe - 1) % e:
        raise ValueError(f"--nfe: {scheme!r} uses {e} model evaluation(s) per step plus one final denoising, so "
                         f"--nfe must be 1 + {e}·k with k >= 1; got {nfe}")
    steps = (nfe - 1) // e
    times = EDMRho(rho=7.0, sigma_min=0.002)(steps + 1, noising.T, 0.0, noising)[:-1]
    prob = DenoisingProblem(D, noising, times, x_T, stochastic=not ode)
    u = prob.u_grid
    noise = None
    if not ode:
        noise = StepNoise(tuple(x_T.shape), u, seed, x_T.dtype, x_T.device)
        prob.brownian = noise
    reason = scheme.incompatibility(prob, tuple(x_T.shape))
    if reason:
        raise ValueError(f"--solver: {reason}")
    xs = S.sdeint(prob, x_T, [u[0], u[-1]], scheme, tstops=u[1:-1], brownian=noise)
    x0 = D(xs[-1], times[-1])
    return x0, {"nfe": prob.nfe + 1, "steps": steps, "times": times}


def run_sample(args, path):
    """``mrdiffusion sample RUN`` for a diffusion checkpoint at ``path``; exit code."""
    import io

    import numpy as np

    from .._io import atomic_write
    from ..hvae.plots import image_grid
    from .api import load
    from .model import data_to_images
    from .sample import check_nfe
    from .solvers_registry import parse_solver

    given = getattr(args, "_given", set())
    try:
        wrong = sorted(d for d in given if d in HVAE_SAMPLE_ONLY)
        if wrong:
            raise ValueError(f"--{wrong[0]}: an HVAE option; a diffusion run samples with --nfe and --solver")
        if args.ode and args.solver is None:
            raise ValueError("--ode: give a solvers scheme with --solver (e.g. --solver Heun --ode)")
        nfe = 35 if args.nfe is None else args.nfe
        solver, few_step = parse_solver(args.solver) if args.solver else (None, True)
        prefix = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), "samples")
        A.check_out_dir(os.path.dirname(os.path.abspath(prefix)), "--out")
        run = load(path, ema=not args.raw, device=args.device)
        if few_step:
            check_nfe(solver or default_solver(run), nfe)
        x, info = draw(run, args.n, nfe=nfe, solver=solver, seed=args.seed, ode=args.ode)
    except ValueError as err:
        print(f"mrdiffusion sample: error: {_one_line(err)}", file=sys.stderr)
        return 2
    L = run.model.config.grey_levels
    images = data_to_images(run.layout.unpack(x.float().cpu()), L)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, images=images.numpy(), levels=L, nfe=info["nfe"], times=np.asarray(info["times"]))
    image_grid(images, L, prefix + ".png")
    atomic_write(prefix + ".npz", buf.getvalue())
    print(f"wrote {prefix}.png and {prefix}.npz ({args.n} samples, {info['nfe']} model evaluations, "
          f"{info['steps']} steps, solver {solver or default_solver(run)!r})")
    return 0
