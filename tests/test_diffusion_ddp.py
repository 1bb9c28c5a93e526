"""``torchrun --nproc_per_node 2`` trains the diffusion model with DDP over gloo on CPU."""

import json
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_gloo_processes_train_the_diffusion_model(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mrdiffusion.hvae", "train", "--model", "diffusion", "--noising", "pointmass", "--out", str(out),
           "--steps", "3", "--batch-size", "16", "--width", "8", "--blocks", "1", "--threads", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 3
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["model"].values() if v.is_floating_point())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert proc.stderr.count("diffusion model:") == 1  # the shapes line, from rank 0 only
