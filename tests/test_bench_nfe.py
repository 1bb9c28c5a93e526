"""The bench's exact error-vs-NFE study (mrdiffusion/bench/nfe.py) against closed-form scheme recursions."""

import math

import pytest
import torch

import solvers
from mrdiffusion.bench import parse_config
from mrdiffusion.bench.nfe import cheapest_nfe, exact_end_law, grid_times, nfe_study, weak_error_at_T
from mrdiffusion.bench.problems import Problem


def _config(**linear):
    prob = {"kind": "linear", "levels": [0], "times": [0.0], "rates": -3.0, "noise": 0.7, "z0": 1.0, **linear}
    return parse_config({"problems": ["one"], "problem": {"one": prob}, "solvers": ["EulerMaruyama"],
                         "dt": ["1/8"], "crosscheck": False, "plots": False})


def test_impulse_response_law_is_the_euler_maruyama_recursion():
    """One OU band dY = aY dt + c dB from Y_0 = 1: EM's law obeys m' = (1 + ha) m, v' = (1 + ha)² v + c² h
    exactly, on any grid (here a non-uniform one)."""
    prob = Problem(_config().problem("one"))
    a, c = -3.0, 0.7
    ts = [0.0, 0.05, 0.2, 0.3, 0.55, 0.8, 1.0]
    mean, var, nfe = exact_end_law(prob, solvers.EulerMaruyama(), ts)
    m, v = 1.0, 0.0
    for s, t in zip(ts, ts[1:]):
        h = t - s
        m, v = (1 + h * a) * m, (1 + h * a) ** 2 * v + c * c * h
    assert float(mean.reshape(-1)[0]) == pytest.approx(m, rel=1e-13)
    assert float(var.reshape(-1)[0]) == pytest.approx(v, rel=1e-13)
    assert nfe >= len(ts) - 1


def test_exponential_euler_exact_and_euler_maruyama_first_order():
    cfg = _config()
    prob = Problem(cfg.problem("one"))
    for n in (4, 16):
        ts = grid_times("uniform", n, prob.times, prob.T)
        assert weak_error_at_T(prob, *exact_end_law(prob, solvers.ExponentialEuler(), ts)[:2]) < 1e-13
    errs = [weak_error_at_T(prob, *exact_end_law(prob, solvers.EulerMaruyama(), grid_times("uniform", n, prob.times,
                                                                                            prob.T))[:2])
            for n in (64, 128, 256)]
    slopes = [math.log2(e0 / e1) for e0, e1 in zip(errs, errs[1:])]
    assert all(0.9 < s < 1.1 for s in slopes), (errs, slopes)


def test_grids_hold_the_activation_times():
    for grid in ("uniform", "activation-refined"):
        ts = grid_times(grid, 10, [0.0, 0.3, 0.45], 1.0)
        assert ts[0] == 0.0 and ts[-1] == 1.0 and 0.3 in ts and 0.45 in ts
        assert all(b > a for a, b in zip(ts, ts[1:]))
    with pytest.raises(ValueError, match="grid"):
        grid_times("karras", 10, [0.0], 1.0)


def test_study_rows_and_cheapest():
    cfg = _config()
    from mrdiffusion.bench.cells import Workspace

    rows = nfe_study(cfg, Workspace(cfg, "cpu"), schemes=("EulerMaruyama", "ExponentialEuler"), steps=(4, 8))
    assert len(rows) == 2 * 2 * 2
    assert {r["grid"] for r in rows} == {"uniform", "activation-refined"}
    assert cheapest_nfe(rows, "one", "ExponentialEuler", "uniform") == min(
        r["nfe"] for r in rows if r["solver"] == "ExponentialEuler" and r["grid"] == "uniform")
    assert all(r["weak_error"] is None or torch.isfinite(torch.tensor(r["weak_error"])) for r in rows)
