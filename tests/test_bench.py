"""``mrdiffusion bench``: configuration, a tiny end-to-end study, resume, torchrun sharding, stability factors."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

import solvers
from mrdiffusion import cli
from mrdiffusion.bench import ConfigError, default_config, load_config, parse_config, run
from mrdiffusion.bench import cells as cells_mod
from mrdiffusion.bench.stability import (amplification, ms_factor,
                                         real_stability_interval)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = """
seed = 3
problems = ["linear", "stiff"]
solvers = ["EulerMaruyama", "SRA1", "ExponentialEuler"]
dt = ["1/8", "1/16", "1/32"]
paths = 32
strong_paths = 4
crosscheck = false
plots = false

[reference]
dt = "1/128"

[problem.linear]
levels = [0, 1, 2]
[problem.stiff]
levels = [0, 1, 2]
"""

WALL = ("wall_s", "wall_total_s")


def _tiny(tmp_path, **extra):
    path = tmp_path / "tiny.toml"
    text = TINY
    for key, value in extra.items():
        text = text.replace(f"{key} = false", f"{key} = {value}")
    path.write_text(text)
    return str(path)


def _numbers(records):
    """Records without the wall-clock fields: what must be identical on a rerun."""
    return [{k: v for k, v in r.items() if k not in WALL} for r in records]


# ----------------------------------------------------------------------------- configuration


def test_default_config_covers_the_default_schemes_and_five_halvings():
    from mrdiffusion.bench.config import DEFAULT_SOLVERS, SDE_SOLVERS

    cfg = default_config()
    assert [p.name for p in cfg.problems] == ["linear", "stiff", "gaussian"]
    assert list(cfg.solvers) == list(DEFAULT_SOLVERS)
    assert set(SDE_SOLVERS) == set(solvers.SCHEMES) - {"RK4"}  # every SDE scheme can be named in a config
    assert len(cfg.dt) >= 6 and all(math.isclose(a / b, 2.0) for a, b in zip(cfg.dt, cfg.dt[1:]))
    assert cfg.reference_dt == min(cfg.dt) / 4 and cfg.reference_solver == "SRA1"
    assert cfg.problem("linear").get("levels") == (0, 1, 2, 3, 4, 5)  # 1×1 → 32×32
    assert default_config(quick=True).problem("stiff").get("levels") == (0, 1, 2, 3)


def test_toml_overrides_new_problems_and_fractions(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('problems = ["stiff", "sharp"]\nsolvers = ["Heun"]\ndt = ["1/16", 0.125]\n'
                    '[problem.stiff]\nkappa = 10.0\nlevels = [0, 1]\n'
                    '[problem.sharp]\nkind = "stiff"\neps = 0.001\n[stability]\nplot_dt = "1/8"\n')
    cfg = load_config(str(path), seed=9)
    assert cfg.seed == 9 and cfg.solvers == ("Heun",) and cfg.dt == (0.125, 0.0625)
    assert cfg.problem("stiff").get("kappa") == 10.0 and cfg.problem("stiff").get("levels") == (0, 1)
    assert cfg.problem("sharp").kind == "stiff" and cfg.problem("sharp").get("eps") == 0.001
    assert cfg.plot_dt == 0.125
    again = type(cfg).from_dict(json.loads(json.dumps(cfg.as_dict())))
    assert again.fingerprint() == cfg.fingerprint()


@pytest.mark.parametrize("data,match", [
    ({"solvers": ["Euler"]}, r"^solvers: unknown solver 'Euler'; allowed: EulerMaruyama, TwoStepEuler"),
    ({"solvers": ["RK4"]}, r"^solvers: RK4 solves ODEs only .*allowed: EulerMaruyama"),
    ({"problems": ["nope"]}, r"^problems: unknown problem 'nope'; allowed: linear, stiff, gaussian"),
    ({"dt": [0.125, -0.1]}, r"^dt: expected a positive number, got -0.1"),
    ({"dt": [0.0]}, r"^dt: expected a positive number, got 0.0"),
    ({"dt": [0.1]}, r"^dt: 0.1 does not divide the activation times .* of problem 'linear'; allowed: .*1/8, 1/16"),
    ({"pathz": 3}, r"^config: unknown key 'pathz'; allowed: seed, problems"),
    ({"paths": 0}, r"^paths: expected an integer >= 2, got 0"),
    ({"problem": {"stiff": {"kapa": 1.0}}}, r"^problem.stiff.kapa: unknown parameter for kind 'stiff'; allowed:"),
    ({"problem": {"x": {"kind": "stiff"}}}, r"^problem.x: defined but not selected"),
    ({"reference": {"solver": "RK4"}}, r"^reference.solver: unknown SDE solver 'RK4'; allowed:"),
    ({"stability": {"plot_dt": "1/3"}}, r"^stability.plot_dt: .* is not one of the step sizes; allowed: 1/8"),
    ({"device": "tpu"}, r"^device: 'tpu' is not"),
])
def test_bad_config_names_the_key_and_the_allowed_values(data, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(data)


def test_cli_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["bench", "--config", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mrdiffusion bench: error: --config: file not found: {tmp_path / 'missing.toml'}"]
    bad = tmp_path / "bad.toml"
    bad.write_text('solvers = ["EulerMaruyama", "Bogus"]\n')
    assert cli.main(["bench", "--config", str(bad), "--out", str(out)]) == 2
    assert "solvers: unknown solver 'Bogus'; allowed:" in capsys.readouterr().err
    assert not out.exists()


# ----------------------------------------------------------------------------- a tiny study


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    cfg = load_config(_tiny(tmp, plots="true", crosscheck="true"))
    return cfg, run(cfg, str(tmp / "out"), progress=False, log=None)


def test_tiny_study_writes_every_output(tiny_run):
    cfg, res = tiny_run
    out = res["out"]
    for name in ("results.json", "results.csv", "report.md", "config.json", "error_vs_dt.png", "instability.png",
                 "diverged_heatmap.png", "stability_regions.png", "sample_paths.png", "band_images.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "results.json")) as fh:
        doc = json.load(fh)
    records = doc["records"]
    assert len(records) == 2 * 3 * 3
    for rec in records:
        for key in ("problem", "solver", "dt", "weak_error", "strong_error", "diverged_fraction", "instability_ratio",
                    "nfe", "wall_s", "first_step_amplification"):
            assert key in rec
    with open(os.path.join(out, "results.csv")) as fh:
        assert len(fh.read().strip().splitlines()) == 1 + len(records)
    report = open(os.path.join(out, "report.md")).read()
    assert "Largest stable step size near the point mass" in report and "RK4 is ODE-only" in report
    assert "band view" in report and "Cross-checks against peers" in report
    assert all(c["ok"] for c in doc["crosschecks"]), doc["crosschecks"]


def test_tiny_study_finds_the_point_mass_instability(tiny_run):
    _, res = tiny_run
    rec = {(r["problem"], r["solver"], r["dt"]): r for r in res["records"]}
    for dt in (1 / 8, 1 / 16, 1 / 32):
        ee = rec[("stiff", "ExponentialEuler", dt)]  # exact in law: the coupled sampler is the same path
        assert ee["stable"] and ee["weak_error"] < 1e-9 and abs(ee["instability_ratio"] - 1) < 1e-9
    em = rec[("stiff", "EulerMaruyama", 1 / 8)]  # forward Euler's factor 1 - hκ/ε = -61.5 at every restart
    assert not em["stable"] and em["instability_ratio"] > 10
    assert rec[("linear", "SRA1", 1 / 32)]["strong_error"] < rec[("linear", "EulerMaruyama", 1 / 32)]["strong_error"]
    assert rec[("linear", "EulerMaruyama", 1 / 32)]["nfe"] == 2 * 32


# ----------------------------------------------------------------------------- schemes as objects, kinds registry


def test_config_holds_scheme_instances_theta_method_benched(tmp_path):
    path = tmp_path / "theta.toml"
    path.write_text('problems = ["stiff"]\nsolvers = ["EulerMaruyama", { name = "DriftImplicitEuler", theta = 0.5 }]\n'
                    'dt = ["1/8", "1/16", "1/32"]\npaths = 16\nstrong_paths = 2\ncrosscheck = false\nplots = false\n'
                    '[reference]\ndt = "1/128"\n[problem.stiff]\nlevels = [0, 1]\n')
    cfg = load_config(str(path))
    assert cfg.solvers == ("EulerMaruyama", "DriftImplicitEuler(theta=0.5)")
    theta = cfg.scheme("DriftImplicitEuler(theta=0.5)")
    assert isinstance(theta, solvers.DriftImplicitEuler) and theta.theta == 0.5
    assert cfg.as_dict()["solvers"] == ["EulerMaruyama", {"name": "DriftImplicitEuler", "theta": 0.5}]
    again = type(cfg).from_dict(json.loads(json.dumps(cfg.as_dict())))
    assert again.fingerprint() == cfg.fingerprint() and again.scheme(cfg.solvers[1]).theta == 0.5
    assert parse_config({"solvers": [solvers.DriftImplicitEuler(theta=0.25)]}).solvers == (
        "DriftImplicitEuler(theta=0.25)",)
    res = run(cfg, str(tmp_path / "out"), progress=False, log=None)
    rec = {(r["solver"], r["dt"]): r for r in res["records"]}
    # the trapezoidal θ = 1/2 is A-stable but not L-stable: on the stiff restarts its factor (1 + z/2)/(1 − z/2)
    # tends to −1, so it stays bounded (stable) where Euler–Maruyama blows up
    assert rec[("DriftImplicitEuler(theta=0.5)", 1 / 8)]["diverged_fraction"] == 0
    assert rec[("EulerMaruyama", 1 / 8)]["instability_ratio"] > 10
    assert "DriftImplicitEuler(theta=0.5)" in open(os.path.join(res["out"], "report.md")).read()


@pytest.mark.parametrize("entry,match", [
    ({"name": "DriftImplicitEuler", "thet": 0.5}, r"^solvers: DriftImplicitEuler has no argument 'thet'; allowed: "
                                                  r"theta, tol, max_iter, max_newton_size"),
    ({"name": "DriftImplicitEuler", "theta": 2.0}, r"^solvers: DriftImplicitEuler\(theta=2.0\): theta: expected"),
    ({"theta": 0.5}, r"^solvers: a scheme table needs name = one of EulerMaruyama"),
    ({"name": "Heun", "theta": 0.5}, r"^solvers: Heun has no argument 'theta'; allowed: \(none\)"),
])
def test_bad_scheme_tables_name_the_argument(entry, match):
    with pytest.raises(ConfigError, match=match):
        parse_config({"solvers": [entry]})


def test_every_problem_kind_is_one_registry_entry(tmp_path, monkeypatch):
    from mrdiffusion.bench.problems import COMMON, KINDS, Param, ProblemKind
    from mrdiffusion.processes import LinearBandProcess

    for kind in KINDS.values():  # listable: every parameter with its default and a description
        assert {"levels", "times", "T", "channels"} <= {q.name for q in kind.params}
        assert all(q.description and q.default(3) is not None for q in kind.params)
        assert kind.describe(kind.defaults(3)) and kind.verdict(kind.defaults(3), (0.125,))
    # a new kind is one entry: config, build, report verdict and description all follow
    ou = ProblemKind(
        "ou", "one OU rate on every band", COMMON + (Param("rate", lambda K: -1.0, "the drift rate",
                                                           lambda where, v, K: float(v)),),
        build=lambda p: LinearBandProcess(list(p["levels"]), list(p["times"]), p["T"], rates=p["rate"],
                                          channels=p["channels"]),
        describe=lambda p: f"plain OU, rate {p['rate']}", verdict=lambda p, ladder: "- Why: a mild OU process.")
    monkeypatch.setitem(KINDS, "ou", ou)
    cfg = parse_config({"problems": ["mild"], "problem": {"mild": {"kind": "ou", "rate": -0.5, "levels": [0, 1]}},
                        "solvers": ["EulerMaruyama"], "dt": ["1/8", "1/16", "1/32"], "paths": 8, "strong_paths": 2,
                        "crosscheck": False, "plots": False})
    assert cfg.problem("mild").get("rate") == -0.5
    res = run(cfg, str(tmp_path / "ou"), progress=False, log=None)
    report = open(os.path.join(res["out"], "report.md")).read()
    assert "plain OU, rate -0.5" in report and "- Why: a mild OU process." in report


# ----------------------------------------------------------------------------- resume, reproducibility


def test_resume_after_interruption_gives_the_uninterrupted_numbers(tmp_path, monkeypatch):
    cfg = load_config(_tiny(tmp_path))
    fresh = run(cfg, str(tmp_path / "fresh"), progress=False, log=None)

    real = cells_mod.Workspace.measure
    calls = []

    def flaky(self, cell):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(cell.key)
        return real(self, cell)

    monkeypatch.setattr(cells_mod.Workspace, "measure", flaky)
    out = str(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out, progress=False, log=None)
    assert len(os.listdir(os.path.join(out, "cells"))) == 4
    with open(os.path.join(out, "results.json")) as fh:  # a complete, valid file after every cell
        assert len(json.load(fh)["records"]) == 4
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]

    calls.clear()
    monkeypatch.setattr(cells_mod.Workspace, "measure", lambda self, cell: calls.append(cell.key) or real(self, cell))
    with pytest.raises(ConfigError, match="already holds a bench run; pass --resume"):
        run(cfg, out, progress=False, log=None)
    resumed = run(cfg, out, resume=True, progress=False, log=None)
    assert len(calls) == len(fresh["records"]) - 4
    assert _numbers(resumed["records"]) == _numbers(fresh["records"])  # same seed: identical numbers
    with pytest.raises(ConfigError, match="configuration differs"):
        run(load_config(_tiny(tmp_path), seed=4), out, resume=True, progress=False, log=None)


# ----------------------------------------------------------------------------- torchrun sharding


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_shard_and_merge(tmp_path):
    config = _tiny(tmp_path)
    single = run(load_config(config), str(tmp_path / "single"), progress=False, log=None)
    out = tmp_path / "sharded"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "mrdiffusion", "bench", "--config", config, "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "results.json") as fh:
        doc = json.load(fh)
    assert doc["meta"]["world_size"] == 2
    assert _numbers(doc["records"]) == _numbers(single["records"])
    assert len(os.listdir(out / "cells")) == len(single["records"])
    assert proc.stdout.count("## linear") == 1  # only rank 0 prints the tables


# ----------------------------------------------------------------------------- stability factors


@pytest.mark.parametrize("name", list(solvers.SCHEMES))
def test_amplification_from_scheme_step_matches_closed_form(name):
    re, im = torch.meshgrid(torch.linspace(-5, 2, 36, dtype=torch.float64),
                            torch.linspace(-3, 3, 31, dtype=torch.float64), indexing="ij")
    z = torch.complex(re, im).reshape(-1)
    R = amplification(solvers.SCHEMES[name](), z)
    assert torch.allclose(R, solvers.SCHEMES[name]().stability_function(z), rtol=1e-12, atol=1e-12)


def test_real_stability_intervals_and_mean_square_factors():
    got = {name: real_stability_interval(cls()) for name, cls in solvers.SCHEMES.items()}
    assert got["EulerMaruyama"] == pytest.approx(2.0, abs=0.01) and got["TwoStepEuler"] == pytest.approx(4.0, abs=0.01)
    assert got["RK4"] == pytest.approx(2.785, abs=0.01)
    assert math.isinf(got["ExponentialEuler"]) and math.isinf(got["DriftImplicitEuler"])
    a = torch.linspace(-4, 0.5, 19, dtype=torch.float64).repeat(9)
    b = torch.linspace(0, 4, 9, dtype=torch.float64).repeat_interleave(19)
    for name in ("EulerMaruyama", "DriftImplicitEuler"):
        scheme = solvers.SCHEMES[name]()
        assert torch.allclose(ms_factor(scheme, a, b), scheme.ms_stability_factor(a, b), rtol=1e-12)
