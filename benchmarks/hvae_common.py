"""Shared pieces of the HVAE experiments (``benchmarks/hvae_*.py``): model table, budgeted runs."""

from __future__ import annotations

import json
import os

import torch

from mrdiffusion.hvae import HVAEConfig
from mrdiffusion.hvae.data import digits
from mrdiffusion.hvae.train import TrainConfig, train

BASE = dict(width=32, mid_width=16, zdim=4, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 2, 3, 3))

#: name -> model configuration. ``shared``: one block per resolution, Fourier time embedding.
MODELS = {
    "nonshared": HVAEConfig(**BASE, share="none", solver="TwoStepEuler"),
    "shared": HVAEConfig(**BASE, share="resolution", time_embedding="fourier", solver="TwoStepEuler"),
    "nonshared-EM": HVAEConfig(**BASE, share="none", solver="EulerMaruyama"),
    "nonshared-Heun": HVAEConfig(**BASE, share="none", solver="Heun"),
}

#: Sampling/evaluation schedules (steps per resolution 1, 2, 4, 8); "x1" is the trained one.
SCHEDULES = {"coarsest": (1, 1, 1, 1), "fewer": (1, 1, 2, 2), "x1": (1, 2, 3, 3), "x2": (2, 4, 6, 6),
             "x4": (4, 8, 12, 12)}


def parse_seeds(text):
    return tuple(int(s) for s in str(text).split(",") if s.strip())


def run_dir(out, name, seed, budget):
    return os.path.join(out, "runs", f"{name}_cpu{int(budget)}_s{seed}")


def budgeted_run(out, name, seed, budget, *, batch_size=64, lr=3e-3):
    """Train model ``name`` for ``budget`` CPU seconds (reusing a finished run); return (summary, run dir).

    The budget is CPU time of the training process (``budget_clock="cpu"``), not wall-clock: on a
    machine shared with other jobs that is the fair "same compute" comparison.
    """
    path = run_dir(out, name, seed, budget)
    done = os.path.join(path, "summary.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f), path
    cfg = TrainConfig(steps=10**7, batch_size=batch_size, lr=lr, seed=seed, budget_seconds=budget,
                      budget_clock="cpu", ckpt_every=10**6, log_every=1)
    resume = os.path.exists(os.path.join(path, "checkpoint.pt"))
    print(f"[hvae] training {name} seed {seed} for {budget:g} CPU-s -> {path}", flush=True)
    summary = train(MODELS[name], cfg, digits(), path, resume=resume, progress=False)
    print(f"[hvae]   {summary['steps']} steps, test {summary.get('test_bpd', float('nan')):.4f} bits/dim, "
          f"{summary['skipped']} skipped", flush=True)
    return summary, path


def read_log(path):
    with open(os.path.join(path, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def experiment_parser(doc, budget=100.0):
    """The options every HVAE experiment script shares; scripts add their own."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--budget-seconds", type=float, default=budget)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/hvae")
    p.add_argument("--threads", type=int, default=1)
    return p


def setup(threads):
    torch.set_num_threads(threads)
    import matplotlib

    matplotlib.use("Agg")
