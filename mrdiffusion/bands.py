r"""The Haar bands of a multi-resolution stack, and the two views of a multi-resolution SDE.

**Layout.** A stack of levels ``j_0 < … < j_K`` lives on the finest grid
(``d`` spatial axes) as its orthonormal Haar coefficients
(:func:`mrdiffusion.haar.dwt` with ``J = j_K − j_0`` levels), packed along one
axis, coarse first, then the detail levels coarsest → finest
(:class:`BandLayout`).

**Band index.** Coefficient ``i`` belongs to band ``k`` when level ``k`` is the
first level fine enough to hold it (:attr:`BandStack.index`); band ``k`` is
*active* from ``t_k`` on (:meth:`BandStack.active`, a 0/1 mask).

**Scaling.** ``ι^Δ`` (nearest upsampling by ``Δ`` dyadic levels) multiplies ℓ²
norms by ``s = 2^{dΔ/2}`` (:func:`noise_scale`): ``ι^Δ = s U`` with ``U`` an
isometry onto the active coefficients, and ``U^T = s P^Δ`` (``P`` the
cell-average projection). A standard Brownian motion ``W`` per finest cell
therefore gives the standard Brownian motion per level-``k`` cell
``W^{(k)} = s P^Δ W = U^T W`` (:class:`ProjectedPath`).

**Grid view** of level ``k``: the state ``Z`` on the level-``k`` grid,
``dZ = μ_k dt + σ_k dW^{(k)}`` (:class:`GridLevelSDE` wraps a level's SDE so
that a diffusion broadcastable to the state is accepted for every noise type).

**Band view** of level ``k``: ``Y = pack(dwt(ι^Δ Z)) = s U Z`` on the finest
grid, ``B = pack(dwt(W))`` its Brownian motion (:class:`BandLevelSDE`):

    dY = s U μ_k(U^T Y / s) dt + s U (σ_k ⊙ U^T dB).

For additive and diagonal noise the band view needs ``σ_k`` spatially constant
(shape ``(…, C, 1, …, 1)``, or a scalar): then ``U (σ ⊙ U^T dB) = σ ⊙ mask ⊙ dB``
and the band view is again an SDE of the same noise type with diffusion
``s σ_k mask``. Scalar and general noise drive every cell with the same
Brownian motions, so the band view's diffusion is ``s U σ_k`` (any spatial
shape) and the path is shared as it is. A spatially varying diagonal
``σ_k`` has no band view of its own noise type (its band-coordinate noise is a
dense matrix): use the grid view.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

import solvers

from . import haar

__all__ = ["BandLayout", "BandStack", "noise_scale", "ProjectedPath", "grid_level_terms", "BandLevelSDE",
           "BandDefinedLevelSDE", "BandProcessGridSDE"]


def noise_scale(ndim: int, delta: int) -> float:
    """``2^{dΔ/2}``: the ℓ² gain of embedding a field ``Δ`` dyadic levels finer in ``d`` dimensions."""
    return 2.0 ** (ndim * delta / 2)


class BandLayout:
    """Packs Haar coefficients of the finest grid along one axis: ``(*lead, *spatial) <-> (*lead, n)``.

    Coarse coefficients first, then the detail levels coarsest → finest, each
    flattened as ``(2**ndim - 1, *spatial_i)``. ``dwt_level`` (a long tensor of
    length ``n``) gives each coefficient's Haar level: 0 for the coarse part,
    ``i + 1`` for ``details[i]``.
    """

    def __init__(self, shape: Sequence[int], levels: int, ndim: int):
        self.shape, self.levels, self.ndim = tuple(shape), int(levels), int(ndim)
        coarse = tuple(s >> levels for s in self.shape)
        self.sizes = [math.prod(coarse)]
        self.detail_shapes = []
        for i in range(levels):
            sp = tuple(c << i for c in coarse)
            self.detail_shapes.append((2**ndim - 1, *sp))
            self.sizes.append((2**ndim - 1) * math.prod(sp))
        self.coarse_shape = coarse
        self.n = sum(self.sizes)
        self.dwt_level = torch.cat([torch.full((s,), i, dtype=torch.long) for i, s in enumerate(self.sizes)])

    def pack(self, x):
        coarse, details = haar.dwt(x, self.levels, self.ndim)
        lead = x.shape[: x.ndim - self.ndim]
        return torch.cat([coarse.reshape(*lead, -1)] + [d.reshape(*lead, -1) for d in details], dim=-1)

    def unpack(self, y):
        parts = torch.split(y, self.sizes, dim=-1)
        lead = y.shape[:-1]
        coarse = parts[0].reshape(*lead, *self.coarse_shape)
        details = [p.reshape(*lead, *s) for p, s in zip(parts[1:], self.detail_shapes)]
        return haar.idwt(coarse, details, self.ndim)


class BandStack:
    """The layout, band index, activation masks and scalings of a stack of dyadic levels ``js`` (coarse first).

    ``finest_shape`` is the grid of the last level. ``index[i]`` is the level
    whose activation starts coefficient ``i``.
    """

    def __init__(self, finest_shape, js, ndim):
        self.js, self.ndim = [int(j) for j in js], int(ndim)
        self.layout = BandLayout(finest_shape, self.js[-1] - self.js[0], self.ndim)
        first = [next(k for k, j in enumerate(self.js) if j - self.js[0] >= i) for i in range(self.layout.levels + 1)]
        self.index = torch.tensor(first)[self.layout.dwt_level]
        self._masks = {}

    @property
    def n(self) -> int:
        return self.layout.n

    def delta(self, k: int) -> int:
        """Dyadic levels between level ``k`` and the finest grid."""
        return self.js[-1] - self.js[k]

    def scale(self, k: int) -> float:
        """``2^{dΔ_k/2}``, the band-coordinate gain of level ``k`` (see the module docstring)."""
        return noise_scale(self.ndim, self.delta(k))

    def active(self, k: int, like=None):
        """0/1 mask ``(n,)`` of the coefficients active at level ``k`` (float64, or ``like``'s dtype/device)."""
        dtype, device = (torch.float64, None) if like is None else (like.dtype, like.device)
        key = (k, dtype, device)
        if key not in self._masks:
            self._masks[key] = (self.index <= k).to(dtype=dtype, device=device)
        return self._masks[key]

    def to_bands(self, x, k):
        """Band coordinates ``pack(dwt(ι^Δ x))`` of a level-``k`` field ``(..., *shape_k)``: ``(..., n)``."""
        return self.layout.pack(haar.embed(x, self.delta(k), self.ndim))

    def to_level(self, y, k):
        """The level-``k`` field ``P^Δ unpack(y)`` of band coordinates ``y`` (inverse of :meth:`to_bands`
        on the coefficients active at level ``k``)."""
        return haar.project(self.layout.unpack(y), self.delta(k), self.ndim)


class ProjectedPath(solvers.BrownianSource):
    """A Brownian source seen through a linear map: ``W^{(k)} = 2^{dΔ/2} project(W^{fine}, Δ)`` by default.

    ``transform`` replaces the map (the band view uses ``pack ∘ dwt``). The
    space-time area is mapped by the same linear map.
    """

    def __init__(self, path, delta=0, ndim=2, transform=None):
        self.path, self.delta, self.ndim = path, delta, ndim
        source = solvers.as_brownian(path)
        self.t0, self.t1 = source.t0, source.t1
        self.scale = noise_scale(ndim, delta)
        self.has_levy_area = source.has_levy_area
        self.transform = transform or (lambda w: self.scale * haar.project(w, delta, ndim))

    def increment(self, s, t):
        return self.transform(self.path.increment(s, t))

    __call__ = increment

    def space_time(self, s, t):
        dW, U = self.path.space_time(s, t)
        return self.transform(dW), self.transform(U)


# ----------------------------------------------------------------------------- the grid view


def grid_level_terms(sde):
    """Grid view of one level given as an SDE: its typed terms, with the diffusion broadcast to the state.

    A diffusion value broadcastable to the level state (``(…, C, 1, 1)`` for a
    spatially constant diffusion) is accepted for every noise type, as in the
    band view. Every optional part (linear part, drift split, diffusion
    derivative, …) is the level SDE's.
    """
    terms = solvers.as_terms(sde)
    diffusion, noise_type = terms.diffusion, terms.noise_type
    if noise_type not in ("diagonal", "scalar"):
        return terms

    def broadcast(t, x):
        g = diffusion(t, x)
        if isinstance(g, torch.Tensor) and g.shape != x.shape:
            return g.expand(x.shape)
        return g

    return terms.replace(diffusion=broadcast)


# ----------------------------------------------------------------------------- the band view


def _per_channel(value, nd, what):
    """``(…, C, 1, …, 1)`` → ``(…, C, 1)`` (scalars unchanged); refuse a spatially varying value."""
    if not isinstance(value, torch.Tensor) or value.ndim < nd:
        return value
    spatial = tuple(value.shape[value.ndim - nd:])
    if any(s != 1 for s in spatial):
        raise ValueError(f"band view: {what} has spatial shape {spatial}; for additive and diagonal noise the band "
                         f"view needs it spatially constant (shape (..., C, {', '.join(['1'] * nd)}) or a "
                         f"scalar): use the grid view (sample) for a spatially varying one")
    return value.reshape(*value.shape[: value.ndim - nd], 1)


class BandLevelSDE(solvers.SDE):
    """Level ``k`` of the band view of ``mr`` (a :class:`~mrdiffusion.multires.MultiResolutionSDE` given per
    level): the level's SDE carried into band coordinates, with the level's noise type.

    See the module docstring for the equation. Optional parts of the level
    SDE are carried along: ``drift_parts`` / ``drift_part1/2`` (as band-view
    drift parts), ``diffusion_derivative`` and a per-channel ``linear`` part
    (with ``linear_only`` and ``linear_transition``).
    """

    def __init__(self, mr, k):
        self.mr, self.k, self.stack = mr, k, mr.stack
        self.level_sde = sde = solvers.as_terms(mr.sdes[k])
        self.noise_type = sde.noise_type
        self.spatial_noise = self.noise_type in ("diagonal", "additive")
        self.scale = self.stack.scale(k)
        nd = self.stack.ndim
        if sde.drift_split is not None:
            part1, part2 = sde.drift_split
            self.drift_part1 = lambda t, y: self._carry(part1, t, y)
            self.drift_part2 = lambda t, y: self._carry(part2, t, y)
        if sde.diffusion_derivative is not None:
            self.diffusion_derivative = lambda t, y: self._spread(
                sde.diffusion_derivative(t, self.to_level(y)), y, 1.0, "diffusion_derivative")
        if sde.linear is not None:
            self.linear = lambda t: _per_channel(sde.linear(t), nd, "linear(t)")
            self.linear_only = sde.linear_only
            if sde.linear_transition is not None:
                self.linear_transition = lambda s, t: tuple(_per_channel(v, nd, "linear_transition")
                                                            for v in sde.linear_transition(s, t))

    def to_level(self, y):
        """The level-``k`` grid state of band coordinates ``y``."""
        return self.stack.to_level(y, self.k)

    def _carry(self, f, t, y):
        return self.stack.to_bands(f(t, self.to_level(y)), self.k)

    def _spread(self, g, y, scale, what):
        """A spatially constant level value onto the active coefficients, times ``scale``, shaped like ``y``."""
        mask = self.stack.active(self.k, y)
        if not isinstance(g, torch.Tensor):
            return (g * scale) * mask
        g = _per_channel(g, self.stack.ndim, what) * scale * mask
        return g if g.shape == y.shape or self.noise_type == "additive" else g.expand(y.shape)

    def drift(self, t, y):
        return self._carry(self.level_sde.drift, t, y)

    def diffusion(self, t, y):
        z = self.to_level(y)
        g = self.level_sde.diffusion(t, z)
        if self.spatial_noise:
            return self._spread(g, y, self.scale, f"the diffusion of level {self.k}")
        if self.noise_type == "scalar":  # the same Brownian motion on every coefficient: carry g itself
            return self.stack.to_bands(torch.as_tensor(g, dtype=z.dtype, device=z.device).expand(z.shape), self.k)
        # general: (..., *shape_k, m) -> (..., n, m)
        g = torch.as_tensor(g, dtype=z.dtype, device=z.device)
        return self.stack.to_bands(g.movedim(-1, 0), self.k).movedim(0, -1)


class BandDefinedLevelSDE(solvers.SDE):
    """Level ``k`` of the band view of a process defined in band coordinates
    (:class:`~mrdiffusion.processes.BandProcess`: ``band_drift``, ``band_noise``, optional
    ``band_linear``/``band_transition``). Additive noise ``band_noise · mask``."""

    noise_type = "additive"

    def __init__(self, proc, k):
        self.proc, self.k, self.stack = proc, k, proc.stack
        if proc.band_linear is not None:
            self.linear = lambda t: proc.band_linear(t, k)
            self.linear_only = proc.band_linear_only
            if proc.band_transition is not None:
                self.linear_transition = lambda s, t: proc.band_transition(s, t, k)
            if proc.band_forcing_transition is not None:  # exact weight of an affine forcing (ExponentialEuler)
                self.nonlinear_weight = lambda s, t: proc.band_forcing_transition(s, t, k)

    def drift(self, t, y):
        return self.proc.band_drift(t, y, self.k)

    def diffusion(self, t, y):
        return self.proc.band_noise(t, self.k) * self.stack.active(self.k, y)


class BandProcessGridSDE(solvers.SDE):
    """Grid view of level ``k`` of a process defined in band coordinates: drift through the Haar transforms.

    The per-cell noise is ``c_k 2^{-dΔ_k/2}`` (``c_k`` the band-coordinate noise
    rate), additive. When the process has the same rate on every band
    (``uniform_rate``), the grid view also exposes ``linear(t)`` (a scalar) and
    its exact transition, so exponential and implicit schemes apply.
    """

    noise_type = "additive"

    def __init__(self, proc, k):
        self.proc, self.k, self.stack = proc, k, proc.stack
        self.cell_scale = 1.0 / self.stack.scale(k)
        if proc.uniform_rate:
            self.linear = lambda t: proc.rate(t, k)
            self.linear_only = proc.band_linear_only
            if proc.rate_transition is not None:
                self.linear_transition = lambda s, t: proc.rate_transition(s, t, k)

    def drift(self, t, z):
        if self.proc.uniform_rate and self.proc.band_linear_only:
            return self.proc.rate(t, self.k) * z
        y = self.proc.band_drift(t, self.stack.to_bands(z, self.k), self.k)
        return self.stack.to_level(y, self.k)

    def diffusion(self, t, z):
        return self.proc.band_noise(t, self.k) * self.cell_scale
