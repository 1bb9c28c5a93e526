"""Reproducible Brownian paths: a dyadic Lévy construction driven by counter-based noise.

`BrownianPath` is a *function* of time: ``W(t)`` is a deterministic function of
``(seed, t, sample id, element index)``, so queries may come in any order, at any
resolution, and increments are consistent under refinement
(``W(s,u) = W(s,m) + W(m,u)`` to round-off).  This is what strong-error studies
need: every step size sees the same path.

Construction (Lévy 1939; the Brownian-bridge / "virtual tree" idea of diffrax's
``VirtualBrownianTree`` and torchsde's ``BrownianInterval``):

* root: ``W(t1) ~ N(0, t1 - t0)``, ``W(t0) = 0``;
* the dyadic node ``(d, k)``, time ``t0 + k 2^-d (t1 - t0)`` with ``k`` odd, is drawn
  from the Brownian bridge between its two neighbours ``(d, k ± 1)`` (which live at
  coarser levels): mean ``(W_l + W_r) / 2``, variance ``h / 4`` for a parent
  interval of length ``h``;
* the standard normals come from a counter-based hash (splitmix64 + Box–Muller) of
  ``(seed, d, k)`` and the per-element counter ``sample_id * event_numel + index``:
  nothing depends on the query order, the batch size or the cache.

With ``levy_area=True`` the tree carries the Gaussian Markov pair
``X(t) = (W(t), I(t))``, ``I(t) = ∫_{t0}^t W_r dr``, with transition
``X(t+τ) | X(t) ~ N(A(τ) X(t), Q(τ))``, ``A = [[1, 0], [τ, 1]]``,
``Q = [[τ, τ²/2], [τ²/2, τ³/3]]``; interior nodes are drawn from its bridge.  Then
``space_time(s, t)`` returns ``(dW, U)`` with ``U = ∫_s^t (W_u - W_s) du
= I(t) - I(s) - (t - s) W(s) = h dW / 2 + h H``, ``H`` the space-time Lévy area of
Foster, Lyons & Oberhauser (2020), "An optimal polynomial approximation of Brownian
motion".  This ``U`` is torchsde's ``return_U`` quantity and the ``I_(1,0)`` of
Rößler's SRA schemes.  (The W-marginal is Brownian either way, but the paths drawn
with and without ``levy_area`` differ.)

Times are rounded to the dyadic grid of depth ``depth`` (default 40 for float64, i.e.
``2^-40 (t1 - t0)`` ≈ 1e-12, and 26 for other dtypes, below float32 resolution);
dyadic times like ``k 2^-10`` are hit exactly.  Values are computed and stored in
float64 and cast to ``dtype`` on return.  Cost: a fresh node is one hash, one
Box–Muller transform and a few axpys, 1.5-3x a float64 ``torch.randn`` of the same
shape (small shapes: ~0.1 ms of op overhead).  A query costs at most ``depth`` fresh
nodes; on a dyadic grid swept left to right, amortised one.  A grid like ``k/1000``
is not dyadic in ``[t0, t1]``: without a hint each query costs ~``depth - log2(1/h)``
fresh levels.  The step hint ``dt`` (torchsde's ``BrownianInterval(dt=...)``) makes the
tree span ``[t0, t0 + 2^m dt]``, ``m = ceil(log2((t1 - t0) / dt))``: every ``t0 + k dt``
(snapped exactly, whatever its floating-point round-off) is node ``k`` of level ``m``,
drawn in aligned blocks of up to ``2^5`` steps with one vectorised pass per level
(bitwise the values of a one-by-one descent), so a sweep costs one fresh node per
step in ~0.2 passes; a sweep of an aligned dyadic grid is drawn in the same blocks.
The hint is part of the path's identity: the path is the unhinted path of
``[t0, t0 + 2^m dt]`` restricted to ``[t0, t1]``.  An
LRU cache of ``cache_size`` nodes bounds memory by the queries made, never by a
resolution.  Round-off: ``U`` is a difference of O(1) stored values, so its absolute
error is ~1e-16 (relative ~1e-16 / h^1.5).
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ._counter import _GAMMA, _counter_base, _hash, _mix64_int, _node_key, _normal, _signed  # noqa: F401
from ._source import BrownianSource, space_time_area

__all__ = ["BrownianPath"]

# Dyadic points of depth <= _TREE_LEVEL are tree nodes, drawn one by one from their cached neighbours
# (a sweep of a dyadic grid costs one fresh node per query). Deeper points (the rounded images of
# non-dyadic times) are summed from their level-_BRACKET_LEVEL bracket in one vectorised pass.
_TREE_LEVEL = 20
_BRACKET_LEVEL = 8
_PREFETCH = 32  # most points drawn in one pass on a sweep
_BLOCK_LEVELS = 5  # with a step hint, grid nodes are drawn in blocks of up to 2^5 steps


@functools.lru_cache(maxsize=None)
def _bridge_coefficients(h1: float, h2: float):
    """Bridge of ``Y_r = (W_r - W_s, ∫_s^r (W_v - W_s) dv)`` at ``m = s + h1`` given ``Y_u``, ``u = m + h2``.

    ``Y_m | Y_u ~ N(K Y_u, L Lᵀ)`` with ``K = Q(h1) A(h2)ᵀ Q(h)⁻¹`` and
    ``L Lᵀ = Q(h1) - K A(h2) Q(h1)`` (the Gaussian conditioning of ``(Y_m, Y_u)``, whose
    cross-covariance is ``Q(h1) A(h2)ᵀ``).  This equals the precision form
    ``P = Q(h1)⁻¹ + A(h2)ᵀ Q(h2)⁻¹ A(h2)``.  It is computed at unit scale: with
    ``D = diag(h^½, h^{3/2})``, ``Q(h r) = D Q(r) D`` and ``A(h ρ) = D A(ρ) D⁻¹``, so
    tiny intervals lose no accuracy.  Returns ``(K, L)`` as nested float tuples.
    """
    h, r = h1 + h2, h1 / (h1 + h2)

    q = lambda x: np.array([[x, x * x / 2], [x * x / 2, x**3 / 3]])  # noqa: E731
    a = np.array([[1.0, 0.0], [1.0 - r, 1.0]])
    k = q(r) @ a.T @ np.linalg.inv(q(1.0))
    c = q(r) - k @ a @ q(r)
    chol = np.linalg.cholesky((c + c.T) / 2)
    k[np.abs(k) < 1e-14], chol[np.abs(chol) < 1e-14] = 0.0, 0.0  # unit scale: snap round-off zeros
    scale = np.array([math.sqrt(h), h * math.sqrt(h)])
    k = scale[:, None] * k / scale[None, :]
    chol = scale[:, None] * chol
    return tuple(map(tuple, k.tolist())), tuple(map(tuple, chol.tolist()))


class BrownianPath(BrownianSource):
    """A seeded Brownian motion ``W`` on ``[t0, t1]``, ``W(t0) = 0``, of tensor shape ``shape``.

    ``shape = (batch, *event)``.  ``increment(s, t)`` (also ``path(s, t)``) returns
    ``W(t) - W(s)``; with ``levy_area=True``, ``space_time(s, t)`` returns
    ``(dW, U)``, ``U = ∫_s^t (W_u - W_s) du``.  See the module docstring for the
    construction, guarantees and costs.

    Args:
        shape: ``(batch, *event)``; each sample is an independent path.
        t0, t1: the interval, ``t0 < t1``.
        seed: any int; the path is a deterministic function of it.
        dtype, device: of the returned tensors (computation is float64 on ``device``).
        levy_area: also track ``∫ W dt`` so that ``space_time`` is available.
        dt: a step hint, like torchsde's ``BrownianInterval(dt=...)``.  When given, the
            dyadic tree spans ``[t0, t0 + 2^m dt]``, ``m = ceil(log2((t1 - t0) / dt))``
            (queries stay restricted to ``[t0, t1]``), so every ``t0 + k dt`` is the node
            ``k`` of level ``m`` and a sweep of that grid costs ~2 fresh nodes per query.
            The hint is part of the path's identity, like the seed: the path is a function
            of ``(seed, tree span, t, sample id, element)``.
        depth: dyadic depth that times are rounded to (40 for float64, else 26; with ``dt``,
            at least ``m + 8``).
        cache_size: LRU capacity in nodes (≥ ``depth`` keeps sweeps at O(1) per query).
        sample_ids: ids of the batch rows (default ``arange(batch)``); row ``i`` of any
            path with the same seed and id is the same Brownian path.
    """

    def __init__(self, shape: Sequence[int], t0: float, t1: float, *, seed: int = 0,
                 dtype: torch.dtype = torch.float32, device=None, levy_area: bool = False,
                 dt: Optional[float] = None, depth: Optional[int] = None, cache_size: int = 128,
                 sample_ids: Optional[Sequence[int]] = None):
        self.shape = torch.Size(shape)
        self.t0, self.t1 = float(t0), float(t1)
        if not (math.isfinite(self.t0) and math.isfinite(self.t1)):
            raise ValueError(f"t0, t1: BrownianPath needs a finite interval, got t0={self.t0}, t1={self.t1}.")
        if not self.t1 > self.t0:
            raise ValueError(f"t0, t1: BrownianPath needs t0 < t1, got t0={self.t0}, t1={self.t1}.")
        if any(not isinstance(n, int) or n < 0 for n in self.shape):
            raise ValueError(f"shape: expected a tuple of non-negative ints (batch, *event), got {tuple(shape)}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {dtype}.")
        self.seed, self.dtype, self.levy_area = int(seed), dtype, bool(levy_area)
        self.has_levy_area = self.levy_area  # the flag `as_brownian` objects share
        self.device = torch.device("cpu") if device is None else torch.device(device)
        span = self.t1 - self.t0
        self.dt, self._level = None, None  # the hint, and the level whose nodes are its grid
        if dt is not None:
            try:
                self.dt = float(dt)
            except (TypeError, ValueError):
                raise ValueError(f"dt: expected a positive finite step (a float), got {dt!r}.") from None
            if not (math.isfinite(self.dt) and self.dt > 0):
                raise ValueError(f"dt: expected a positive finite step (a float), got {dt!r}.")
            ratio = span / self.dt
            self._level = max(0, math.ceil(math.log2(ratio) - 1e-12)) if ratio > 1 else 0
            if self._level > 52:
                raise ValueError(f"dt: the step {self.dt!r} is too small for [t0, t1] = [{self.t0!r}, {self.t1!r}] "
                                 f"(2^{self._level} steps; at most 2^52).")
            span = math.ldexp(self.dt, self._level)  # exact: t0 + k dt is node k of level m
        default = 40 if dtype == torch.float64 else 26
        self.depth = int(depth) if depth is not None else (
            default if self._level is None else min(60, max(default, self._level + 8)))
        if not 1 <= self.depth <= 60:
            raise ValueError(f"depth must be in [1, 60], got {self.depth}.")
        if self._level is not None and self.depth < self._level:
            raise ValueError(f"depth: {self.depth} is shallower than the level {self._level} of the step hint "
                             f"dt={self.dt!r}; pass depth >= {self._level} or leave it unset.")
        self.cache_size = int(cache_size)

        batch = self.shape[0] if len(self.shape) else 1
        event = self.shape[1:]
        if sample_ids is None:
            ids = torch.arange(batch, device=self.device)
        else:
            ids = torch.as_tensor(sample_ids, dtype=torch.int64, device=self.device).reshape(-1)
            if ids.numel() != batch:
                raise ValueError(f"sample_ids has {ids.numel()} entries for a batch of {batch}.")
        self.sample_ids = ids
        numel = math.prod(event)
        counters = ids.view(-1, *([1] * len(event))) * numel + torch.arange(
            numel, device=self.device).view(1, *event)
        self._base = _counter_base(counters.reshape(self.shape))

        self._last = None  # end of the last query: a sweep is detected by the next query starting there
        self._numel = math.prod(self.shape)
        self._level_keys = [_mix64_int(_mix64_int(self.seed + _GAMMA) + d) for d in range(self.depth + 1)]
        self._tree_level = max(_TREE_LEVEL, self._level or 0)  # the hint's grid is always drawn node by node
        self._bracket_level = max(_BRACKET_LEVEL, self._level or 0)  # points off the hint's grid: from its nodes
        # The hint's level-m grid (and, on a sweep, any dyadic grid) is drawn in aligned blocks of 2^r steps,
        # one pass per level (r passes instead of 2^r - 1); the values are bitwise those of one-by-one descents.
        room = min(self.cache_size // 4, (1 << 18) // max(1, math.prod(self.shape)), 1 << _BLOCK_LEVELS)
        self._block_room = 0 if room < 2 else room.bit_length() - 1
        self._block_levels = 0 if self._level is None else min(self._level, self._block_room)
        self._length = span  # the tree's span: t1 - t0, or 2^m dt with the hint
        self._n = 1 << self.depth
        self._tol = 1e-9 * max(1.0, self.t1 - self.t0)
        self._n1 = self._n  # grid position of t1
        if self._level is not None:
            self._grid_shift = self.depth - self._level  # node k of level m is position k << shift
            self._n1 = self._index(self.t1, "t1")
        self._cache: "collections.OrderedDict[int, object]" = collections.OrderedDict()
        self._nodes_made = 0  # fresh dyadic nodes drawn (for tests / diagnostics)
        zero = torch.zeros(self.shape, dtype=torch.float64, device=self.device)
        if self.levy_area:
            z0, z1 = _normal(_node_key(self.seed, 0, 1), self._base, pair=True)
            sq = math.sqrt(self._length)
            self._zero = (zero, zero)
            self._root = (sq * z0, self._length * sq * (0.5 * z0 + z1 / math.sqrt(12.0)))
        else:
            self._zero = zero
            self._root = math.sqrt(self._length) * _normal(_node_key(self.seed, 0, 1), self._base)

    def __repr__(self) -> str:
        return (f"BrownianPath(shape={tuple(self.shape)}, t0={self.t0}, t1={self.t1}, seed={self.seed}, "
                f"dtype={self.dtype}, device={self.device}, levy_area={self.levy_area}, "
                + (f"dt={self.dt!r}, " if self.dt is not None else "") + f"depth={self.depth})")

    # -- time handling -------------------------------------------------------------------
    def _index(self, t, name: str) -> int:
        """Position of ``t`` on the depth-``depth`` dyadic grid, an int in ``[0, 2^depth]``."""
        t = float(t)
        if not (self.t0 - self._tol <= t <= self.t1 + self._tol):
            raise ValueError(f"{name}={t!r} is outside the interval [t0, t1] = [{self.t0!r}, {self.t1!r}].")
        if self._level is not None:
            # Snap t0 + k dt (computed in floating point, e.g. a + (b - a) k / n) onto node k of level m:
            # within a few ulps of t (relative to the times' magnitudes) of a multiple of dt.
            x = (t - self.t0) / self.dt
            k = round(x)
            if abs(x - k) <= 1e-14 * ((abs(self.t0) + abs(t)) / self.dt + abs(x)):
                return min(max(k << self._grid_shift, 0), self._n1)
            n = round(x * (1 << self._grid_shift))
            return min(max(n, 0), self._n1)
        n = round((t - self.t0) / self._length * self._n)
        return min(max(n, 0), self._n)

    def _indices(self, s, t) -> Tuple[int, int]:
        if float(s) > float(t):
            raise ValueError(f"need s <= t, got s={float(s)!r} > t={float(t)!r} "
                             f"(interval [{self.t0!r}, {self.t1!r}]).")
        return self._index(s, "s"), self._index(t, "t")

    # -- the tree ------------------------------------------------------------------------
    def _node(self, n: int):
        """The float64 value (``W`` or ``(W, I)``) at grid position ``n``."""
        if n == 0:
            return self._zero
        if n == self._n:
            return self._root
        cache = self._cache
        value = cache.get(n)
        if value is not None:
            cache.move_to_end(n)
            return value
        if self._block_levels and not self.levy_area and self._in_block(n, self._level, self._block_levels):
            self._block(n, self._level, self._block_levels)
            return cache[n]
        if not self.levy_area and self._is_deep(n):
            value = self._deep([n])[0]
            cache[n] = value
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
            return value
        # Descend from the root: the bracket (a, b) halves until its midpoint is n.
        a, b, va, vb, level = 0, self._n, self._zero, self._root, 1
        while True:
            m = (a + b) >> 1
            value = cache.get(m)
            if value is None:
                value = self._bridge(level, m >> (self.depth - level), va, vb)
                cache[m] = value
                if len(cache) > self.cache_size:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(m)
            if m == n:
                return value
            if n < m:
                b, vb = m, value
            else:
                a, va = m, value
            level += 1

    def _in_block(self, n: int, g: int, r: int) -> bool:
        """Whether ``n`` is a node of the level-``g`` grid inside (not at the ends of) its aligned block."""
        shift = self.depth - g
        return not n & ((1 << shift) - 1) and (n >> shift) & ((1 << r) - 1) != 0

    def _block(self, n: int, g: int, r: int) -> None:
        """Draw the aligned block of ``2^r`` level-``g`` steps around node ``n``, one vectorised pass per level.

        The block's ends are coarser nodes (descended as usual); level ``g - r + l`` holds
        ``2^(l-1)`` nodes, each drawn from the bridge between its neighbours exactly as
        :meth:`_bridge` draws it (same key, same element-wise operations), so the values do
        not depend on whether a node came from a block or from a single descent.
        """
        shift, cache = self.depth - g, self._cache
        a = ((n >> shift) >> r << r) << shift
        values = {a: self._node(a), a + (1 << (shift + r)): self._node(a + (1 << (shift + r)))}
        view = (-1,) + (1,) * len(self.shape)
        for l in range(1, r + 1):
            d = g - r + l
            step = 1 << (shift + r - l)  # half the parent interval, in positions
            ps = []
            for i in range(1 << (l - 1)):
                p = a + (2 * i + 1) * step
                if p in cache:  # drawn before: the same bits
                    values[p] = cache[p]
                else:
                    ps.append(p)
            if not ps:
                continue
            prefix, drop = self._level_keys[d], self.depth - d
            keys = torch.tensor([_signed(_mix64_int(prefix + (p >> drop))) for p in ps], dtype=torch.int64,
                                device=self.device).view(view)
            left = torch.stack([values[p - step] for p in ps])
            right = torch.stack([values[p + step] for p in ps])
            z = _normal(keys, self._base)
            z.mul_(math.sqrt(self._length * 2.0 ** (1 - d) / 4)).add_(left, alpha=0.5).add_(right, alpha=0.5)
            for p, value in zip(ps, z.unbind(0)):
                values[p] = value
                cache[p] = value
            self._nodes_made += len(ps)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def _sweep_block(self, ns: int, nt: int) -> None:
        """On a sweep of an aligned dyadic grid (no hint), draw the block of the grid around ``nt`` at once."""
        step = nt - ns
        if step & (step - 1) or ns % step:
            return
        g = self.depth - (step.bit_length() - 1)
        if 1 <= g <= self._tree_level:
            r = min(g, self._block_room)
            if self._in_block(nt, g, r):
                self._block(nt, g, r)

    def _is_deep(self, n: int) -> bool:
        return 0 < n < self._n and self.depth - ((n & -n).bit_length() - 1) > self._tree_level

    def _deep(self, ns) -> torch.Tensor:
        """``W`` at points deeper than ``_TREE_LEVEL``, summed in one vectorised pass (Lévy–Ciesielski).

        Unrolling the bridge recursion from the level-``_BRACKET_LEVEL`` bracket
        ``(a, b)`` of ``n`` (tree nodes, cached) gives ``W(n) = W(a) + (n - a)/(b - a)
        (W(b) - W(a)) + Σ_l s_l φ_l(n) z_l`` over the nodes ``l`` of the descent,
        ``s_l`` the node's bridge standard deviation and ``φ_l`` its hat function
        (1 at the node, 0 at its bracket's ends). The ``z_l`` are the nodes' own
        normals, so this is the same path as the node-by-node descent (to
        round-off), at one hash of ``(points, levels, *shape)`` instead of one per
        node. Every point's value goes through the same element-wise operations
        and a cumulative sum over its levels (in order; padding adds exact zeros),
        so it does not depend on the batch, the cache, the query order or which
        other points share the pass. Returns ``(len(ns), *shape)`` float64.
        """
        shift = self.depth - min(self._bracket_level, self.depth)
        prefix, depth = self._level_keys, self.depth
        keys, coefs, left, right, fracs = [], [], [], [], []
        for n in ns:
            a = (n >> shift) << shift
            b = a + (1 << shift)
            left.append(self._node(a))
            right.append(self._node(b))
            fracs.append((n - a) / (b - a))
            row_k, row_c = [], []
            lo, hi, level = a, b, depth - shift + 1
            while True:
                m = (lo + hi) >> 1
                row_k.append(_signed(_mix64_int(prefix[level] + (m >> (depth - level)))))
                row_c.append(math.sqrt(self._length * 2.0 ** (1 - level) / 4) * (1.0 - abs(n - m) / ((hi - lo) >> 1)))
                if m == n:
                    break
                lo, hi = (lo, m) if n < m else (m, hi)
                level += 1
            self._nodes_made += len(row_k)
            keys.append(row_k)
            coefs.append(row_c)
        width = max(map(len, keys))
        keys = [k + [0] * (width - len(k)) for k in keys]
        coefs = [c + [0.0] * (width - len(c)) for c in coefs]
        view = (len(ns), width) + (1,) * len(self.shape)
        z = _normal(torch.tensor(keys, dtype=torch.int64, device=self.device).view(view), self._base)
        detail = z.mul_(torch.tensor(coefs, dtype=torch.float64, device=self.device).view(view)).cumsum_(1)[:, -1]
        va, vb = torch.stack(left), torch.stack(right)
        frac = torch.tensor(fracs, dtype=torch.float64, device=self.device).view(view[:1] + view[2:])
        return vb.sub_(va).mul_(frac).add_(va).add_(detail)

    def _prefetch(self, s: float, t: float, nt: int) -> None:
        """On a sweep (this query starts where the last ended), draw the next few grid points' deep
        values together with ``W(t)``: one pass instead of one per query. Values do not depend on it."""
        cache = self._cache
        if nt in cache or not self._is_deep(nt):
            return
        ns = [nt]
        if self._last == s and t > s:
            budget = max(1, min(_PREFETCH, self.cache_size // 2, (1 << 18) // max(1, self._numel * self.depth)))
            h = t - s
            for j in range(1, budget):
                u = t + j * h
                if u > self.t1:
                    break
                n = self._index(u, "t")
                if self._is_deep(n) and n not in cache:
                    ns.append(n)
        for n, value in zip(ns, self._deep(ns).unbind(0)):
            cache[n] = value
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def _bridge(self, d: int, k: int, left, right):
        """Draw node (d, k) (k odd) given its neighbours at distance ``h/2`` on each side."""
        self._nodes_made += 1
        key = _node_key(self.seed, d, k)
        h = self._length * 2.0 ** (1 - d)  # parent interval
        if not self.levy_area:
            z = _normal(key, self._base)
            return z.mul_(math.sqrt(h / 4)).add_(left, alpha=0.5).add_(right, alpha=0.5)
        (wl, il), (wr, ir) = left, right
        ((k00, k01), (k10, k11)), ((l00, _), (l10, l11)) = _bridge_coefficients(h / 2, h / 2)
        z0, z1 = _normal(key, self._base, pair=True)
        y0 = wr - wl
        y1 = (ir - il).sub_(wl, alpha=h)
        w = torch.add(wl, y0, alpha=k00).add_(y1, alpha=k01).add_(z0, alpha=l00)
        i = torch.add(il, wl, alpha=h / 2).add_(y0, alpha=k10).add_(y1, alpha=k11)
        if l10:  # zero at midpoints: given the ends, W_m and the I-part are independent
            i.add_(z0, alpha=l10)
        i.add_(z1, alpha=l11)
        return w, i

    # -- queries -------------------------------------------------------------------------
    def increment(self, s, t) -> torch.Tensor:
        """``W(t) - W(s)`` for ``t0 <= s <= t <= t1``, of shape ``shape`` and dtype ``dtype``."""
        ns, nt = self._indices(s, t)
        if ns == nt:
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        if self.levy_area:
            return (self._node(nt)[0] - self._node(ns)[0]).to(self.dtype)
        if self._level is None and self._block_room and self._last == float(s) and nt not in self._cache:
            self._sweep_block(ns, nt)
        self._prefetch(float(s), float(t), nt)
        self._last = float(t)
        return (self._node(nt) - self._node(ns)).to(self.dtype)

    __call__ = increment

    def space_time(self, s, t) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(dW, U)`` over ``[s, t]``, ``U = ∫_s^t (W_u - W_s) du`` (needs ``levy_area=True``)."""
        if not self.levy_area:
            raise ValueError("space_time needs a BrownianPath built with levy_area=True.")
        ns, nt = self._indices(s, t)
        if ns == nt:
            zero = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
            return zero, zero.clone()
        (ws, is_), (wt, it) = self._node(ns), self._node(nt)
        h = (nt - ns) / self._n * self._length  # the rounded interval, for exact additivity
        return (wt - ws).to(self.dtype), space_time_area(ws, is_, wt, it, h).to(self.dtype)
