"""Discoverability: help texts with defaults, the bench's printed configuration and catalogue, step spreading."""

import json

import pytest

from mrdiffusion import cli
from mrdiffusion.bench import default_config, load_config
from mrdiffusion.hvae.cli import spread_steps


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_every_option_has_help_and_shows_its_default(capsys):
    train = _help(capsys, "train")
    for text in ("--warmup WARMUP linear warm-up steps (0: none) (default: 50)", "(default: TwoStepEuler)",
                 "--budget-clock {wall,cpu}", "(default: wall)", "--lr LR peak learning rate (AdamW) (default: 0.003)"):
        assert text in train, text
    sample = _help(capsys, "sample")
    assert "one total such as 18, spread over the resolutions" in sample
    assert "one count per resolution, coarsest first, such as 2,4,6,6" in sample
    bench = _help(capsys, "bench")
    assert "--print-config" in bench and "--list" in bench
    for text in (train, sample, bench):
        assert "issue" not in text.lower()
    import argparse

    parser = cli.build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, (sub.prog, action.dest)


@pytest.mark.parametrize("quick", [False, True])
def test_print_config_round_trips_through_config(tmp_path, capsys, quick):
    assert cli.main(["bench", "--print-config", *(["--quick"] if quick else [])]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# mrdiffusion bench configuration")
    path = tmp_path / "defaults.toml"
    path.write_text(text)
    assert load_config(str(path)).fingerprint() == default_config(quick).fingerprint()
    for key in ("seed", "problems", "solvers", "dt", "paths", "strong_paths", "[reference]", "[stability]",
                "[problem.linear]", "[problem.stiff]", "[problem.gaussian]", "kappa", "eps"):
        assert key in text, key
    assert all("#" in line for line in text.splitlines() if " = " in line and not line.startswith("kind")), \
        "every key is commented"


def test_list_names_every_kind_parameter_and_scheme(capsys):
    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    from mrdiffusion.bench.config import KINDS, SDE_SOLVERS
    from mrdiffusion.bench.describe import kind_parameters

    for kind in KINDS:
        assert f"  {kind}: " in out
        for key, _, _ in kind_parameters(kind):
            assert f"      {key} = " in out
    for name in SDE_SOLVERS:
        assert name in out


@pytest.mark.parametrize("total, blocks, expected", [
    (18, (1, 2, 3, 3), (2, 4, 6, 6)),
    (9, (1, 2, 3, 3), (1, 2, 3, 3)),
    (4, (1, 2, 3, 3), (1, 1, 1, 1)),
    (5, (1, 2, 3, 3), (1, 1, 2, 1)),
    (10, (0, 1, 1, 2), (0, 3, 2, 5)),
])
def test_one_step_count_is_spread_as_trained(total, blocks, expected):
    steps = spread_steps(total, blocks)
    assert sum(steps) == total and all((m > 0) == (n > 0) for m, n in zip(steps, blocks))
    assert steps == expected


def test_a_fresh_run_starts_a_new_log(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"step": 999, "loss": 1.0}\n{"step": 10')  # an old run killed early
    args = ["train", "--out", str(out), "--data", "synthetic", "--steps", "20", "--batch-size", "8", "--width",
            "4", "--mid-width", "4", "--zdim", "1", "--enc-blocks", "1,1,1,1", "--dec-blocks", "1,1,1,1",
            "--no-progress"]
    assert cli.main(args) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [10, 20]
