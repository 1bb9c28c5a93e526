"""``report.md``: empirical orders next to declared ones, largest stable steps, a verdict per problem."""

from __future__ import annotations

import math
import os

import numpy as np

import solvers

from .config import _fmt_dt
from .stability import real_stability_interval

__all__ = ["fit_order", "largest_stable_dt", "write_report", "by_solver"]


def by_solver(records, problem):
    """``{solver: [records sorted by dt, coarse first]}`` for one problem."""
    out = {}
    for rec in records:
        if rec["problem"] == problem:
            out.setdefault(rec["solver"], []).append(rec)
    return {s: sorted(rs, key=lambda r: -r["dt"]) for s, rs in out.items()}


EXACT = 1e-9
"""Errors below this are round-off: the scheme is exact for that statistic."""


def fit_order(recs, metric, floor_key, *, points=4):
    """Log–log slope of ``metric`` against dt over the finest (up to ``points``) usable cells.

    Usable: no diverged path, error above 3× its floor (Monte Carlo standard
    error, or the reference's own error) and above round-off; only stable
    cells when the ladder has at least 3 of them. Returns
    ``(slope, n_points, all_stable)``; ``slope`` is None with fewer than 3
    usable cells; ``all_stable`` is False when a fitted cell is above the
    instability threshold (a pre-asymptotic slope).
    """
    usable = [r for r in recs if r["diverged_fraction"] == 0 and r.get(metric) is not None
              and r[metric] > max(EXACT, 3 * (r.get(floor_key) or 0.0))]
    if sum(r["stable"] for r in recs) >= 3:
        use = sorted([r for r in usable if r["stable"]], key=lambda r: r["dt"])[:points]
    else:  # too few stable cells in the ladder: every cell without diverged paths (a pre-asymptotic slope)
        use = sorted(usable, key=lambda r: r["dt"])[:points]
    if len(use) < 3:
        return None, len(use), True
    slope = np.polyfit(np.log([r["dt"] for r in use]), np.log([r[metric] for r in use]), 1)[0]
    return float(slope), len(use), all(r["stable"] for r in use)


def largest_stable_dt(recs):
    """The largest step such that it and every smaller step in the ladder are stable (None: not even the smallest)."""
    best = None
    for rec in sorted(recs, key=lambda r: r["dt"]):
        if not rec["stable"]:
            break
        best = rec["dt"]
    return best


def _f(x, digits=3):
    if x is None:
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}g}"


def _order_cell(fit, recs, metric, floor_key):
    slope, n, stable = fit
    if slope is not None:
        return f"{slope:.2f}" + ("" if stable else "*")
    finite = [r for r in recs if r["diverged_fraction"] == 0 and r.get(metric) is not None]
    if finite and all(r[metric] <= EXACT for r in finite):
        return "exact"
    if finite and all(r[metric] <= max(EXACT, 3 * (r.get(floor_key) or 0.0)) for r in finite[-3:]):
        return "at floor"
    return f"n/a ({n} pts)"


def _stable_cell(dt, ladder):
    if dt is None:
        return f"< {_fmt_dt(min(ladder))}"
    if dt == max(ladder):
        return f"≥ {_fmt_dt(dt)} (all)"
    return _fmt_dt(dt)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main_table(config, records, problem):
    """The per-problem table of the report (also printed by the CLI)."""
    rows = []
    dt_min, dt_max = min(config.dt), max(config.dt)
    for solver, recs in by_solver(records, problem).items():
        s = config.scheme(solver)
        strong = _order_cell(fit_order(recs, "strong_error", "strong_floor"), recs, "strong_error", "strong_floor")
        weak = _order_cell(fit_order(recs, "weak_error", "weak_floor"), recs, "weak_error", "weak_floor")
        finest = next(r for r in recs if r["dt"] == dt_min)
        coarsest = next(r for r in recs if r["dt"] == dt_max)
        rows.append([
            solver, f"{s.order_for('additive'):g} / {s.weak_order:g}", strong, weak,
            _stable_cell(largest_stable_dt(recs), config.dt),
            _f(coarsest["instability_ratio"]), f"{100 * coarsest['diverged_fraction']:.0f}%",
            _f(finest["weak_error"]), _f(finest["strong_error"]), f"{finest['nfe']}",
            f"{sum(r['wall_s'] for r in recs):.2f}",
        ])
    header = ["solver", "declared strong / weak", "empirical strong", "empirical weak", "largest stable dt",
              f"instability ratio @ {_fmt_dt(dt_max)}", f"diverged @ {_fmt_dt(dt_max)}",
              f"weak err @ {_fmt_dt(dt_min)}", f"strong err @ {_fmt_dt(dt_min)}", f"NFE @ {_fmt_dt(dt_min)}",
              "solver s (all dt)"]
    return _table(header, rows)


def _stability_bounds(config, labels, a):
    """``name: x = … → h ≤ x/|a|`` per scheme, grouped by equal real stability interval (read from each scheme)."""
    by_x = {}
    for label in labels:
        by_x.setdefault(real_stability_interval(config.scheme(label)), []).append(label)
    return "; ".join(f"{', '.join(names)}: " + ("x = ∞ (A-stable)" if math.isinf(x) else
                                                  f"x = {x:.3g} → h ≤ {x / abs(a):.3g}")
                     for x, names in sorted(by_x.items()))


def _verdict(config, records, problem, ws):
    prob = ws.problem(problem)
    groups = by_solver(records, problem)
    a, t_star, band = prob.stiffest_rate()
    ladder = config.dt
    stable_all = [s for s, rs in groups.items() if largest_stable_dt(rs) == max(ladder)]
    lines = []
    lines.append(f"- Stiffest drift rate a = {a:.4g} (band {band}, t = {t_star:.4g}): a scheme with real stability "
                 f"interval [−x, 0] needs h ≤ x/|a| ({_stability_bounds(config, groups, a)}).")
    lines.append(prob.verdict(ladder))
    if stable_all:
        lines.append(f"- Stable at every step size of the ladder: {', '.join(stable_all)}.")
    for s, rs in groups.items():
        if s in stable_all:
            continue
        best = largest_stable_dt(rs)
        worst = rs[0]
        lines.append(f"- {s}: largest stable step {_stable_cell(best, ladder)}; at dt = {_fmt_dt(worst['dt'])} the "
                     f"state reaches {_f(worst['instability_ratio'])}× the exact RMS, the first step after an "
                     f"activation gives {_f(worst['first_step_amplification'])}× the exact std of the new band, "
                     f"{100 * worst['diverged_fraction']:.0f}% of paths diverge.")
    finest = [r for r in records if r["problem"] == problem and r["dt"] == min(ladder)]
    if finest:
        w = min(finest, key=lambda r: r["weak_error"] if r["weak_error"] is not None else math.inf)
        st = min(finest, key=lambda r: r["strong_error"] if r["strong_error"] is not None else math.inf)
        lines.append(f"- Most accurate at dt = {_fmt_dt(min(ladder))}: weak {w['solver']} ({_f(w['weak_error'])}), "
                     f"strong {st['solver']} ({_f(st['strong_error'])}).")
    tol = 0.05
    ok = [r for r in records if r["problem"] == problem and r["stable"] and r["weak_error"] is not None
          and r["weak_error"] <= tol]
    if ok:
        cheap = min(ok, key=lambda r: (r["nfe"], r["weak_error"]))
        lines.append(f"- Cheapest to a weak error ≤ {tol:g}: {cheap['solver']} at dt = {cheap['dt_label']} "
                     f"({cheap['nfe']} evaluations, weak error {_f(cheap['weak_error'])}).")
    return "\n".join(lines)


def stable_steps_table(config, records):
    rows = []
    intervals = {s: real_stability_interval(config.scheme(s)) for s in config.solvers}
    for s in config.solvers:
        rows.append([s, f"{intervals[s]:.3g}" if math.isfinite(intervals[s]) else "∞ (A-stable)"]
                    + [_stable_cell(largest_stable_dt(by_solver(records, p.name).get(s, [])), config.dt)
                       for p in config.problems])
    return _table(["solver", "real stability interval x"] + [p.name for p in config.problems], rows)


def nfe_table(config, nfe_rows):
    """Per problem and scheme: the cheapest NFE to the weak-error tolerance on each grid, and the error at the
    largest budget."""
    from .nfe import GRIDS, TOLERANCE, cheapest_nfe

    rows = []
    for p in config.problems:
        for s in dict.fromkeys(r["solver"] for r in nfe_rows if r["problem"] == p.name):
            cells = [p.name, s]
            for g in GRIDS:
                n = cheapest_nfe(nfe_rows, p.name, s, g, TOLERANCE)
                last = max((r for r in nfe_rows if (r["problem"], r["solver"], r["grid"]) == (p.name, s, g)),
                           key=lambda r: r["nfe"])
                err = "diverged" if last["weak_error"] is None else _f(last["weak_error"])
                cells.append(f"{'–' if n is None else n} ({err} at {last['nfe']})")
            rows.append(cells)
    return _table(["problem", "solver"] + [f"{g}: NFE to ≤ {TOLERANCE:g} (error at the largest NFE)"
                                           for g in GRIDS], rows)


def write_report(out, config, records, references, crosschecks, meta, ws, nfe_rows=None):
    """Write ``out/report.md``; return its text."""
    parts = ["# mrdiffusion bench: solvers near the point mass", ""]
    parts.append(f"Run {meta['finished']}, mrdiffusion {meta['mrdiffusion']}, torch {meta['torch']}, device "
                 f"{meta['device']}, {meta['world_size']} process(es) × {meta['threads']} thread(s); configuration: "
                 f"{meta['config_source']}; seed {config.seed}. Numbers: `results.json` / `results.csv`.")
    parts += ["", "## Setup", ""]
    parts.append(f"- **View**: every cell samples the *band view* (packed Haar coefficients of the finest grid, "
                 f"level by level through `solvers.sdeint`, as `MultiResolutionSDE.sample_bands`). The grid view of "
                 f"per-band-rate processes has no diagonal linear part, so ExponentialEuler and DriftImplicitEuler "
                 f"need the band view; with it every scheme runs on the same process.")
    parts.append(f"- **Solvers**: {', '.join(config.solvers)}. RK4 is ODE-only, so it is left out of the SDE "
                 f"problems; it appears in the ODE cross-check and the stability-region plot.")
    parts.append(f"- **Step sizes**: {', '.join(_fmt_dt(d) for d in config.dt)}.")
    parts.append("- **Problems** (every band starts from a point mass at its activation):")
    for p in config.problems:
        parts.append(f"  - `{p.name}`: {ws.problem(p.name).describe()}")
    parts.append(
        f"- **Weak error** ({config.paths} paths per cell): at each activation time and at T, per band, the RMS "
        f"standardised bias of the mean and the relative error of the variance against the closed form "
        f"(`band_moments`); the cell's number is the largest. The same Gaussian increments drive a coupled sampler "
        f"that is exact in law, used as a control variate (unbiased; what remains is the Monte Carlo standard "
        f"error `weak_floor`, and orders are fitted only above 3× that floor).")
    parts.append(
        f"- **Strong error** ({config.strong_paths} paths on one Brownian path with Lévy area): RMS difference to "
        f"{config.reference_solver} at dt = {_fmt_dt(config.reference_dt)} on the same path, standardised by the "
        f"exact std, largest over the activation times, T and the bands. ExponentialEuler is exact in law but not "
        f"pathwise, so it is not the reference.")
    parts.append(
        f"- **Instability ratio**: max over t and bands of RMS(Z_t) / exact RMS(Z_t); **first-step amplification**: "
        f"the new band's std right after its first step over the exact std then (largest over activations). "
        f"A path **diverges** when any coefficient exceeds {config.divergence_factor:g}× the largest exact RMS. "
        f"A cell is **stable** when no path diverges and the instability ratio is ≤ {config.stable_ratio:g}; the "
        f"largest stable step is the largest dt at which it and every smaller step are stable.")
    parts.append(
        f"- **Cost**: NFE = drift + diffusion evaluations per path (batched), as `sdeint` counts them; "
        f"`wall_s` = seconds inside `solvers.sdeint` for the {config.paths} weak-run paths, excluding the time to "
        f"draw the increments (every scheme at a step size reuses the same normals); `solver s` sums it over "
        f"the ladder. Wall times vary with machine load; every other number is reproducible from the seed.")
    parts += ["", "## Main tables", ""]
    parts.append("Empirical orders: log–log slope over the finest (up to 4) stable cells whose error is above "
                 "3× its floor; when the ladder has fewer than 3 stable cells, over cells without diverged paths "
                 "(`*`: some of them are above the instability threshold, a pre-asymptotic slope; `exact`: "
                 "round-off only; `at floor`: the finest errors are below the Monte Carlo or reference floor; "
                 "`n/a`: fewer than 3 usable cells). Declared orders are the schemes' class attributes (strong "
                 "order for additive noise).")
    for p in config.problems:
        parts += ["", f"### {p.name}", "", main_table(config, records, p.name), "", "Verdict:", "",
                  _verdict(config, records, p.name, ws)]
    parts += ["", "## Largest stable step size near the point mass", "",
              "Measured per problem; `x` is each scheme's linear stability interval on the negative real axis "
              "(from `scheme.step` on x' = λx).", "", stable_steps_table(config, records)]
    if nfe_rows:
        from .nfe import NFE_STEPS

        parts += ["", "## Error against NFE, per time grid (exact, no Monte-Carlo error)", "",
                  "Every problem is linear with additive noise and these schemes are affine in (x, ΔW), so the "
                  "law at T is computed exactly from impulse responses (`mrdiffusion/bench/nfe.py`). Weak error at "
                  "T: largest over bands of the RMS standardised mean bias and the RMS relative variance error. "
                  f"Budgets of {', '.join(map(str, NFE_STEPS))} steps on two grids from `mrdiffusion.sampling`: "
                  "`uniform` (activation times added) and `activation-refined` (steps growing geometrically away "
                  "from every activation). NFE as the driver counts it (drift + diffusion evaluations). Plot: "
                  "`error_vs_nfe.png`.", "", nfe_table(config, nfe_rows)]
    parts += ["", "## Strong-error references", ""]
    rows = [[name, r["solver"], _fmt_dt(r["dt"]), _f(r["error_at_2dt"]), f"{r['wall_s']:.1f}"]
            for name, r in references.items()]
    parts.append(_table(["problem", "solver", "dt", "own error (vs 2·dt)", "wall s"], rows))
    if crosschecks:
        parts += ["", "## Cross-checks against peers", ""]
        rows = [[c["check"], c["problem"], _fmt_dt(c["dt"]), f"{c['max_abs_diff']:.3g}", _f(c["max_abs_value"]),
                 "yes" if c["ok"] else "**NO**"] for c in crosschecks]
        parts.append(_table(["check", "problem", "dt", "max |difference|", "max |value|", "agree"], rows))
        worst = max(crosschecks, key=lambda c: c["max_abs_diff"])
        ode = next((c for c in crosschecks if "ours_vs_exact" in c), None)
        parts.append("")
        parts.append(f"Largest difference: {worst['max_abs_diff']:.3g} ({worst['check']})."
                     + (f" Against the exact flow: RK4 {ode['ours_vs_exact']:.3g}, dopri5 {ode['peer_vs_exact']:.3g}."
                        if ode else ""))
    parts += ["", "## Plots", "",
              "- `error_vs_dt.png`: weak and strong error against the step, log–log, with reference slopes.",
              f"- `instability.png`: RMS(Z_t)/exact RMS against t at dt = {_fmt_dt(config.plot_dt)}, activation "
              f"times marked.",
              "- `diverged_heatmap.png`: diverged fraction per solver × step (cell text: instability ratio).",
              "- `stability_regions.png`: |R(hλ)| ≤ 1 of each scheme from `scheme.step`, closed forms dashed; "
              "mean-square stability of EulerMaruyama and DriftImplicitEuler in the (hλ, hμ²) plane.",
              "- `sample_paths.png`: sample paths of one coefficient per band with the exact ±2 std envelope.",
              "- `band_images.png`: one sample's Haar bands over time, each reconstructed on the finest grid.",
              "- `error_vs_nfe.png`: exact weak error at T against NFE per scheme, uniform grid solid, "
              "activation-refined grid dashed.",
              "", "Linear stability factors R(z), z = hλ: "
              + "; ".join(f"{s}: {cls().stability_formula}" for s, cls in solvers.SCHEMES.items()), ""]
    text = "\n".join(parts)
    from .._io import atomic_write

    atomic_write(os.path.join(out, "report.md"), text)
    return text
