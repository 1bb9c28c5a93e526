"""``mrdiffusion eval RUN``: test bits/dim by the probability-flow ODE and the Fréchet distance of samples.

Importing this module registers the subcommand with :mod:`mrdiffusion.cli`. It
loads the run's EMA weights (:func:`mrdiffusion.load`), the run's data set
(recorded in its checkpoint; ``--data`` for a data set given by path), and calls
:func:`mrdiffusion.metrics.evaluate`, which does the work and is the Python API
of the same thing. Samples are drawn as ``mrdiffusion sample`` draws them,
through point-mass activations included, and mapped to grey levels by the
inverse of the training map.
"""

from __future__ import annotations

import json
import sys

from .. import _args as A

__all__ = ["add_eval_arguments", "run_eval"]

HELP = "test bits/dim (probability-flow ODE) and Fréchet distance of samples of a trained diffusion run"


def add_eval_arguments(p):
    p.add_argument("run", metavar="RUN", help="a run folder of mrdiffusion train --model diffusion, or its "
                                              "checkpoint.pt")
    p.add_argument("--data", default=None,
                   help="the run's data set (default: the one recorded in the checkpoint; give the path for a "
                        "data set read from a file or folder)")
    p.add_argument("--n-test", type=A.positive_int, default=None,
                   help="test images for the likelihood (default: all)")
    p.add_argument("--n-samples", type=A.nonnegative_int, default=1000,
                   help="samples for the Fréchet distance and the sampling time (0: no sampling)")
    p.add_argument("--solver", default=None,
                   help="sampler as NAME[:key=value,...], as for mrdiffusion sample (default: the run's default "
                        "sampler)")
    p.add_argument("--nfe", type=A.positive_int, default=10, help="model evaluations per sample")
    p.add_argument("--rtol", type=A.positive_float, default=1e-5,
                   help="relative and absolute tolerance of the likelihood's dopri5 solve")
    p.add_argument("--trace", default="auto", choices=("auto", "exact", "hutchinson"),
                   help="divergence of the probability-flow ODE: exact (one product per dimension), Hutchinson "
                        "(one Rademacher probe), or auto (exact up to 64 dimensions)")
    p.add_argument("--batch-size", type=A.positive_int, default=256, help="images per likelihood / sampling batch")
    p.add_argument("--seed", type=A.nonnegative_int, default=0,
                   help="seed of the dequantisation, the probes and the samples")
    p.add_argument("--device", type=A.device, default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--cache", default=None,
                   help="folder of the cached feature classifier (default: $MRDIFFUSION_CACHE or "
                        "~/.cache/mrdiffusion)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _one_line(err):
    return " ".join(str(err).split())


def run_eval(args):
    """Exit code: 0 done, 2 bad input (one line, nothing written but the classifier cache)."""
    import torch

    from ..data import load_dataset
    from ..diffusion.api import checkpoint_kind, checkpoint_path, load
    from ..diffusion.cli import default_solver, draw
    from ..diffusion.model import data_to_images
    from ..diffusion.sample import check_nfe, pointmass_ready
    from ..diffusion.solvers_registry import parse_solver
    from ..sampling import SamplerScheme
    from . import evaluate

    try:
        path = checkpoint_path(args.run)
        if checkpoint_kind(path) != "diffusion":
            raise ValueError(f"RUN: {path} is an HVAE run; eval measures diffusion runs (an HVAE's test ELBO "
                             f"is in its summary.json)")
        solver = parse_solver(args.solver)[0] if args.solver else None
        run = load(path, device=args.device)
        solver = default_solver(run) if solver is None else solver
        if isinstance(solver, SamplerScheme):
            check_nfe(solver, args.nfe)
        if run.activation_times and not pointmass_ready(solver):
            raise ValueError(f"--solver: {solver!r} cannot step from a point-mass activation of this run (SNR 0); "
                             f"use ExponentialAdams (data prediction) or DPMSolverPP2M")
        recorded = run.checkpoint.get("data", {})
        spec = args.data if args.data is not None else recorded.get("name")
        if spec is None:
            raise ValueError("--data: the checkpoint records no data set; give it")
        data = load_dataset(spec, levels=recorded.get("levels"))
        if data.levels != run.model.config.grey_levels:
            raise ValueError(f"--data: {spec!r} has {data.levels} grey levels, the run was trained on "
                             f"{run.model.config.grey_levels}")
        if tuple(data.test.shape[1:]) != tuple(run.model.family.shape):
            raise ValueError(f"--data: {spec!r} has images of shape {tuple(data.test.shape[1:])}, the run's "
                             f"model takes {tuple(run.model.family.shape)}")
    except ValueError as err:
        print(f"mrdiffusion eval: error: {_one_line(err)}", file=sys.stderr)
        return 2

    levels = run.model.config.grey_levels

    def draw_images(n, seed):
        with torch.no_grad():
            x, info = draw(run, n, nfe=args.nfe, solver=solver, seed=seed)
        return data_to_images(run.layout.unpack(x.float()), levels), info["nfe"] if isinstance(info, dict) \
            else info.nfe

    log = None if args.json else (lambda msg: print(f"[eval] {msg}", file=sys.stderr))
    out = evaluate(run.denoiser, run.noising, data, n_test=args.n_test, n_samples=args.n_samples, solver=solver,
                   nfe=args.nfe, sampler=args.solver or repr(solver), trace=args.trace, rtol=args.rtol,
                   atol=args.rtol, batch_size=args.batch_size, seed=args.seed, cache=args.cache,
                   dtype=torch.float32, device=torch.device(args.device), draw=draw_images, log=log)
    if args.json:
        print(json.dumps(out))
    else:
        width = max(map(len, out))
        for key, value in out.items():
            print(f"{key:<{width}}  {value}")
    return 0


try:
    from ..cli import register
except ImportError:  # pragma: no cover - imported outside the package
    register = None
if register is not None:
    register("eval", HELP, add_eval_arguments, run_eval)
