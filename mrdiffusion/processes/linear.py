"""Linear per-band processes with closed-form marginals."""

from __future__ import annotations

import math

import torch

from solvers._schemes.exponential import phi1

from ..multires import renamed
from ._band import BandProcess


class LinearBandProcess(BandProcess):
    r"""``dY_i = a_i Y_i dt + c_k dB`` per Haar band ``i``, each band a point mass at its activation.

    In band coordinates (packed finest-grid Haar coefficients) band ``i``
    activates at ``t_i`` from zero (the coarse band from ``z_0``) and then
    follows a linear SDE with rate ``a_i`` (``rates``: one float for all bands,
    or one per band) and the level's noise rate ``c_k`` (``noise_rate``: a float or
    one per level). Exact moments per coefficient: the mean decays as
    ``e^{a_i (t - t_i)}`` and the variance obeys
    ``v ← v e^{2Λ} + c_k² ∫ e^{2Λ(u, t)} du`` level by level.

    Its grid view (:meth:`sample`) has per-cell noise ``c_k 2^{-dΔ_k/2}``.
    """

    band_linear_only = True

    def __init__(self, levels, times, T, *, rates=-1.0, noise_rate=1.0, channels=1, ndim=2, base_shape=None, z0=None,
                 noise=None):
        noise = renamed("noise", noise, "noise_rate", noise_rate)
        super().__init__(levels, times, T, channels=channels, ndim=ndim, base_shape=base_shape, z0=z0)
        K = len(self.levels)
        rates = [float(rates)] * K if isinstance(rates, (int, float)) else [float(r) for r in rates]
        noise = [float(noise)] * K if isinstance(noise, (int, float)) else [float(c) for c in noise]
        if len(rates) != K:
            raise ValueError(f"rates: expected one rate per band ({K}), got {len(rates)}")
        if len(noise) != K:
            raise ValueError(f"noise_rate: expected one noise rate per level ({K}), got {len(noise)}")
        self.rates, self.noise_rate = rates, noise
        self.uniform_rate = len(set(rates)) == 1
        self._rate_of = torch.tensor(rates, dtype=torch.float64)[self.band]
        self._cache = {}

    def _on(self, key, like, make):
        k = (key, like.dtype, like.device)
        if k not in self._cache:
            self._cache[k] = make().to(dtype=like.dtype, device=like.device)
        return self._cache[k]

    # scalar rate, for the grid view when every band has the same rate
    def rate(self, t, k):
        return self.rates[0]

    def rate_transition(self, s, t, k):
        lam = self.rates[0] * (t - s)
        return lam, (t - s) * phi1(2 * lam)

    def band_drift(self, t, y, k):
        return self._on(("A", k), y, lambda: self._rate_of * self.active(k)) * y

    def band_noise(self, t, k):
        return self.noise_rate[k]

    def band_linear(self, t, k):
        return self._rate_of * self.active(k)

    def band_transition(self, s, t, k):
        lam = self.band_linear(t, k) * (t - s)
        return lam, (t - s) * phi1(2 * lam)

    def band_moments(self, t):
        """Exact mean and variance ``(C, n)`` of every band coefficient at time ``t`` (right-continuous)."""
        y0 = self.to_bands(self.z0.to(torch.float64), 0)
        y0 = y0.reshape(-1, self.channels, self.layout.n)[0] if y0.ndim == 3 else y0
        mean = y0.clone()
        var = torch.zeros(self.layout.n, dtype=torch.float64)
        for lev in self.levels[: self.level_at(t) + 1]:
            end = min(lev.t_end, t)
            lam, v = self.band_transition(lev.t_start, end, lev.index)
            lam = torch.as_tensor(lam, dtype=torch.float64) * self.active(lev.index)
            mean = mean * torch.exp(lam)
            var = var * torch.exp(2 * lam) + self.noise_rate[lev.index] ** 2 * v * self.active(lev.index)
        return mean, var.expand(self.channels, -1)


class StiffPointMassProcess(LinearBandProcess):
    r"""The stiff point-mass family of docs/design.md §2.3 on a multi-resolution stack.

    On ``[t_k, t_{k+1})`` every active band follows
    ``dY = -κ / (t - t_k + ε) Y dt + β dB``: the clock restarts at every
    activation, so each new band starts from a point mass with a drift of
    score-like form ``-Y / v(t)``, stiff for small ``ε``. Exact transition over
    ``[s, t]`` inside level ``k`` (``σ = s - t_k + ε``, ``τ = t - t_k + ε``):
    ``Λ = -κ ln(τ/σ)``, ``∫ e^{2Λ(u,t)} du = (τ^{2κ+1} - σ^{2κ+1}) / ((2κ+1) τ^{2κ})``.
    Forward Euler's factor ``1 - hκ/(τ+ε)`` leaves the unit disc once
    ``h > 2(τ+ε)/κ``.
    """

    def __init__(self, levels, times, T, *, kappa=5.0, eps=0.01, beta=1.0, channels=1, ndim=2, base_shape=None,
                 z0=None):
        if not (0 < kappa < math.inf and 0 < eps < math.inf):  # written so that NaN fails too
            raise ValueError(f"kappa, eps: expected positive finite numbers, got kappa={kappa}, eps={eps}")
        super().__init__(levels, times, T, rates=0.0, noise_rate=beta, channels=channels, ndim=ndim,
                         base_shape=base_shape, z0=z0)
        self.kappa, self.eps, self.beta = float(kappa), float(eps), float(beta)
        self.uniform_rate = True

    def rate(self, t, k):
        return -self.kappa / (t - self.levels[k].t_start + self.eps)

    def rate_transition(self, s, t, k):
        kap, t0 = self.kappa, self.levels[k].t_start - self.eps
        sig, tau = s - t0, t - t0
        lam = -kap * math.log(tau / sig)
        return lam, (tau ** (2 * kap + 1) - sig ** (2 * kap + 1)) / ((2 * kap + 1) * tau ** (2 * kap))

    def band_drift(self, t, y, k):
        return self.rate(t, k) * y

    def band_linear(self, t, k):
        return self.rate(t, k)

    def band_transition(self, s, t, k):
        return self.rate_transition(s, t, k)
