"""Case 6 worker: peak memory of one solve that saves a trajectory, or of one gradient through a long
solve (plain backprop against ``checkpoint=True``), in a fresh process.

``python -m benchmarks._memory CONTENDER SHAPE SAVES DEVICE`` prints one JSON
object. A fresh process per measurement, because what is measured on CPU is
the growth of the resident set (``VmHWM`` after the solve minus ``VmRSS``
before it, with the high-water mark reset through ``/proc/self/clear_refs``):
torch's CPU allocations are plain ``malloc``s that ``tracemalloc`` does not see,
and memory freed by earlier work in the same process would be reused unseen.
On CUDA it is ``torch.cuda.max_memory_allocated`` minus the allocation before
the solve. Without ``/proc`` (not Linux) it falls back to ``ru_maxrss``
growth, which only counts a peak above everything the process reached before.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time

import torch

import solvers

from ._sde_cases import H, Diagonal, TorchsdeDiagonal

CONTENDERS = ("solvers EulerMaruyama", "torchsde euler (default BM)")
GRAD_CONTENDERS = ("sdeint EM, backprop", "sdeint EM, backprop, checkpoint=True")


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _solve(contender, x0, saves):
    if contender in GRAD_CONTENDERS:  # `saves` is the number of steps; one gradient of the end state
        x0 = x0.clone().requires_grad_(True)
        out = solvers.sdeint(Diagonal(), x0, [0.0, saves * H], solvers.EulerMaruyama(), dt=H, seed=0,
                             checkpoint=True if contender == GRAD_CONTENDERS[1] else None)
        out[-1].square().sum().backward()
        return x0.grad
    ts = [k * H for k in range(saves)]  # one step of H between consecutive saves
    if contender == CONTENDERS[0]:
        return solvers.sdeint(Diagonal(), x0, ts, solvers.EulerMaruyama(), dt=H)
    import torchsde

    flat = x0.reshape(x0.shape[0], -1)
    return torchsde.sdeint(TorchsdeDiagonal(), flat, torch.tensor(ts, dtype=x0.dtype, device=x0.device),
                           method="euler", dt=H)


def measure(contender, shape, saves, device="cpu"):
    """Peak extra memory (bytes) and time of one solve of ``contender`` saving ``saves`` states."""
    if contender not in CONTENDERS + GRAD_CONTENDERS:
        raise ValueError(f"contender: expected one of {CONTENDERS + GRAD_CONTENDERS}, got {contender!r}")
    torch.set_num_threads(1)
    _solve(contender, torch.ones((2, 3), device=device), 3)  # load lazy code paths on a tiny problem
    x0 = torch.ones(shape, device=device)
    gc.collect()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before, method = torch.cuda.memory_allocated(device), "torch.cuda.max_memory_allocated growth"
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            before, method = _status_kib("VmRSS") * 1024, "peak RSS growth (VmHWM, reset)"
        except OSError:
            before, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss growth"
    start = time.perf_counter()
    out = _solve(contender, x0, saves)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
    elif method.startswith("peak RSS"):
        peak = _status_kib("VmHWM") * 1024
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"contender": contender, "peak_growth_bytes": max(peak - before, 0),
            "output_bytes": out.numel() * out.element_size(), "output_shape": list(out.shape),
            "seconds": seconds, "method": method}


if __name__ == "__main__":
    name, shape, saves, device = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    print(json.dumps(measure(name, tuple(shape), saves, device)))
