"""Noise schedules as the sampler sees them: per coordinate ``α(t)``, ``σ(t)``, ``f(t)``, ``g(t)²``.

A :class:`~mrdiffusion.processes.BandNoising` (one schedule per Haar level)
already answers these per band coefficient; a bare schedule
(:class:`~mrdiffusion.processes.VPSchedule`, ``VESchedule``, ``EDMSchedule``)
is wrapped by :class:`ScalarNoising` and answers with 0-d tensors that
broadcast against any state. Grids read a *reference* noise level through
:func:`sigma_hat`: the noisiest band's, or one band's.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ScalarNoising", "as_noising", "sigma_hat", "time_of_sigma_hat"]


class ScalarNoising:
    """One schedule for every coordinate: ``x_t = α(t) x_0 + σ(t) ε``, ``t ∈ [0, T]``."""

    def __init__(self, schedule, T=None):
        self.schedule = schedule
        self.schedules = [schedule]
        self.T = float(T if T is not None else getattr(schedule, "T", 1.0))

    def _pair(self, a, b, like):
        dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
        device = like.device if like is not None else None
        return torch.tensor(a, dtype=dtype, device=device), torch.tensor(b, dtype=dtype, device=device)

    def alpha_sigma(self, t, like=None):
        return self._pair(self.schedule.alpha(t), math.sqrt(max(self.schedule.var(t), 0.0)), like)

    def drift_diffusion(self, t, like=None):
        return self._pair(self.schedule.f(t), self.schedule.g2(t), like)

    def __repr__(self):
        return f"ScalarNoising({self.schedule!r}, T={self.T})"


def as_noising(noising):
    """A noising with ``alpha_sigma``, ``drift_diffusion``, ``schedules`` and ``T``, or a ``ValueError``."""
    if all(hasattr(noising, k) for k in ("alpha_sigma", "drift_diffusion", "schedules", "T")):
        return noising
    if all(hasattr(noising, k) for k in ("alpha", "var", "f", "g2")):
        return ScalarNoising(noising)
    raise ValueError(f"noising: expected a BandNoising or a schedule (VPSchedule, VESchedule, EDMSchedule), "
                     f"got {type(noising).__name__}")


def sigma_hat(noising, t, band=None):
    """The reference EDM noise level ``σ̂ = σ/α = e^{-λ}`` at ``t``.

    ``band=None``: the largest over the bands (the noisiest band sets the
    grid, so that a grid that stops at ``σ̂_min`` has *every* band below it);
    ``band=k``: Haar level ``k``'s schedule.
    """
    scheds = noising.schedules if band is None else [noising.schedules[band]]
    return max(math.sqrt(max(s.var(t), 0.0)) / s.alpha(t) for s in scheds)


def time_of_sigma_hat(noising, target, lo, hi, band=None):
    """The ``t ∈ [lo, hi]`` with ``σ̂(t) = target`` (``σ̂`` increasing in ``t``), by bisection to round-off."""
    if target <= sigma_hat(noising, lo, band):
        return lo
    if target >= sigma_hat(noising, hi, band):
        return hi
    a, b = lo, hi
    for _ in range(200):
        m = 0.5 * (a + b)
        if m in (a, b):
            break
        if sigma_hat(noising, m, band) < target:
            a = m
        else:
            b = m
    return 0.5 * (a + b)
