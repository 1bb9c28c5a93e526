"""``mrdiffusion bench``: solver comparison and sampling stability near the point mass.

Importing this module registers the subcommand with :mod:`mrdiffusion.cli`.
Under ``torchrun --nproc_per_node N -m mrdiffusion bench ...`` the cells are
sharded across the ranks and rank 0 writes the merged outputs.

Everything is checked before the output folder is created: the configuration
(including a memory estimate), the ``--out`` path, and under ``--resume`` the
stored run. A bad value is one line on stderr and exit code 2. Ctrl-C keeps
the finished cells and prints the command that resumes the run (exit 130).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

from .. import _args as A
from ..cli import register
from .config import Config, ConfigError, load_config

__all__ = ["add_arguments", "main_run"]


def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="8×8 grids and steps 1/8 … 1/128: under a minute on two cores")
    p.add_argument("--out", default=None, help="output folder (default: results/bench-<timestamp>)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML file choosing problems, solvers, steps, paths, seeds (see --print-config)")
    p.add_argument("--seed", type=A.seed, default=None, help="base seed (overrides the config)")
    p.add_argument("--device", type=A.device, default=None,
                   help="torch device, cpu, cuda or cuda:N (overrides the config)")
    p.add_argument("--print-config", action="store_true",
                   help="print the configuration (the defaults, or --quick/--config/--seed applied) as a commented "
                        "TOML file for --config, and exit")
    p.add_argument("--list", action="store_true",
                   help="list the problem kinds with their parameters, and the schemes, and exit")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (default: the "
                   "latest results/bench-*), skipping finished cells")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--hvae", default=None, metavar="CHECKPOINT", help="bench a trained HVAE instead: every "
                   "scheme its top-down SDE supports at 0.5/1/2/4x the trained steps (mrdiffusion.bench.hvae)")
    p.add_argument("--data", default=None, metavar="PATH", help="with --hvae: the .npz file or image folder the "
                   "checkpoint was trained on (its test split is measured); a checkpoint trained on 'digits' or "
                   "'synthetic' needs none. Paths stored in a checkpoint are never read")


def _read_json(path, what, recover):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--resume: {path} ({what}) is unreadable ({type(err).__name__}); {recover}") from None


def _stored(out):
    """The stored configuration of the run in ``out`` (``ConfigError`` naming the file if it is damaged)."""
    path = os.path.join(out, "config.json")
    recover = f"the run in {out} cannot be resumed: start a new one with another --out (or delete {out})"
    doc = _read_json(path, "the run's configuration", recover)
    try:
        return doc, Config.from_dict(doc["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"--resume: {path} is not a bench configuration ({type(err).__name__}: {err}); "
                          f"{recover}") from None


def _check_cells(out):
    """Every finished cell under ``out/cells`` must parse; name the first damaged one and how to recover."""
    from .cells import CELL_SCHEMA, REFERENCE_SCHEMA, check_record

    for path in sorted(glob.glob(os.path.join(out, "cells", "*.json"))):
        recover = "delete that file and run --resume again: the cell is recomputed"
        doc = _read_json(path, "a finished cell", recover)
        wrong = check_record(doc, CELL_SCHEMA)
        if wrong:
            raise ConfigError(f"--resume: {path} is not a finished cell ({wrong}); {recover}")
    for path in sorted(glob.glob(os.path.join(out, "cache", "reference-*.pt"))):
        import torch

        recover = "delete that file and run --resume again: the reference is recomputed"
        try:
            doc = torch.load(path, weights_only=True)
        except Exception as err:
            raise ConfigError(f"--resume: {path} (a cached reference) is unreadable ({type(err).__name__}); "
                              f"{recover}") from None
        wrong = check_record(doc, REFERENCE_SCHEMA)
        if wrong:
            raise ConfigError(f"--resume: {path} is not a cached reference ({wrong}); {recover}")


def _explain_mismatch(args, out, stored_doc):
    """A precise message when a resume is asked with options that differ from the stored run's, or None."""
    stored_quick = bool(stored_doc["config"].get("quick", False))
    if stored_quick != bool(args.quick):
        return (f"--resume: the run in {out} was made {'with' if stored_quick else 'without'} --quick; "
                f"{'add' if stored_quick else 'drop'} --quick, or give only --resume --out {out} to resume "
                f"with the stored configuration")
    return None


def _resolve(args):
    """``(config, out)`` to run, all checks done; raises ``ConfigError``."""
    if args.out is not None:
        A.check_out_dir(args.out)
    fresh = not (args.config or args.quick or args.seed is not None or args.device)
    if not args.resume:
        return load_config(args.config, quick=args.quick, seed=args.seed, device=args.device), args.out
    from .study import latest_run

    out = args.out or latest_run()
    if out is None:
        raise ConfigError("--resume: no bench run in results/bench-*; pass --out DIR of the run to resume")
    if not os.path.isfile(os.path.join(out, "config.json")):
        raise ConfigError(f"--resume: {out} holds no bench run (no config.json); drop --resume to start one")
    stored_doc, stored = _stored(out)
    _check_cells(out)
    if fresh:
        from .memory import check_memory

        check_memory(stored)
        return stored, out
    config = load_config(args.config, quick=args.quick, seed=args.seed, device=args.device)
    if config.fingerprint() != stored_doc.get("fingerprint"):
        hint = _explain_mismatch(args, out, stored_doc)
        if hint:
            raise ConfigError(hint)
    return config, out


def main_run(args) -> int:
    from .report import main_table
    from .study import latest_run, run

    rank0 = int(os.environ.get("RANK", "0")) == 0
    if args.hvae is not None:
        ignored = [flag for flag, on in (("--config", args.config is not None), ("--resume", args.resume),
                                         ("--print-config", args.print_config), ("--list", args.list)) if on]
        if ignored or not args.hvae.strip():
            msg = (f"--hvae: expected a checkpoint path, got {args.hvae!r}" if not ignored else
                   f"{ignored[0]} does not apply to --hvae (a trained model has no bench configuration and a "
                   f"--hvae study is not resumable); drop {ignored[0]}")
            if rank0:
                print(f"mrdiffusion bench: error: {msg}", file=sys.stderr)
            return 2
        from .hvae import main_hvae

        return main_hvae(args)
    if getattr(args, "data", None) is not None:
        if rank0:
            print("mrdiffusion bench: error: --data: only with --hvae CHECKPOINT (the test images of a trained "
                  "model); the closed-form bench has no data", file=sys.stderr)
        return 2
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if args.list:
        from .describe import catalogue

        print(catalogue(), end="")
        return 0
    t_start = time.time()
    try:
        if args.print_config:
            from .describe import config_toml

            print(config_toml(load_config(args.config, quick=args.quick, seed=args.seed, device=args.device)),
                  end="")
            return 0
        config, out = _resolve(args)
        result = run(config, out, resume=args.resume, progress=not args.no_progress,
                     log=(lambda msg: print(msg, file=sys.stderr)) if rank0 else None)
    except (ConfigError, A.OutputError) as err:
        if rank0:
            print(f"mrdiffusion bench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if rank0:
            out = args.out or latest_run()
            cfg = os.path.join(out, "config.json") if out else None
            if out and (args.resume or (os.path.isfile(cfg) and os.path.getmtime(cfg) >= t_start - 1)):
                n = len(glob.glob(os.path.join(out, "cells", "*.json")))
                print(f"mrdiffusion bench: interrupted; {n} finished cells kept in {out}; continue with: "
                      f"mrdiffusion bench --resume --out {out}", file=sys.stderr)
            else:
                print("mrdiffusion bench: interrupted before any cell finished; nothing to resume", file=sys.stderr)
        return 130
    if rank0 and "meta" in result:
        for p in config.problems:
            print(f"\n## {p.name}\n")
            print(main_table(config, result["records"], p.name))
        print(f"\nreport: {os.path.join(result['out'], 'report.md')}")
    return 0


register("bench", "compare SDE solvers on multi-resolution processes flowing from a point mass (tables, plots)",
         add_arguments, main_run)
