"""Few-step sampling against k-diffusion on Gaussian data with the exact score.

    python -m benchmarks.fewstep [--quick] [--out DIR] [--samples N] [--seed S] [--problems scalar,perband]

Problem: Gaussian data on 16 Haar band coefficients (a 4×4 image, two Haar
levels; variance ``2^{-1.5·level}``, random means), variance-exploding noising
to ``σ_max = 50``, the exact denoiser. Every sampler starts from the same exact
samples of the marginal at ``σ_max`` (and stochastic ones get seeded noise) and
gets a budget of 5, 10, 20, 40, 80 model evaluations (NFE); the table reports
the NFE actually used. Error: the RMS over coordinates of the per-coordinate
2-Wasserstein distance from the law of the samples to the data law,
``W2² = (m̂ - μ)² + (ŝ - s)²`` with the sample mean and standard deviation
(every sampler here maps Gaussians to Gaussians, so this is the W2 of the law
the samples estimate). The *floor* is the same error for exact data samples
of the same size (its mean over 8 draws): no sampler can be told apart below it.

Two sampled errors per row, on the same noise seeds: ``error`` from i.i.d. starts and ``error_lhs`` from Latin
hypercube starts (:mod:`benchmarks._lhs`: one start per equal-probability stratum of each coordinate, each start
still an exact draw of the marginal at ``σ_max``). LHS starts have nearly exact per-coordinate moments, so a
deterministic sampler here (affine and monotone per coordinate) has ``error_lhs`` close to its exact-law error
(``exact``), down to the *LHS floor* (the same metric on LHS samples of the data law) far below the i.i.d. floor;
a stochastic sampler keeps the Monte-Carlo noise of its own draws.

Contenders, all in this process on the same samples:
- ours: every :mod:`mrdiffusion.sampling` scheme × grid (uniform t, uniform
  log-SNR, EDM ρ = 7);
- k-diffusion 0.1.1.post1 (optional; ``pip install --no-deps
  k-diffusion==0.1.1.post1``): euler, heun, lms, dpmpp_2m, dpmpp_2m_sde,
  dpmpp_3m_sde, dpmpp_sde, euler_ancestral on its Karras and exponential grids;
- classical schemes on ``BandNoising.reverse()`` / ``probability_flow()``
  with a uniform step in ``t``: EulerMaruyama, Heun, RK4, ExponentialEuler,
  ExponentialHeun.
A second problem, ``perband``, noises fine bands faster than coarse ones (one
VE schedule per Haar level); k-diffusion cannot express it and is not run there.

Writes ``DIR/fewstep.json``, ``DIR/fewstep.md`` (also printed) and
``DIR/fewstep.png`` (error against NFE, log–log, floors marked).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

import solvers
from mrdiffusion._io import atomic_write
from mrdiffusion.processes import BandNoising, VESchedule, gaussian_denoiser, gaussian_score
from mrdiffusion.sampling import (DEFAULT_GRID, DEFAULT_SOLVER, Ancestral, BandwiseEDMRho, DPMSolverPP2M,
                                  DPMSolverPP2S, DPMSolverPP3S, EDMEuler, EDMHeun, EDMRho, ExponentialAdams,
                                  UniformLogSNR, UniformTime, sample)

from ._kdiffusion import VERSION as KD_VERSION
from ._kdiffusion import load_sampling
from ._lhs import latin_hypercube_normal

NFES = (5, 10, 20, 40, 80)
SIGMA_MAX, SIGMA_MIN = 50.0, 0.002
LHS_SEED_OFFSET = 104729  # the LHS starts draw from seed + this, apart from the i.i.d. starts' stream
OUR_SCHEMES = (ExponentialAdams(1), ExponentialAdams(2), ExponentialAdams(3), ExponentialAdams(2, prediction="eps"),
               ExponentialAdams(3, prediction="eps"), DPMSolverPP2M(), DPMSolverPP2S(), DPMSolverPP3S(),
               EDMEuler(), EDMHeun(), ExponentialAdams(1, eta=1.0), ExponentialAdams(2, eta=1.0),
               ExponentialAdams(3, eta=1.0), DPMSolverPP2M(eta=1.0), DPMSolverPP2S(eta=1.0), Ancestral())
OUR_GRIDS = (UniformTime(), UniformLogSNR(sigma_min=SIGMA_MIN), EDMRho(sigma_min=SIGMA_MIN),
             BandwiseEDMRho(sigma_min=SIGMA_MIN))
# k-diffusion sampler -> NFE used by `steps` steps ending at σ = 0
KD_SAMPLERS = {"sample_euler": lambda s: s, "sample_heun": lambda s: 2 * s - 1, "sample_lms": lambda s: s,
               "sample_dpmpp_2m": lambda s: s, "sample_dpmpp_2m_sde": lambda s: s,
               "sample_dpmpp_3m_sde": lambda s: s, "sample_dpmpp_sde": lambda s: 2 * s - 1,
               "sample_euler_ancestral": lambda s: s}
CLASSICAL = (("EulerMaruyama", "reverse", 1), ("Heun", "reverse", 2), ("RK4", "probability_flow", 4),
             ("ExponentialEuler", "reverse", 1), ("ExponentialEuler", "probability_flow", 1),
             ("ExponentialHeun", "reverse", 2))


def build_problem(kind, seed=0):
    """(noising, data mean (1, n), data variance (1, n)) for ``"scalar"`` or ``"perband"``."""
    if kind == "scalar":
        scheds = VESchedule(SIGMA_MIN, SIGMA_MAX)
    elif kind == "perband":  # σ_k(t)² = σ_k,min² ((σ_max/σ_k,min)^{2t} - 1): larger σ_k,min noises faster early
        scheds = [VESchedule(SIGMA_MIN, SIGMA_MAX), VESchedule(0.02, SIGMA_MAX), VESchedule(0.2, SIGMA_MAX)]
    else:
        raise ValueError(f"kind: expected 'scalar' or 'perband', got {kind!r}")
    nz = BandNoising((4, 4), 2, schedules=scheds)
    lvl = nz.layout.dwt_level.to(torch.float64)
    var = (2.0 ** (-1.5 * lvl)).reshape(1, -1)
    gen = torch.Generator().manual_seed(seed)
    mean = 0.5 * var.sqrt() * torch.randn(var.shape, generator=gen, dtype=torch.float64)
    return nz, mean, var


def w2_error(x, mean, var):
    """RMS over coordinates of the per-coordinate Gaussian W2 from the samples' law to ``N(mean, var)``."""
    x = x.reshape(x.shape[0], -1)
    m, s = x.mean(0), x.std(0)
    w2sq = (m - mean.reshape(-1)) ** 2 + (s - var.reshape(-1).sqrt()) ** 2
    if not torch.isfinite(w2sq).all():
        return float("inf")
    return float(w2sq.mean().sqrt())


def exact_error(run, x_T_law, mean, var, calls):
    """The error of a sampler without Monte-Carlo noise: the W2 of its exact output law (:func:`exact_law`)."""
    m, sd = exact_law(run, x_T_law, calls)
    w2sq = (m - mean.reshape(-1)) ** 2 + (sd - var.reshape(-1).sqrt()) ** 2
    return float(w2sq.mean().sqrt()) if torch.isfinite(w2sq).all() else float("inf")


def exact_law(run, x_T_law, calls):
    """A sampler's exact output law, per coordinate: ``(mean, sd)``, each flat, from impulse responses.

    With the exact denoiser of Gaussian data every sampler here is affine per coordinate in the start and in
    the noise it draws: ``x_0 = A x_T + B + Σ_j G_j ξ_j``. ``run(x, noise)`` runs the sampler from the
    batch ``x`` with ``noise(scale)`` as its source of normals (each call one draw ``ξ_j``, times ``scale``).
    Row 0 starts at the mean of ``x_T`` and gets no noise (it ends at the output mean), row 1 starts one
    standard deviation higher (giving ``A``), row ``2 + j`` gets a unit draw at call ``j`` only (giving
    ``G_j``); the output law is ``N(A m_T + B, A² v_T + Σ_j G_j²)``. ``calls`` bounds the draws.
    """
    m_T, sd_T = x_T_law
    batch = 2 + calls
    x = m_T.expand(batch, *m_T.shape[1:]).clone()
    x[1] += sd_T[0]
    count = [0]

    def noise(scale=1.0):
        if count[0] >= calls:
            raise RuntimeError(f"exact_error: more than calls={calls} noise draws")
        z = torch.zeros_like(x)
        z[2 + count[0]] = scale
        count[0] += 1
        return z

    out = run(x, noise)
    dev = (out[1:] - out[0]).reshape(batch - 1, -1)
    return out[0].reshape(-1), dev.square().sum(0).sqrt()


def floor(mean, var, n, seed, draws=8, lhs=False):
    """The sampled error of ``n`` exact data samples (i.i.d., or Latin hypercube with ``lhs``), mean of ``draws``."""
    gen = torch.Generator().manual_seed(seed + 7919)
    draw = ((lambda: latin_hypercube_normal(n, mean, var.sqrt(), generator=gen)) if lhs else
            (lambda: mean + var.sqrt() * torch.randn(n, *mean.shape, generator=gen, dtype=torch.float64)))
    return sum(w2_error(draw(), mean, var) for _ in range(draws)) / draws


def sampled_errors(solve, starts, mean, var):
    """``{key: error of solve(x_T)}`` for each kind of start in ``starts`` (``"error"``: i.i.d., ``"error_lhs"``)."""
    return {key: w2_error(solve(x_T), mean, var) for key, x_T in starts.items()}


def _impulses(noise):
    """A driver Brownian source ``(s, t) -> ΔW`` from ``noise(scale)``: one unit draw times ``√|t - s|``."""
    return lambda s, t: noise(math.sqrt(abs(float(t) - float(s))))


def _counted(fn):
    def wrapped(*args):
        wrapped.calls += 1
        return fn(*args)

    wrapped.calls = 0
    return wrapped


def run_ours(nz, mean, var, starts, nfe, seed, law):
    rows = []
    model = gaussian_denoiser(nz, mean, var)
    for family, scheme, grid in [("ours", s, g) for s in OUR_SCHEMES for g in OUR_GRIDS] + [("default", None, None)]:
        kw = {} if scheme is None else {"solver": scheme, "grid": grid}
        f, used = _counted(model), []

        def solve(x):
            x0, info = sample(f, nz, x, nfe=nfe, seed=seed, **kw)
            used.append(info.nfe)
            return x0

        errors = sampled_errors(solve, starts, mean, var)
        assert f.calls == sum(used) and len(set(used)) == 1
        exact = exact_error(lambda x, noise: sample(model, nz, x, nfe=nfe, brownian=_impulses(noise), **kw)[0],
                            law, mean, var, 2 * nfe + 4)
        scheme, grid = (DEFAULT_SOLVER, DEFAULT_GRID) if scheme is None else (scheme, grid)
        rows.append({"family": family, "sampler": repr(scheme), "grid": type(grid).__name__, "budget": nfe,
                     "nfe": used[0], **errors, "exact": exact})
    return rows


def run_classical(nz, mean, var, starts, nfe, seed, law):
    rows = []
    score = gaussian_score(nz, mean, var)
    for name, which, per_step in CLASSICAL:
        steps = nfe // per_step
        if steps < 1:
            continue
        sde = getattr(nz, which)(score)

        def solve(x, noise=None):
            with torch.no_grad():
                return solvers.sdeint(sde, x, [0.0, nz.T], getattr(solvers, name)(), dt=nz.T / steps, seed=seed,
                                      max_abs=1e12, brownian=None if noise is None else _impulses(noise))[-1]

        exact = exact_error(solve, law, mean, var, steps + 2)
        rows.append({"family": "classical", "sampler": f"{name} on {which}()", "grid": "UniformTime",
                     "budget": nfe, "nfe": steps * per_step, **sampled_errors(solve, starts, mean, var),
                     "exact": exact})
    return rows


def kd_denoiser(D):
    """A model ``D(x, t)`` on the scalar VE schedule as k-diffusion's denoiser ``D(x, σ)``.

    VE with ``α = 1``: ``σ(t)² = σ_min²((σ_max/σ_min)^{2t} - 1)``, so ``t = ½ log1p(σ²/σ_min²) / log(σ_max/σ_min)``.
    """
    t_of = {}

    def sigma_to_t(sig):
        if sig not in t_of:
            t_of[sig] = 0.5 * math.log1p(sig * sig / SIGMA_MIN**2) / math.log(SIGMA_MAX / SIGMA_MIN) if sig > 0 else 0.0
        return t_of[sig]

    return lambda x, sigma: D(x, sigma_to_t(float(sigma.reshape(-1)[0])))


def kd_grids(kd):
    """k-diffusion's own σ grids for ``n`` steps ending at 0: Karras ρ = 7 and exponential."""
    return {"karras": lambda n: kd.get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX, rho=7.0),
            "exponential": lambda n: kd.get_sigmas_exponential(n, SIGMA_MIN, SIGMA_MAX)}


def kd_steps(nfe, nfe_of):
    """The most steps of a k-diffusion sampler whose evaluations ``nfe_of(steps)`` fit in ``nfe`` (at least 1)."""
    return max(s for s in range(1, nfe + 2) if nfe_of(s) <= nfe or s == 1)


def parse_problems(text):
    """``--problems``: a comma-separated subset of ``scalar,perband``, or ``SystemExit`` naming the argument."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds or any(k not in ("scalar", "perband") for k in kinds):
        raise SystemExit(f"--problems: expected a comma-separated subset of scalar,perband, got {text!r}")
    return kinds


def nfe_axes(ax, nfes):
    """Log–log axes with the NFE budgets as plain ticks."""
    import matplotlib.ticker

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(nfes))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("model evaluations (NFE)")


def run_kdiffusion(kd, nz, mean, var, starts, nfe, seed, law):
    rows = []
    denoiser = kd_denoiser(gaussian_denoiser(nz, mean, var))
    grids = kd_grids(kd)
    for name, nfe_of in KD_SAMPLERS.items():
        steps = kd_steps(nfe, nfe_of)
        for gname, make in grids.items():
            sigmas = make(steps).to(torch.float64)
            stochastic = name not in ("sample_euler", "sample_heun", "sample_lms", "sample_dpmpp_2m")
            f = _counted(denoiser)

            def run_kd(model, x, normal):
                extra = {"noise_sampler": lambda s, t: normal(x)} if stochastic else {}
                return getattr(kd, name)(model, x.clone(), sigmas, disable=True, **extra)

            def solve(x_T):  # every kind of start gets the same noise: a generator seeded afresh per run
                gen = torch.Generator().manual_seed(seed)
                return run_kd(f, x_T, lambda x: torch.randn(x.shape, generator=gen, dtype=x.dtype))

            with torch.no_grad():
                errors = sampled_errors(solve, starts, mean, var)
                exact = exact_error(lambda x, noise: run_kd(denoiser, x, lambda _: noise()), law, mean, var,
                                    2 * nfe + 4)
            rows.append({"family": "k-diffusion", "sampler": name, "grid": gname, "budget": nfe,
                         "nfe": f.calls // len(starts), **errors, "exact": exact})
    return rows


def run(kind, samples, seed, nfes, kd):
    nz, mean, var = build_problem(kind, seed)
    a, s = nz.alpha_sigma(nz.T)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, 1, nz.layout.n, generator=gen, dtype=torch.float64)
    law = (a * mean).reshape(1, 1, -1), (a * a * var + s * s).sqrt().reshape(1, 1, -1)
    x_T = law[0] + law[1] * eps  # exact marginal at t = T
    # the same marginal, Latin hypercube: one start per stratum of each coordinate (its own stream of the seed)
    x_T_lhs = latin_hypercube_normal(samples, *law, generator=torch.Generator().manual_seed(seed + LHS_SEED_OFFSET))
    starts = {"error": x_T, "error_lhs": x_T_lhs}
    rows = []
    for nfe in nfes:
        rows += run_ours(nz, mean, var, starts, nfe, seed, law)
        rows += run_classical(nz, mean, var, starts, nfe, seed, law)
        if kd is not None and kind == "scalar":
            rows += run_kdiffusion(kd, nz, mean, var, starts, nfe, seed, law)
    return {"problem": kind, "samples": samples, "floor": floor(mean, var, samples, seed),
            "floor_lhs": floor(mean, var, samples, seed, lhs=True), "rows": rows}


def best(rows, family, budget, key=None, by="error"):
    cand = [r for r in rows if r["family"] in family and r["budget"] == budget and (key is None or key(r))
            and r.get(by) is not None]
    return min(cand, key=lambda r: r[by]) if cand else None


def _best_table(rows, nfes, by, digits):
    """Markdown rows: per NFE budget, the best of each family by the column ``by``."""
    out = ["| NFE budget | ours best (scheme, grid, NFE) | default | k-diffusion best | classical best |",
           "|---|---|---|---|---|"]
    for n in nfes:
        cells = []
        for fam in (("ours", "default"), ("default",), ("k-diffusion",), ("classical",)):
            b = best(rows, fam, n, by=by)
            cells.append("–" if b is None else f"{b[by]:.{digits}g} ({b['sampler']}, {b['grid']}, {b['nfe']})")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out + [""]


def summarize(res, nfes):
    """Markdown: best of each family per NFE (sampled i.i.d., exact, sampled LHS), then every row."""
    rows, out = res["rows"], []
    out.append(f"### problem `{res['problem']}` — {res['samples']} samples, floor {res['floor']:.4f}, "
               f"LHS floor {res['floor_lhs']:.2g}\n")
    out += _best_table(rows, nfes, "error", 4)
    out.append("Exact output law (no Monte-Carlo noise; see `exact_error`):\n")
    out += _best_table(rows, nfes, "exact", 3)
    out.append(f"Latin hypercube starts (sampled, same noise; floor {res['floor_lhs']:.2g}; see `benchmarks._lhs`):\n")
    out += _best_table(rows, nfes, "error_lhs", 3)
    out.append("| family | sampler | grid | " + " | ".join(f"NFE≤{n}" for n in nfes) + " |")
    out.append("|---|---|---|" + "---|" * len(nfes))
    keys = []
    for r in rows:
        k = (r["family"], r["sampler"], r["grid"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        vals = []
        for n in nfes:
            r = next((r for r in rows if (r["family"], r["sampler"], r["grid"]) == k and r["budget"] == n), None)
            ex = "" if r is None or r.get("exact") is None else f", exact {r['exact']:.3g}"
            ex += "" if r is None or r.get("error_lhs") is None else f", LHS {r['error_lhs']:.3g}"
            vals.append("–" if r is None else f"{r['error']:.3g} ({r['nfe']}{ex})")
        out.append(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def plot(results, nfes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5.2), squeeze=False)
    families = {"default": ("C3", "-", "ours (default)"), "ours": ("C0", "-", "ours (best scheme × grid)"),
                "k-diffusion": ("C1", "--", "k-diffusion (best sampler × grid)"),
                "classical": ("C2", ":", "classical (best)")}
    # one line per family and metric, each at that metric's best row: the marker tells the metric
    metrics = {"error": ({"marker": "o"}, "sampled, i.i.d. starts"),
               "exact": ({"marker": "o", "mfc": "white", "lw": 0.8, "alpha": 0.8}, "exact law (no sampling noise)"),
               "error_lhs": ({"marker": "x", "ms": 7, "lw": 0.8}, "sampled, Latin hypercube starts")}
    for ax, res in zip(axes[0], results):
        rows, shown = res["rows"], []
        for fam, (color, ls, label) in families.items():
            for by, (style, _) in metrics.items():
                pts = [(b["nfe"], b[by]) for n in nfes if (b := best(rows, (fam,), n, by=by)) is not None]
                pts = [(x, y) for x, y in pts if math.isfinite(y) and y > 0]
                if pts:
                    ax.plot(*zip(*pts), ls, color=color, **style)
                    shown.append(fam)
        ax.axhline(res["floor"], color="k", lw=0.8, ls="-.")
        ax.axhline(res["floor_lhs"], color="0.5", lw=0.8, ls="-.")
        handles = [Line2D([], [], color=c, ls=ls, label=lab) for f, (c, ls, lab) in families.items() if f in shown]
        handles += [Line2D([], [], color="k", ls="none", label=lab, **{k: v for k, v in st.items() if k != "lw"})
                    for st, lab in metrics.values()]
        handles += [Line2D([], [], color="k", lw=0.8, ls="-.", label=f"floor: i.i.d. data samples ({res['samples']})"),
                    Line2D([], [], color="0.5", lw=0.8, ls="-.", label=f"floor: LHS data samples ({res['samples']})")]
        nfe_axes(ax, nfes)
        ax.set_ylabel("RMS per-coordinate W2 to the data law")
        what = "one VE schedule" if res["problem"] == "scalar" else "per-band VE (fine bands noised faster)"
        ax.set_title(f"{res['problem']}: Gaussian data on 16 band coefficients,\n{what}, σ_max = 50", fontsize=10)
        ax.legend(handles=handles, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_cli(argv, *, prog, doc, unit, default, quick, minimum, stem, run, summarize, plot, meta):
    """The command line both few-step benchmarks share: parse, run every problem, write
    ``<stem>.json``/``.md``/``.png`` atomically under ``--out`` and print the tables.
    ``doc`` is the module's docstring, ``unit`` names what ``--samples`` counts; ``meta`` is merged into the JSON's ``meta``."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"smoke run: few {unit}, NFE 5 and 10")
    ap.add_argument("--out", default="results/fewstep", help="output folder")
    ap.add_argument("--samples", type=int, default=None, help=f"{unit} per run (default {default}; quick: {quick})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--problems", default="scalar,perband", help="comma-separated subset of scalar,perband")
    args = ap.parse_args(argv)
    samples = args.samples if args.samples is not None else (quick if args.quick else default)
    if samples < minimum:
        raise SystemExit(f"--samples: need at least {minimum}")
    kinds = parse_problems(args.problems)
    nfes = (5, 10) if args.quick else NFES
    kd, why = load_sampling()
    if kd is None:
        print(f"k-diffusion skipped: {why}")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    results = [run(kind, samples, args.seed, nfes, kd) for kind in kinds]
    md = "\n".join(summarize(r, nfes) for r in results)
    meta = {"k_diffusion": None if kd is None else KD_VERSION, "seconds": time.perf_counter() - t0,
            "nfes": list(nfes), **meta}
    base = os.path.join(args.out, stem)
    atomic_write(base + ".json", json.dumps({"meta": meta, "results": results}, indent=1))
    atomic_write(base + ".md", md)
    plot(results, nfes, base + ".png")
    print(md)
    print(f"wrote {base}.{{json,md,png}} in {meta['seconds']:.0f} s")


def main(argv=None):
    run_cli(argv, prog="python -m benchmarks.fewstep", doc=__doc__, unit="samples", default=65536, quick=512, minimum=2,
            stem="fewstep", run=run, summarize=summarize, plot=plot,
            meta={"default": {"solver": repr(DEFAULT_SOLVER), "grid": repr(DEFAULT_GRID)}})


if __name__ == "__main__":
    main()
