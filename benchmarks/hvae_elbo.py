"""Experiment 1: test ELBO on digits — per-pixel baseline, non-shared HVAE, weight-shared HVAE.

Each HVAE is trained for the same budget per seed (``--budget-seconds`` of CPU
time of the training process, so that other jobs on a shared machine do not
change the comparison; ``--seeds``), then evaluated on the held-out split with its EMA weights
(negative ELBO, one posterior sample per image, bits/dim) at the trained
schedule and at other numbers of top-down steps (the continuous-time view:
``fewer`` = (1,1,2,2), ``x2``, ``x4`` steps per resolution). Writes
``elbo.md``, ``elbo.json`` and ``elbo_curves.png`` to ``--out``.

    python -m benchmarks.hvae_elbo --budget-seconds 100 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks.hvae_common import MODELS, SCHEDULES, budgeted_run, parse_seeds, read_log, setup
from mrdiffusion.hvae.baseline import PixelCategorical
from mrdiffusion.hvae.checkpoint import model_from_checkpoint
from mrdiffusion.hvae.data import digits
from mrdiffusion.hvae.train import evaluate


def _ms(values, fmt=".3f"):
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{statistics.mean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-seconds", type=float, default=100.0)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="results/hvae")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    setup(args.threads)
    seeds = parse_seeds(args.seeds)
    data = digits()
    os.makedirs(args.out, exist_ok=True)

    base = PixelCategorical(data.levels).fit(data.train)
    results = {"budget_seconds": args.budget_seconds, "seeds": list(seeds),
               "baseline": {"test_bpd": base.nll_bits_per_dim(data.test), "parameters": base.num_parameters()}}
    for name in ("nonshared", "shared"):
        runs = []
        for seed in seeds:
            summary, path = budgeted_run(args.out, name, seed, args.budget_seconds)
            model, _ = model_from_checkpoint(os.path.join(path, "checkpoint.pt"))
            by_schedule = {k: evaluate(model, data.test, steps=v) for k, v in SCHEDULES.items()}
            log = read_log(path)
            runs.append({"seed": seed, "path": path, **summary, "by_schedule": by_schedule,
                         "max_grad_norm": max(r["grad_norm"] for r in log)})
        results[name] = {"parameters": runs[0]["parameters"], "runs": runs}

    with open(os.path.join(args.out, "elbo.json"), "w") as f:
        json.dump(results, f, indent=2)
    _table(results, os.path.join(args.out, "elbo.md"))
    _curves(results, os.path.join(args.out, "elbo_curves.png"))
    print(open(os.path.join(args.out, "elbo.md")).read())


def _table(res, path):
    n_ref = res["nonshared"]["parameters"]
    lines = [f"Test negative ELBO on sklearn digits (8×8, 17 levels, 360 held-out images), bits/dim; "
             f"{res['budget_seconds']:g} CPU-seconds of training per run (1 thread; CPU time, not wall-clock, "
             f"because the machine is shared), "
             f"seeds {res['seeds']}, mean ± std over seeds, EMA weights.", "",
             "| model | parameters | % of non-shared | steps trained | skipped updates | test bits/dim "
             "(trained schedule 1,2,3,3) | steps 1,1,1,1 | steps 1,1,2,2 | ×2 steps | ×4 steps |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| per-pixel categorical | {res['baseline']['parameters']} | – | closed form | – | "
             f"{res['baseline']['test_bpd']:.3f} | – | – | – | – |"]
    for name in ("nonshared", "shared"):
        runs = res[name]["runs"]
        sch = {k: [r["by_schedule"][k] for r in runs] for k in SCHEDULES}
        label = "HVAE, a block per step (VDVAE)" if name == "nonshared" else \
            "HVAE, a block per resolution + time embedding"
        lines.append(
            f"| {label} | {res[name]['parameters']} | {100 * res[name]['parameters'] / n_ref:.0f}% | "
            f"{_ms([r['steps'] for r in runs], '.0f')} | {sum(r['skipped'] for r in runs)} | "
            f"{_ms(sch['x1'])} | {_ms(sch['coarsest'])} | {_ms(sch['fewer'])} | {_ms(sch['x2'])} | "
            f"{_ms(sch['x4'])} |")
    ns = statistics.mean(r["by_schedule"]["x1"] for r in res["nonshared"]["runs"])
    sh = statistics.mean(r["by_schedule"]["x1"] for r in res["shared"]["runs"])
    b = res["baseline"]["test_bpd"]
    lines += ["", f"Shared vs non-shared: {100 * (sh - ns) / ns:+.2f}% bits/dim (target: within 2%); "
              f"non-shared vs baseline: {100 * (ns - b) / b:+.1f}%; shared vs baseline: {100 * (sh - b) / b:+.1f}%."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _curves(res, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    colours = {"nonshared": "C0", "shared": "C1"}
    for name in ("nonshared", "shared"):
        for i, run in enumerate(res[name]["runs"]):
            log = read_log(run["path"])
            t = [r["cpu_seconds"] for r in log]
            loss = [r["loss"] for r in log]
            k = max(1, len(loss) // 100)  # running mean over ~1% of the run
            smooth = [sum(loss[max(0, j - k):j + 1]) / len(loss[max(0, j - k):j + 1]) for j in range(len(loss))]
            ax.plot(t, smooth, color=colours[name], alpha=0.8, lw=1,
                    label=f"{name} ({res[name]['parameters'] / 1e3:.0f}k params)" if i == 0 else None)
    ax.axhline(res["baseline"]["test_bpd"], color="k", ls="--", lw=1, label="per-pixel baseline (test)")
    ax.set_xlabel("training CPU time (s)")
    ax.set_ylabel("training loss, bits/dim (running mean)")
    ax.set_ylim(1.0, 3.5)
    ax.legend()
    ax.set_title("HVAE on digits: equal compute budgets")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
