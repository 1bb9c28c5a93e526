"""Smoke test of ``python -m benchmarks.fewstep --quick``: it runs and writes its outputs (no accuracy asserted)."""

import json


def test_fewstep_quick_writes_table_json_and_plot(tmp_path):
    from benchmarks import fewstep

    fewstep.main(["--quick", "--samples", "64", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "fewstep.json").read_text())
    assert {r["problem"] for r in data["results"]} == {"scalar", "perband"}
    for res in data["results"]:
        assert res["floor"] > 0 and res["floor_lhs"] > 0 and res["rows"]
        assert all({"error", "error_lhs", "exact"} <= r.keys() for r in res["rows"])
        assert all(r["nfe"] <= r["budget"] for r in res["rows"] if r["family"] != "k-diffusion")
    assert (tmp_path / "fewstep.md").read_text().startswith("### problem")
    assert (tmp_path / "fewstep.png").stat().st_size > 0


def test_samples_zero_is_refused_not_replaced_by_the_default(tmp_path):
    import pytest

    from benchmarks import fewstep

    with pytest.raises(SystemExit, match="--samples"):
        fewstep.main(["--samples", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--problems"):
        fewstep.main(["--problems", "nope", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())
