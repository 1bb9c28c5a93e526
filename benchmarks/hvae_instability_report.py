"""The analysis, tables and plots of ``benchmarks.hvae_instability``: where the gradient concentrates, when an
instability starts; markdown, JSON and PNGs in one folder."""

from __future__ import annotations

import json
import os

import numpy as np


def _f(v, fmt=".3g"):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt)


def concentration(rec):
    """How much of the per-step gradient sits in the first step after each activation.

    Returns ``ratio_median`` (median over updates of mean ‖∂L/∂x‖ on post-activation steps over
    that on the other steps), ``spike_share`` (among the updates whose total gradient norm is at
    or above the run's p95, the fraction whose largest per-step state gradient is on a
    post-activation step) and ``base_share`` (the fraction of steps that are post-activation:
    what ``spike_share`` would be if spikes ignored the activations).
    """
    sg = np.array(rec["state_grad"], dtype=float)
    act = np.array(rec["activation"], dtype=bool)
    if sg.size == 0 or act.all() or not act.any():
        return {"ratio_median": float("nan"), "spike_share": float("nan"), "base_share": float("nan"), **onset(rec)}
    ok = np.isfinite(sg).all(1)
    sg = sg[ok]
    ratio = sg[:, act].mean(1) / np.maximum(sg[:, ~act].mean(1), 1e-30)
    g = np.array(rec["grad_norm"], dtype=float)[: len(ok)][ok]
    top = g >= np.percentile(g, 95) if g.size else np.zeros(0, bool)
    spike_share = float(act[sg[top].argmax(1)].mean()) if top.any() else float("nan")
    return {"ratio_median": float(np.median(ratio)), "spike_share": spike_share,
            "base_share": float(act.mean()), **onset(rec)}


def onset(rec):
    """Where the first instability starts: the first update whose gradient norm exceeds the skip
    threshold or is not finite (``onset_update``), and in it the top-down step whose KL jumped most
    against its median over the 10 updates before (``onset_step``, ``onset_post_activation``)."""
    g = np.array(rec["grad_norm"], dtype=float)
    thr = rec["train"]["skip_threshold"]
    bad = ~np.isfinite(g) | ((g > thr) if thr > 0 else np.zeros_like(g, dtype=bool))
    if not bad.any():
        return {"onset_update": None, "onset_step": None, "onset_post_activation": None}
    u = int(np.argmax(bad))
    kl = np.array(rec["kl"], dtype=float)
    before = kl[max(0, u - 10):u]
    before = before[np.isfinite(before).all(1)] if before.size else before
    if u >= len(kl) or not before.size or not np.isfinite(kl[u]).any():
        return {"onset_update": u, "onset_step": None, "onset_post_activation": None}
    jump = np.where(np.isfinite(kl[u]), kl[u], np.inf) / np.maximum(np.median(before, 0), 1e-12)
    i = int(np.argmax(jump))
    return {"onset_update": u, "onset_step": i, "onset_post_activation": bool(rec["activation"][i])}


def _onset(c):
    if c["onset_update"] is None:
        return "none"
    if c["onset_step"] is None:
        return f"update {c['onset_update']}"
    return (f"update {c['onset_update']}, step {c['onset_step']} "
            f"({'yes' if c['onset_post_activation'] else 'no'})")


def table(records):
    lines = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        rs = [r for r in records if r["setting"] == setting]
        r0 = rs[0]
        lines += [f"### {setting}: dec_blocks {tuple(r0['config']['dec_blocks'])}, lr {r0['train']['lr']:g}, "
                  f"warm-up {r0['train']['warmup']}, {r0['updates']} updates of batch {r0['train']['batch_size']}, "
                  f"skip threshold {r0['train']['skip_threshold']:g}, clip {r0['train']['grad_clip']:g}", "",
                  "| variant | seed | test bits/dim | skip rate | non-finite losses | grad-norm p50 | p99 | max "
                  "| post-act. ratio | spike share (base) | onset: update, step (post-act.?) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        acts = [i for i, a in enumerate(r0["activation"]) if a]
        for r in rs:
            c = concentration(r)
            lines.append(f"| {r['variant']} | {r['seed']} | {_f(r['test_bpd'], '.3f')} | {r['skip_rate']:.3f} | "
                         f"{r['nonfinite_losses']} | {_f(r['grad_norm_p50'])} | {_f(r['grad_norm_p99'])} | "
                         f"{_f(r['grad_norm_max'])} | {_f(c['ratio_median'], '.2f')} | "
                         f"{_f(c['spike_share'], '.2f')} ({_f(c['base_share'], '.2f')}) | {_onset(c)} |")
        lines += ["", f"Post-activation steps (indices): {acts} of {len(r0['activation'])}.", "",
                  "Mean over seeds:", "",
                  "| variant | test bits/dim | skip rate | non-finite losses | grad-norm p99 | max | post-act. ratio |",
                  "|---|---|---|---|---|---|---|"]
        for v in dict.fromkeys(r["variant"] for r in rs):
            vs = [r for r in rs if r["variant"] == v]

            def mean(key, vs=vs):
                a = np.array([np.nan if r[key] is None else r[key] for r in vs], dtype=float)
                return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")

            ratio = float(np.nanmean([concentration(r)["ratio_median"] for r in vs]))
            lines.append(f"| {v} | {_f(mean('test_bpd'), '.3f')} | {mean('skip_rate'):.3f} | "
                         f"{sum(r['nonfinite_losses'] for r in vs)} | {_f(mean('grad_norm_p99'))} | "
                         f"{_f(max(r['grad_norm_max'] for r in vs))} | {_f(ratio, '.2f')} |")
        lines.append("")
    lines += ["*post-act. ratio*: median over updates of the mean ‖∂L/∂x_i‖ over the first step of each "
              "resolution (right after its point mass / start) divided by the mean over the other steps. "
              "*spike share*: among updates with total gradient norm ≥ the run's p95, the fraction whose largest "
              "per-step state gradient is a post-activation step; *base* is that fraction of the steps. *onset*: the "
              "first update whose gradient norm exceeds the skip threshold or is not finite, and the top-down step "
              "whose KL jumped most against its median over the 10 updates before (post-activation or not). "
              "Post-activation steps (first step of each resolution) are listed with each setting.", ""]
    return "\n".join(lines)


def _per_step(rs, key, q):
    a = np.concatenate([np.array(r[key], dtype=float) for r in rs], 0)
    a = a[np.isfinite(a).all(1)]
    return np.percentile(a, q, axis=0) if a.size else np.full(len(rs[0]["step_times"]), np.nan)


def plot_steps(records, path):
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(r["setting"] for r in records))
    fig, axes = plt.subplots(len(settings), 2, figsize=(11, 3.6 * len(settings)), squeeze=False)
    for row, setting in zip(axes, settings):
        rs = [r for r in records if r["setting"] == setting]
        acts = [t for r in rs[:1] for t, a in zip(r["step_times"], r["activation"]) if a]
        for col, (key, label) in enumerate([("state_grad", "‖∂L/∂x_i‖ (state after step i)"),
                                            ("block_grad", "gradient norm of step i's block")]):
            ax = row[col]
            for k, v in enumerate(dict.fromkeys(r["variant"] for r in rs)):
                vs = [r for r in rs if r["variant"] == v]
                t = np.array(vs[0]["step_ends"])
                ax.plot(t, _per_step(vs, key, 50), "-o", ms=3, color=f"C{k}", label=f"{v} median")
                ax.plot(t, _per_step(vs, key, 99), ":", color=f"C{k}", lw=1)
                ax.plot(t, _per_step(vs, key, 100), "x", ms=4, color=f"C{k}")
            for a in acts:
                ax.axvline(a, color="grey", ls="--", lw=0.8)
            ax.set_yscale("log")
            ax.set_xlabel("model time at the end of step i (dashed: activation of a resolution)")
            ax.set_title(f"{setting}: {label}; median (line), p99 (dotted), max (x)", fontsize=8)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_skips(records, path):
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(r["setting"] for r in records))
    variants = list(dict.fromkeys(r["variant"] for r in records))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    w = 0.8 / len(settings)
    for j, setting in enumerate(settings):
        for i, v in enumerate(variants):
            vs = [r for r in records if r["setting"] == setting and r["variant"] == v]
            rates = [r["skip_rate"] for r in vs]
            gmax = [r["grad_norm_max"] for r in vs]
            x = i + (j - (len(settings) - 1) / 2) * w
            axes[0].bar(x, np.mean(rates), w, color=f"C{j}", label=setting if i == 0 else None)
            axes[0].plot([x] * len(rates), rates, "k.", ms=4)
            axes[1].bar(x, np.nanmean(gmax), w, color=f"C{j}", label=setting if i == 0 else None)
            axes[1].plot([x] * len(gmax), gmax, "k.", ms=4)
    thr = records[0]["train"]["skip_threshold"]
    axes[1].axhline(thr, color="red", ls="--", lw=1, label=f"skip threshold {thr:g}")
    axes[1].set_yscale("log")
    for ax, title in zip(axes, ["skip rate (bars: mean, dots: seeds)", "max gradient norm over training"]):
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(records, path):
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(r["setting"] for r in records))
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 3.4), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        for k, v in enumerate(dict.fromkeys(r["variant"] for r in records)):
            for n, r in enumerate(r for r in records if r["setting"] == setting and r["variant"] == v):
                ax.plot(r["grad_norm"], lw=0.6, color=f"C{k}", label=v if n == 0 else None)
        ax.axhline(records[0]["train"]["skip_threshold"], color="red", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("update")
        ax.set_title(f"{setting}: total gradient norm (red: skip threshold)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(records, out, prefix, variants):
    md = table(records)
    with open(os.path.join(out, f"{prefix}.md"), "w") as f:
        f.write(f"# HVAE instability experiment ({', '.join(variants)})\n\n{md}")
    slim = [{k: v for k, v in r.items() if k not in ("state_grad", "block_grad", "kl", "xnorm", "grad_norm")}
            | {"concentration": concentration(r),
               "kl_per_step_median": np.nanmedian(np.array(r["kl"], dtype=float), 0).tolist() if r["kl"] else [],
               "xnorm_per_step_median": (np.nanmedian(np.array(r["xnorm"], dtype=float), 0).tolist()
                                         if r["xnorm"] else [])}
            for r in records]
    with open(os.path.join(out, f"{prefix}.json"), "w") as f:
        json.dump(slim, f, indent=1)
    plot_steps(records, os.path.join(out, f"{prefix}_gradnorm_steps.png"))
    plot_skips(records, os.path.join(out, f"{prefix}_skips.png"))
    plot_training(records, os.path.join(out, f"{prefix}_training.png"))
    print(md)
