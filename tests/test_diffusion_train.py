"""``mrdiffusion train --model diffusion`` and ``sample`` on digits: a tiny run, bit-exact resume, bad input, Ctrl-C."""

import json
import os
import subprocess
import sys

import pytest
import torch

import mrdiffusion
from mrdiffusion.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--model", "diffusion", "--width", "8", "--blocks", "1", "--batch-size", "16", "--threads", "1",
        "--no-progress", "--warmup", "2"]


def _train(out, *extra):
    return main(["train", *TINY, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("diff") / "pm"
    assert _train(out, "--noising", "pointmass", "--steps", "6", "--ckpt-every", "3") == 0
    return out


def test_tiny_run_writes_checkpoint_metadata_and_samples(run, capsys):
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["format"] == "mrdiffusion.diffusion/1" and ckpt["step"] == 6
    meta = json.loads((run / "run.json").read_text())
    assert {"torch", "python", "git", "device", "mrdiffusion"} <= set(meta)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log and all("images_per_s" in r and "loss" in r for r in log)
    assert main(["sample", str(run), "--nfe", "9", "--n", "4", "--out", str(run / "s")]) == 0
    out = capsys.readouterr().out
    assert "9 model evaluations" in out
    imgs = __import__("numpy").load(run / "s.npz")["images"]
    assert imgs.shape == (4, 1, 8, 8) and imgs.min() >= 0 and imgs.max() <= 16
    assert (run / "s.png").stat().st_size > 0


def test_python_api_load_gives_denoiser_and_noising(run):
    r = mrdiffusion.load(str(run))
    x = torch.zeros(2, 1, r.layout.n)
    D = r.denoiser(x, 0.5)
    assert D.shape == x.shape and bool(torch.isfinite(D).all())
    a, s = r.noising.alpha_sigma(0.5, like=x)
    assert a.shape == (64,) and r.activation_times == (2.0, 0.8, 0.32)
    imgs = r.sample(3, nfe=9)
    assert imgs.shape == (3, 1, 8, 8)


def test_resume_is_bit_exact_on_cpu(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _train(whole, "--noising", "scalar", "--steps", "6", "--ckpt-every", "100") == 0
    assert _train(part, "--noising", "scalar", "--steps", "3", "--ckpt-every", "100") == 0
    assert _train(part, "--noising", "scalar", "--steps", "6", "--ckpt-every", "100", "--resume") == 0
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    la = {r["step"]: r["loss"] for r in map(json.loads, (whole / "log.jsonl").read_text().splitlines())}
    lb = {r["step"]: r["loss"] for r in map(json.loads, (part / "log.jsonl").read_text().splitlines())}
    assert la[6] == lb[6]  # the part run also logged its last step, 3


def _cli(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mrdiffusion", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def hvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hvae") / "run"
    assert main(["train", "--out", str(out), "--steps", "1", "--batch-size", "8", "--width", "8", "--mid-width", "4",
                 "--zdim", "2", "--enc-blocks", "1,1,1,1", "--dec-blocks", "1,1,1,1", "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("args, needle", [
    (["sample", "{hvae}", "--solver", "EDMHeun"], "--solver"),
    (["sample", "{hvae}", "--nfe", "10"], "--nfe"),
    (["sample", "{hvae}", "--ode"], "--ode"),
    (["sample", "{empty}"], "checkpoint"),
    (["sample", "{run}", "--solver", "TwoStepEuler"], "--solver"),
    (["sample", "{run}", "--solver", "Nope"], "--solver"),
    (["sample", "{run}", "--solver", "EDMHeun", "--nfe", "13"], "--solver"),
    (["sample", "{run}", "--solver", "DPMSolverPP2M", "--nfe", "0"], "--nfe"),
    (["sample", "{run}", "--steps", "4"], "--steps"),
    (["sample", "{run}", "--temperature", "0.5"], "--temperature"),
    (["train", "--model", "diffusion", "--out", "{new}", "--zdim", "3"], "--zdim"),
    (["train", "--model", "diffusion", "--out", "{new}", "--solver", "Heun"], "--solver"),
    (["train", "--out", "{new}", "--noising", "pointmass"], "--noising"),
    (["train", "--model", "diffusion", "--out", "{new}", "--noising", "pointmass", "--activations", "0.3,0.8,2"],
     "activations"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(run, hvae_run, tmp_path, args, needle):
    empty = tmp_path / "empty"
    empty.mkdir()
    before = sorted(os.listdir(run)), sorted(os.listdir(hvae_run))
    args = [a.format(empty=empty, run=run, new=tmp_path / "new", hvae=hvae_run) for a in args]
    proc = _cli(args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert (sorted(os.listdir(run)), sorted(os.listdir(hvae_run))) == before
    assert os.listdir(empty) == [] and not (tmp_path / "new").exists()


def test_print_config_round_trips_through_config(tmp_path, capsys):
    assert main(["train", "--model", "diffusion", "--noising", "perband", "--steps", "7", "--print-config"]) == 0
    conf = json.loads(capsys.readouterr().out)
    assert conf["noising"] == "perband" and conf["steps"] == 7 and conf["lr"] == 1e-3
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**conf, "band_ratio": 3.0}))
    assert main(["train", "--model", "diffusion", "--config", str(path), "--steps", "9", "--print-config"]) == 0
    conf2 = json.loads(capsys.readouterr().out)
    assert conf2["band_ratio"] == 3.0 and conf2["steps"] == 9 and conf2["noising"] == "perband"


def test_perband_run_samples_with_a_solvers_scheme_and_a_few_step_sampler(tmp_path, capsys):
    out = tmp_path / "pb"
    assert _train(out, "--noising", "perband", "--steps", "2") == 0
    assert main(["sample", str(out), "--solver", "Heun", "--ode", "--nfe", "7", "--n", "2", "--out",
                 str(out / "h")]) == 0
    assert main(["sample", str(out), "--solver", "EDMHeun", "--nfe", "7", "--n", "2", "--out", str(out / "e")]) == 0
    text = capsys.readouterr().out
    assert "7 model evaluations, 3 steps, solver Heun()" in text and "7 model evaluations, 4 steps" in text


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    import signal
    import time

    out = tmp_path / "int"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mrdiffusion", "train", *TINY, "--out", str(out), "--steps",
                             "100000"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (out / "log.jsonl").exists() or not (out / "log.jsonl").read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] >= 10
