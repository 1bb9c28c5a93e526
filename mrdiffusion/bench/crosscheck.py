"""Cross-checks against peers that implement the same scheme, on the same noise.

- :class:`solvers.EulerMaruyama` against ``torchsde.sdeint(method="euler")`` and
  :class:`solvers.SRA1` against ``torchsde.sdeint(method="srk")`` (torchsde's
  additive-noise SRK is Rößler's SRA1), on the band view of a 3-level (4×4)
  instance of each configured problem, flattened to ``(batch, d)`` as torchsde
  needs, both driven by one ``torchsde.BrownianInterval`` with a dyadic step;
- :class:`solvers.RK4` through :func:`solvers.sdeint` against torchdiffeq's
  ``dopri5`` (:func:`solvers.odeint_torchdiffeq`) on the probability-flow ODE
  of :class:`~mrdiffusion.processes.BandNoising` with the exact score of
  Gaussian data, and both against the exact flow (for 1-D Gaussian marginals
  ``N(m_t, s_t²)`` the flow keeps ``(y − m_t)/s_t`` constant).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

import solvers

from .config import ProblemSpec
from .problems import build_process

__all__ = ["run_crosschecks", "sde_vs_torchsde", "ode_vs_torchdiffeq"]


def _small(spec, levels=3):
    """The first ``levels`` levels of a problem: every per-level parameter (a tuple of one value per level) cut."""
    p = dict(spec.params)
    K = len(p["levels"])
    if K > levels:
        p = {k: v[:levels] if isinstance(v, tuple) and len(v) == K else v for k, v in p.items()}
    return replace(spec, params=tuple(sorted(p.items())))


class _TorchsdeBand(torch.nn.Module):
    """The band view of one level as a torchsde module on flattened ``(batch, C·n)`` states."""

    sde_type = "ito"

    def __init__(self, sde, shape, noise_type):
        super().__init__()
        self.sde, self.shape, self.noise_type = sde, shape, noise_type

    def f(self, t, y):
        return self.sde.drift(float(t), y.view(self.shape)).reshape(y.shape)

    def g(self, t, y):
        g = self.sde.diffusion(float(t), y.view(self.shape)).expand(self.shape).reshape(y.shape)
        return g if self.noise_type == "diagonal" else torch.diag_embed(g)


class _Unflatten(solvers.BrownianSource):
    """torchsde's ``(batch, C·n)`` Brownian interval seen with the band view's shape ``(batch, C, n)``."""

    def __init__(self, bm, shape):
        self.bm, self.shape = solvers.as_brownian(bm), shape
        self.has_levy_area, self.t0, self.t1 = self.bm.has_levy_area, self.bm.t0, self.bm.t1

    def increment(self, s, t):
        return self.bm.increment(s, t).view(self.shape)

    def space_time(self, s, t):
        dW, U = self.bm.space_time(s, t)
        return dW.view(self.shape), U.view(self.shape)


def sde_vs_torchsde(spec: ProblemSpec, ours, method, *, paths=8, dt=1 / 32, seed=0):
    """Largest difference between ``ours`` (the band-view schedule through :func:`solvers.integrate`) and
    torchsde's ``method`` (level by level) on one BrownianInterval."""
    import torchsde

    proc = build_process(spec)
    y = proc.initial_state(paths, "bands")
    shape = tuple(y.shape)
    bm = torchsde.BrownianInterval(t0=0.0, t1=proc.T, size=(paths, shape[1] * shape[2]), dtype=torch.float64,
                                   entropy=seed, levy_area_approximation="space-time")
    noise_type = "additive" if method == "srk" else "diagonal"
    ya = solvers.integrate(proc.schedule("bands", band_brownian=_Unflatten(bm, shape)), y, [0.0, proc.T], ours,
                           dt=dt).ys[-1]
    yb = y.reshape(paths, -1)
    for lev in proc.levels:  # the peer has no level schedule: one torchsde.sdeint per level (g at t + h stays on it)
        span = torch.tensor([lev.t_start, lev.t_end], dtype=torch.float64)
        yb = torchsde.sdeint(_TorchsdeBand(proc.band_sde(lev.index), shape, noise_type), yb, span, bm=bm,
                             method=method, dt=dt)[-1]
    diff = float((ya.reshape(paths, -1) - yb).abs().max())
    return diff, float(yb.abs().max())


def ode_vs_torchdiffeq(*, shape=(8, 8), levels=3, paths=16, dt=1 / 256, seed=0):
    """RK4 via sdeint vs dopri5 via torchdiffeq on a probability-flow ODE; differences to each other and to exact."""
    from ..processes import BandNoising, VPSchedule, gaussian_score

    gen = torch.Generator().manual_seed(seed)
    nz = BandNoising(shape, levels, schedules=VPSchedule())
    n = nz.layout.n
    mean = torch.randn(1, n, generator=gen, dtype=torch.float64)
    var = torch.rand(1, n, generator=gen, dtype=torch.float64) + 0.2
    ode = nz.probability_flow(gaussian_score(nz, mean, var))
    a_T, v_T = nz.marginal(1.0)
    s_T = (a_T**2 * var + v_T).sqrt()
    y_T = a_T * mean + s_T * torch.randn(paths, 1, n, generator=gen, dtype=torch.float64)
    ours = solvers.sdeint(ode, y_T, [0.0, 1.0], solvers.RK4(), dt=dt)[-1]
    peer, nfe = solvers.odeint_torchdiffeq(ode, y_T, [0.0, 1.0], method="dopri5", rtol=1e-10, atol=1e-12,
                                           return_nfe=True)
    peer = peer[-1]
    exact = mean + var.sqrt() * (y_T - a_T * mean) / s_T  # t = 0: α = 1, v = 0
    return {"diff": float((ours - peer).abs().max()), "ours_vs_exact": float((ours - exact).abs().max()),
            "peer_vs_exact": float((peer - exact).abs().max()), "scale": float(exact.abs().max()), "peer_nfe": nfe}


def run_crosschecks(config, log=None):
    """All cross-checks; a list of JSON-able records with the largest differences."""
    out = []
    kinds_seen = set()
    for spec in config.problems:
        if spec.kind in kinds_seen:
            continue
        kinds_seen.add(spec.kind)
        small = _small(spec)
        for ours, method in ((solvers.EulerMaruyama(), "euler"), (solvers.SRA1(), "srk")):
            t0 = time.perf_counter()
            diff, scale = sde_vs_torchsde(small, ours, method, seed=config.seed)
            out.append({"check": f"{ours.name} vs torchsde {method}", "problem": f"{spec.name} (3 levels, 4×4)",
                        "ours": ours.name, "peer": f"torchsde.sdeint(method={method!r})", "dt": 1 / 32,
                        "max_abs_diff": diff, "max_abs_value": scale, "ok": bool(diff <= 1e-10 * max(1.0, scale)),
                        "wall_s": time.perf_counter() - t0,
                        "note": "same torchsde.BrownianInterval (space-time Lévy area), band view flattened to "
                                "(batch, d)"})
    t0 = time.perf_counter()
    r = ode_vs_torchdiffeq()
    out.append({"check": "RK4 vs torchdiffeq dopri5", "problem": "probability-flow ODE of BandNoising (8×8, VP), "
                "exact score of Gaussian data", "ours": "RK4 (sdeint, dt=1/256)",
                "peer": "torchdiffeq dopri5 (rtol 1e-10, atol 1e-12)", "dt": 1 / 256, "max_abs_diff": r["diff"],
                "max_abs_value": r["scale"], "ours_vs_exact": r["ours_vs_exact"], "peer_vs_exact": r["peer_vs_exact"],
                "peer_nfe": r["peer_nfe"], "ok": bool(r["diff"] <= 1e-6 * max(1.0, r["scale"])),
                "wall_s": time.perf_counter() - t0, "note": "exact flow keeps (y - m_t)/s_t constant"})
    if log:
        worst = max(out, key=lambda c: c["max_abs_diff"])
        log(f"mrdiffusion bench: cross-checks done; largest difference {worst['max_abs_diff']:.3g} ({worst['check']})")
    return out
