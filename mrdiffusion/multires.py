r"""Multi-resolution SDEs: a state that lives on a stack of Haar resolutions and flows from a point mass.

Levels ``j_0 < j_1 < … < j_K`` (grids of ``base_shape · 2^{j_k}`` cells per
spatial axis, with ``channels`` channels), activation times
``0 = t_0 < t_1 < … < t_K < T``. On ``[t_k, t_{k+1})`` the state ``Z_t`` lives
on the grid of level ``j_k`` and follows

    dZ = μ_k(t, Z) dt + σ_k(t, Z) dW^{(k)},

and at ``t_{k+1}`` it is embedded into the finer grid, ``Z ← ι Z``
(:func:`mrdiffusion.haar.embed`): the new Haar detail band starts at zero — a
point mass — unless ``init_band`` says otherwise. ``Z_0 = z_0`` (zeros by
default) is itself a point mass.

**Noise scaling.** ``W^{(k)}`` has one independent *standard* Brownian motion
per cell and channel of level ``j_k``. When a Brownian path on the *finest*
grid is supplied (to couple levels, views or step sizes on one path), the
level-``k`` noise is the ℓ²-orthonormal Haar approximation of the fine path,
``W^{(k)} = 2^{dΔ_k/2} project(W^{fine}, Δ_k)`` with ``Δ_k = j_K − j_k`` —
again a standard Brownian motion per coarse cell, so both modes have the same
law.

**Two views.** :meth:`MultiResolutionSDE.sample` integrates each level on its
own grid (the *grid view*); :meth:`MultiResolutionSDE.sample_bands` integrates
the same process on the finest grid in Haar coordinates, band ``k`` frozen at
zero before ``t_k`` (the *band view*). Both return an :class:`MRSolution`, and
with the same finest-grid path they give the same paths to round-off. The
layout, band index, masks, scalings and both views live in
:mod:`mrdiffusion.bands`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

import solvers
from solvers import as_brownian

from . import haar
from .bands import (BandDefinedLevelSDE, BandLayout, BandLevelSDE, BandStack, GridLevelSDE, ProjectedPath)

__all__ = ["Level", "BandLayout", "MultiResolutionSDE", "MRSolution", "LevelSDE"]


@dataclass(frozen=True)
class Level:
    """One resolution of a multi-resolution SDE: its index ``k``, dyadic level ``j``, grid and time span."""

    index: int
    j: int
    shape: tuple
    t_start: float
    t_end: float


class LevelSDE(solvers.SDE):
    """Wraps per-level functions ``drift(t, x, level)`` / ``diffusion(t, x, level)`` as an SDE for one level."""

    def __init__(self, drift, diffusion, level, noise):
        self._drift, self._diffusion, self.level, self.noise = drift, diffusion, level, noise

    def drift(self, t, x):
        return self._drift(t, x, self.level)

    def diffusion(self, t, x):
        return self._diffusion(t, x, self.level)


@dataclass
class MRSolution:
    """Result of :meth:`MultiResolutionSDE.sample` (grid view) and :meth:`~MultiResolutionSDE.sample_bands`
    (band view).

    ``finest``: ``(len(ts), batch, channels, *finest_shape)``, every saved state
    embedded to the finest grid; ``bands``: the same states in band coordinates
    ``(len(ts), batch, channels, n)`` (packed Haar coefficients of the finest
    grid). Both are available whatever the view; ``view`` says which one was
    integrated. ``levels[k]``: ``(times, states)`` of level ``k`` in the
    integrated view (grid view: on its own grid), at its start (after
    embedding), at the requested ``ts`` inside its span, and at its end (before
    the next embedding). ``diverged``: per-sample bool mask; ``info``: the
    driver's :class:`solvers.SolveInfo` per level.
    """

    ts: List[float]
    view: str
    states: torch.Tensor
    levels: list
    diverged: torch.Tensor
    info: list
    layout: BandLayout = field(repr=False)

    @property
    def finest(self) -> torch.Tensor:
        return self.states if self.view == "grid" else self.layout.unpack(self.states)

    @property
    def bands(self) -> torch.Tensor:
        return self.layout.pack(self.states) if self.view == "grid" else self.states

    @property
    def nfe(self) -> int:
        return sum(i.nfe for i in self.info)


class MultiResolutionSDE:
    """A diffusion SDE over a stack of Haar resolutions, flowing from a point mass.

    Args:
        levels: dyadic levels ``j_0 < … < j_K`` (ints; the grid of level ``j``
            has ``base_shape[i] · 2^j`` cells along spatial axis ``i``), or the
            grid shapes themselves (tuples that must nest by powers of two).
        times: activation times ``0 = t_0 < t_1 < … < t_K < T``.
        T: final time.
        sdes: one SDE object per level (the :mod:`solvers` protocol, acting on
            ``(batch, channels, *shape_k)``); or give ``drift`` and
            ``diffusion`` functions of ``(t, x, level)`` and a ``noise`` type.
        channels, ndim, base_shape: the grid.
        z0: the starting point mass on the coarsest grid: ``None`` (zeros), a
            tensor of shape ``(channels, *shape_0)`` or ``(batch, channels,
            *shape_0)``, or an ``nn.Parameter``.
        init_band: ``init_band(level, x) -> x`` applied right after each
            embedding (default: none, the new band is a point mass at zero).
    """

    _band_defined = False  # subclasses defined in band coordinates derive their grid SDEs

    def __init__(self, levels, times, T, *, sdes=None, drift: Optional[Callable] = None,
                 diffusion: Optional[Callable] = None, noise="diagonal", channels=1, ndim=2, base_shape=None,
                 z0=None, init_band=None):
        if ndim not in (1, 2, 3):
            raise ValueError(f"ndim: expected 1, 2 or 3 spatial dimensions, got {ndim!r}")
        self.ndim, self.channels = int(ndim), int(channels)
        shapes, js = self._shapes(levels, base_shape)
        times = [float(t) for t in times]
        if len(times) != len(shapes):
            raise ValueError(f"times: expected {len(shapes)} activation times (one per level), got {len(times)}")
        if times[0] != 0.0:
            raise ValueError(f"times: the first activation time must be 0, got {times[0]}")
        if any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"times: activation times must be strictly increasing, got {times}")
        if not times[-1] < float(T):
            raise ValueError(f"T: must exceed the last activation time {times[-1]}, got T={T}")
        self.T = float(T)
        ends = times[1:] + [self.T]
        self.levels = [Level(k, j, s, a, b) for k, (j, s, a, b) in enumerate(zip(js, shapes, times, ends))]
        self.times = times
        if sdes is not None:
            if len(sdes) != len(shapes):
                raise ValueError(f"sdes: expected one SDE per level ({len(shapes)}), got {len(sdes)}")
            self.sdes = [solvers.as_sde(s) for s in sdes]
        elif drift is not None and diffusion is not None:
            self.sdes = [LevelSDE(drift, diffusion, lev, noise) for lev in self.levels]
        elif not self._band_defined:
            raise ValueError("sdes: give one SDE per level, or both drift(t, x, level) and diffusion(t, x, level)")
        self.z0 = self._check_z0(z0)
        self.init_band = init_band
        self.stack = BandStack(self.levels[-1].shape, js, self.ndim)  # layout, band index, masks, scalings

    # ------------------------------------------------------------------ construction helpers

    def _shapes(self, levels, base_shape):
        levels = list(levels)
        if not levels:
            raise ValueError("levels: expected at least one level")
        if all(isinstance(j, int) for j in levels):
            base = tuple(base_shape) if base_shape is not None else (1,) * self.ndim
            if len(base) != self.ndim or any(b < 1 for b in base):
                raise ValueError(f"base_shape: expected {self.ndim} positive ints, got {base_shape}")
            if levels[0] < 0 or any(b <= a for a, b in zip(levels, levels[1:])):
                raise ValueError(f"levels: expected strictly increasing non-negative ints, got {levels}")
            return [tuple(b << j for b in base) for j in levels], levels
        shapes = [tuple(s) for s in levels]
        for s in shapes:
            if len(s) != self.ndim or any(not isinstance(n, int) or n < 1 for n in s):
                raise ValueError(f"levels: grid shape {s} is not {self.ndim} positive ints")
        js = [0]
        for a, b in zip(shapes, shapes[1:]):
            ratios = {bb / aa for aa, bb in zip(a, b)}
            r = ratios.pop() if len(ratios) == 1 else None
            if r is None or r < 2 or r != int(r) or int(r) & (int(r) - 1):
                raise ValueError(f"levels: grid shapes {a} -> {b} do not nest (each axis must grow by the same "
                                 f"power of two)")
            js.append(js[-1] + int(r).bit_length() - 1)
        return shapes, js

    def _check_z0(self, z0):
        shape0 = (self.channels, *self.levels[0].shape)
        if z0 is None:
            return torch.zeros(shape0)
        if not isinstance(z0, torch.Tensor):
            raise ValueError(f"z0: expected a tensor of shape {shape0} or (batch, *{shape0}), got {type(z0).__name__}")
        if tuple(z0.shape[-len(shape0):]) != shape0 or z0.ndim not in (len(shape0), len(shape0) + 1):
            raise ValueError(f"z0: expected shape {shape0} or (batch, *{shape0}), got {tuple(z0.shape)}")
        return z0

    # ------------------------------------------------------------------ queries

    @property
    def finest_shape(self):
        return self.levels[-1].shape

    def level_at(self, t: float) -> int:
        """Index ``k`` with ``t_k <= t < t_{k+1}`` (the last level for ``t >= t_K``)."""
        k = 0
        while k + 1 < len(self.times) and self.times[k + 1] <= t:
            k += 1
        return k

    @property
    def layout(self) -> BandLayout:
        """How band coordinates pack the finest grid's Haar coefficients."""
        return self.stack.layout

    @property
    def band(self) -> torch.Tensor:
        """``(n,)``: for each packed coefficient, the level whose activation starts it."""
        return self.stack.index

    def delta(self, k: int) -> int:
        """Number of dyadic levels between level ``k`` and the finest grid."""
        return self.stack.delta(k)

    def to_finest(self, x, k):
        """Embed a level-``k`` state into the finest grid."""
        return haar.embed(x, self.delta(k), self.ndim)

    def to_bands(self, x, k):
        """Band-view coordinates ``pack(dwt(ι x))`` of a level-``k`` state, shape ``(..., n)``."""
        return self.stack.to_bands(x, k)

    def finest_path(self, batch, *, seed=0, levy_area=False, dtype=torch.float64, device=None):
        """A :class:`solvers.BrownianPath` on the finest grid over ``[0, T]`` for :meth:`sample`."""
        shape = (batch, self.channels, *self.finest_shape)
        return solvers.BrownianPath(shape, 0.0, self.T, seed=seed, levy_area=levy_area, dtype=dtype,
                                    device=device)

    # ------------------------------------------------------------------ sampling

    def _check_dt(self, dt):
        if dt is None:
            return
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt: expected a positive finite step or None, got {dt!r}")
        for lev in self.levels:
            n = (lev.t_end - lev.t_start) / dt
            if abs(n - round(n)) > 1e-9 * max(1.0, n) or round(n) < 1:
                raise ValueError(f"dt={dt} does not divide the span [{lev.t_start}, {lev.t_end}] of level "
                                 f"{lev.index}: a step would skip the activation time {lev.t_end}")

    def _start(self, batch, dt, ts, brownian, seed, generator, dtype, device):
        """Validate a sampling request before any work; return ``(ts, path, generator, z0 batch)``."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: expected a positive int, got {batch!r}")
        self._check_dt(dt)
        ts = self.times + [self.T] if ts is None else [float(t) for t in ts]
        if any(b <= a for a, b in zip(ts, ts[1:])) or ts[0] < 0 or ts[-1] > self.T:
            raise ValueError(f"ts: expected increasing times in [0, T={self.T}], got {ts}")
        path = None if brownian is None else as_brownian(brownian)
        if generator is None and seed is not None and path is None:
            generator = torch.Generator(device=device or "cpu").manual_seed(int(seed))
        z0 = self.z0.to(dtype=dtype, device=device)
        x = z0.expand(batch, *z0.shape).clone() if z0.ndim == self.ndim + 1 else z0
        if x.shape[0] != batch:
            raise ValueError(f"z0: has batch {x.shape[0]}, but batch={batch}")
        return ts, path, generator, x

    def _solve_levels(self, x, ts, solver, sde_of, path_of, embed, *, dt, generator, progress, sdeint_kwargs):
        """The one level loop of both views: integrate each level's span through :func:`solvers.sdeint`.

        ``embed(level, x)`` carries the state across an activation time. Returns
        the per-level ``(times, states)``, the divergence mask (samples that
        diverged on a coarser level stay frozen), the driver infos, and
        ``{index in ts: (level index, state)}`` for the saved times.
        """
        from tqdm.auto import tqdm

        diverged = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        per_level, infos, saved = [], [], {}
        last = len(self.levels) - 1
        for lev in tqdm(self.levels, desc="levels", disable=not progress, leave=False):
            k = lev.index
            if k > 0:
                x = embed(lev, x)
            seg = [lev.t_start] + [t for t in ts if lev.t_start < t < lev.t_end] + [lev.t_end]
            out, info = solvers.sdeint(sde_of(k), x, seg, solver, dt=dt, brownian=path_of(k), generator=generator,
                                       return_info=True, **sdeint_kwargs)
            if bool(diverged.any()):
                out = torch.where(diverged.view(1, -1, *[1] * (out.ndim - 2)), x.unsqueeze(0), out)
            diverged = diverged | info.diverged.to(diverged.device)
            per_level.append((seg, out))
            infos.append(info)
            for i, t in enumerate(seg):
                if t in ts and (t < lev.t_end or k == last):  # right-continuous: t_k is the new level's start
                    saved[ts.index(t)] = (k, out[i])
            x = out[-1]
        return per_level, diverged, infos, saved

    def _spatial_noise(self, k):
        """Whether level ``k`` is driven per cell (additive, diagonal) rather than by shared motions."""
        return self.sdes[k].noise in ("additive", "diagonal")

    def grid_sde(self, k):
        """Level ``k`` of the grid view (its SDE, a diffusion broadcastable to the state accepted)."""
        sde = self.sdes[k]
        return GridLevelSDE(sde) if sde.noise in ("diagonal", "scalar") else sde

    def sample(self, solver, batch, *, dt=None, ts=None, brownian=None, seed=None, generator=None,
               dtype=torch.float64, device=None, progress=False, **sdeint_kwargs) -> MRSolution:
        """Sample ``batch`` paths of the grid view with ``solver`` through :func:`solvers.sdeint`, level by level.

        ``ts`` (default: the activation times and ``T``) are saved; every
        activation time is always on the step grid. ``brownian`` is ``None``
        (independent noise per level, fixed grid) or a path on the finest grid
        (:meth:`finest_path`), from which each level's noise is projected
        (levels with scalar or general noise use it as it is). Other keyword
        arguments go to :func:`solvers.sdeint`.
        """
        ts, path, generator, x = self._start(batch, dt, ts, brownian, seed, generator, dtype, device)
        sdes = [self.grid_sde(k) for k in range(len(self.levels))]
        for level_sde in sdes:
            solver.check(level_sde)

        def embed(lev, x):
            x = haar.embed(x, lev.j - self.levels[lev.index - 1].j, self.ndim).contiguous()  # (no shared memory)
            return x if self.init_band is None else self.init_band(lev, x)

        def path_of(k):
            if path is None or not self._spatial_noise(k):
                return path
            return ProjectedPath(path, self.delta(k), self.ndim)

        per_level, diverged, infos, saved = self._solve_levels(
            x, ts, solver, sdes.__getitem__, path_of, embed, dt=dt, generator=generator, progress=progress,
            sdeint_kwargs=sdeint_kwargs)
        finest = torch.empty((len(ts), batch, self.channels, *self.finest_shape), dtype=dtype, device=device)
        for i, (k, state) in saved.items():
            finest[i] = self.to_finest(state, k)
        return MRSolution(ts, "grid", finest, per_level, diverged, infos, self.layout)

    # ------------------------------------------------------------------ band view

    def band_sde(self, k):
        """Level ``k`` of the band view: an SDE on packed finest-grid Haar coefficients ``(batch, C, n)``."""
        if self._band_defined:
            return BandDefinedLevelSDE(self, k)
        return BandLevelSDE(self, k)

    def band_path(self, path):
        """Wrap a finest-grid path as the Brownian motion of the band view: ``B = pack(dwt(W^{fine}))``."""
        return ProjectedPath(as_brownian(path), 0, self.ndim, transform=self.layout.pack)

    def sample_bands(self, solver, batch, *, dt=None, ts=None, brownian=None, seed=None, generator=None,
                     dtype=torch.float64, device=None, progress=False, **sdeint_kwargs) -> MRSolution:
        """Sample the band view level by level through :func:`solvers.sdeint`; arguments as :meth:`sample`.

        The state is ``(batch, C, n)`` (packed Haar coefficients of the finest
        grid). With a finest-grid ``brownian`` the band view uses its Haar
        coefficients, so it sees the same noise as :meth:`sample` with the same
        path. ``init_band`` is not applied in the band view.
        """
        if self.init_band is not None:
            raise ValueError("init_band: the band view starts every band at zero; use sample() (the grid view) "
                             "for a process with init_band")
        ts, path, generator, z0 = self._start(batch, dt, ts, brownian, seed, generator, dtype, device)
        sdes = [self.band_sde(k) for k in range(len(self.levels))]
        for level_sde in sdes:
            solver.check(level_sde)
        band_path = None if path is None else self.band_path(path)

        def path_of(k):
            return band_path if self._band_defined or self._spatial_noise(k) else path

        per_level, diverged, infos, saved = self._solve_levels(
            self.to_bands(z0, 0), ts, solver, sdes.__getitem__, path_of, lambda lev, y: y, dt=dt,
            generator=generator, progress=progress, sdeint_kwargs=sdeint_kwargs)
        out = torch.empty((len(ts), batch, self.channels, self.layout.n), dtype=dtype, device=device)
        for i, (_, y) in saved.items():
            out[i] = y
        return MRSolution(ts, "bands", out, per_level, diverged, infos, self.layout)
