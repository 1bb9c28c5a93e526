"""``mrdiffusion bench``: solver comparison and sampling stability near the point mass.

Importing this module registers the subcommand with :mod:`mrdiffusion.cli`.
Under ``torchrun --nproc_per_node N -m mrdiffusion bench ...`` the cells are
sharded across the ranks and rank 0 writes the merged outputs.
"""

from __future__ import annotations

import json
import os
import sys

from ..cli import register
from .config import Config, ConfigError, load_config

__all__ = ["add_arguments", "main_run"]


def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="8×8 grids and steps 1/8 … 1/128: under a minute on two cores")
    p.add_argument("--out", default=None, help="output folder (default: results/bench-<timestamp>)")
    p.add_argument("--config", default=None, metavar="FILE", help="TOML file choosing problems, solvers, steps, "
                   "paths, seeds (see mrdiffusion.bench.config)")
    p.add_argument("--seed", type=int, default=None, help="base seed (overrides the config)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (default: the "
                   "latest results/bench-*), skipping finished cells")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--hvae", default=None, metavar="CHECKPOINT", help="bench a trained HVAE instead: every "
                   "scheme its top-down SDE supports at 0.5/1/2/4x the trained steps (mrdiffusion.bench.hvae)")


def _stored_config(out):
    with open(os.path.join(out, "config.json")) as fh:
        return Config.from_dict(json.load(fh)["config"])


def main_run(args) -> int:
    from .report import main_table
    from .study import latest_run, run

    if getattr(args, "hvae", None):
        from .hvae import main_hvae

        return main_hvae(args)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        fresh = not (args.config or args.quick or args.seed is not None or args.device)
        if args.resume and fresh:  # resume with the stored configuration
            out = args.out or latest_run()
            if out is None:
                raise ConfigError("--resume: no bench run in results/bench-*; pass --out DIR of the run to resume")
            if not os.path.isfile(os.path.join(out, "config.json")):
                raise ConfigError(f"--resume: {out} holds no bench run (no config.json); drop --resume to start one")
            config = _stored_config(out)
            args.out = out
        else:
            config = load_config(args.config, quick=args.quick, seed=args.seed, device=args.device)
        result = run(config, args.out, resume=args.resume, progress=not args.no_progress,
                     log=(lambda msg: print(msg, file=sys.stderr)) if rank0 else None)
    except ConfigError as err:
        if rank0:
            print(f"mrdiffusion bench: error: {err}", file=sys.stderr)
        return 2
    if rank0 and "meta" in result:
        for p in config.problems:
            print(f"\n## {p.name}\n")
            print(main_table(config, result["records"], p.name))
        print(f"\nreport: {os.path.join(result['out'], 'report.md')}")
    return 0


register("bench", "compare SDE solvers on multi-resolution processes flowing from a point mass (tables, plots)",
         add_arguments, main_run)
