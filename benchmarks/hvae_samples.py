"""Experiment 3: prior samples and reconstructions of every trained HVAE, as one figure.

Reads the runs of ``hvae_elbo`` / ``hvae_stability`` (same ``--out``,
``--budget-seconds``, ``--seed``; runs that are missing are skipped). Per model:
64 prior samples at the trained schedule, and 16 held-out digits above their
reconstructions (posterior mode). Writes ``samples.png``.

    python -m benchmarks.hvae_samples --budget-seconds 100
"""

from __future__ import annotations

import os

import torch

from benchmarks.hvae_common import MODELS, SCHEDULES, experiment_parser, run_dir, setup
from mrdiffusion.hvae.checkpoint import model_from_checkpoint
from mrdiffusion.hvae.data import digits
from mrdiffusion.hvae.plots import image_grid


def main(argv=None):
    p = experiment_parser(__doc__)
    args = p.parse_args(argv)
    setup(args.threads)
    import matplotlib.pyplot as plt

    data = digits()
    panels = []
    for name in MODELS:
        path = os.path.join(run_dir(args.out, name, args.seed, args.budget_seconds), "checkpoint.pt")
        if not os.path.exists(path):
            continue
        model, _ = model_from_checkpoint(path)
        g = torch.Generator().manual_seed(7)
        samples, _ = model.sample(64, generator=g)
        x = data.test[:16]
        recon = model.reconstruct(x, generator=g)
        panels.append((name, model, samples, torch.cat([x, recon])))
        if name == "shared":  # the continuous-time view: four times the trained number of steps
            fine, _ = model.sample(64, steps=SCHEDULES["x4"], generator=torch.Generator().manual_seed(7))
            panels.append(("shared, ×4 steps", model, fine, None))
    fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.4), squeeze=False)
    for k, (name, model, samples, pairs) in enumerate(panels):
        image_grid(samples, model.config.levels, None, ncol=8, ax=axes[0, k],
                   title=f"{name} ({model.config.solver})\nprior samples")
        if pairs is None:
            axes[1, k].set_axis_off()
        else:
            image_grid(pairs, model.config.levels, None, ncol=8, ax=axes[1, k],
                       title="test digits (top) / reconstructions")
    fig.tight_layout()
    out = os.path.join(args.out, "samples.png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
