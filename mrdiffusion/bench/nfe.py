"""Error against model evaluations (NFE) on the bench problems, per scheme and time grid, without Monte-Carlo error.

Every bench problem is linear in band coordinates with additive noise, and
every scheme studied here is affine in ``(x, ΔW)`` on such a problem, so the
law of its end state is Gaussian and computable exactly from impulse
responses: sample 0 gets no noise (its end state is the scheme's mean), sample
``j`` gets ``√h_j`` at step ``j`` only (its deviation from sample 0 is the
response ``G_j √h_j``), and ``Var = Σ_j (G_j √h_j)²``. The *weak error* of a
run is then exact: at ``T``, per Haar band, the RMS over the band's
coefficients of the standardised mean bias ``|m̂ − m|/√v`` and of the relative
variance error ``|v̂ − v|/v``; the largest of the two over the bands (the
bench cells' metric at ``T``, without its Monte-Carlo floor).

Time grids (from :mod:`mrdiffusion.sampling`): ``uniform`` — ``UniformTime``
with the activation times added; ``activation-refined`` —
``ActivationRefined(activation_times)``, steps growing geometrically away
from every activation (the point-mass start). NFE is the driver's count of
drift evaluations.
"""

from __future__ import annotations

import math

import torch

import solvers
from mrdiffusion.sampling import ActivationRefined, UniformTime

__all__ = ["NFE_SCHEMES", "NFE_STEPS", "GRIDS", "TOLERANCE", "grid_times", "exact_end_law", "weak_error_at_T",
           "nfe_study", "cheapest_nfe"]

TOLERANCE = 0.05
"""The weak error the report's table asks for (the cheapest NFE reaching it)."""

NFE_SCHEMES = ("EulerMaruyama", "Heun", "ExponentialEuler", "ExponentialHeun", "DriftImplicitEuler")
"""The schemes of the study (all affine in ``(x, ΔW)`` on a linear problem with additive noise)."""

NFE_STEPS = (4, 8, 16, 32, 64)
"""Step budgets; the NFE is what the driver counts for them."""

GRIDS = ("uniform", "activation-refined")


def grid_times(grid, steps, times, T):
    """The time grid ``[0, …, T]`` of ``steps`` steps holding every activation time ``times[1:]``."""
    acts = [float(t) for t in times[1:] if 0.0 < float(t) < T]
    if grid == "uniform":
        return sorted(set(UniformTime()(steps, 0.0, T)) | set(acts))
    if grid == "activation-refined":
        return ActivationRefined(activation_times=tuple(acts))(max(steps, len(acts) + 1), 0.0, T)
    raise ValueError(f"grid: expected one of {GRIDS}, got {grid!r}")


def exact_end_law(prob, scheme, ts):
    """``(mean, var, nfe)`` at ``T`` of ``scheme`` on problem ``prob`` (a bench :class:`Problem`) on the grid ``ts``.

    The band view, level by level through :func:`solvers.sdeint`, one step between consecutive grid times.
    """
    proc = prob.proc
    steps = len(ts) - 1
    y = prob.start(steps + 1).to(torch.float64)
    shape = tuple(y.shape)
    count = [0]

    def impulses(s, t):
        out = torch.zeros(shape, dtype=torch.float64, device=y.device)
        out[count[0] + 1] = math.sqrt(abs(t - s))
        count[0] += 1
        return out

    nfe = 0
    for lev in proc.levels:
        inner = [t for t in ts if lev.t_start < t < lev.t_end]
        y, info = solvers.sdeint(proc.band_sde(lev.index), y, [lev.t_start, lev.t_end], scheme, tstops=inner,
                                 brownian=impulses, return_info=True, max_abs=1e30)
        y = y[-1]
        nfe += info.nfe
    if count[0] != steps:
        raise RuntimeError(f"expected {steps} steps, the driver took {count[0]}")
    return y[0], (y[1:] - y[0]).square().sum(0), nfe


def weak_error_at_T(prob, mean, var):
    """Largest over bands of the RMS standardised mean bias and the RMS relative variance error at ``T``."""
    m, v = prob.moments(prob.T)
    m, v = m.to(mean), v.to(var)
    worst = 0.0
    for k in range(prob.K):
        sel = prob.band == k
        bias = ((mean - m)[..., sel].square() / v[..., sel]).mean().sqrt()
        rel = ((var - v)[..., sel] / v[..., sel]).square().mean().sqrt()
        e = max(float(bias), float(rel))
        if not math.isfinite(e):
            return math.inf
        worst = max(worst, e)
    return worst


def nfe_study(config, ws, *, schemes=NFE_SCHEMES, steps=NFE_STEPS, grids=GRIDS):
    """One record per (problem, scheme, grid, steps): ``{problem, solver, grid, steps, nfe, weak_error}``.

    ``weak_error`` is ``None`` where the scheme's law is not finite (it diverged).
    """
    rows = []
    for spec in config.problems:
        prob = ws.problem(spec.name)
        for name in schemes:
            scheme = solvers.SCHEMES[name]()
            for grid in grids:
                for n in steps:
                    ts = grid_times(grid, n, prob.times, prob.T)
                    with torch.no_grad():
                        mean, var, nfe = exact_end_law(prob, scheme, ts)
                    err = weak_error_at_T(prob, mean, var)
                    rows.append({"problem": spec.name, "solver": name, "grid": grid, "steps": len(ts) - 1,
                                 "nfe": nfe, "weak_error": err if math.isfinite(err) else None})
    return rows


def cheapest_nfe(rows, problem, solver, grid, tol=TOLERANCE):
    """The smallest NFE of the study at which the weak error is ``<= tol`` (``None``: not within the budgets)."""
    ok = [r["nfe"] for r in rows if (r["problem"], r["solver"], r["grid"]) == (problem, solver, grid)
          and r["weak_error"] is not None and r["weak_error"] <= tol]
    return min(ok) if ok else None
