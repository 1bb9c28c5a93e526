"""Few-step ODE samplers against diffusers and k-diffusion on Gaussian mixtures, metrics against the true law.

    python -m benchmarks.fewstep_peers [--quick] [--out DIR] [--samples N] [--seed S]
                                       [--problems ring2d,aniso6d,heldout4d] [--nfes 5,10,20]

Problems (:mod:`benchmarks._mixtures`, exact denoisers): ``ring2d`` (8 Gaussians on a circle, 2-D),
``aniso6d`` (5 rotated anisotropic Gaussians in 6-D, unequal weights) — the two the defaults are chosen
on — and ``heldout4d`` (12 overlapping Gaussians in 4-D), which only checks the choice.

Every sampler starts from the *same* data draws ``x_0`` and noise ``ε``: ``y_T = x_0 + σ̂_0 ε`` at its
own first noise level ``σ̂_0`` (an exact draw of that marginal; VP states are ``α y``), and is given the
exact model of the process it assumes (:mod:`benchmarks._diffusers`). Contenders:

- ours (``mrdiffusion.sampling``, EDM schedule ``σ_max = 80``): ``ExponentialAdams(3, prediction="eps")``
  and ``UniPC`` orders 2, 3 × bh1/bh2 × data/eps, × grids: EDM ρ = 7 and ρ = 3 and uniform log-SNR, each
  stopping at ``σ̂_min`` (0.002 … 0.5) then one denoising step to 0, and time-uniform on
  ``VPSchedule(0.1, 20)`` (``σ̂`` from 152 to 0.72 at 5 steps, then 0: diffusers' VP ``linspace`` grid);
  and the library default;
- diffusers 0.42.1 (optional): ``DPMSolverMultistep`` 2M/3M, ``UniPCMultistep`` bh1/bh2 order 2/3,
  ``DEISMultistep`` 2/3 (DDPM linear-β VP, ``linspace`` or Karras σ), ``EDMDPMSolverMultistep`` 2M/3M;
- k-diffusion 0.1.1.post1 (optional): its deterministic samplers on its Karras and exponential grids.

Metrics (each minus the same metric for the exact data draws, the floor; 95 % bootstrap intervals (30 resamples; 20
with --quick) for the rows of the summary): sliced W2 to fresh exact samples, per-component mean and std errors after
nearest-mean assignment, total variation of the component weights; and ``flow``, the RMS distance to the
converged probability-flow solution from the same start (torchdiffeq dopri5, ``rtol = atol = 1e-10``, in
``log σ̂`` down to ``σ̂ = 1e-6``, on the first 2048 starts; no floor). Writes
``DIR/fewstep_peers.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch

from mrdiffusion._io import atomic_write
from mrdiffusion.processes import EDMSchedule, VPSchedule
from mrdiffusion.sampling import (DEFAULT_GRID, DEFAULT_SOLVER, EDMRho, ExponentialAdams, UniformLogSNR, UniformTime,
                                  UniPC, sample)

from . import _diffusers
from ._kdiffusion import VERSION as KD_VERSION
from ._kdiffusion import load_sampling
from ._mixtures import DESIGN, METRICS, MIXTURES, Metrics

SIGMA_MAX = 80.0
FLOW_STARTS = 2048
SCHEMES = [ExponentialAdams(3, prediction="eps")] + [UniPC(p, v, pred) for p in (2, 3) for v in ("bh1", "bh2")
                                                   for pred in ("data", "eps")]
GRIDS = {f"EDMRho(rho={r:g}, sigma_min={s:g})": EDMRho(rho=r, sigma_min=s)
         for r, s in ((7, 0.002), (7, 0.05), (7, 0.2), (7, 0.5), (3, 0.05), (3, 0.2), (3, 0.5))}
GRIDS.update({f"UniformLogSNR(sigma_min={s:g})": UniformLogSNR(sigma_min=s) for s in (0.002, 0.05, 0.2, 0.5)})
VP_UNIFORM = "UniformTime on VPSchedule(0.1, 20)"
KD_ODE = {"sample_euler": (lambda s: s, {}), "sample_heun": (lambda s: 2 * s - 1, {}),
          "sample_lms": (lambda s: s, {}), "sample_dpm_2": (lambda s: 2 * s - 1, {}),
          "sample_dpmpp_2m": (lambda s: s, {}), "sample_dpmpp_2s_ancestral": (lambda s: 2 * s - 1, {"eta": 0.0}),
          "sample_dpmpp_3m_sde": (lambda s: s, {"eta": 0.0})}
PEER_FAMILIES = ("diffusers", "k-diffusion")


def converged_flow(D, y_T, s0, rtol=1e-10):
    """The probability-flow solution from ``y_T`` at ``σ̂ = s0``: ``dy/d log σ̂ = y - D(y, σ̂)`` to 1e-6, then
    ``D`` there (the rest of the path is below the tolerance)."""
    import torchdiffeq

    def rhs(log_s, y):
        return y - D(y, math.exp(float(log_s)))

    ts = torch.tensor([math.log(s0), math.log(1e-6)], dtype=torch.float64)
    with torch.no_grad():
        y = torchdiffeq.odeint(rhs, y_T, ts, rtol=rtol, atol=rtol, method="dopri5")[-1]
        return D(y, 1e-6)


class Problem:
    def __init__(self, name, samples, seed):
        self.mix = MIXTURES[name]()
        gen = torch.Generator().manual_seed(seed)
        self.x0, _ = self.mix.sample(samples, gen)
        self.eps = torch.randn(samples, self.mix.dim, generator=gen, dtype=torch.float64)
        self.metrics = Metrics(self.mix, self.x0, seed)
        self.D = self.mix.denoiser()
        self._flows = {}
        self.noise = self.metrics.floor_sd(seed=seed + 1)

    def flow(self, s0):
        key = round(s0, 9)
        if key not in self._flows:
            k = min(FLOW_STARTS, self.x0.shape[0])
            self._flows[key] = converged_flow(self.D, self.x0[:k] + s0 * self.eps[:k], s0)
        return self._flows[key]

    def row(self, family, sampler, grid, budget, y, nfe, s0):
        ex = self.metrics.excess(y)
        ref = self.flow(s0)
        d = y[: ref.shape[0]] - ref
        flow = float(d.square().mean().sqrt()) if torch.isfinite(d).all() else float("inf")
        return {"family": family, "sampler": sampler, "grid": grid, "budget": budget, "nfe": nfe,
                "sigma_start": s0, **ex, "flow": flow}


def _counted(fn):
    def wrapped(*args):
        wrapped.calls += 1
        return fn(*args)

    wrapped.calls = 0
    return wrapped


def run_ours(P, nfe):
    rows = []
    model = _counted(lambda y, t: P.D(y, t))
    y_T = P.x0 + SIGMA_MAX * P.eps
    vp = VPSchedule(0.1, 20.0)
    a1, s1 = vp.alpha(1.0), math.sqrt(vp.var(1.0))

    def vp_model(x, t):
        a = vp.alpha(t)
        return P.D(x / a, math.sqrt(max(vp.var(t), 0.0)) / a)

    vp_model = _counted(vp_model)
    runs = [("ours", s, gname, g) for s in SCHEMES for gname, g in GRIDS.items()]
    runs += [("ours", s, VP_UNIFORM, None) for s in SCHEMES]
    runs.append(("default", DEFAULT_SOLVER, repr(DEFAULT_GRID), DEFAULT_GRID))
    for family, scheme, gname, grid in runs:
        with torch.no_grad():
            if grid is None:
                vp_model.calls = 0
                x, info = sample(vp_model, vp, a1 * (P.x0 + s1 / a1 * P.eps), nfe=nfe, solver=scheme,
                                 grid=UniformTime())
                y, calls, s0 = x / vp.alpha(0.0), vp_model.calls, s1 / a1
            else:
                model.calls = 0
                y, info = sample(model, EDMSchedule(SIGMA_MAX), y_T, nfe=nfe, solver=scheme, grid=grid)
                calls, s0 = model.calls, SIGMA_MAX
        assert calls == info.nfe <= nfe
        rows.append(P.row(family, repr(scheme), gname, nfe, y, calls, s0))
    return rows


def run_diffusers(P, nfe, dm):
    rows = []
    for name in _diffusers.PEERS:
        y, calls, s0 = _diffusers.run_peer(dm, name, P.D, P.x0, P.eps, nfe)
        rows.append(P.row("diffusers", name, "its own", nfe, y, calls, s0))
    return rows


def run_kdiffusion(P, nfe, kd):
    rows = []
    y_T = P.x0 + SIGMA_MAX * P.eps
    grids = {"karras": lambda n: kd.get_sigmas_karras(n, 0.002, SIGMA_MAX, rho=7.0),
             "exponential": lambda n: kd.get_sigmas_exponential(n, 0.002, SIGMA_MAX)}
    for name, (nfe_of, kwargs) in KD_ODE.items():
        steps = max(s for s in range(1, nfe + 2) if nfe_of(s) <= nfe or s == 1)
        for gname, make in grids.items():
            f = _counted(lambda x, sigma: P.D(x, float(sigma.reshape(-1)[0])))
            with torch.no_grad():
                y = getattr(kd, name)(f, y_T.clone(), make(steps).to(torch.float64), disable=True, **kwargs)
            rows.append(P.row("k-diffusion", name, gname, nfe, y, f.calls, SIGMA_MAX))
    return rows


def best(rows, families, budget, metric):
    cand = [r for r in rows if r["family"] in families and r["budget"] == budget and math.isfinite(r[metric])]
    return min(cand, key=lambda r: r[metric]) if cand else None


def ratio(value, ref, noise):
    """``value / ref`` with both clamped at the metric's noise scale (two values at the floor compare as 1)."""
    return max(value, noise) / max(ref, noise)


def scores(results, nfe, problems):
    """Per (scheme, grid) of ours: the worst ratio to the best peer over ``problems`` and metrics."""
    out = {}
    for res in results:
        if res["problem"] not in problems:
            continue
        rows, noise = res["rows"], {**res["noise"], "flow": 0.0}
        peers = {m: best(rows, PEER_FAMILIES, nfe, m) for m in (*METRICS, "flow")}
        for r in rows:
            if r["family"] != "ours" or r["budget"] != nfe:
                continue
            worst = max((ratio(r[m], peers[m][m], noise[m]) if peers[m] else 1.0) for m in (*METRICS, "flow"))
            key = (r["sampler"], r["grid"])
            out[key] = max(out.get(key, 0.0), worst)
    return sorted(out.items(), key=lambda kv: kv[1])


def run(name, samples, seed, nfes, kd, dm, reps=50):
    t0 = time.perf_counter()
    P = Problem(name, samples, seed)
    rows = []
    for nfe in nfes:
        rows += run_ours(P, nfe)
        if dm is not None:
            rows += run_diffusers(P, nfe, dm)
        if kd is not None:
            rows += run_kdiffusion(P, nfe, kd)
    intervals = {}
    for nfe in nfes:  # bootstrap intervals for the summary's rows: the default and each family's best
        for fam in ("default", "ours", PEER_FAMILIES):
            for m in METRICS:
                b = best(rows, fam if isinstance(fam, tuple) else (fam,), nfe, m)
                if b is None:
                    continue
                key = f"{b['family']}|{b['sampler']}|{b['grid']}|{nfe}"
                if key in intervals:
                    continue
                y = _rerun(P, b, kd, dm)
                intervals[key] = P.metrics.bootstrap(y, reps=reps, seed=seed)
    return {"problem": name, "about": P.mix.about, "samples": samples, "floor": P.metrics.floor, "noise": P.noise,
            "rows": rows, "intervals": intervals, "seconds": time.perf_counter() - t0}


def _rerun(P, r, kd, dm):
    """The sample of row ``r`` again (rows keep numbers, not samples)."""
    nfe = r["budget"]
    if r["family"] == "diffusers":
        return _diffusers.run_peer(dm, r["sampler"], P.D, P.x0, P.eps, nfe)[0]
    if r["family"] == "k-diffusion":
        name, (nfe_of, kwargs) = r["sampler"], KD_ODE[r["sampler"]]
        steps = max(s for s in range(1, nfe + 2) if nfe_of(s) <= nfe or s == 1)
        make = kd.get_sigmas_karras if r["grid"] == "karras" else kd.get_sigmas_exponential
        sig = (make(steps, 0.002, SIGMA_MAX, rho=7.0) if r["grid"] == "karras" else make(steps, 0.002, SIGMA_MAX))
        with torch.no_grad():
            return getattr(kd, name)(lambda x, s: P.D(x, float(s.reshape(-1)[0])), P.x0 + SIGMA_MAX * P.eps,
                                     sig.to(torch.float64), disable=True, **kwargs)
    scheme = DEFAULT_SOLVER if r["family"] == "default" else next(s for s in SCHEMES if repr(s) == r["sampler"])
    if r["grid"] == VP_UNIFORM:
        vp = VPSchedule(0.1, 20.0)
        a1, s1 = vp.alpha(1.0), math.sqrt(vp.var(1.0))
        model = lambda x, t: P.D(x / vp.alpha(t), math.sqrt(max(vp.var(t), 0.0)) / vp.alpha(t))  # noqa: E731
        return sample(model, vp, a1 * (P.x0 + s1 / a1 * P.eps), nfe=nfe, solver=scheme, grid=UniformTime())[0]
    grid = DEFAULT_GRID if r["family"] == "default" else GRIDS[r["grid"]]
    return sample(lambda y, t: P.D(y, t), EDMSchedule(SIGMA_MAX), P.x0 + SIGMA_MAX * P.eps, nfe=nfe, solver=scheme,
                  grid=grid)[0]


def _cell(res, r, m):
    if r is None:
        return "–"
    key = f"{r['family']}|{r['sampler']}|{r['grid']}|{r['budget']}"
    ci = res["intervals"].get(key, {}).get(m) if m in METRICS else None
    ci = f" [{ci[0]:.2g}, {ci[1]:.2g}]" if ci else ""
    return f"{r[m]:.3g}{ci}"


def summarize(res, nfes):
    out = [f"### `{res['problem']}`: {res['about']}; {res['samples']} samples\n",
           "Floor (exact data draws): " + ", ".join(f"{m} {res['floor'][m]:.3g} (bootstrap sd {res['noise'][m]:.2g})"
                                                     for m in METRICS) + "\n"]
    for nfe in nfes:
        out.append(f"**NFE {nfe}** — excess over the floor [95 % bootstrap interval]; `flow`: RMS to the converged "
                   "flow. Ratio: default / best peer, both clamped at the floor's bootstrap sd.\n")
        out.append("| metric | default | best ours | best UniPC | best diffusers | best k-diffusion | ratio |")
        out.append("|---|---|---|---|---|---|---|")
        noise = {**res["noise"], "flow": 0.0}
        for m in (*METRICS, "flow"):
            d = best(res["rows"], ("default",), nfe, m)
            o = best(res["rows"], ("ours",), nfe, m)
            u = best([r for r in res["rows"] if r["sampler"].startswith("UniPC")], ("ours",), nfe, m)
            p = {f: best(res["rows"], (f,), nfe, m) for f in PEER_FAMILIES}
            bp = best(res["rows"], PEER_FAMILIES, nfe, m)
            name = lambda r: "" if r is None else f" ({r['sampler']}, {r['grid']})"  # noqa: E731
            rat = "–" if bp is None or d is None else f"{ratio(d[m], bp[m], noise[m]):.2f}"
            out.append(f"| {m} | {_cell(res, d, m)} | {_cell(res, o, m)}{name(o)} | {_cell(res, u, m)}{name(u)} | "
                       f"{_cell(res, p['diffusers'], m)}{name(p['diffusers'])} | "
                       f"{_cell(res, p['k-diffusion'], m)}{name(p['k-diffusion'])} | {rat} |")
        out.append("")
    return "\n".join(out) + "\n"


def selection(results, nfes, top=6):
    out = ["### Choosing ours per NFE: worst ratio to the best peer over metrics\n",
           f"Ratio as in the tables (clamped at the floor's bootstrap sd); design problems {', '.join(DESIGN)}, "
           "then the same (scheme, grid) on every problem.\n"]
    problems = [r["problem"] for r in results]
    for nfe in nfes:
        ranked = scores(results, nfe, DESIGN)
        if not ranked:
            continue
        allp = dict(scores(results, nfe, problems))
        out.append(f"**NFE {nfe}** ({len(ranked)} of ours ranked)\n")
        out.append("| scheme | grid | worst ratio, design | worst ratio, all problems |")
        out.append("|---|---|---|---|")
        for (s, g), v in ranked[:top]:
            out.append(f"| {s} | {g} | {v:.2f} | {allp.get((s, g), float('nan')):.2f} |")
        out.append("")
    return "\n".join(out) + "\n"


def parse_list(text, allowed, what):
    items = [k.strip() for k in text.split(",") if k.strip()]
    if not items or any(k not in allowed for k in items):
        raise SystemExit(f"{what}: expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return items


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fewstep_peers", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1024 samples, NFE 5 and 10")
    ap.add_argument("--out", default="results/fewstep", help="output folder")
    ap.add_argument("--samples", type=int, default=None, help="samples per problem (default 16384; quick: 1024)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--problems", default=",".join(MIXTURES), help="comma-separated subset of " + ",".join(MIXTURES))
    ap.add_argument("--nfes", default=None, help="comma-separated NFE budgets (default 5,10,20; quick: 5,10)")
    args = ap.parse_args(argv)
    samples = args.samples if args.samples is not None else (1024 if args.quick else 16384)
    if samples < 64:
        raise SystemExit("--samples: need at least 64")
    names = parse_list(args.problems, tuple(MIXTURES), "--problems")
    try:
        nfes = tuple(int(v) for v in (args.nfes or ("5,10" if args.quick else "5,10,20")).split(","))
    except ValueError:
        nfes = ()
    if not nfes or min(nfes) < 2:
        raise SystemExit(f"--nfes: expected comma-separated integers >= 2, got {args.nfes!r}")
    kd, why = load_sampling()
    if kd is None:
        print(f"k-diffusion skipped: {why}")
    dm, why_d = _diffusers.load()
    if dm is None:
        print(f"diffusers skipped: {why_d}")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    results = [run(n, samples, args.seed, nfes, kd, dm, reps=20 if args.quick else 30) for n in names]
    md = "\n".join(summarize(r, nfes) for r in results) + "\n" + selection(results, nfes)
    meta = {"k_diffusion": None if kd is None else KD_VERSION, "k_diffusion_skipped": why,
            "diffusers": None if dm is None else dm.__version__, "diffusers_skipped": why_d,
            "seconds": time.perf_counter() - t0, "nfes": list(nfes), "samples": samples,
            "default": {"solver": repr(DEFAULT_SOLVER), "grid": repr(DEFAULT_GRID)}}
    base = os.path.join(args.out, "fewstep_peers")
    atomic_write(base + ".json", json.dumps({"meta": meta, "results": results}, indent=1))
    atomic_write(base + ".md", md)
    print(md)
    print(f"wrote {base}.{{json,md}} in {meta['seconds']:.0f} s")


if __name__ == "__main__":
    main()
