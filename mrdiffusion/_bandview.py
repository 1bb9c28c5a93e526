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
from solvers import as_brownian

from . import haar

__all__ = ["BandLevelSDE", "sample_bands"]


class BandLevelSDE(solvers.SDE):
    """Level ``k`` of the band view of ``mr`` (a :class:`~mrdiffusion.multires.MultiResolutionSDE`)."""

    noise = "additive"

    def __init__(self, mr, k):
        self.mr, self.k = mr, k
        self.delta = mr.delta(k)
        self.noise_scale = 2.0 ** (mr.ndim * self.delta / 2)
        self.active = (mr.band_of_coefficient() <= k)
        self._masks = {}
        if hasattr(mr, "band_linear"):
            self.linear = lambda t: mr.band_linear(t, k)
            self.linear_only = getattr(mr, "band_linear_only", False)
            if hasattr(mr, "band_transition"):
                self.linear_transition = lambda s, t: mr.band_transition(s, t, k)

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
                 dtype=torch.float64, device=None, **sdeint_kwargs):
    """Sample the band view of ``mr`` level by level through :func:`solvers.sdeint`.

    Returns ``(ys, diverged, infos)``: ``ys`` of shape ``(len(ts), batch, C, n)``
    (packed Haar coefficients of the finest grid), the per-sample divergence
    mask, and the driver's info per level. ``brownian`` is ``None`` or a path on
    the *finest grid* (:meth:`MultiResolutionSDE.finest_path`): the band view
    then uses its Haar coefficients, so it sees the same noise as
    :meth:`MultiResolutionSDE.sample` with the same path.
    """
    mr._check_dt(dt)
    ts = mr.times + [mr.T] if ts is None else [float(t) for t in ts]
    path = None if brownian is None else mr.band_path(as_brownian(brownian))
    if generator is None and seed is not None and path is None:
        generator = torch.Generator(device=device or "cpu").manual_seed(int(seed))
    z0 = mr.z0.to(dtype=dtype, device=device)
    z0 = z0.expand(batch, *z0.shape) if z0.ndim == mr.ndim + 1 else z0
    y = mr.to_bands(z0, 0)
    out = torch.empty((len(ts), *y.shape), dtype=dtype, device=device)
    diverged = torch.zeros(batch, dtype=torch.bool, device=device)
    infos = []
    for lev in mr.levels:
        seg = [lev.t_start] + [t for t in ts if lev.t_start < t < lev.t_end] + [lev.t_end]
        ys, info = solvers.sdeint(mr.band_sde(lev.index), y, seg, solver, dt=dt, brownian=path,
                                  generator=generator, return_info=True, **sdeint_kwargs)
        if bool(diverged.any()):
            ys = torch.where(diverged.view(1, -1, 1, 1), y.unsqueeze(0), ys)
        diverged = diverged | info.diverged.to(diverged.device)
        infos.append(info)
        for i, t in enumerate(seg):
            if t in ts and (t < lev.t_end or lev.index == len(mr.levels) - 1):
                out[ts.index(t)] = ys[i]
        y = ys[-1]
    return out, diverged, infos

