"""The speed suite keeps working: its hidden smoke mode on tiny sizes, end to end (no timing assertions)."""

import json
import math

import pytest

for _name in ("torchsde", "torchdiffeq", "pywt", "ptwt", "matplotlib"):
    pytest.importorskip(_name)

from benchmarks import speed  # noqa: E402


def test_smoke_suite_writes_json_table_and_plot(tmp_path, capsys):
    out = tmp_path / "speed.json"
    speed.main(["--smoke", "--json", str(out), "--device", "cpu"])
    data = json.loads(out.read_text())
    assert (tmp_path / "speed.png").stat().st_size > 0
    table = (tmp_path / "speed.md").read_text()
    assert "| device | case | size | contender |" in table and table in capsys.readouterr().out

    rows = data["rows"]
    cases = {r["case"] for r in rows}
    assert {"SDE Euler–Maruyama", "SDE Heun, additive noise", "SDE SRA1, additive noise", "Brownian path queries",
            "ODE fixed step", "ODE dopri5", "Haar dwt", "Haar idwt", "Haar project", "Multi-resolution sampling",
            "Peak memory, saved trajectory", "Few-step sampler overhead", "Euler–Maruyama vs bandwidth floor"} <= cases
    contenders = {r["contender"] for r in rows}
    assert {"hand-written loop", "torchsde euler (default BM)", "torchsde euler + BrownianInterval(dt)",
            "torchdiffeq rk4", "PyWavelets wavedec2", "ptwt waverec2"} <= contenders
    for r in rows:
        if r["unit"] == "s":
            assert r["value"] is not None and r["value"] > 0 and len(r["times"]) >= 5, r
            assert math.isfinite(r["ratio"])
        if r["reference"]:
            assert r["ratio"] in (1.0, None)
        if r["threshold"] is not None and r["case"] == "Euler–Maruyama vs bandwidth floor":
            assert r["passed"] == (r["ratio"] <= r["threshold"]) and r["extra"]["copy_bandwidth"] > 0
        elif r["threshold"] is not None:
            assert r["passed"] == (r["ratio"] >= r["threshold"])
    assert data["meta"]["mode"] == "smoke" and data["meta"]["threads"] == 1


def test_sampler_case_contenders_sample_the_same_flow():
    """The contenders of the sampler-overhead case integrate the same probability-flow ODE from the same
    start. Our DPMSolverPP2M is the algorithm of k-diffusion's sample_dpmpp_2m on the same σ grid, so the two
    agree to float32 round-off; every contender lands near the exact flow map of N(0, 1) data,
    x_0 = x_T / √(1 + 80²) (10 NFE: the hand-written Euler loop is the least accurate, 0.42 RMS)."""
    import torch

    from benchmarks._sampler_cases import SIGMA_MAX, sampler_contenders

    fns, why = sampler_contenders((64, 2, 4, 4), "cpu")
    if why is not None:
        pytest.skip(why)
    out = {name: fn() for name, fn in fns.items()}
    x_T = SIGMA_MAX * torch.randn((64, 2, 4, 4), generator=torch.Generator().manual_seed(0))
    exact = x_T / (1 + SIGMA_MAX**2) ** 0.5
    rms = {name: (x - exact).pow(2).mean().sqrt().item() for name, x in out.items()}
    kd = out["k-diffusion sample_dpmpp_2m"]
    assert torch.allclose(out["mrdiffusion DPMSolverPP2M()"], kd, rtol=1e-5, atol=1e-5)
    assert max(rms.values()) < 0.5 and min(rms, key=rms.get).startswith("mrdiffusion default"), rms


def test_missing_optional_peers_get_rows_that_say_why(monkeypatch):
    """Without ptwt or k-diffusion the suite still runs: those contenders get a row with the reason."""
    import sys

    from benchmarks import _kdiffusion, _other_cases, _sampler_cases
    from benchmarks._timing import Timer

    monkeypatch.setitem(sys.modules, "ptwt", None)
    monkeypatch.setattr(_sampler_cases, "load_sampling", lambda: (None, "k-diffusion is not installed (test)"))
    timer = Timer(repeats=1, collect=False)
    rows = _other_cases.haar_rows(1, 32, timer) + _sampler_cases.sampler_rows(((2, 1, 4, 4),), timer)
    missing = {r.contender: r.note for r in rows if r.value is None}
    assert "not installed" in missing["ptwt"] and "not installed (test)" in missing["k-diffusion sample_dpmpp_2m"]
    assert _kdiffusion.load_sampling is not None
