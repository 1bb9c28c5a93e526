"""The sampling problem that :func:`sample` hands to :func:`solvers.sdeint`.

The driver integrates forward in ``u = t_start - t`` (sampling runs from
``t_start`` down to ``t_end``); every grid point keeps its exact ``t`` (a
table, not ``t_start - u``), so ``σ(t_end) = 0`` stays exactly zero.
Schemes ask the problem for per-coordinate ``α``, ``σ``, ``λ`` and for the
data prediction ``D``; the problem counts model evaluations and records the
outputs at the step starts, which multistep schemes read back (it is built
afresh for every solve, so schemes stay stateless).
"""

from __future__ import annotations

import bisect
import collections
import math

import torch

import solvers

__all__ = ["DenoisingProblem", "StepNoise"]


class DenoisingProblem(solvers.SDE):
    """Reverse-time diffusion in ``u = t_start - t`` with a denoiser ``D(x, t)``.

    ``drift``/``diffusion`` are the probability-flow ODE (``stochastic=False``)
    or the reverse SDE, ``dx/du = -(f x - w g² s)``, ``s = -(x - αD)/σ²``, so
    that the driver's shape checks (and any classical scheme) see the true
    equation; the sampler schemes use :meth:`denoise` and the schedule instead.
    """

    HISTORY = 4
    """How many step starts :meth:`previous` can read back (the current one included)."""

    def __init__(self, denoise, noising, times, like, stochastic):
        self.model, self.noising = denoise, noising
        self.t_start = float(times[0])
        self.u_grid = [self.t_start - t for t in times]
        self.u_grid[0] = 0.0
        self._t = dict(zip(self.u_grid, times))
        self._index = {u: i for i, u in enumerate(self.u_grid)}
        # a point off by round-off snaps to a grid node: within 1e-12, and within a quarter of the gaps on
        # either side (near t = 0 the nodes of u = t_start - t can lie closer than 1e-12: fine grids to
        # sigma_min ~ 1e-6 take steps of ~1e-12 there, and two nodes must not snap to one)
        scale = 1e-12 * max(1.0, abs(self.u_grid[-1]))
        gaps = [b - a for a, b in zip(self.u_grid, self.u_grid[1:])]
        self._tol = [min([scale] + [0.25 * g for g in gaps[max(0, i - 1): i + 1]]) for i in range(len(self.u_grid))]
        self.noise_type = "additive" if stochastic else None
        self.like = like
        self.nfe = 0
        # (u, D, x) at the starts of the last HISTORY steps: enough for every multistep scheme here, and a
        # bounded working set lets the allocator reuse the freed outputs of older steps (a list holding every
        # step's D and x made each new state a fresh allocation, page faults and all: 2-3x slower on CPU)
        self.history = collections.deque(maxlen=self.HISTORY)
        self.brownian = None  # the solve's noise source, (s, t) -> ΔW in u, for schemes with stages
        self._last = None
        self._cache = {}

    # --- schedule, per coordinate
    def time(self, u):
        """``t`` of ``u``: the grid's exact time at a grid point (also at ``u + h`` off by round-off)."""
        t = self._t.get(u)
        if t is not None:
            return t
        i = bisect.bisect_left(self.u_grid, u)
        for j in (i - 1, i):
            if 0 <= j < len(self.u_grid) and abs(self.u_grid[j] - u) <= self._tol[j]:
                return self._t[self.u_grid[j]]
        return self.t_start - u

    def _key(self, u):
        i = bisect.bisect_left(self.u_grid, u)
        for j in (i - 1, i):
            if 0 <= j < len(self.u_grid) and abs(self.u_grid[j] - u) <= self._tol[j]:
                return self.u_grid[j]
        return u

    def _get(self, key, u, make):
        k = (key, self._key(u))
        if k not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[k] = make(self.time(u))
        return self._cache[k]

    def alpha_sigma(self, u):
        return self._get("as", u, lambda t: self.noising.alpha_sigma(t, like=self.like))

    def log_snr(self, u):
        """``λ = log α - log σ`` per coordinate (``+∞`` where ``σ = 0``)."""
        a, s = self.alpha_sigma(u)
        return self._get("lam", u, lambda t: torch.log(a) - torch.log(s))

    def reaches_zero(self, u):
        """Whether some coordinate's ``σ`` is zero at ``u`` (read from the schedules on the host, so a solve
        on a GPU does not wait for the device to answer it)."""
        return self._get("zero", u, lambda t: any(s.var(t) <= 0 for s in self.noising.schedules))

    def steps_left(self, u):
        """Steps from ``u`` to the end of the grid (``None`` off the grid)."""
        i = self._index.get(self._key(u))
        return None if i is None else len(self.u_grid) - 1 - i

    def time_at_sigma_hat(self, u1, u2, target, band=None):
        """The ``u`` in ``[u1, u2]`` at which the reference ``σ̂`` equals ``target``."""
        from ._noising import time_of_sigma_hat

        t1, t2 = self.time(u1), self.time(u2)
        t = time_of_sigma_hat(self.noising, target, min(t1, t2), max(t1, t2), band)
        return self.t_start - t

    # --- the model
    def denoise(self, u, x, record=True):
        """``D(x, t(u))``; one model evaluation unless the same ``(u, x)`` was just evaluated."""
        last = self._last
        if last is not None and last[0] == u and last[1] is x:
            D = last[2]
        else:
            D = self.model(x, self.time(u))
            if not isinstance(D, torch.Tensor) or D.shape != x.shape:
                got = tuple(D.shape) if isinstance(D, torch.Tensor) else type(D).__name__
                raise ValueError(f"model: returned {got} at t={self.time(u):g}, expected x's shape {tuple(x.shape)}")
            self.nfe += 1
            self._last = (u, x, D)
        if record:
            if self.history and self.history[-1][0] == u:
                self.history[-1] = (u, D, x)
            else:
                self.history.append((u, D, x))
        return D

    def normals(self, s, t):
        """Standard normals ``ΔW/√(t - s)`` of the solve's own Brownian source over ``[s, t]`` (in ``u``).

        For schemes that need the noise of part of a step (an intermediate stage): pieces of one step are
        independent and add up to the ``ΔW`` the driver hands the step.
        """
        if self.brownian is None:
            raise ValueError("brownian: this problem has no noise source (a stochastic scheme needs one)")
        return self.brownian(s, t) / math.sqrt(t - s)

    def previous(self, u, k):
        """The ``k`` recorded ``(u', D', x')`` before ``u`` on this trajectory, newest first (fewer if not there;
        at most ``HISTORY - 1``)."""
        out = []
        hist = self.history
        if not hist or hist[-1][0] != u:
            return out
        i = len(hist) - 2
        while i >= 0 and len(out) < k:
            out.append(hist[i])
            i -= 1
        return out

    # --- the SDE protocol (true drift, for the driver's checks and classical schemes)
    def drift(self, u, x):
        t = self.time(u)
        a, s = self.alpha_sigma(u)
        f, g2 = self.noising.drift_diffusion(t, like=x)
        w = 0.5 if self.noise_type is None else 1.0
        D = self.denoise(u, x, record=False)
        return -(f * x + w * g2 * (x - a * D) / (s * s))

    def diffusion(self, u, x):
        _, g2 = self.noising.drift_diffusion(self.time(u), like=x)
        return g2.sqrt()


class StepNoise:
    """Per-sample standard normals per grid step, ``ΔW = √h ξ``: batch-size independent.

    ``ξ_k`` of step ``k`` is the increment ``W(k+1) - W(k)`` of a
    :class:`solvers.BrownianPath` on ``[0, 2^m]`` (integer times lie on its
    dyadic grid): a deterministic function of ``(seed, k, sample id, element)``,
    so the same seed gives every sample the same noise for any batch size.
    """

    has_levy_area = False

    def __init__(self, shape, u_grid, seed, dtype, device, sample_ids=None):
        steps = len(u_grid) - 1
        span = 2 ** max(1, math.ceil(math.log2(max(steps, 1))))
        self.path = solvers.BrownianPath(shape, 0.0, float(span), seed=seed, dtype=dtype, device=device,
                                         sample_ids=sample_ids)
        self.index = {u: i for i, u in enumerate(u_grid)}
        self.grid = list(u_grid)
        self.cuts = {}  # step -> the one interior point it is cut at

    def increment(self, s, t):
        """``ΔW`` over ``[s, t]``: a whole grid step (``s`` a grid time), or a piece of one cut at one point.

        A step ``k`` (``[u_k, u_{k+1}]``, length ``H``, ``ΔW = √H Z`` with ``Z`` the path's increment over
        ``[k, k+1]``) may be cut at one interior point ``c = u_k + f H`` (a two-stage scheme's stage). The
        piece up to it is the Brownian bridge's value there,
        ``√H (f Z + √(f(1-f)) N)``, ``N = 2 W(k+½) - W(k) - W(k+1)`` a standard normal independent of ``Z``;
        the piece after it is the rest of ``ΔW``. So the pieces add up to the step's ``ΔW``, are independent,
        have variances ``c - u_k`` and ``u_{k+1} - c``, and are still a function of ``(seed, k, sample id,
        element)`` drawn on the path's dyadic grid (an off-grid query of the path would descend ~50 levels). A
        second, different cut in the same step is refused.
        """
        k = self.index.get(s)
        if k is not None and (k + 1 >= len(self.grid) or t >= self.grid[k + 1]):
            return self.path.increment(k, k + 1) * math.sqrt(t - s)
        k = bisect.bisect_right(self.grid, s) - 1
        if not 0 <= k < len(self.grid) - 1 or t > self.grid[k + 1] * (1 + 1e-12) + 1e-15 or t <= s:
            raise ValueError(f"StepNoise: [{s!r}, {t!r}] is not inside one grid step of this solve")
        u0, u1 = self.grid[k], self.grid[k + 1]
        if s > u0 and t < u1 * (1 - 1e-12) - 1e-15:
            raise ValueError(f"StepNoise: [{s!r}, {t!r}] has both ends inside step {k}; it cuts a step at one point")
        cut = t if s == u0 else s
        if self.cuts.setdefault(k, cut) != cut:
            raise ValueError(f"StepNoise: step {k} is already cut at {self.cuts[k]!r}, not at {cut!r}")
        H, f = u1 - u0, (cut - u0) / (u1 - u0)
        Z = self.path.increment(k, k + 1)
        N = 2 * self.path.increment(k, k + 0.5) - Z
        head = math.sqrt(H) * (f * Z + math.sqrt(f * (1 - f)) * N)
        return head if s == u0 else math.sqrt(H) * Z - head

    __call__ = increment
