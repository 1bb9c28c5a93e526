"""Coarse-to-fine generation of Gaussian data from a point mass, with the exact law at every time."""

from __future__ import annotations

import torch

from ..multires import renamed
from ._band import BandProcess


class GaussianReverseProcess(BandProcess):
    r"""Every Haar band starts from a point mass at its activation and reaches Gaussian data at ``T``.

    The data are independent Gaussian band coefficients, ``Y_T ~ N(μ, σ²)``
    per coefficient (``data_mean``, ``data_var``: tensors ``(C, n)`` in band
    coordinates, or floats). Coefficient ``i``, active from ``t_i`` with
    ``L = T - t_i`` and ``r = (t - t_i)/L``, follows the reverse-time SDE of a
    Brownian bridge that noises the data down to zero at ``t_i``:

    .. math::
        dY = \bigl[A(t)(Y - rμ) + μ/L\bigr] dt + c\, dB,\qquad
        A = \frac{σ²/L - c²}{rσ² + c²L(1 - r)},

    whose exact law is ``N(rμ, r²σ² + c² L r (1 - r))`` at every time — so
    solvers can be scored against the truth at the start of every band, where
    the variance grows from zero. ``c`` is the band-coordinate noise rate
    (the same for every level, i.e. the grid noise of level ``k`` is
    ``c 2^{-dΔ_k/2}`` per cell: the cell averages of one finest-grid noise).
    """

    def __init__(self, levels, times, T, *, data_mean=0.0, data_var=1.0, noise_rate=1.0, channels=1, ndim=2,
                 base_shape=None, noise=None):
        noise = renamed("noise", noise, "noise_rate", noise_rate)
        super().__init__(levels, times, T, channels=channels, ndim=ndim, base_shape=base_shape)
        n = self.layout.n
        self.mu = self._coef(data_mean, "data_mean").expand(self.channels, n).clone()
        self.var = self._coef(data_var, "data_var").expand(self.channels, n).clone()
        if (self.var <= 0).any():
            raise ValueError("data_var: variances must be positive")
        self.c = float(noise)
        t_act = torch.tensor(self.times, dtype=torch.float64)[self.band]
        self.t_act, self.L = t_act, self.T - t_act
        self._cache = {}

    def _coef(self, v, name):
        v = torch.as_tensor(v, dtype=torch.float64)
        if v.ndim and tuple(v.shape) not in ((self.layout.n,), (self.channels, self.layout.n)):
            raise ValueError(f"{name}: expected a float or a tensor of shape ({self.channels}, {self.layout.n}) "
                             f"in band coordinates, got {tuple(v.shape)}")
        return v

    @classmethod
    def power_law(cls, levels, times, T, *, decay=1.0, channels=1, ndim=2, noise_rate=1.0, seed=0, noise=None):
        """Gaussian 'images' whose band variance decays as ``2^{-decay·i}`` with Haar level ``i``, random mean."""
        proc = cls(levels, times, T, channels=channels, ndim=ndim, noise_rate=renamed("noise", noise, "noise_rate",
                                                                                      noise_rate))
        gen = torch.Generator().manual_seed(seed)
        lvl = proc.layout.dwt_level.to(torch.float64)
        var = (2.0 ** (-decay * lvl)).expand(channels, -1).clone()
        proc.var = var
        proc.mu = 0.5 * torch.randn(channels, proc.layout.n, generator=gen, dtype=torch.float64) * var.sqrt()
        return proc

    def _r(self, t):
        return ((t - self.t_act) / self.L).clamp(min=0.0)

    def _A(self, t):
        r, L, s2, c2 = self._r(t), self.L, self.var, self.c**2
        return (s2 / L - c2) / (r * s2 + c2 * L * (1 - r))

    def _get(self, name, t, k, like):
        key = (name, t, k, like.dtype, like.device)
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            mask = self.active(k)
            if name == "A":
                val = self._A(t) * mask
            else:  # affine forcing -A r μ + μ / L
                val = (-self._A(t) * self._r(t) * self.mu + self.mu / self.L) * mask
            self._cache[key] = val.to(dtype=like.dtype, device=like.device)
        return self._cache[key]

    def band_drift(self, t, y, k):
        return self._get("A", t, k, y) * y + self._get("b", t, k, y)

    def band_noise(self, t, k):
        return self.c

    def band_linear(self, t, k):
        return self._A(t) * self.active(k)

    def band_transition(self, s, t, k):
        """Exact ``Λ = ln(D(t)/D(s))`` and ``∫ (D(t)/D(u))² du`` with ``D = rσ² + c²L(1 - r)``."""
        mask = self.active(k)
        L, s2, c2 = self.L, self.var, self.c**2
        rs, rt = ((s - self.t_act) / L).clamp(min=0), ((t - self.t_act) / L).clamp(min=0)
        Ds, Dt = rs * s2 + c2 * L * (1 - rs), rt * s2 + c2 * L * (1 - rt)
        lam = torch.log(Dt / Ds) * mask
        slope = (s2 - c2 * L) / L  # dD/dt
        safe = torch.where(slope.abs() < 1e-12, torch.ones_like(slope), slope)
        v = torch.where(slope.abs() < 1e-12, torch.full_like(Dt, t - s), Dt**2 * (1 / Ds - 1 / Dt) / safe)
        return lam, v * mask + (t - s) * (1 - mask)

    def band_forcing_transition(self, s, t, k):
        """Exact ``∫_s^t e^{Λ(u, t)} b(u) du = m(t) - e^{Λ(s, t)} m(s)`` of the affine forcing ``b``, ``m = rμ``.

        (``m`` solves ``dm/dt = A m + b``.) With it :class:`solvers.ExponentialEuler` is exact in law.
        """
        lam, _ = self.band_transition(s, t, k)
        return (self._r(t) * self.mu - torch.exp(lam) * self._r(s) * self.mu) * self.active(k)

    def band_moments(self, t):
        """Exact mean and variance ``(C, n)`` in band coordinates at time ``t``."""
        r = self._r(t) * self.active(self.level_at(t))
        return r * self.mu, r**2 * self.var + self.c**2 * self.L * r * (1 - r)
