"""Processes defined in Haar (band) coordinates, with their grid view derived by transforms."""

from __future__ import annotations

from ..bands import BandProcessGridSDE
from ..multires import MultiResolutionSDE


class BandProcess(MultiResolutionSDE):
    """A multi-resolution process given in band coordinates (packed finest-grid Haar coefficients).

    Subclasses define ``band_drift(t, y, k)`` and ``band_noise(t, k)`` (the
    noise rate of every active coefficient, in band coordinates), and may
    define ``band_linear(t, k)``, ``band_transition(s, t, k)`` and
    ``moments(t)``. The band view (:meth:`sample_bands`) is additive noise
    ``band_noise · mask`` (:class:`~mrdiffusion.bands.BandDefinedLevelSDE`);
    the grid view (:meth:`sample`) is derived
    (:class:`~mrdiffusion.bands.BandProcessGridSDE`).
    """

    # Optional parts a subclass may define as methods (None: absent): the per-band linear part
    # band_linear(t, k), its exact transition band_transition(s, t, k), the exact weight of an affine forcing
    # band_forcing_transition(s, t, k), and, for a rate shared by every band (uniform_rate), the grid view's
    # exact transition rate_transition(s, t, k).
    band_linear = None
    band_transition = None
    band_forcing_transition = None
    rate_transition = None
    uniform_rate = False
    band_linear_only = False
    _band_defined = True

    def __init__(self, levels, times, T, *, channels=1, ndim=2, base_shape=None, z0=None):
        super().__init__(levels, times, T, channels=channels, ndim=ndim, base_shape=base_shape, z0=z0)
        self._grid_sdes = None

    @property
    def sdes(self):
        """The grid view: one SDE per level, built on first use (after subclasses set their parameters)."""
        if self._grid_sdes is None:
            self._grid_sdes = [BandProcessGridSDE(self, lev.index) for lev in self.levels]
        return self._grid_sdes

    def active(self, k, like=None):
        """Float mask ``(n,)`` of the coefficients active at level ``k``."""
        return self.stack.active(k, like)

    def band_moments(self, t):
        """Exact per-coefficient mean and variance ``(C, n)`` in band coordinates at time ``t``."""
        raise NotImplementedError

    def band_stats(self, y):
        """Per-band pooled statistics of samples ``y`` ``(batch, C, n)``: a list of ``(mean, var)`` per band."""
        return [(y[..., self.band == k].mean(), y[..., self.band == k].var()) for k in range(len(self.levels))]
