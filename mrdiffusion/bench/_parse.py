"""Scalar parsing for the bench configuration: one-line errors that name the key and the allowed values."""

from __future__ import annotations

import math
from fractions import Fraction

__all__ = ["ConfigError", "check_name", "check_label", "number", "integer", "boolean", "fmt_allowed", "fraction",
           "fmt_dt"]


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key and the allowed values."""


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_LABEL_CHARS = _NAME_CHARS | frozenset("().,=+' ")


def check_name(key, name):
    """A problem name, used in file names (cells, cached references): letters, digits, ``_`` and ``-``.

    ``ConfigError`` otherwise: a name such as ``x/../../escape`` would become a path outside ``--out``.
    """
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise ConfigError(f"{key}: {name!r} cannot name a problem; expected 1 to 64 letters, digits, '_' or '-' "
                          f"(it becomes part of file names)")
    return name


def check_label(key, label):
    """A scheme's label, used in cell file names: no path separators or other unsafe characters."""
    if not set(label) <= _LABEL_CHARS or label.startswith(".") or len(label) > 128:
        raise ConfigError(f"{key}: the scheme {label!r} cannot name a file; expected letters, digits and "
                          f"\"_-().,=+' \" only (scheme arguments that are numbers or plain words)")
    return label


def fmt_allowed(values):
    return ", ".join(str(v) for v in values)


def number(key, value, *, positive=True, allow_zero=False):
    """A finite float (``"p/q"`` strings allowed); positive unless ``positive=False``."""
    if isinstance(value, str) and "/" in value:
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{key}: expected a number or a fraction like \"1/8\", got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"{key}: expected a positive number, got {value!r}")
    return float(value)


def integer(key, value, *, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def boolean(key, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def fraction(x):
    return Fraction(x).limit_denominator(1 << 40)


def fmt_dt(x):
    f = fraction(x)
    return f"{f.numerator}/{f.denominator}" if f.denominator != 1 else str(f.numerator)
