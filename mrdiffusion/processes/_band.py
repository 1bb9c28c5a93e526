"""Processes defined in Haar (band) coordinates, with their grid view derived by transforms."""

from __future__ import annotations

import torch

import solvers
from .. import haar
from ..multires import MultiResolutionSDE


class _GridLevelSDE(solvers.SDE):
    """Grid view of level ``k`` of a :class:`BandProcess`: drift through the Haar transforms.

    The per-cell noise is ``c_k 2^{-dΔ_k/2}`` (``c_k`` the band-coordinate noise
    rate), additive. When the process has the same rate on every band
    (``uniform_rate``), the grid view also exposes ``linear(t)`` (a scalar) and
    its exact transition, so exponential and implicit schemes apply.
    """

    noise = "additive"

    def __init__(self, proc, k):
        self.proc, self.k = proc, k
        self.delta = proc.delta(k)
        self.cell_scale = 2.0 ** (-proc.ndim * self.delta / 2)
        if getattr(proc, "uniform_rate", False):
            self.linear = lambda t: proc.rate(t, k)
            self.linear_only = proc.band_linear_only
            if hasattr(proc, "rate_transition"):
                self.linear_transition = lambda s, t: proc.rate_transition(s, t, k)

    def drift(self, t, z):
        if getattr(self.proc, "uniform_rate", False) and self.proc.band_linear_only:
            return self.proc.rate(t, self.k) * z
        y = self.proc.band_drift(t, self.proc.to_bands(z, self.k), self.k)
        return haar.project(self.proc.layout.unpack(y), self.delta, self.proc.ndim)

    def diffusion(self, t, z):
        return self.proc.band_noise(t, self.k) * self.cell_scale


class BandProcess(MultiResolutionSDE):
    """A multi-resolution process given in band coordinates (packed finest-grid Haar coefficients).

    Subclasses define ``band_drift(t, y, k)`` and ``band_noise(t, k)`` (the
    noise rate of every active coefficient, in band coordinates), and may
    define ``band_linear(t, k)``, ``band_transition(s, t, k)`` and
    ``moments(t)``. The grid view (:meth:`sample`) is derived.
    """

    band_linear_only = False
    _band_defined = True

    def __init__(self, levels, times, T, *, channels=1, ndim=2, base_shape=None, z0=None):
        super().__init__(levels, times, T, channels=channels, ndim=ndim, base_shape=base_shape, z0=z0)
        self._grid_sdes = None

    @property
    def sdes(self):
        """The grid view: one SDE per level, built on first use (after subclasses set their parameters)."""
        if self._grid_sdes is None:
            self._grid_sdes = [_GridLevelSDE(self, lev.index) for lev in self.levels]
        return self._grid_sdes

    def active(self, k, like=None):
        """Float mask ``(n,)`` of the coefficients active at level ``k``."""
        mask = (self.band <= k).to(torch.float64)
        return mask if like is None else mask.to(dtype=like.dtype, device=like.device)

    def band_moments(self, t):
        """Exact per-coefficient mean and variance ``(C, n)`` in band coordinates at time ``t``."""
        raise NotImplementedError

    def band_stats(self, y):
        """Per-band pooled statistics of samples ``y`` ``(batch, C, n)``: a list of ``(mean, var)`` per band."""
        return [(y[..., self.band == k].mean(), y[..., self.band == k].var()) for k in range(len(self.levels))]
