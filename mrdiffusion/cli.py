"""The ``mrdiffusion`` command line.

Subcommands register themselves in :data:`COMMANDS` as ``name -> (help, add_arguments, run)``;
``run(args)`` returns the process exit code.

Exit codes: 0 done; 2 a bad argument, input file or output path (one line on
stderr naming it and the expected form, nothing written): this includes a
checkpoint or bench cell file that does not match its schema, a name from a
configuration or checkpoint that is not a safe file name, and a run whose
memory estimate exceeds the memory available; 3 ran, output non-finite
(``sample``: every sample is NaN or infinite; the files are written and the
line says so; when only some are, exit 0 and the count is printed); 130
interrupted (Ctrl-C), with a line saying what was kept and how to resume.

Bounds: ``sample --steps`` at most 10,000 top-down steps in all; ``--seed`` an
integer in ``[0, 2^32 - 1]``; ``--out ""`` is refused (use ``--out .``).
``bench --hvae`` refuses ``--config`` and ``--resume`` (it has no configuration
and nothing to resume) and reads test images only from a built-in data set or
its own ``--data`` option, never from a path stored in the checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__

COMMANDS: dict = {}


def register(name, help, add_arguments, run):
    """Add subcommand ``name``: ``add_arguments(parser)`` declares its options, ``run(args)`` runs it."""
    COMMANDS[name] = (help, add_arguments, run)


def _info(args):
    import torch

    import solvers

    print(f"mrdiffusion {__version__}, torch {torch.__version__}, "
          f"cuda {'available' if torch.cuda.is_available() else 'not available'}")
    print("schemes (strong / weak / ODE order):")
    for name, cls in solvers.SCHEMES.items():
        s = cls()
        print(f"  {name:20s} {s.strong_order!s:>5} / {s.weak_order!s:>5} / {s.ode_order!s:>5}   "
              f"noise: {', '.join(sorted(s.noise_types)) or 'ODE only'}")
    return 0


register("info", "print versions and the available schemes", lambda parser: None, _info)


def _load_plugins():
    """Import the modules that register further subcommands (bench, train, ...), where present."""
    import importlib

    for mod in ("mrdiffusion.bench.cli", "mrdiffusion.hvae.cli", "mrdiffusion.metrics.cli"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if not (err.name or "").startswith("mrdiffusion"):
                raise


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``PROG: error: MESSAGE (see PROG --help)``, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default; ``None`` defaults (computed at run time) are left to the help text."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    _load_plugins()
    parser = Parser(
        prog="mrdiffusion", formatter_class=HelpFormatter,
        description="Multi-resolution diffusion processes on Haar wavelet stacks, and the schemes that sample them.",
    )
    parser.add_argument("--version", action="version", version=f"mrdiffusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.subcommands = {}
    for name, (help_, add_arguments, _) in COMMANDS.items():
        parser.subcommands[name] = sub.add_parser(name, help=help_, description=help_, formatter_class=HelpFormatter)
        add_arguments(parser.subcommands[name])
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # point to the subcommand's own --help, where its options are listed
        parser.subcommands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        print(f"mrdiffusion {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # a disk that fills up or a folder removed mid-run: one line, not a traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"mrdiffusion {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
