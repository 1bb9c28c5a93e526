"""The one noise interface every Brownian source implements, and the one Lévy-area formula.

A Brownian source answers two questions about a Brownian motion ``W`` of tensor
shape ``shape``:

``increment(s, t)`` (also ``source(s, t)``)
    ``W(t) - W(s)`` for ``s <= t``;
``space_time(s, t)`` (when ``has_levy_area``)
    ``(dW, U)`` with ``U = ∫_s^t (W_u - W_s) du``, the space-time area that
    Rößler's SRA schemes call ``I_(1,0)`` and torchsde returns with
    ``return_U=True``. ``U = h dW / 2 + h H`` with ``H`` the space-time Lévy
    area of Foster, Lyons & Oberhauser (2020).

The sources (:mod:`solvers._brownian`): :class:`~solvers.BrownianPath` (a
seeded path, a function of time), :class:`GridNoise` (fresh ``√h ξ`` draws per
step, no tree), :class:`TabulatedPath` (``W`` and ``∫W`` tabulated on a grid)
and :class:`RecordedNoise` (records another source's answers and replays them).
Any callable ``(s, t) -> increment`` (torchsde's ``BrownianInterval``) is
wrapped by :func:`as_brownian`.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import torch

from .._terms import declared

__all__ = ["BrownianSource", "as_brownian", "space_time_area", "grid_area"]


def space_time_area(w_s, i_s, w_t, i_t, h):
    """``U = ∫_s^t (W_u - W_s) du = I(t) - I(s) - h W(s)`` from ``W`` and ``I = ∫_{t0} W`` at ``s`` and ``t = s + h``.

    The one formula every tabulated source uses (the path's tree nodes store
    exactly ``(W, I)``).
    """
    return (i_t - i_s).sub_(w_s, alpha=h) if isinstance(i_t, torch.Tensor) else i_t - i_s - h * w_s


def grid_area(dW, xi, h):
    """``U = h dW / 2 + √(h³/12) ξ``: the space-time area drawn afresh given ``dW`` (``ξ`` standard normal).

    Given ``W(t) - W(s) = dW``, ``U`` is Gaussian with mean ``h dW / 2`` and
    variance ``h³ / 12`` (the Brownian bridge's area), independent of ``dW``
    otherwise.
    """
    return xi.mul_(math.sqrt(h**3 / 12)).add_(dW, alpha=0.5 * h)


class BrownianSource:
    """Base class of the noise sources: ``increment(s, t)`` and, with ``has_levy_area``, ``space_time(s, t)``.

    Subclasses define ``increment``; ``shape`` (the tensor shape of an
    increment, or ``None`` if unknown) lets the driver check a source against
    the state before any work, and ``t0``/``t1`` (or ``None``) its time span.
    """

    has_levy_area: bool = False
    shape = None
    t0 = t1 = None

    def increment(self, s, t) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def space_time(self, s, t) -> Tuple[torch.Tensor, torch.Tensor]:
        raise ValueError(f"{type(self).__name__} provides no space-time Lévy area (has_levy_area=False)")

    def __call__(self, s, t):
        return self.increment(s, t)


class _CallableBrownian(BrownianSource):
    """Adapter giving any callable ``(s, t) -> increment`` the source interface."""

    def __init__(self, fn: Callable):
        self._fn = fn
        parts = declared(fn, ("levy_area_approximation", "shape", "_start", "_end"))  # torchsde's names
        # torchsde's U (return_U) is h (dW/2 + H) = ∫_s^t (W_u - W_s) du, the same as ours.
        self.has_levy_area = parts.get("levy_area_approximation") in ("space-time", "davie", "foster")
        shape = parts.get("shape")
        self.shape = torch.Size(shape) if isinstance(shape, (tuple, torch.Size)) else None
        t0, t1 = parts.get("_start"), parts.get("_end")
        self.t0, self.t1 = (float(t0), float(t1)) if t0 is not None and t1 is not None else (None, None)

    def increment(self, s, t) -> torch.Tensor:
        return self._fn(s, t)

    def space_time(self, s, t) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.has_levy_area:
            raise ValueError(f"{self._fn!r} provides no space-time Lévy area.")
        return self._fn(s, t, return_U=True)

    def __repr__(self) -> str:
        return f"as_brownian({self._fn!r})"


class _DuckBrownian(BrownianSource):
    """Adapter for an object that answers ``increment`` (and ``space_time``) without subclassing
    :class:`BrownianSource`: its ``shape``, ``t0``/``t1`` and ``has_levy_area`` are read once."""

    def __init__(self, obj):
        self.source = obj
        parts = declared(obj, ("has_levy_area", "shape", "t0", "t1"))
        self.has_levy_area = bool(parts.get("has_levy_area", False))
        self.shape, self.t0, self.t1 = parts.get("shape"), parts.get("t0"), parts.get("t1")

    def increment(self, s, t) -> torch.Tensor:
        return self.source.increment(s, t)

    def space_time(self, s, t) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.source.space_time(s, t)

    def __repr__(self) -> str:
        return f"as_brownian({self.source!r})"


def as_brownian(obj) -> BrownianSource:
    """Normalise a noise source to the :class:`BrownianSource` interface.

    Accepts a source (returned unchanged), an object exposing ``increment`` and
    ``has_levy_area`` (wrapped, its ``shape`` and time span read once), or any callable ``(s, t) ->
    increment`` such as torchsde's ``BrownianInterval``; for torchsde objects
    built with ``levy_area_approximation`` in {"space-time", "davie", "foster"},
    ``space_time`` calls ``obj(s, t, return_U=True)``.
    """
    if isinstance(obj, BrownianSource):
        return obj
    if {"increment", "has_levy_area"} <= declared(obj, ("increment", "has_levy_area")).keys():
        return _DuckBrownian(obj)
    if callable(obj):
        return _CallableBrownian(obj)
    raise TypeError(f"expected a Brownian source or a callable (s, t) -> increment, got {type(obj).__name__}.")
