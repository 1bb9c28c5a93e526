"""Ctrl-C (SIGINT) and a hard kill (SIGKILL) in the middle of ``mrdiffusion bench`` and ``mrdiffusion train``.

Each run is a real process, signalled once it is visibly mid-run (cells on
disk, lines in the training log), then resumed with the command it printed
(or ``--resume``), and compared with an uninterrupted run: the bench's
numbers, the trained weights, and a ``log.jsonl`` holding each step once with
the uninterrupted run's values.

On a loaded machine the test process may not look at the folder for a while,
and a tiny run could finish before the signal arrives. The interrupted
processes therefore sleep a little after each bench cell or training step
(:data:`SLOW`, a wrapper that only sleeps: the numbers do not change), which
leaves seconds between "visibly mid-run" and "done".
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mrdiffusion.bench import load_config, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BENCH_TOML = """
seed = 3
problems = ["linear", "stiff"]
solvers = ["EulerMaruyama", "Heun", "ExponentialEuler"]
dt = ["1/8", "1/16", "1/32", "1/64"]
paths = 32
strong_paths = 4
crosscheck = false
plots = false
[problem.linear]
levels = [0, 1, 2]
[problem.stiff]
levels = [0, 1, 2]
"""
TRAIN = ["--data", "synthetic", "--steps", "60", "--batch-size", "8", "--width", "4", "--mid-width", "4",
         "--zdim", "1", "--enc-blocks", "1,1,1,1", "--dec-blocks", "1,1,1,1", "--ckpt-every", "20", "--no-progress"]
UNTIMED = ("wall_s", "wall_total_s", "elapsed", "cpu_seconds")


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    return env


SLOW = """
import signal, sys, time
# A terminal's Ctrl-C reaches a process whose SIGINT is neither ignored nor blocked; a test runner's worker may
# hand its children either state (inherited disposition and signal mask), so restore the terminal's.
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
signal.signal(signal.SIGINT, signal.default_int_handler)
import mrdiffusion.bench.cells as cells, mrdiffusion.hvae.train as train
measure, noise = cells.Workspace.measure, train._noise_generator
cells.Workspace.measure = lambda self, cell: (time.sleep(0.4), measure(self, cell))[1]
train._noise_generator = lambda *a: (time.sleep(0.1), noise(*a))[1]
from mrdiffusion.cli import main
sys.argv = ["mrdiffusion", *sys.argv[1:]]
sys.exit(main(sys.argv[1:]))
"""


def _slow_cli(*args):
    """``mrdiffusion ARGS`` that sleeps after every bench cell and training step (see the module docstring)."""
    return [sys.executable, "-c", SLOW, *map(str, args)]


def _signal_when(cmd, ready, sig, timeout=120):
    """Start ``cmd``, send ``sig`` once ``ready()`` holds; return (returncode, stderr)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _untimed(records):
    return [{k: v for k, v in r.items() if k not in UNTIMED} for r in records]


# ----------------------------------------------------------------------------- bench


@pytest.fixture(scope="module")
def bench_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    (tmp / "tiny.toml").write_text(BENCH_TOML)
    config = str(tmp / "tiny.toml")
    return config, run(load_config(config), str(tmp / "straight"), progress=False, log=None)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_bench_interrupted_then_resumed_gives_the_uninterrupted_numbers(tmp_path, bench_reference, sig, capsys):
    config, straight = bench_reference
    out = tmp_path / "cut"
    cells = out / "cells"
    rc, err = _signal_when(_slow_cli("bench", "--config", config, "--out", out, "--no-progress"),
                           lambda: cells.is_dir() and len(list(cells.glob("*.json"))) >= 3, sig)
    done = len([f for f in os.listdir(cells) if f.endswith(".json")])
    assert 3 <= done < len(straight["records"]), (rc, err[-2000:])
    if sig == signal.SIGINT:
        assert rc == 130
        assert f"{done} finished cells kept in {out}; continue with: mrdiffusion bench --resume --out {out}" in err
        assert "Traceback" not in err
    else:
        assert rc == -signal.SIGKILL
    from mrdiffusion.cli import main  # the resume runs in this process: the same code, no second start-up

    capsys.readouterr()
    assert main(["bench", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert f"({done} already done)" in capsys.readouterr().err
    doc = json.loads((out / "results.json").read_text())
    assert _untimed(doc["records"]) == _untimed(straight["records"])
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


# ----------------------------------------------------------------------------- train


def _log(path):
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path).read().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    from mrdiffusion.cli import main

    out = tmp_path_factory.mktemp("train") / "straight"
    assert main(["train", "--out", str(out), *TRAIN]) == 0  # in this process: the same code, no start-up
    return torch.load(out / "checkpoint.pt", weights_only=True), _log(out / "log.jsonl")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_train_interrupted_then_resumed_matches_the_uninterrupted_run(tmp_path, train_reference, sig):
    ckpt_ref, log_ref = train_reference
    out = tmp_path / "cut"
    log = out / "log.jsonl"
    after = 20 if sig == signal.SIGINT else 30  # SIGKILL: past the checkpoint at 20, so some steps are redone
    rc, err = _signal_when(_slow_cli("train", "--out", out, *TRAIN),
                           lambda: any(r["step"] >= after for r in _log(log)), sig)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    if sig == signal.SIGINT:  # the step in flight finishes, then a checkpoint: nothing is lost
        assert rc == 130
        assert after <= ckpt["step"] < 60
        assert f"interrupted at step {ckpt['step']}; checkpoint saved to {out / 'checkpoint.pt'}" in err
        assert "continue with:" in err and "Traceback" not in err
        resume = err.split("continue with: ")[1].strip().split()
        assert resume[:2] == ["mrdiffusion", "train"] and resume[-1] == "--resume"
        argv = resume[1:]
    else:
        assert rc == -signal.SIGKILL
        assert ckpt["step"] in (20, 40)
        assert max(r["step"] for r in _log(log)) >= ckpt["step"]  # the log may run ahead of the checkpoint
        argv = ["train", "--out", str(out), *TRAIN, "--resume"]
    from mrdiffusion.cli import main  # the resume runs in this process: the same code, no second start-up

    assert main(argv) == 0
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert final["step"] == ckpt_ref["step"] == 60
    for key in ("model", "ema"):
        for name, value in ckpt_ref[key].items():
            assert torch.equal(final[key][name], value), (key, name)
    records = _log(log)
    assert [r["step"] for r in records] == [r["step"] for r in log_ref] == list(range(10, 61, 10))
    assert _untimed(records) == _untimed(log_ref)
