"""Time grids as objects: ``grid(steps, t_start, t_end, noising) -> [t_0 = t_start, …, t_steps = t_end]``.

Any scheme takes any grid. Grids defined by the noise level read a
*reference* ``σ̂ = σ/α``: by default the largest over the Haar bands (so that a
grid stopping at ``sigma_min`` leaves every band below it before the last
step), or band ``band``'s; the other bands follow at the same times, each at
its own ``λ``. When the end has ``σ = 0`` (``λ = +∞``, the usual
``t_end = 0``) these grids stop at ``sigma_min`` and take one last step to
``t_end``, as k-diffusion's ``get_sigmas_*`` append a zero.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from ._noising import sigma_hat, time_of_sigma_hat

__all__ = ["Grid", "UniformTime", "UniformLogSNR", "EDMRho", "BandwiseEDMRho", "ActivationRefined"]


def _check_steps(steps):
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")


class Grid:
    """Base class: ``__call__(steps, t_start, t_end, noising=None)`` returns ``steps + 1`` times."""

    def __call__(self, steps, t_start, t_end, noising=None):  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class UniformTime(Grid):
    """Equal steps in ``t`` (with :class:`~mrdiffusion.processes.VESchedule` that is a geometric σ grid)."""

    def __call__(self, steps, t_start, t_end, noising=None):
        _check_steps(steps)
        ts = [t_start + (t_end - t_start) * k / steps for k in range(steps + 1)]
        ts[-1] = t_end
        return ts


class _NoiseLevelGrid(Grid):
    """Shared logic: a list of reference ``σ̂`` levels turned into times by inversion."""

    def levels(self, n, s_start, s_end):  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, steps, t_start, t_end, noising=None):
        _check_steps(steps)
        if noising is None:
            raise ValueError(f"noising: {type(self).__name__} needs the noise schedule to place its times")
        band = self.band
        lo, hi = min(t_start, t_end), max(t_start, t_end)
        s_start, s_end = sigma_hat(noising, t_start, band), sigma_hat(noising, t_end, band)
        to_zero = s_end == 0.0
        if to_zero:
            if steps == 1:
                return [t_start, t_end]
            s_end = min(self.sigma_min, s_start)
            n = steps - 1
        else:
            n = steps
        sig = self.levels(n, s_start, s_end)
        ts = [t_start] + [time_of_sigma_hat(noising, s, lo, hi, band) for s in sig[1:-1]]
        ts.append(time_of_sigma_hat(noising, s_end, lo, hi, band) if to_zero else t_end)
        if to_zero:
            ts.append(t_end)
        return ts


@dataclass(frozen=True)
class UniformLogSNR(_NoiseLevelGrid):
    """Equal steps in the log-SNR ``λ = log(α/σ)`` of the reference band (k-diffusion's ``get_sigmas_exponential``)."""

    sigma_min: float = 0.002
    band: int = None

    def levels(self, n, s_start, s_end):
        a, b = math.log(s_start), math.log(s_end)
        return [math.exp(a + (b - a) * k / n) for k in range(n + 1)]


@dataclass(frozen=True)
class EDMRho(_NoiseLevelGrid):
    """Karras et al.'s ``σ̂_i = (σ̂_max^{1/ρ} + i/n (σ̂_min^{1/ρ} - σ̂_max^{1/ρ}))^ρ`` (``get_sigmas_karras``)."""

    rho: float = 7.0
    sigma_min: float = 0.002
    band: int = None

    def levels(self, n, s_start, s_end):
        a, b = s_start ** (1 / self.rho), s_end ** (1 / self.rho)
        return [(a + (b - a) * k / n) ** self.rho for k in range(n + 1)]


@dataclass(frozen=True)
class BandwiseEDMRho(Grid):
    """EDM's ρ grid for every Haar band at once: equal steps in the *largest* per-band change of ``σ̂_k^{1/ρ}``.

    With per-band schedules each band ``k`` has its own ``σ̂_k(t)`` and passes
    from noise to data at its own time; a ρ grid in one band's ``σ̂`` starves
    the others. This grid places ``t_0 = t_start > … > t_n`` so that the
    arc length ``s(t) = ∫ max_k |d σ̂_k^{1/ρ} / dt| dt`` has equal steps:
    no band takes a step larger, in its own ρ-coordinate, than the common one,
    and where one band is resolved the bands that move faster set the pace.
    It depends on the schedules only, not on the data. With one schedule for
    every band it *is* :class:`EDMRho` (delegated, same times). The span ends
    where the noisiest band reaches ``sigma_min``, then one step to ``σ = 0``,
    as :class:`EDMRho`. The arc is tabulated on ``table`` points geometric in
    ``t`` and inverted by interpolation.
    """

    rho: float = 7.0
    sigma_min: float = 0.002
    table: int = 4000

    def __call__(self, steps, t_start, t_end, noising=None):
        _check_steps(steps)
        if noising is None:
            raise ValueError("noising: BandwiseEDMRho needs the noise schedule to place its times")
        scheds = noising.schedules
        single = EDMRho(self.rho, self.sigma_min)
        if all(s == scheds[0] for s in scheds):
            return single(steps, t_start, t_end, noising)
        lo, hi = min(t_start, t_end), max(t_start, t_end)
        to_zero = sigma_hat(noising, t_end) == 0.0
        t_stop = time_of_sigma_hat(noising, self.sigma_min, lo, hi) if to_zero else t_end
        n = steps - 1 if to_zero else steps
        if n < 1 or not 0.0 < t_stop < t_start:
            return single(steps, t_start, t_end, noising)
        m = self.table
        ts = [t_stop * (t_start / t_stop) ** (i / m) for i in range(m + 1)]
        coords = [[(math.sqrt(max(s.var(t), 0.0)) / s.alpha(t)) ** (1.0 / self.rho) for s in scheds] for t in ts]
        arc = [0.0]
        for a, b in zip(coords, coords[1:]):
            arc.append(arc[-1] + max(abs(x - y) for x, y in zip(a, b)))
        out = [t_start]
        for j in range(1, n):
            target = arc[-1] * (1.0 - j / n)
            i = min(max(bisect.bisect_left(arc, target), 1), m)
            f = (target - arc[i - 1]) / (arc[i] - arc[i - 1]) if arc[i] > arc[i - 1] else 0.0
            out.append(ts[i - 1] * (ts[i] / ts[i - 1]) ** f)
        out.append(t_stop)
        if to_zero:
            out.append(t_end)
        return out


@dataclass(frozen=True)
class ActivationRefined(Grid):
    """For multi-resolution processes: steps growing geometrically away from every activation time.

    A band activated at ``t_k`` starts from a point mass, where drifts of the form
    ``-Z/(t - t_k + ε)`` are stiff and an explicit scheme is stable only for steps
    ``h ≲ (t - t_k + ε)`` (docs/design.md §2.3). Each segment between activation times
    (``activation_times`` inside the span) gets steps in proportion to its length
    (at least one), placed at ``τ_j = δ[(1 + L/δ)^{j/m} - 1]`` from its start:
    steps proportional to ``τ + δ``. ``scale`` is ``δ`` (default: ``L/100``).
    """

    activation_times: tuple = ()
    scale: float = None

    def __call__(self, steps, t_start, t_end, noising=None):
        _check_steps(steps)
        sign = 1.0 if t_end >= t_start else -1.0
        cuts = sorted({float(a) for a in self.activation_times
                       if min(t_start, t_end) < float(a) < max(t_start, t_end)}, reverse=sign < 0)
        bounds = [t_start, *cuts, t_end]
        if steps < len(bounds) - 1:
            raise ValueError(f"steps: need at least one step per segment ({len(bounds) - 1}), got {steps}")
        lengths = [abs(b - a) for a, b in zip(bounds, bounds[1:])]
        total = sum(lengths)
        alloc = [1 + int((steps - len(lengths)) * L / total) for L in lengths]
        for i in sorted(range(len(alloc)), key=lambda i: -lengths[i])[: steps - sum(alloc)]:
            alloc[i] += 1
        ts = [t_start]
        for (a, b), m, L in zip(zip(bounds, bounds[1:]), alloc, lengths):
            d = self.scale if self.scale is not None else L / 100
            ts.extend(a + sign * d * ((1 + L / d) ** (j / m) - 1) for j in range(1, m))
            ts.append(b)
        return ts
