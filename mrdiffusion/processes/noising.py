"""Forward noising of data per Haar band, its reverse-time SDE and probability-flow ODE."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import solvers
from ..multires import BandLayout


@dataclass(frozen=True)
class VPSchedule:
    """Variance preserving: ``dX = -β(t)/2 X dt + √β(t) dW``, ``β(t) = β_min + t(β_max - β_min)``."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def f(self, t):
        return -0.5 * (self.beta_min + t * (self.beta_max - self.beta_min))

    def g2(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha(self, t):
        return math.exp(-0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t))

    def var(self, t):
        return -math.expm1(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t))


@dataclass(frozen=True)
class VESchedule:
    """Variance exploding: ``dX = √(dσ²/dt) dW``, ``σ(t) = σ_min (σ_max/σ_min)^t``; noise ``σ(t)² - σ_min²``."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def f(self, t):
        return 0.0

    def g2(self, t):
        s = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return 2 * s * s * math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return 1.0

    def var(self, t):
        return (self.sigma_min * (self.sigma_max / self.sigma_min) ** t) ** 2 - self.sigma_min**2


def gaussian_score(noising, mean, var):
    """Exact score ``∇ log p_t`` of Gaussian data ``N(mean, var)`` (band coordinates) under ``noising``."""

    def score(t, y):
        a, v = noising.marginal(t, like=y)
        return -(y - a * mean.to(y)) / (a * a * var.to(y) + v)

    return score


class BandNoising(solvers.SDE):
    """Forward noising of data on a grid, per Haar band, as a diagonal SDE on packed band coefficients.

    ``schedules``: one :class:`VPSchedule` / :class:`VESchedule` for all bands,
    or one per Haar level (coarse first), so that fine bands can be noised
    faster or slower than coarse ones. The state is ``(batch, C, n)``: use
    ``layout.pack`` / ``layout.unpack`` to go to and from images.
    """

    noise = "additive"
    linear_only = True

    def __init__(self, shape, levels, *, schedules=VPSchedule(), ndim=2, T=1.0):
        self.layout = BandLayout(shape, levels, ndim)
        scheds = list(schedules) if isinstance(schedules, (list, tuple)) else [schedules] * (levels + 1)
        if len(scheds) != levels + 1:
            raise ValueError(f"schedules: expected one schedule or {levels + 1} (one per Haar level), "
                             f"got {len(scheds)}")
        self.schedules, self.T = scheds, float(T)
        self._idx = self.layout.dwt_level

    def _per(self, fn, t, like):
        vals = torch.tensor([fn(s, t) for s in self.schedules], dtype=like.dtype, device=like.device)
        return vals[self._idx.to(like.device)]

    def drift(self, t, y):
        return self._per(lambda s, t: s.f(t), t, y) * y

    def linear(self, t):
        return self._per(lambda s, t: s.f(t), t, torch.empty(0, dtype=torch.float64))

    def diffusion(self, t, y):
        return self._per(lambda s, t: s.g2(t), t, y).sqrt()

    def linear_transition(self, s, t):
        """Exact ``Λ = ln(α(t)/α(s))`` and the noise factor ``V`` for :class:`solvers.ExponentialEuler`.

        The transition ``Y_t = e^Λ Y_s + noise`` has noise variance
        ``var(t) - e^{2Λ} var(s)``; the scheme multiplies ``V/h`` by ``g(s)²``, so
        ``V = (var(t) - e^{2Λ} var(s)) / g(s)²`` makes every step exact in law.
        """
        like = torch.empty(0, dtype=torch.float64)
        a_s, v_s = self.marginal(s, like)
        a_t, v_t = self.marginal(t, like)
        lam = torch.log(a_t / a_s)
        return lam, (v_t - torch.exp(2 * lam) * v_s) / self._per(lambda sc, u: sc.g2(u), s, like)

    def marginal(self, t, like=None):
        """``(α(t), var(t))`` per coefficient: ``Y_t = α Y_0 + √var ξ``."""
        like = torch.empty(0, dtype=torch.float64) if like is None else like
        return self._per(lambda s, t: s.alpha(t), t, like), self._per(lambda s, t: s.var(t), t, like)

    def reverse(self, score):
        """The reverse-time SDE in forward time ``u = T - t``: ``dY = [-f + g² score] du + g dW``."""
        return _Reverse(self, score, ode=False)

    def probability_flow(self, score):
        """The probability-flow ODE in ``u = T - t``: ``dY/du = -f + g² score / 2``."""
        return _Reverse(self, score, ode=True)


class _Reverse(solvers.SDE):
    def __init__(self, fwd, score, ode):
        self.fwd, self.score, self.ode = fwd, score, ode
        self.noise = None if ode else "additive"

    def drift(self, u, y):
        t = self.fwd.T - u
        g2 = self.fwd._per(lambda s, t: s.g2(t), t, y)
        w = 0.5 if self.ode else 1.0
        return -self.fwd.drift(t, y) + w * g2 * self.score(t, y)

    def diffusion(self, u, y):
        return self.fwd.diffusion(self.fwd.T - u, y)
