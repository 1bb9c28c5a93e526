"""Smoke run of the mixture few-step benchmark, and its reference against an independent solver."""

import json

from benchmarks import fewstep_mixture


def test_quick_run_writes_table_json_and_plot_and_the_reference_is_independent(tmp_path):
    fewstep_mixture.main(["--quick", "--samples", "16", "--out", str(tmp_path)])
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"fewstep_mixture.{ext}").stat().st_size > 0
    res = json.loads((tmp_path / "fewstep_mixture.json").read_text())
    assert [r["problem"] for r in res["results"]] == ["scalar", "perband"]
    for r in res["results"]:
        # torchdiffeq's dopri5 and our ExponentialAdams(3) at 2000 steps agree far below any error in the tables
        assert r["reference_vs_ea3_2000"] < 1e-6
        fams = {row["family"] for row in r["rows"]}
        assert {"ours", "default", "classical"} <= fams
        assert all(row["nfe"] <= row["budget"] for row in r["rows"])


def test_bad_arguments_exit_naming_the_argument(tmp_path):
    import pytest

    for argv, name in ((["--problems", "scalar,nope"], "--problems"), (["--samples", "0"], "--samples")):
        with pytest.raises(SystemExit, match=name):
            fewstep_mixture.main([*argv, "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # refused before any work
