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
            "Peak memory, saved trajectory"} <= cases
    contenders = {r["contender"] for r in rows}
    assert {"hand-written loop", "torchsde euler (default BM)", "torchsde euler + BrownianInterval(dt)",
            "torchdiffeq rk4", "PyWavelets wavedec2", "ptwt waverec2"} <= contenders
    for r in rows:
        if r["unit"] == "s":
            assert r["value"] is not None and r["value"] > 0 and len(r["times"]) >= 5, r
            assert math.isfinite(r["ratio"])
        if r["reference"]:
            assert r["ratio"] in (1.0, None)
        if r["threshold"] is not None:
            assert r["passed"] == (r["ratio"] >= r["threshold"])
    assert data["meta"]["mode"] == "smoke" and data["meta"]["threads"] == 1
