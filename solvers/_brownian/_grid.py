"""Tree-free grid noise: a fresh ``√h ξ`` per step, the driver's fast path on a fixed grid."""

from __future__ import annotations

import math
from typing import Tuple

import torch

from ._source import BrownianSource, grid_area

__all__ = ["GridNoise"]

# the type that element-wise CPU/CUDA kernels compute in for a state dtype (torch's "opmath" type)
_OPMATH = {torch.float64: torch.float64, torch.float32: torch.float32, torch.float16: torch.float32,
           torch.bfloat16: torch.float32}


class GridNoise(BrownianSource):
    """Independent increments ``W(t) - W(s) = √(t - s) ξ``, ``ξ ~ N(0, I)``, drawn afresh on every query.

    Not a function of time: each query is a new step of a grid swept once, in
    order (the driver's fixed-grid loop asks exactly once per step). With
    ``levy_area=True``, ``space_time`` adds ``U = h dW / 2 + √(h³/12) ξ'``
    (:func:`grid_area`) from a second draw. Draws come from ``generator``
    (default: torch's global generator), so a seed reproduces the noise.

    Cost: one ``randn_like`` and one in-place scale per step; ``√h`` is cached
    as a 0-d tensor of the kernel's compute type, which skips wrapping a Python
    float on every call and gives the same bits.
    """

    def __init__(self, shape, *, generator=None, dtype=torch.float32, device=None, levy_area=False, like=None):
        self.shape = torch.Size(shape)
        if like is None or like.shape != self.shape or not like.is_contiguous():
            like = torch.empty(self.shape, dtype=dtype, device=device)
        # randn_like on a template draws exactly what torch.randn(shape, generator=..., dtype=..., device=...)
        # draws, at about half the per-call overhead (no shape/dtype/device argument parsing).
        self._like = like
        self.generator = generator
        self.has_levy_area = bool(levy_area)
        opmath = _OPMATH.get(like.dtype)
        self._scales = {} if opmath is not None else None
        self._opmath = opmath

    def _draw(self):
        if self.generator is None:
            return torch.randn_like(self._like)
        return torch.randn_like(self._like, generator=self.generator)

    def increment(self, s, t) -> torch.Tensor:
        dW = self._draw()
        sq = math.sqrt(t - s)
        scales = self._scales
        if scales is None:
            return dW.mul_(sq)
        scale = scales.get(sq)
        if scale is None:
            if len(scales) >= 64:  # a grid with many distinct steps: keep the cache small
                scales.clear()
            scale = scales[sq] = torch.tensor(sq, dtype=self._opmath)
        return dW.mul_(scale)

    __call__ = increment

    def space_time(self, s, t) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.has_levy_area:
            return super().space_time(s, t)
        dW = self.increment(s, t)
        return dW, grid_area(dW, self._draw(), t - s)

    def __repr__(self) -> str:
        return f"GridNoise(shape={tuple(self.shape)}, levy_area={self.has_levy_area})"
