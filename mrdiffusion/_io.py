"""Output files written whole or not at all, with the permissions the user asked for.

Every result file of the project (bench cells and tables, plots, reports,
checkpoints, samples) goes through :func:`atomic_write` or :func:`atomic_save`:
the data goes to a temporary file in the target's folder, is flushed to disk,
gets the mode a plain ``open(path, "w")`` would give (``0o666`` less the
process umask; ``mkstemp`` alone would leave ``0o600``) and is then renamed
over the target with ``os.replace``. A reader, or a run killed at any moment,
sees either the old file or the new one, never a torn one. Temporary files
start with ``.tmp-``; :func:`remove_stale_temporaries` clears those a hard kill
left behind.
"""

from __future__ import annotations

import glob
import os
import tempfile

__all__ = ["atomic_write", "atomic_save", "file_mode", "remove_stale_temporaries", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"


def file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` gives a new file in this process."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _target(path, root=None):
    """The absolute path ``path`` names, refused (``ValueError``) if it leaves its own folder or ``root``.

    The temporary file and the rename use this one path: a name such as
    ``cells/x/../../../escape.json`` is not renamed to a place other than the
    folder the temporary file was made in.
    """
    raw = os.fspath(path)
    if not raw or os.path.basename(raw) in ("", ".", ".."):
        raise ValueError(f"output file: expected a file name, got {raw!r}")
    parts = raw.replace(os.sep, "/").split("/")
    while parts and parts[0] in ("..", "."):
        parts.pop(0)  # a path that starts above the working folder is the caller's choice
    if ".." in parts:
        raise ValueError(f"output file: {raw!r} leaves its folder (a '..' inside the path); expected a file name "
                         f"inside an output folder")
    target = os.path.abspath(raw)
    if root is not None:
        base = os.path.realpath(os.fspath(root))
        if os.path.commonpath([base, os.path.realpath(target)]) != base:
            raise ValueError(f"output file: {raw!r} is outside the output folder {os.fspath(root)!r}")
    return target


def _atomic(path, write, binary, root=None):
    path = _target(path, root)
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path, data, *, root=None):
    """Write ``data`` (``str`` or ``bytes``) to ``path`` atomically (see the module docstring).

    ``ValueError`` before anything is written if ``path`` has a ``..`` after a
    named folder (it would leave its folder), or lies outside ``root`` when given.
    """
    _atomic(path, lambda fh: fh.write(data), isinstance(data, (bytes, bytearray)), root)


def atomic_save(obj, path, *, root=None):
    """``torch.save(obj)`` to ``path`` atomically: a checkpoint is never torn by a kill."""
    import torch

    _atomic(path, lambda fh: torch.save(obj, fh), True, root)


def remove_stale_temporaries(folder, depth=1):
    """Delete the ``.tmp-*`` files a hard kill left in ``folder`` (and its sub-folders up to ``depth``)."""
    patterns = [os.path.join(folder, *(["*"] * d), TMP_PREFIX + "*") for d in range(depth + 1)]
    for pattern in patterns:
        for stale in glob.glob(pattern):
            os.unlink(stale)
