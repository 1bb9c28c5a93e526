"""Argument types and checks shared by the command-line tools.

Each type raises :class:`argparse.ArgumentTypeError` with the expected form,
so argparse reports ``argument --NAME: expected ..., got ...`` on one line and
exits with code 2 before any work. :func:`check_out_dir` checks an output
folder the same way, before anything is created.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

__all__ = ["positive_int", "nonnegative_int", "seed", "bounded_int", "MAX_SEED", "positive_float",
           "nonnegative_float", "finite_float",
           "device", "counts", "check_out_dir", "OutputError"]


class OutputError(ValueError):
    """An output path that cannot be written; the message names the path and the reason."""


def _int(text, minimum, what):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
    return v


def positive_int(text):
    return _int(text, 1, "a positive integer")


def nonnegative_int(text):
    return _int(text, 0, "an integer >= 0")


MAX_SEED = 2**32 - 1  # derived seeds (seed + offsets, per step and rank) stay within torch's 64 bits


def seed(text):
    """A seed for ``torch.Generator.manual_seed``: an integer in ``[0, 2^32 - 1]``."""
    v = _int(text, 0, f"an integer in [0, {MAX_SEED}]")
    if v > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {MAX_SEED}] (2^32 - 1), got {text!r}")
    return v


def bounded_int(maximum, what=None):
    """A positive integer at most ``maximum`` (an argparse type)."""
    what = what or f"a positive integer up to {maximum}"

    def parse(text):
        v = _int(text, 1, what)
        if v > maximum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    parse.__name__ = "bounded_int"
    return parse


def _float(text, ok, what):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(v) and ok(v)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_float(text):
    return _float(text, lambda v: v > 0, "a finite number > 0")


def nonnegative_float(text):
    return _float(text, lambda v: v >= 0, "a finite number >= 0")


def finite_float(text):
    return _float(text, lambda v: True, "a finite number")


def device(text):
    """A torch device that exists here: ``cpu``, or ``cuda`` / ``cuda:N`` when CUDA is available."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    allowed = "cpu" + (f", cuda, cuda:0 … cuda:{n - 1}" if n else " (no CUDA device is available here)")
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a torch device: {allowed}; got {text!r}") from None
    if dev.type not in ("cpu", "cuda") or (dev.type == "cuda" and (n == 0 or (dev.index or 0) >= n)):
        raise argparse.ArgumentTypeError(f"device {text!r} is not available; expected {allowed}")
    return text


def counts(text):
    """Comma-separated non-negative integers, e.g. ``1,2,3,3``."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,3,3, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return values


def check_out_dir(path, name="--out"):
    """``OutputError`` unless ``path`` is an existing writable folder or can be created as one.

    Checks only; creates nothing. Refuses an existing file, a path under a
    file, and a folder whose nearest existing ancestor is not writable.
    """
    if not os.fspath(path).strip():
        raise OutputError(f"{name}: expected a folder path, got an empty string (use {name} . for the "
                          f"current folder)")
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{name}: {path} is a file; expected a folder (an existing one or one to create)")
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise OutputError(f"{name}: cannot create {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{name}: cannot write {path}: {probe} is not writable")
    # os.access says yes to root everywhere, and a file system may still refuse (read-only, /proc): try a
    # probe file, then put the folder's times back so that the check leaves no trace
    st = os.stat(probe)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-probe-", dir=probe)
    except OSError as err:
        raise OutputError(f"{name}: cannot write {path}: {probe} refuses new files ({err.strerror})") from None
    os.close(fd)
    os.unlink(tmp)
    try:
        os.utime(probe, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError:
        pass
    return path
