"""The ``mrdiffusion`` command line.

Subcommands register themselves in :data:`COMMANDS` as ``name -> (help, add_arguments, run)``;
``run(args)`` returns the process exit code.

Exit codes: 0 done; 2 a bad argument, input file or output path (one line on
stderr naming it and the expected form, nothing written); 130 interrupted
(Ctrl-C), with a line saying what was kept and how to resume.
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
    for name, (help_, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_, formatter_class=HelpFormatter))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
