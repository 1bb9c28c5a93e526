"""Few-step ODE sampling on a nonlinear problem: a Gaussian mixture, error to the converged flow.

    python -m benchmarks.fewstep_mixture [--quick] [--out DIR] [--samples N] [--seed S] [--problems scalar,perband]

``benchmarks.fewstep`` measures samplers on Gaussian data, where every sampler
is affine per coordinate: errors can cancel and nine free grid times can
zero them (``docs/sampling.md``). Here the data are a mixture of 8 Gaussians
with diagonal covariances on the same 16 Haar band coefficients (component
means of the band's scale, component standard deviations half of it), so the
denoiser (:func:`~mrdiffusion.processes.gaussian_mixture_denoiser`, exact) is
nonlinear and the flow is known only numerically.

The metric needs no sampling floor: every *deterministic* sampler maps a
start ``x_T`` to an ``x_0``, and the error is the RMS over samples and
coordinates of its distance to the converged probability-flow solution from
the same ``x_T`` (the error DPM-Solver's papers report). The reference is
torchdiffeq's ``dopri5`` at ``rtol = atol = 1e-10`` on ``dx/dt = f x - ½ g²
∇log p_t(x)`` (in ``log t``) from ``t = T`` to ``t = 1e-10``, then ``x_0 = α D`` there (the
rest of the path is below round-off). It is checked against our
``ExponentialAdams(3)`` at 2000 steps of ``EDMRho(sigma_min=1e-6)``, an
independent scheme, and the gap is reported: 6e-8 to 3e-7 at 1024 starts
(that scheme converges to the reference at its order 3: 1.4e-6, 1.8e-7,
2.2e-8 at 500, 1000, 2000 steps on 64 starts), against errors of 3e-5 and
more in the tables. Stochastic samplers have no single solution to compare with and
are left out.

Contenders at 5, 10, 20, 40, 80 NFE: our ODE schemes × grids; k-diffusion's
deterministic samplers (euler, heun, lms, dpm_2, dpmpp_2m, dpmpp_2s_ancestral
and dpmpp_3m_sde with ``eta = 0``) on its Karras and exponential grids,
scalar problem only; classical schemes on ``BandNoising.probability_flow()``
with a uniform step (Euler, Heun, RK4, ExponentialEuler, ExponentialHeun).
Writes ``DIR/fewstep_mixture.{json,md,png}``.
"""

from __future__ import annotations

import math
import time

import torch

import solvers
from mrdiffusion.processes import gaussian_mixture_denoiser
from mrdiffusion.sampling import DEFAULT_GRID, DEFAULT_SOLVER, EDMRho, ExponentialAdams, sample

from .fewstep import (OUR_GRIDS, OUR_SCHEMES, _counted, build_problem, kd_denoiser, kd_grids, kd_steps, nfe_axes,
                      run_cli)

K = 8
T_EPS = 1e-10
KD_ODE = {"sample_euler": (lambda s: s, {}), "sample_heun": (lambda s: 2 * s - 1, {}),
          "sample_lms": (lambda s: s, {}), "sample_dpm_2": (lambda s: 2 * s - 1, {}),
          "sample_dpmpp_2m": (lambda s: s, {}), "sample_dpmpp_2s_ancestral": (lambda s: 2 * s - 1, {"eta": 0.0}),
          "sample_dpmpp_3m_sde": (lambda s: s, {"eta": 0.0})}
CLASSICAL_ODE = (("EulerMaruyama", 1), ("Heun", 2), ("RK4", 4), ("ExponentialEuler", 1), ("ExponentialHeun", 2))


def build_mixture(kind, seed=0):
    """``(noising, weights (K,), means (K, 1, n), variances (K, 1, n))`` on the ``benchmarks.fewstep`` schedules."""
    nz, _, var = build_problem(kind, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    scale = var.sqrt().reshape(1, 1, -1)
    w = 0.5 + torch.rand(K, generator=gen, dtype=torch.float64)
    means = scale * torch.randn(K, 1, scale.shape[-1], generator=gen, dtype=torch.float64)
    variances = (0.5 * scale).square().expand(K, 1, -1).clone()
    return nz, w / w.sum(), means, variances


def start_samples(nz, w, means, variances, n, seed):
    """Exact draws of the marginal at ``t = T``: a component, then its noised Gaussian."""
    gen = torch.Generator().manual_seed(seed)
    a, s = nz.alpha_sigma(nz.T)
    k = torch.multinomial(w, n, replacement=True, generator=gen)
    eps = torch.randn(n, *means.shape[1:], generator=gen, dtype=torch.float64)
    return a * means[k] + (a * a * variances[k] + s * s).sqrt() * eps


def reference(nz, D, x_T, rtol=1e-10):
    """The probability-flow solution from ``x_T`` by torchdiffeq's dopri5 (an independent solver)."""
    import torchdiffeq

    def rhs(log_t, x):  # in log t: near t = 0 the t-form amplifies the round-off of αD - x by 1/t
        tf = math.exp(float(log_t))
        a, s = nz.alpha_sigma(tf, like=x)
        f, g2 = nz.drift_diffusion(tf, like=x)
        score = (a * D(x, tf) - x) / (s * s)
        return tf * (f * x - 0.5 * g2 * score)

    ts = torch.tensor([math.log(nz.T), math.log(T_EPS)], dtype=torch.float64)
    with torch.no_grad():
        x_eps = torchdiffeq.odeint(rhs, x_T, ts, rtol=rtol, atol=rtol, method="dopri5")[-1]
        a, _ = nz.alpha_sigma(T_EPS, like=x_eps)
        return a * D(x_eps, T_EPS)


def rms(x, ref):
    d = (x - ref).reshape(-1)
    return float(d.square().mean().sqrt()) if torch.isfinite(d).all() else float("inf")


def median_error(x, ref):
    """The median over samples of each sample's RMS error: blind to the rare starts that change mode."""
    d = (x - ref).flatten(1)
    return float(d.square().mean(1).sqrt().median()) if torch.isfinite(d).all() else float("inf")


def errors(x, ref):
    return {"error": rms(x, ref), "median": median_error(x, ref)}


def run_ours(nz, D, x_T, ref, nfe):
    rows = []
    contenders = [(s, g, "ours") for s in OUR_SCHEMES if not s.stochastic for g in OUR_GRIDS]
    contenders.append((DEFAULT_SOLVER, DEFAULT_GRID, "default"))
    for scheme, grid, fam in contenders:
        f = _counted(D)
        x0, info = sample(f, nz, x_T, nfe=nfe, solver=scheme, grid=grid)
        rows.append({"family": fam, "sampler": repr(scheme), "grid": type(grid).__name__, "budget": nfe,
                     "nfe": f.calls, **errors(x0, ref)})
    return rows


def run_classical(nz, D, x_T, ref, nfe):
    rows = []

    def score(t, y):
        a, s = nz.alpha_sigma(t, like=y)
        return (a * D(y, t) - y) / (s * s)

    ode = nz.probability_flow(score)
    for name, per_step in CLASSICAL_ODE:
        steps = nfe // per_step
        if steps < 1:
            continue
        with torch.no_grad():
            x0 = solvers.sdeint(ode, x_T, [0.0, nz.T], getattr(solvers, name)(), dt=nz.T / steps, max_abs=1e12)[-1]
        rows.append({"family": "classical", "sampler": f"{name} on probability_flow()", "grid": "UniformTime",
                     "budget": nfe, "nfe": steps * per_step, **errors(x0, ref)})
    return rows


def run_kdiffusion(kd, nz, D, x_T, ref, nfe):
    rows = []

    denoiser = kd_denoiser(D)
    for name, (nfe_of, kwargs) in KD_ODE.items():
        steps = kd_steps(nfe, nfe_of)
        for gname, make in kd_grids(kd).items():
            f = _counted(denoiser)
            with torch.no_grad():
                x0 = getattr(kd, name)(f, x_T.clone(), make(steps).to(torch.float64), disable=True, **kwargs)
            rows.append({"family": "k-diffusion", "sampler": name, "grid": gname, "budget": nfe, "nfe": f.calls,
                         **errors(x0, ref)})
    return rows


def run(kind, samples, seed, nfes, kd):
    nz, w, means, variances = build_mixture(kind, seed)
    D = gaussian_mixture_denoiser(nz, w, means, variances)
    x_T = start_samples(nz, w, means, variances, samples, seed)
    t0 = time.perf_counter()
    ref = reference(nz, D, x_T)
    check, _ = sample(D, nz, x_T, nfe=2000, solver=ExponentialAdams(3), grid=EDMRho(sigma_min=1e-6))
    meta = {"reference_seconds": time.perf_counter() - t0, "reference_vs_ea3_2000": rms(check, ref),
            "data_rms": float(ref.square().mean().sqrt())}
    rows = []
    for nfe in nfes:
        rows += run_ours(nz, D, x_T, ref, nfe)
        rows += run_classical(nz, D, x_T, ref, nfe)
        if kd is not None and kind == "scalar":
            rows += run_kdiffusion(kd, nz, D, x_T, ref, nfe)
    return {"problem": kind, "samples": samples, **meta, "rows": rows}


def best(rows, family, budget, by="error"):
    cand = [r for r in rows if r["family"] in family and r["budget"] == budget]
    return min(cand, key=lambda r: r[by]) if cand else None


def summarize(res, nfes):
    rows, out = res["rows"], []
    out.append(f"### mixture, `{res['problem']}` schedule: {res['samples']} starts; reference (dopri5, 1e-10) vs "
               f"ExponentialAdams(3), 2000 steps: {res['reference_vs_ea3_2000']:.2g} (data RMS "
               f"{res['data_rms']:.3g})\n")
    for by, what in (("error", "RMS over starts and coordinates"), ("median", "median over starts of the RMS")):
        out.append(f"Error to the converged flow, {what}:\n")
        out.append("| NFE budget | ours best (scheme, grid, NFE) | default | k-diffusion best | classical best |")
        out.append("|---|---|---|---|---|")
        for n in nfes:
            cells = []
            for fam in (("ours", "default"), ("default",), ("k-diffusion",), ("classical",)):
                b = best(rows, fam, n, by)
                cells.append("–" if b is None else f"{b[by]:.3g} ({b['sampler']}, {b['grid']}, {b['nfe']})")
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("Every row, RMS / median (NFE used):\n")
    out.append("| family | sampler | grid | " + " | ".join(f"NFE≤{n}" for n in nfes) + " |")
    out.append("|---|---|---|" + "---|" * len(nfes))
    keys = list(dict.fromkeys((r["family"], r["sampler"], r["grid"]) for r in rows))
    for k in keys:
        vals = []
        for n in nfes:
            r = next((r for r in rows if (r["family"], r["sampler"], r["grid"]) == k and r["budget"] == n), None)
            vals.append("–" if r is None else f"{r['error']:.3g} / {r['median']:.3g} ({r['nfe']})")
        out.append(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def plot(results, nfes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.8), squeeze=False)
    styles = {"ours": "-", "default": "-", "k-diffusion": "--", "classical": ":"}
    labels = {"ours": "ours (best scheme × grid)", "default": "ours (default)",
              "k-diffusion": "k-diffusion (best ODE sampler × grid)", "classical": "classical (best, uniform t)"}
    for ax, res in zip(axes[0], results):
        for fam, color in (("default", "C3"), ("ours", "C0"), ("k-diffusion", "C1"), ("classical", "C2")):
            pts = [(b["nfe"], b["error"]) for n in nfes if (b := best(res["rows"], (fam,), n)) is not None]
            pts = [(x, y) for x, y in pts if math.isfinite(y) and y > 0]
            if pts:
                ax.plot(*zip(*pts), styles[fam], marker="o", color=color, label=labels[fam])
            med = [(b["nfe"], b["median"]) for n in nfes if (b := best(res["rows"], (fam,), n, "median")) is not None]
            med = [(x, y) for x, y in med if math.isfinite(y) and y > 0]
            if med:
                ax.plot(*zip(*med), styles[fam], marker="o", mfc="white", lw=0.8, alpha=0.8, color=color,
                        label=f"{labels[fam]}, median")
        ax.axhline(max(res["reference_vs_ea3_2000"], 1e-16), color="k", lw=0.8, ls="-.",
                   label="reference vs ExponentialAdams(3), 2000 steps")
        nfe_axes(ax, nfes)
        ax.set_ylabel("distance to the converged ODE solution\n(filled: RMS; hollow: median over starts)")
        what = "one VE schedule" if res["problem"] == "scalar" else "per-band VE (fine bands noised faster)"
        ax.set_title(f"{res['problem']}: mixture of {K} Gaussians on 16 band coefficients,\n{what}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    run_cli(argv, prog="python -m benchmarks.fewstep_mixture", doc=__doc__, unit="starts", default=1024, quick=64, minimum=1,
            stem="fewstep_mixture", run=run, summarize=summarize, plot=plot, meta={"components": K})


if __name__ == "__main__":
    main()
