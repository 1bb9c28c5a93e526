"""Tabulated paths and recorded noise: a Brownian motion known on a grid of times."""

from __future__ import annotations

import bisect
from typing import Sequence, Tuple

import torch

from ._source import BrownianSource, as_brownian, space_time_area

__all__ = ["TabulatedPath", "RecordedNoise"]


class TabulatedPath(BrownianSource):
    """A path given by its values ``W[i] = W(times[i])`` (and optionally ``I[i] = ∫_{times[0]}^{times[i]} W``).

    ``increment(s, t) = W(t) - W(s)`` and ``space_time(s, t) = (dW, I(t) - I(s)
    - (t - s) W(s))`` (:func:`space_time_area`) for ``s, t`` on the grid (to a
    relative tolerance of 1e-9 of the span). Any step that is a union of grid
    steps is answered exactly, so one table serves every step size that is a
    multiple of the grid's.
    """

    def __init__(self, times: Sequence[float], W: torch.Tensor, I: torch.Tensor | None = None):
        times = [float(t) for t in times]
        if len(times) < 2 or any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"times: expected at least two strictly increasing times, got {times[:8]}")
        if W.shape[0] != len(times) or (I is not None and I.shape != W.shape):
            raise ValueError(f"W, I: expected shape (len(times)={len(times)}, *shape), got W {tuple(W.shape)}"
                             f"{'' if I is None else f' and I {tuple(I.shape)}'}")
        self.times, self.W, self.I = times, W, I
        self.shape = W.shape[1:]
        self.t0, self.t1 = times[0], times[-1]
        self.has_levy_area = I is not None
        self._tol = 1e-9 * max(1.0, times[-1] - times[0])

    def _index(self, t, name) -> int:
        t = float(t)
        j = bisect.bisect_left(self.times, t - self._tol)
        if j >= len(self.times) or abs(self.times[j] - t) > self._tol:
            raise ValueError(f"{name}={t!r} is not a time of this tabulated path ({len(self.times)} times in "
                             f"[{self.t0}, {self.t1}])")
        return j

    def increment(self, s, t) -> torch.Tensor:
        return self.W[self._index(t, "t")] - self.W[self._index(s, "s")]

    __call__ = increment

    def space_time(self, s, t) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.I is None:
            return super().space_time(s, t)
        a, b = self._index(s, "s"), self._index(t, "t")
        W, I = self.W, self.I
        return W[b] - W[a], space_time_area(W[a], I[a], W[b], I[b], self.times[b] - self.times[a])


class RecordedNoise(BrownianSource):
    """Records the answers of another source (``GridNoise``, say) as a solve asks for them.

    ``path()`` turns the recording, a sweep of consecutive steps, into a
    :class:`TabulatedPath` that replays the same increments (and, with Lévy
    area, the same ``U``: ``I(t) = I(s) + U + h W(s)``) for any later solve on
    that grid or a coarser one.
    """

    def __init__(self, source):
        self.source = as_brownian(source)
        self.has_levy_area = self.source.has_levy_area
        self.shape = self.source.shape
        self.steps = []

    def increment(self, s, t) -> torch.Tensor:
        dW = self.source.increment(s, t)
        self.steps.append((float(s), float(t), dW, None))
        return dW

    __call__ = increment

    def space_time(self, s, t) -> Tuple[torch.Tensor, torch.Tensor]:
        dW, U = self.source.space_time(s, t)
        self.steps.append((float(s), float(t), dW, U))
        return dW, U

    def path(self) -> TabulatedPath:
        """The recorded sweep as a tabulated path (steps must be consecutive)."""
        if not self.steps:
            raise ValueError("RecordedNoise.path: nothing recorded yet")
        times, W, I = [self.steps[0][0]], [torch.zeros_like(self.steps[0][2])], [torch.zeros_like(self.steps[0][2])]
        levy = all(u is not None for *_, u in self.steps)
        for s, t, dW, U in self.steps:
            if abs(s - times[-1]) > 1e-12 * max(1.0, abs(s)):
                raise ValueError(f"RecordedNoise.path: the recorded steps are not consecutive (gap at {s})")
            if levy:
                I.append(I[-1] + U + (t - s) * W[-1])
            W.append(W[-1] + dW)
            times.append(t)
        return TabulatedPath(times, torch.stack(W), torch.stack(I) if levy else None)
