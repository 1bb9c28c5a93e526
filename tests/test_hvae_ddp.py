"""``torchrun --nproc_per_node 2`` training with DistributedDataParallel (gloo): replicas stay identical."""

import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_gloo_processes_train_identical_replicas(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mrdiffusion.hvae", "train", "--out", str(out), "--steps", "4", "--batch-size", "16",
           "--ckpt-every", "2", "--width", "8", "--mid-width", "4", "--zdim", "2", "--enc-blocks", "1,1,1,1",
           "--dec-blocks", "1,1,1,1", "--threads", "1", "--no-progress", "--save-rank-weights"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0 = torch.load(out / "rank0_weights.pt", weights_only=True)
    w1 = torch.load(out / "rank1_weights.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 4
    # the replicas trained (the point mass moved) and agree with the checkpoint
    assert float(w0["bias_xs.1"].abs().sum()) > 0  # the 1×1 point mass (VDVAE bias_xs[1])
    assert all(torch.equal(ckpt["model"][k], w0[k]) for k in w0)
