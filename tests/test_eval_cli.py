"""``mrdiffusion eval RUN``: a tiny diffusion run on digits evaluated end to end, and its bad inputs.

The likelihood is checked against closed forms in ``test_metrics_likelihood.py``; here the command must
carry a learned model through it: a bound in bits per real pixel that is positive (a discrete NLL is) and
below the 8.2 bits of a uniform 17-level pixel plus what an untrained model can lose, FD against its floor,
and samples drawn the way ``mrdiffusion sample`` draws them (through the point-mass activations).
"""

import json

import pytest

from mrdiffusion.cli import main

TINY = ["--model", "diffusion", "--width", "8", "--blocks", "1", "--batch-size", "16", "--threads", "1",
        "--no-progress", "--warmup", "2", "--steps", "4"]
KEYS = {"bits_per_dim", "bits_per_dim_se", "n_test", "ode_rtol", "fd", "fd_floor", "n_samples", "sampler", "nfe",
        "classifier_acc", "classifier_hash"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    out = {}
    for noising in ("scalar", "pointmass"):
        out[noising] = root / noising
        assert main(["train", *TINY, "--noising", noising, "--out", str(out[noising])]) == 0
    out["hvae"] = root / "hvae"
    assert main(["train", "--steps", "2", "--batch-size", "8", "--width", "4", "--mid-width", "4", "--zdim", "1",
                 "--no-progress", "--out", str(out["hvae"])]) == 0
    return out


@pytest.mark.parametrize("noising", ["scalar", "pointmass"])
def test_eval_prints_one_json_object(runs, noising, capsys, tmp_path):
    capsys.readouterr()
    code = main(["eval", str(runs[noising]), "--n-test", "8", "--n-samples", "24", "--nfe", "9", "--json",
                 "--rtol", "1e-3", "--cache", str(tmp_path / "cache")])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert KEYS <= set(doc)
    assert doc["n_test"] == 8 and doc["nfe"] == 9 and doc["ode_rtol"] == 1e-3
    assert 0 < doc["bits_per_dim"] < 12 and doc["bits_per_dim_se"] > 0
    assert doc["fd"] > 0 and doc["fd_floor"] > 0 and doc["classifier_acc"] >= 0.9
    assert doc["n_samples"] == 24


def test_nfe_zero_is_refused_by_the_parser(runs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(runs["scalar"]), "--nfe", "0"])
    assert exc.value.code == 2 and "--nfe" in capsys.readouterr().err


def _eval_error(capsys, *argv):
    capsys.readouterr()
    code = main(["eval", *map(str, argv)])
    err = capsys.readouterr().err
    return code, err


def test_bad_runs_and_solvers_are_one_line_exit_2(runs, tmp_path, capsys):
    code, err = _eval_error(capsys, tmp_path / "nothing-here")
    assert code == 2 and "checkpoint" in err and len(err.strip().splitlines()) == 1
    code, err = _eval_error(capsys, runs["hvae"])
    assert code == 2 and "HVAE run" in err
    code, err = _eval_error(capsys, runs["pointmass"], "--solver", "NoSuchScheme")
    assert code == 2 and "--solver" in err and len(err.strip().splitlines()) == 1
    code, err = _eval_error(capsys, runs["pointmass"], "--solver", "EDMHeun", "--n-test", "2", "--n-samples", "2",
                            "--nfe", "9")
    assert code == 2 and "--solver" in err
    code, err = _eval_error(capsys, runs["scalar"], "--data", tmp_path / "missing.npz")
    assert code == 2 and "data" in err and len(err.strip().splitlines()) == 1
