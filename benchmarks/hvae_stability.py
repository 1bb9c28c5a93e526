"""Experiment 2: sampling stability of HVAEs read as SDE discretisations.

For models trained with each scheme (two-step Euler = VDVAE, Euler–Maruyama,
Heun; same budget, seed 0) and for the weight-shared model, draw prior samples
with several numbers of top-down steps and record the L² norm ``||x_t||`` of
the state after every step, from the point mass ``x_0`` on; resolution changes
(``haar.embed``) are marked. Reports the fraction of non-finite samples, the
tail of the final norms, and the gradient norms / skipped updates seen during
training per scheme. Writes ``stability.md``, ``stability.json``,
``stability_norms.png`` and ``stability_gradnorms.png``.

    python -m benchmarks.hvae_stability --budget-seconds 100
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

import solvers
from benchmarks.hvae_common import MODELS, SCHEDULES, budgeted_run, experiment_parser, read_log, setup
from mrdiffusion.hvae.checkpoint import model_from_checkpoint
from mrdiffusion.hvae.data import digits
from mrdiffusion.hvae.train import evaluate

TRAINED = ("nonshared", "nonshared-EM", "nonshared-Heun", "shared")
SAMPLERS = ("TwoStepEuler", "EulerMaruyama", "Heun")


def main(argv=None):
    p = experiment_parser(__doc__)
    p.add_argument("--samples", type=int, default=500)
    args = p.parse_args(argv)
    setup(args.threads)
    data = digits()
    rows, traces, training = [], {}, {}
    for name in TRAINED:
        summary, path = budgeted_run(args.out, name, args.seed, args.budget_seconds)
        log = read_log(path)
        g = np.array([r["grad_norm"] for r in log])
        training[name] = {"solver": MODELS[name].solver, "steps": summary["steps"], "skipped": summary["skipped"],
                          "skipped_nonfinite": summary["skipped_nonfinite"],
                          "grad_norm_p99": float(np.percentile(g, 99)),
                          "grad_norm_max": float(g.max()), "test_bpd": summary["test_bpd"], "path": path}
        samplers = SAMPLERS if name in ("nonshared", "shared") else (MODELS[name].solver,)
        for sampler in samplers:
            model, _ = model_from_checkpoint(os.path.join(path, "checkpoint.pt"),
                                             solver=solvers.SCHEMES[sampler]())
            for sched, steps in SCHEDULES.items():
                gen = torch.Generator().manual_seed(1000 + args.seed)
                _, info = model.sample(args.samples, steps=steps, generator=gen, record=True)
                norms = info["norms"].double()
                final = norms[-1][torch.isfinite(norms[-1])]
                times = [0.0] + [s.t + s.h for s in model.schedule(steps)]
                rows.append({"model": name, "trained_with": MODELS[name].solver, "sampler": sampler,
                             "schedule": sched, "n_steps": len(times) - 1,
                             "nonfinite": float(info["nonfinite"].float().mean()),
                             "final_norm_median": float(final.median()) if final.numel() else float("nan"),
                             "final_norm_p99": float(final.quantile(0.99)) if final.numel() else float("nan"),
                             "max_norm": float(norms[torch.isfinite(norms)].max()),
                             "test_bpd": (evaluate(model, data.test, steps=steps)
                                          if sampler == MODELS[name].solver else None)})
                traces[(name, sampler, sched)] = (times, norms.numpy())
    res = {"budget_seconds": args.budget_seconds, "seed": args.seed, "samples": args.samples,
           "training": training, "sampling": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "stability.json"), "w") as f:
        json.dump(res, f, indent=2)
    _table(res, os.path.join(args.out, "stability.md"))
    _plot_norms(traces, MODELS["nonshared"], os.path.join(args.out, "stability_norms.png"))
    _plot_gradnorms(training, os.path.join(args.out, "stability_gradnorms.png"))
    print(open(os.path.join(args.out, "stability.md")).read())


def _table(res, path):
    lines = [f"Training, {res['budget_seconds']:g} CPU-seconds per model, seed {res['seed']} "
             f"(skip threshold 400, gradient clip 100):", "",
             "| model | scheme | steps | skipped | skipped (non-finite) | grad-norm p99 | grad-norm max "
             "| test bits/dim |",
             "|---|---|---|---|---|---|---|---|"]
    for name, t in res["training"].items():
        lines.append(f"| {name} | {t['solver']} | {t['steps']} | {t['skipped']} | {t['skipped_nonfinite']} | "
                     f"{t['grad_norm_p99']:.2f} | {t['grad_norm_max']:.2f} | {t['test_bpd']:.3f} |")
    lines += ["", f"Prior sampling, {res['samples']} samples per row; ||x|| is the L² norm of the state "
              f"(cell mean, channels summed):", "",
              "| model | trained with | sampled with | schedule | steps | non-finite | median final ||x|| "
              "| p99 final ||x|| | max ||x_t|| | test bits/dim |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["sampling"]:
        bpd = f"{r['test_bpd']:.3f}" if r["test_bpd"] is not None else "–"
        lines.append(f"| {r['model']} | {r['trained_with']} | {r['sampler']} | {r['schedule']} | {r['n_steps']} | "
                     f"{r['nonfinite']:.3f} | {r['final_norm_median']:.3g} | {r['final_norm_p99']:.3g} | "
                     f"{r['max_norm']:.3g} | {bpd} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _plot_norms(traces, config, path):
    import matplotlib.pyplot as plt

    panels = [(m, s) for (m, s, _) in traces]
    panels = list(dict.fromkeys(panels))
    ncol = 3
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), sharey=True, squeeze=False)
    changes = np.cumsum(config.dec_blocks)[:-1]
    for ax, (model, sampler) in zip(axes.flat, panels):
        for k, sched in enumerate(SCHEDULES):
            times, norms = traces[(model, sampler, sched)]
            with np.errstate(invalid="ignore"):
                lo, med, hi = np.nanpercentile(np.where(np.isfinite(norms), norms, np.nan), [5, 50, 95], axis=1)
            ax.plot(times, med, "-o", ms=2.5, color=f"C{k}", lw=1.2, label=f"{sched} ({len(times) - 1} steps)")
            ax.fill_between(times, lo, hi, color=f"C{k}", alpha=0.15)
        for c in changes:
            ax.axvline(c, color="grey", ls=":", lw=1)
        ax.plot([0], [traces[(model, sampler, "x1")][1][0, 0]], "k*", ms=9, label="point mass x₀")
        ax.set_yscale("log")
        ax.set_title(f"{model} sampled with {sampler}", fontsize=9)
        ax.set_xlabel("model time t (resolution changes dotted)")
    for ax in axes[:, 0]:
        ax.set_ylabel("||x_t||  (median, 5–95%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_gradnorms(training, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for k, (name, t) in enumerate(training.items()):
        g = [r["grad_norm"] for r in read_log(t["path"])]
        ax.plot(range(1, len(g) + 1), g, lw=0.7, color=f"C{k}",
                label=f"{name} ({t['solver']}): {t['skipped']} skipped")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("gradient norm (before clipping)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
