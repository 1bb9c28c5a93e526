"""The band view of a multi-resolution SDE: one state on the finest grid in Haar coordinates.

Level ``k`` of the band view acts on ``Y = pack(dwt(ι Z))`` of shape
``(batch, C, n)``: its drift is the level drift carried into Haar coordinates,
``pack(dwt(ι μ_k(t, P Y)))``, and its noise is ``σ_k 2^{dΔ_k/2}`` on the bands
that are active at level ``k`` and zero on the others (which therefore stay
frozen at zero until their activation time). Processes that are defined in
Haar coordinates (:mod:`mrdiffusion.processes`) supply ``band_drift`` and
``band_noise`` directly and skip the transforms.
"""

from __future__ import annotations

import torch

import solvers

from . import haar

__all__ = ["BandLevelSDE", "sample_bands"]


class BandLevelSDE(solvers.SDE):
    """Level ``k`` of the band view of ``mr`` (a :class:`~mrdiffusion.multires.MultiResolutionSDE`)."""

    noise = "additive"

    def __init__(self, mr, k):
        self.mr, self.k = mr, k
        self.delta = mr.delta(k)
        self.noise_scale = 2.0 ** (mr.ndim * self.delta / 2)
        self.active = mr.band <= k
        self._masks = {}
        if hasattr(mr, "band_linear"):
            self.linear = lambda t: mr.band_linear(t, k)
            self.linear_only = getattr(mr, "band_linear_only", False)
            if hasattr(mr, "band_transition"):
                self.linear_transition = lambda s, t: mr.band_transition(s, t, k)
            if hasattr(mr, "band_forcing_transition"):  # exact weight of an affine forcing (ExponentialEuler)
                self.nonlinear_weight = lambda s, t: mr.band_forcing_transition(s, t, k)

    def _mask(self, like):
        key = (like.dtype, like.device)
        if key not in self._masks:
            self._masks[key] = self.active.to(dtype=like.dtype, device=like.device)
        return self._masks[key]

    def to_level(self, y):
        """The level-``k`` grid state of band coordinates ``y``."""
        return haar.project(self.mr.layout.unpack(y), self.delta, self.mr.ndim)

    def drift(self, t, y):
        if hasattr(self.mr, "band_drift"):
            return self.mr.band_drift(t, y, self.k)
        return self.mr.to_bands(self.mr.sdes[self.k].drift(t, self.to_level(y)), self.k)

    def diffusion(self, t, y):
        if hasattr(self.mr, "band_noise"):
            return self.mr.band_noise(t, self.k) * self._mask(y)
        g = self.mr.sdes[self.k].diffusion(t, self.to_level(y))
        if not isinstance(g, torch.Tensor):
            return (g * self.noise_scale) * self._mask(y)
        nd = self.mr.ndim
        if g.ndim >= nd and any(s != 1 for s in g.shape[g.ndim - nd:]):
            raise ValueError(f"band view: the diffusion of level {self.k} has spatial shape "
                             f"{tuple(g.shape[g.ndim - nd:])}; the band view needs it spatially constant "
                             f"(shape (..., C, {', '.join(['1'] * nd)}) or a scalar)")
        g = g.reshape(*g.shape[: g.ndim - nd], 1) if g.ndim >= nd else g
        return g * self.noise_scale * self._mask(y)


def sample_bands(mr, solver, batch, *, dt=None, ts=None, brownian=None, seed=None, generator=None,
                 dtype=torch.float64, device=None, progress=False, **sdeint_kwargs):
    """Sample the band view of ``mr`` level by level through :func:`solvers.sdeint`.

    Returns ``(ys, diverged, infos)``: ``ys`` of shape ``(len(ts), batch, C, n)``
    (packed Haar coefficients of the finest grid), the per-sample divergence
    mask, and the driver's info per level. ``brownian`` is ``None`` or a path on
    the *finest grid* (:meth:`MultiResolutionSDE.finest_path`): the band view
    then uses its Haar coefficients, so it sees the same noise as
    :meth:`MultiResolutionSDE.sample` with the same path.
    """
    ts, path, generator, z0 = mr._start(batch, dt, ts, brownian, seed, generator, dtype, device)
    path = None if path is None else mr.band_path(path)
    _, diverged, infos, saved = mr._solve_levels(
        mr.to_bands(z0, 0), ts, solver, mr.band_sde, lambda k: path, lambda lev, y: y, dt=dt, generator=generator,
        progress=progress, sdeint_kwargs=sdeint_kwargs)
    out = torch.empty((len(ts), batch, mr.channels, mr.layout.n), dtype=dtype, device=device)
    for i, (_, y) in saved.items():
        out[i] = y
    return out, diverged, infos
