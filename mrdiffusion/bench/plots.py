"""The study's figures (matplotlib, Agg backend), written as PNG files into the output folder.

1. ``error_vs_dt.png``      weak and strong error against the step, log–log, reference slopes;
2. ``instability.png``      RMS(Z_t) / exact RMS against t at a coarse step, activation times marked;
3. ``diverged_heatmap.png`` diverged fraction per solver × step, instability ratio in each cell;
4. ``stability_regions.png`` linear stability regions (from ``scheme.step``) and mean-square regions;
5. ``sample_paths.png`` and ``band_images.png``: paths per band, and one sample's Haar bands over time;
6. ``error_vs_nfe.png``     exact weak error at T against NFE per scheme and time grid (``nfe.py``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

import solvers

from .config import _fmt_dt
from .report import EXACT, by_solver
from .stability import amplification, ms_factor

__all__ = ["write_plots", "solver_style"]

_MARKERS = "osD^pP*Xh"  # "v" is kept for "at or below the floor"
_DASHED = {"Milstein"}  # identical to EulerMaruyama on additive noise: dashed, so both stay visible


def solver_style(name):
    """A fixed colour, marker and line style per scheme, the same in every plot."""
    import matplotlib.pyplot as plt

    names = list(solvers.SCHEMES)
    i = names.index(name) if name in names else len(names)
    return {"color": plt.get_cmap("tab10")(i % 10), "marker": _MARKERS[i % len(_MARKERS)],
            "ls": "--" if name in _DASHED else "-"}


def _label(name):
    return f"{name} (= EulerMaruyama, additive noise)" if name == "Milstein" else name


def _log_ticks(ax):
    """Plain tick labels (0.5, 1, 2, 10, 100, ...) on a log axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=()))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _setup():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
                         "figure.dpi": 110, "savefig.dpi": 110, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _save(fig, out, name):
    from .._io import atomic_write
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write(os.path.join(out, name), buf.getvalue())
    import matplotlib.pyplot as plt

    plt.close(fig)
    return os.path.join(out, name)


def _dt_axis(ax, ladder):
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ladder))
    ax.set_xticklabels([_fmt_dt(d) for d in ladder])
    ax.minorticks_off()


# ----------------------------------------------------------------------------- 1. error vs dt


def plot_errors(plt, out, config, records):
    probs = [p.name for p in config.problems]
    fig, axes = plt.subplots(len(probs), 2, figsize=(11, 3.3 * len(probs) + 0.6), squeeze=False)
    for row, name in enumerate(probs):
        groups = by_solver(records, name)
        for col, (metric, floor_key, slopes, title) in enumerate((
                ("weak_error", "weak_floor", (1.0, 2.0), "weak error (mean & variance, relative)"),
                ("strong_error", "strong_floor", (0.5, 1.0, 1.5), "strong error (RMS / exact std)"))):
            ax = axes[row, col]
            def floor(r):
                return max(EXACT, 3 * (r.get(floor_key) or 0.0))

            above = [r[metric] for rs in groups.values() for r in rs if r[metric] is not None and r[metric] > floor(r)]
            lo = 10 ** math.floor(math.log10(min(above))) if above else 1e-6
            hi = min(10 ** math.ceil(math.log10(max(above))) if above else 1.0, 1e6)
            for solver, rs in groups.items():
                st = solver_style(solver)
                dts = [r["dt"] for r in rs]
                ys = [min(max(r[metric], lo), hi) if r[metric] is not None else np.nan for r in rs]
                ax.plot(dts, ys, color=st["color"], ls=st["ls"], lw=1.3, alpha=0.85)
                kinds = {}  # (marker, filled) -> points: one plot call per kind
                for r, y in zip(rs, ys):
                    below = r[metric] is not None and r[metric] <= max(lo, floor(r))
                    kinds.setdefault(("v" if below else st["marker"], r["stable"]), []).append((r["dt"], y))
                for (marker, filled), pts in kinds.items():
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=st["color"],
                            mfc=st["color"] if filled else "white", ms=6, clip_on=False, ls="none")
            x0, x1 = min(config.dt), max(config.dt)
            at_min = [r[metric] for rs in groups.values() for r in rs if r["dt"] == x0 and r[metric] is not None
                      and lo <= r[metric] <= hi]
            anchor = max(lo * 1.5, min(at_min) / 3) if at_min else math.sqrt(lo * hi)
            for p in slopes:  # a fan of reference slopes from one point below the data at the finest step
                x_end = min(x1, x0 * (hi / anchor) ** (1 / p))
                y_end = anchor * (x_end / x0) ** p
                ax.plot([x0, x_end], [anchor, y_end], ls=(0, (4, 3)), color="0.45", lw=1)
                ax.annotate(f"$\\propto dt^{{{p:g}}}$", (x_end, y_end), textcoords="offset points", xytext=(-4, -2),
                            ha="right", va="top", fontsize=8, color="0.3")
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.5, hi * 1.5)
            _dt_axis(ax, config.dt)
            ax.set_title(f"{name}: {title}")
            ax.set_xlabel("step size dt (time units)")
            ax.set_ylabel("error (dimensionless)")
    handles = [plt.Line2D([], [], color=solver_style(s)["color"], marker=solver_style(s)["marker"],
                          ls=solver_style(s)["ls"], label=_label(s)) for s in config.solvers]
    handles += [plt.Line2D([], [], color="0.3", marker="o", mfc="white", ls="none", label="unstable cell (hollow)"),
                plt.Line2D([], [], color="0.3", marker="v", ls="none",
                           label="within 3× its floor (Monte Carlo, reference or round-off): not resolved"),
                plt.Line2D([], [], color="0.45", ls=(0, (4, 3)), label="reference slopes")]
    fig.legend(handles=handles, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.01), frameon=False)
    fig.suptitle("Error against step size (band view, closed-form moments; strong vs "
                 f"{config.reference_solver} at dt={_fmt_dt(config.reference_dt)})", y=1.0)
    fig.tight_layout(rect=(0, 0.06, 1, 0.98))
    return _save(fig, out, "error_vs_dt.png")


# ----------------------------------------------------------------------------- 2. instability


def plot_instability(plt, out, config, records, ws):
    probs = [p.name for p in config.problems]
    fig, axes = plt.subplots(1, len(probs), figsize=(5.2 * len(probs), 4.3), squeeze=False)
    dt = config.plot_dt
    for ax, name in zip(axes[0], probs):
        prob = ws.problem(name)
        top, bottom = 1.0, 1.0
        for solver, rs in by_solver(records, name).items():
            rec = next((r for r in rs if math.isclose(r["dt"], dt)), None)
            if rec is None:
                continue
            t = np.array(rec["ratio_curve"]["t"])
            y = np.array([np.nan if v is None else v for v in rec["ratio_curve"]["ratio"]], dtype=float)
            st = solver_style(solver)
            ax.plot(t, y, color=st["color"], ls=st["ls"], marker=st["marker"], ms=3.5, lw=1.3, label=_label(solver))
            if np.isfinite(y).any():
                top = max(top, float(np.nanmax(y)))
                bottom = min(bottom, float(np.nanmin(y)))
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(config.stable_ratio, color="0.3", lw=0.9, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(min(0.5, bottom / 1.5), max(4.0, top * 2))
        _log_ticks(ax)
        for k, t in enumerate(prob.times[1:], start=1):
            ax.axvline(t, color="0.5", lw=0.8, ls="--")
            shape = "×".join(map(str, prob.proc.levels[k].shape))
            ax.text(t, 1.0, shape, rotation=0, va="bottom", ha="center", fontsize=7.5, color="0.35",
                    transform=ax.get_xaxis_transform())
        ax.set_xlim(0, prob.T)
        ax.set_xlabel("time t (activation times dashed, new grid labelled)")
        ax.set_ylabel("RMS(Z_t) / exact RMS (max over bands)")
        ax.set_title(f"{name}, dt = {_fmt_dt(dt)}", pad=14)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle(f"Instability near the point mass: RMS of the sampled state over the exact RMS (1 = exact, "
                 f"dotted = stability threshold {config.stable_ratio:g}; grids above the activation times)", y=1.02)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, out, "instability.png")


# ----------------------------------------------------------------------------- 3. diverged heat map


def plot_heatmap(plt, out, config, records):
    probs = [p.name for p in config.problems]
    fig, axes = plt.subplots(1, len(probs), figsize=(4.2 * len(probs) + 2.4, 0.45 * len(config.solvers) + 2.2),
                             squeeze=False, sharey=True, layout="constrained")
    ladder = sorted(config.dt, reverse=True)
    im = None
    for ax, name in zip(axes[0], probs):
        groups = by_solver(records, name)
        frac = np.full((len(config.solvers), len(ladder)), np.nan)
        for i, s in enumerate(config.solvers):
            for j, dt in enumerate(ladder):
                rec = next((r for r in groups.get(s, []) if math.isclose(r["dt"], dt)), None)
                if rec is None:
                    continue
                frac[i, j] = rec["diverged_fraction"]
                ratio = rec["instability_ratio"]
                txt = "∞" if ratio is None else (f"{ratio:.2f}" if ratio < 10 else f"{ratio:.3g}" if ratio < 1000
                                                 else f"{ratio:.0e}".replace("e+0", "e"))
                ax.text(j, i, txt, ha="center", va="center", fontsize=7.5,
                        color="white" if frac[i, j] > 0.6 else ("0.15" if rec["stable"] else "#b00000"),
                        fontweight="normal" if rec["stable"] else "bold")
        im = ax.imshow(frac, cmap="Reds", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(ladder)))
        ax.set_xticklabels([_fmt_dt(d) for d in ladder])
        ax.set_yticks(range(len(config.solvers)))
        ax.set_yticklabels(config.solvers)
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("step size dt")
        ax.set_title(name)
        ax.grid(False)
    fig.colorbar(im, ax=list(axes[0]), label="fraction of diverged paths", shrink=0.9)
    fig.suptitle("Diverged paths per solver and step (colour); cell text: instability ratio max RMS/exact RMS "
                 f"(bold red: unstable, above {config.stable_ratio:g})")
    return _save(fig, out, "diverged_heatmap.png")


# ----------------------------------------------------------------------------- 4. stability regions


def plot_stability(plt, out, config):
    names = list(solvers.SCHEMES)
    ncol = 3
    nrow = math.ceil((len(names) + 1) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.1 * ncol, 3.7 * nrow), squeeze=False)
    x = np.linspace(-5, 2, 211)
    y = np.linspace(-3.5, 3.5, 211)
    X, Y = np.meshgrid(x, y)
    Z = torch.complex(torch.tensor(X.ravel()), torch.tensor(Y.ravel()))
    for ax, name in zip(axes.ravel(), names):
        scheme = solvers.SCHEMES[name]()
        R = amplification(scheme, Z).abs().numpy().reshape(X.shape)
        st = solver_style(name)
        ax.contourf(X, Y, (R <= 1).astype(float), levels=[0.5, 1.5], colors=[st["color"]], alpha=0.35)
        ax.contour(X, Y, R, levels=[1.0], colors=[st["color"]], linewidths=1.5)
        closed = np.abs(scheme.stability_function(Z).numpy().reshape(X.shape))
        ax.contour(X, Y, closed, levels=[1.0], colors="k", linewidths=1.0, linestyles="dashed")
        ax.axhline(0, color="0.4", lw=0.6)
        ax.axvline(0, color="0.4", lw=0.6)
        ax.set_aspect("equal")
        form, _, note = scheme.stability_formula.partition("  (")
        note = ("ODE only" if name == "RK4" else "") + (note.rstrip(")") if note else "")
        ax.set_title(f"{name}{' (' + note + ')' if note else ''}\nR(z) = {form}", fontsize=9)
        ax.set_xlabel("Re(hλ)")
        ax.set_ylabel("Im(hλ)")
    ax = axes.ravel()[len(names)]
    a = np.linspace(-4, 1, 201)
    b = np.linspace(0, 4, 161)
    A, B = np.meshgrid(a, b)
    handles = []
    for name, color in (("EulerMaruyama", solver_style("EulerMaruyama")["color"]),
                        ("DriftImplicitEuler", solver_style("DriftImplicitEuler")["color"])):
        scheme = solvers.SCHEMES[name]()
        G = ms_factor(scheme, A.ravel(), B.ravel()).numpy().reshape(A.shape)
        ax.contourf(A, B, (G < 1).astype(float), levels=[0.5, 1.5], colors=[color], alpha=0.3)
        ax.contour(A, B, G, levels=[1.0], colors=[color], linewidths=1.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            closed = scheme.ms_stability_factor(A, B)
        ax.contour(A, B, closed, levels=[1.0], colors="k", linewidths=1.0, linestyles="dashed")
        handles.append(plt.Rectangle((0, 0), 1, 1, color=color, alpha=0.45,
                                     label=f"{name}: {scheme.ms_stability_formula}"))
    handles.append(plt.Line2D([], [], color="k", ls="--", label="closed form boundary"))
    ax.set_xlabel("hλ (drift, real)")
    ax.set_ylabel("hμ² (noise)")
    ax.set_title("mean-square stability of dX = λX dt + μX dW\n(shaded: E|X₁|² < E|X₀|², from scheme.step)",
                 fontsize=9)
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    for extra in axes.ravel()[len(names) + 1:]:
        extra.axis("off")
    fig.suptitle("Linear stability regions |R(z)| ≤ 1, z = hλ (shaded: computed from one scheme.step on x' = λx; "
                 "dashed: closed form)", y=1.0)
    fig.tight_layout()
    return _save(fig, out, "stability_regions.png")


# ----------------------------------------------------------------------------- 5. sample paths, band images


def _plot_dt(prob, dt, config):
    """``dt`` if it divides every level span of ``prob``, else the finest step of the study."""
    ok = all(abs(t / dt - round(t / dt)) < 1e-9 for t in prob.times + [prob.T])
    return dt if ok else min(config.dt)


def _trajectories(prob, solver, dt, paths, seed):
    grid = [j * dt for j in range(round(prob.T / dt) + 1)]
    path = prob.proc.finest_path(paths, seed=seed, levy_area=solver.needs_levy_area)
    ys = prob.proc.sample_bands(solver, paths, dt=dt, ts=grid, brownian=path, dtype=torch.float64).bands
    return np.array(grid), ys.numpy()


def plot_paths(plt, out, config, ws, *, dt=1 / 64, paths=3):
    probs = [p.name for p in config.problems]
    K = max(ws.problem(n).K for n in probs)
    fig, axes = plt.subplots(K, len(probs), figsize=(4.6 * len(probs), 1.7 * K + 1), squeeze=False, sharex="col")
    seed = config.seed + 7
    for col, name in enumerate(probs):
        prob = ws.problem(name)
        dt_p = _plot_dt(prob, dt, config)
        t, good = _trajectories(prob, solvers.ExponentialEuler(), dt_p, paths, seed)
        _, bad = _trajectories(prob, solvers.EulerMaruyama(), dt_p, paths, seed)
        moments = [prob.moments(float(s)) for s in t]
        for k in range(K):
            ax = axes[k, col]
            if k >= prob.K:
                ax.axis("off")
                continue
            i = int((prob.proc.band == k).nonzero()[0])
            m = np.array([float(mm[0][0, i]) for mm in moments])
            sd = np.sqrt(np.array([float(mm[1][0, i]) for mm in moments]))
            ax.fill_between(t, m - 2 * sd, m + 2 * sd, color="0.85", lw=0)
            ax.plot(t, m, color="0.4", lw=0.8)
            for p in range(paths):
                ax.plot(t, good[:, p, 0, i], color=solver_style("ExponentialEuler")["color"], lw=1.6)
                ax.plot(t, bad[:, p, 0, i], color=solver_style("EulerMaruyama")["color"], lw=0.9, ls=(0, (3, 2)))
            half = 3.5 * max(float(sd.max()), 1e-3)
            ax.set_ylim(float(m.min()) - half, float(m.max()) + half)
            ax.axvline(prob.times[k], color="0.5", lw=0.8, ls=":")
            if k == 0:
                ax.set_title(f"{name} (dt = {_fmt_dt(dt_p)})")
            ax.set_ylabel(f"band {k}\ncoefficient")
        axes[min(K, prob.K) - 1, col].set_xlabel("time t")
    handles = [plt.Line2D([], [], color=solver_style("ExponentialEuler")["color"], label="ExponentialEuler"),
               plt.Line2D([], [], color=solver_style("EulerMaruyama")["color"], ls="--",
                          label="EulerMaruyama, same Brownian path"),
               plt.Rectangle((0, 0), 1, 1, color="0.85", label="exact mean ± 2 std"),
               plt.Line2D([], [], color="0.5", ls=":", label="band activation (point mass)")]
    fig.legend(handles=handles, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.005), frameon=False)
    fig.suptitle("Sample paths of one Haar coefficient per band (rows: coarse → fine; values in band coordinates; "
                 "EulerMaruyama lines leaving the panel have blown up)", y=1.0)
    fig.tight_layout(rect=(0, 0.03, 1, 0.99))
    return _save(fig, out, "sample_paths.png")


def plot_band_images(plt, out, config, ws, *, dt=1 / 64):
    from .problems import KINDS

    name = next((p.name for p in config.problems if KINDS[p.kind].showcase), config.problems[0].name)
    prob = ws.problem(name)
    dt = _plot_dt(prob, dt, config)
    solver = solvers.ExponentialEuler()
    ends = prob.times[1:] + [prob.T]
    times = [(a + b) / 2 for a, b in zip(prob.times, ends)] + [prob.T]  # each level half-way, and the end
    times = [round(t / dt) * dt for t in times]
    path = prob.proc.finest_path(1, seed=config.seed + 11)
    ys = prob.proc.sample_bands(solver, 1, dt=dt, ts=times, brownian=path, dtype=torch.float64).bands
    band = prob.proc.band
    rows = prob.K + 1
    height = 1.5 * rows + 1.5
    fig, axes = plt.subplots(rows, len(times), figsize=(1.55 * len(times) + 1.6, height), squeeze=False)
    fig.subplots_adjust(top=1 - 1.25 / height, hspace=0.25)
    images = []
    for k in range(rows):
        row = []
        for j in range(len(times)):
            y = ys[j, 0]
            if k < prob.K:
                y = y * (band == k).to(y.dtype)
            row.append(prob.proc.layout.unpack(y)[0].numpy())
        images.append(row)
    for k, row in enumerate(images):
        lim = max(float(np.abs(im).max()) for im in row) or 1.0
        for j, im in enumerate(row):
            ax = axes[k, j]
            shown = ax.imshow(im, cmap="RdBu_r" if k < prob.K else "gray", vmin=-lim, vmax=lim,
                              interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if k == 0:
                level = prob.proc.level_at(times[j])
                ax.set_title(f"t = {times[j]:g}\n(on {'×'.join(map(str, prob.proc.levels[level].shape))})",
                             fontsize=9)
            if j == 0:
                label = (f"band {k}\n({'×'.join(map(str, prob.proc.levels[k].shape))})" if k < prob.K
                         else "image\n(all bands)")
                ax.set_ylabel(label, fontsize=9)
        fig.colorbar(shown, ax=list(axes[k]), fraction=0.02, pad=0.01)
    fig.suptitle(f"One sample of '{name}' (ExponentialEuler, dt = {_fmt_dt(dt)}) over time: rows = each Haar "
                 f"band's contribution on the {'×'.join(map(str, prob.proc.finest_shape))} grid\n(a band is zero, a "
                 f"point mass, until it activates; last row: the image, all bands; colour = value, per row)",
                 fontsize=10, y=1 - 0.12 / height, va="top")
    return _save(fig, out, "band_images.png")


def plot_error_vs_nfe(plt, out, config, nfe_rows, *, floor=1e-15, ceiling=1e3):
    """Exact weak error at T against NFE per scheme: uniform grid solid, activation-refined dashed."""
    from .nfe import GRIDS, TOLERANCE

    probs = [p.name for p in config.problems]
    fig, axes = plt.subplots(1, len(probs), figsize=(4.6 * len(probs), 4.2), squeeze=False)
    solvers_ = list(dict.fromkeys(r["solver"] for r in nfe_rows))
    for ax, name in zip(axes[0], probs):
        for s in solvers_:
            st = solver_style(s)
            for g, ls in zip(GRIDS, ("-", "--")):
                rs = sorted((r for r in nfe_rows if (r["problem"], r["solver"], r["grid"]) == (name, s, g)),
                            key=lambda r: r["nfe"])
                pts = [(r["nfe"], min(max(r["weak_error"], floor), ceiling)) for r in rs if r["weak_error"] is not None]
                if pts:
                    ax.plot(*zip(*pts), color=st["color"], marker=st["marker"], ls=ls, lw=1.2, ms=4, alpha=0.85)
        ax.axhline(TOLERANCE, color="0.4", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, ceiling * 3)
        ax.set_title(f"{name}")
        ax.set_xlabel("NFE (drift + diffusion evaluations)")
        ax.set_ylabel("exact weak error at T (clipped to [1e-15, 1e3])")
    handles = [plt.Line2D([], [], color=solver_style(s)["color"], marker=solver_style(s)["marker"], label=s)
               for s in solvers_]
    handles += [plt.Line2D([], [], color="0.3", ls="-", label="uniform grid"),
                plt.Line2D([], [], color="0.3", ls="--", label="activation-refined grid"),
                plt.Line2D([], [], color="0.4", ls=":", label=f"tolerance {TOLERANCE:g} (report table)")]
    fig.legend(handles=handles, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle("Error against NFE per time grid (exact law from impulse responses; round-off shown at 1e-15)",
                 y=1.0)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    return _save(fig, out, "error_vs_nfe.png")


def write_plots(out, config, records, ws, nfe_rows=None):
    """Write every figure; return their paths."""
    plt = _setup()
    paths = [plot_errors(plt, out, config, records), plot_instability(plt, out, config, records, ws),
             plot_heatmap(plt, out, config, records), plot_stability(plt, out, config),
             plot_paths(plt, out, config, ws), plot_band_images(plt, out, config, ws)]
    if nfe_rows:
        paths.append(plot_error_vs_nfe(plt, out, config, nfe_rows))
    return paths
