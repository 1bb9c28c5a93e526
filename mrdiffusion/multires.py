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
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, List, Optional, Sequence

import torch

import solvers
from solvers import as_brownian

from . import haar
from .bands import BandDefinedLevelSDE, BandLayout, BandLevelSDE, BandStack, ProjectedPath, grid_level_terms

__all__ = ["Level", "BandLayout", "MultiResolutionSDE", "MRSolution", "LevelSDE"]


def renamed(old_name, old_value, new_name, new_value):
    """The value of a renamed keyword: ``new_value``, or ``old_value`` (with a DeprecationWarning) when given."""
    if old_value is None:
        return new_value
    warnings.warn(f"{old_name}= is renamed {new_name}= (a noise type and a noise rate are different things)",
                  DeprecationWarning, stacklevel=3)
    return old_value


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
        self._drift, self._diffusion, self.level, self.noise_type = drift, diffusion, level, noise

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
    the next embedding). ``diverged``: per-sample bool mask (a sample that
    diverged on a coarser level stays frozen); ``info``: the driver's
    :class:`solvers.SolveInfo` (``info.stage_steps``: steps per level).
    """

    ts: List[float]
    view: str
    states: torch.Tensor
    levels: list
    diverged: torch.Tensor
    info: solvers.SolveInfo
    layout: BandLayout = field(repr=False)

    @property
    def finest(self) -> torch.Tensor:
        return self.states if self.view == "grid" else self.layout.unpack(self.states)

    @property
    def bands(self) -> torch.Tensor:
        return self.layout.pack(self.states) if self.view == "grid" else self.states

    @property
    def nfe(self) -> int:
        return self.info.nfe


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
            ``diffusion`` functions of ``(t, x, level)`` and a ``noise_type``
            (``noise=`` is its deprecated old name).
        channels, ndim, base_shape: the grid.
        z0: the starting point mass on the coarsest grid: ``None`` (zeros), a
            tensor of shape ``(channels, *shape_0)`` or ``(batch, channels,
            *shape_0)``, or an ``nn.Parameter``.
        init_band: ``init_band(level, x) -> x`` applied right after each
            embedding (default: none, the new band is a point mass at zero).
    """

    _band_defined = False  # subclasses defined in band coordinates derive their grid SDEs

    def __init__(self, levels, times, T, *, sdes=None, drift: Optional[Callable] = None,
                 diffusion: Optional[Callable] = None, noise_type="diagonal", channels=1, ndim=2, base_shape=None,
                 z0=None, init_band=None, noise=None):
        noise_type = renamed("noise", noise, "noise_type", noise_type)
        if ndim not in (1, 2, 3):
            raise ValueError(f"ndim: expected 1, 2 or 3 spatial dimensions, got {ndim!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels: expected a positive int, got {channels!r}")
        self.ndim, self.channels = int(ndim), int(channels)
        shapes, js = self._shapes(levels, base_shape)
        self._check_memory(shapes[-1], 0)  # the band index alone holds one long per finest-grid number
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
            self.sdes = [LevelSDE(drift, diffusion, lev, noise_type) for lev in self.levels]
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

    def _check_memory(self, finest, batch, itemsize=8, saves=0, device=None):
        """``ValueError`` with the estimate if a level stack (``batch`` 0: its index alone) cannot fit.

        Per finest-grid number: the band index (three longs while it is built), and for sampling about
        16 working copies of the state per sample (as ``bench`` counts them) plus the saved states.
        """
        from .bench.memory import _WORKING_COPIES, check_bytes

        n = math.prod(finest)
        need = 3 * 8 * n + batch * self.channels * n * itemsize * (_WORKING_COPIES + saves)
        what = (f"a multi-resolution process whose finest grid is {'×'.join(map(str, finest))}"
                + (f", {batch} samples of {self.channels} channels" if batch else ""))
        check_bytes(need, what, "lower the finest level" + (" or the batch" if batch else ""),
                    device=device or "cpu")

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

    # ------------------------------------------------------------------ the level schedule

    def _spatial_noise(self, k):
        """Whether level ``k`` is driven per cell (additive, diagonal) rather than by shared motions."""
        return solvers.noise_type_of(self.sdes[k]) in ("additive", "diagonal")

    def grid_sde(self, k):
        """Level ``k`` of the grid view (its SDE, a diffusion broadcastable to the state accepted)."""
        return grid_level_terms(self.sdes[k])

    def band_sde(self, k):
        """Level ``k`` of the band view: an SDE on packed finest-grid Haar coefficients ``(batch, C, n)``."""
        if self._band_defined:
            return BandDefinedLevelSDE(self, k)
        return BandLevelSDE(self, k)

    def band_path(self, path):
        """Wrap a finest-grid path as the Brownian motion of the band view: ``B = pack(dwt(W^{fine}))``."""
        return ProjectedPath(as_brownian(path), 0, self.ndim, transform=self.layout.pack)

    def embed(self, k, x):
        """Carry a level-``k-1`` state across ``t_k`` in the grid view: ``ι x`` (then ``init_band``)."""
        lev = self.levels[k]
        x = haar.embed(x, lev.j - self.levels[k - 1].j, self.ndim)
        if not self._spatial_noise(k):  # Milstein's forward-mode derivative refuses an expanded (shared-memory) x
            x = x.contiguous()
        return x if self.init_band is None else self.init_band(lev, x)

    def schedule(self, view="grid", *, brownian=None, band_brownian=None):
        """This process as a level schedule for :func:`solvers.integrate`: one :class:`solvers.Stage` per level.

        ``view="grid"``: level ``k`` on its own grid, embedded by :meth:`embed`
        at ``t_k``; ``view="bands"``: the band view, one state ``(batch, C, n)``
        throughout. ``brownian``: ``None`` (grid draws) or a finest-grid path
        (:meth:`finest_path`); each level's noise is derived from it (grid view:
        ``2^{dΔ/2} project``; band view: ``pack ∘ dwt``), and levels with scalar
        or general noise use it as it is. ``band_brownian``: the band view's
        noise in band coordinates, given directly.
        """
        if view not in ("grid", "bands"):
            raise ValueError(f"view: expected 'grid' or 'bands', got {view!r}")
        path = None if brownian is None else as_brownian(brownian)
        if view == "bands" and band_brownian is None and path is not None:
            band_brownian = self.band_path(path)
        stages = []
        for lev in self.levels:
            k, spatial = lev.index, self._spatial_noise(lev.index)
            if view == "grid":
                src = ProjectedPath(path, self.delta(k), self.ndim) if path is not None and spatial else path
                stages.append(solvers.Stage(lev.t_start, self.grid_sde(k), embed=partial(self.embed, k) if k else None,
                                            brownian=src))
            else:
                src = band_brownian if spatial or self._band_defined else path
                stages.append(solvers.Stage(lev.t_start, self.band_sde(k), brownian=src))
        return stages

    # ------------------------------------------------------------------ sampling

    def initial_state(self, batch, view="grid", *, dtype=torch.float64, device=None):
        """The point mass ``z_0`` for ``batch`` samples: ``(batch, C, *shape_0)``, or ``(batch, C, n)`` for the band
        view."""
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise ValueError(f"batch: expected a positive int, got {batch!r}")
        z0 = self.z0.to(dtype=dtype, device=device)
        x = z0.expand(batch, *z0.shape).clone() if z0.ndim == self.ndim + 1 else z0
        if x.shape[0] != batch:
            raise ValueError(f"z0: has batch {x.shape[0]}, but batch={batch}")
        return self.to_bands(x, 0).contiguous() if view == "bands" else x

    def _sample(self, view, solver, batch, *, dt=None, ts=None, brownian=None, band_brownian=None, dtype=torch.float64,
                device=None, **kwargs) -> MRSolution:
        """Both views: the level schedule of ``view`` through :func:`solvers.integrate`, saved at ``ts``."""
        ts = self.times + [self.T] if ts is None else [float(t) for t in ts]
        if not ts or any(b <= a for a, b in zip(ts, ts[1:])) or ts[0] < 0 or ts[-1] > self.T or ts[-1] <= 0:
            raise ValueError(f"ts: expected increasing times in [0, T={self.T}] ending after 0, got {ts}")
        if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1:
            self._check_memory(self.finest_shape, batch, torch.empty((), dtype=dtype).element_size(), len(ts),
                               device)
        x0 = self.initial_state(batch, view, dtype=dtype, device=device)
        end = ts[-1]
        ends = {}  # k -> the state at t_k before the embedding (the end of level k - 1)

        def carried(k, embed):
            def carry(x):
                ends[k] = x
                return x if embed is None else embed(x)
            return carry

        stages = [solvers.Stage(st.t_start, st.sde, carried(k, st.embed), st.brownian)
                  for k, st in enumerate(self.schedule(view, brownian=brownian, band_brownian=band_brownian))
                  if st.t_start < end]
        run_ts = sorted(set([0.0] + ts + [st.t_start for st in stages]))
        sol = solvers.integrate(stages, x0, run_ts, solver, dt=dt, **kwargs)
        ys = list(sol.ys)
        levels = []
        for k in range(len(stages)):
            idx = [i for i, s in enumerate(sol.stages) if s == k]
            times, states = [run_ts[i] for i in idx], [ys[i] for i in idx]
            if k + 1 < len(stages):
                times, states = times + [stages[k + 1].t_start], states + [ends[k + 1]]
            levels.append((times, torch.stack(states)))
        saved = [(sol.stages[run_ts.index(t)], ys[run_ts.index(t)]) for t in ts]
        last = next((lev.index for lev in self.levels[1:] if lev.t_start == end), None)
        if last is not None:  # ts ends at an activation time: right-continuous, the new level's start
            x = self.embed(last, ys[-1]) if view == "grid" else ys[-1]
            saved[-1] = (last, x)
            levels.append(([end], x.unsqueeze(0)))
        if view == "grid":
            states = torch.stack([self.to_finest(x, k) for k, x in saved])
        else:
            states = torch.stack([x for _, x in saved])
        return MRSolution(ts, view, states, levels, sol.info.diverged, sol.info, self.layout)

    def sample(self, solver, batch, *, dt=None, ts=None, brownian=None, seed=None, generator=None,
               dtype=torch.float64, device=None, progress=False, **integrate_kwargs) -> MRSolution:
        """Sample ``batch`` paths of the grid view with ``solver``: the level schedule (:meth:`schedule`) run by
        :func:`solvers.integrate`.

        ``ts`` (default: the activation times and ``T``) are saved; every
        activation time is always on the step grid, and ``dt`` must divide
        every level's span. ``brownian`` is ``None`` (grid draws from ``seed``
        or ``generator``) or a path on the finest grid (:meth:`finest_path`),
        from which each level's noise is projected (levels with scalar or
        general noise use it as it is). Other keyword arguments
        (``max_abs``, ``check_every``, ``callback``, …) go to :func:`solvers.integrate`.
        """
        return self._sample("grid", solver, batch, dt=dt, ts=ts, brownian=brownian, seed=seed, generator=generator,
                            dtype=dtype, device=device, progress=progress, **integrate_kwargs)

    def sample_bands(self, solver, batch, *, dt=None, ts=None, brownian=None, seed=None, generator=None,
                     dtype=torch.float64, device=None, progress=False, **integrate_kwargs) -> MRSolution:
        """Sample the band view: the schedule ``schedule("bands")`` run by :func:`solvers.integrate`; arguments
        as :meth:`sample`.

        The state is ``(batch, C, n)`` (packed Haar coefficients of the finest
        grid). With a finest-grid ``brownian`` the band view uses its Haar
        coefficients, so it sees the same noise as :meth:`sample` with the same
        path, and gives the same paths to round-off.
        """
        if self.init_band is not None:
            raise ValueError("init_band: the band view starts every band at zero; use sample() (the grid view) "
                             "for a process with init_band")
        return self._sample("bands", solver, batch, dt=dt, ts=ts, brownian=brownian, seed=seed, generator=generator,
                            dtype=dtype, device=device, progress=progress, **integrate_kwargs)
