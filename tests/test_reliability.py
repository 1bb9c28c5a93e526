"""Bad and hostile inputs, across the command line and the API: a clear error or a flagged result, never a
traceback or a silently wrong answer.

Command-line cases run the real CLI in-process (``mrdiffusion.cli.main``) and compare a snapshot of the
working folder before and after, as tests/test_cli_errors.py does: exit code 2, one line on stderr naming
the argument or file, and nothing written (no file outside ``--out``, no partial run folder). The
exceptions give a flagged result instead: a NaN drift in ``sdeint`` (frozen, flagged, warned), NaN in a
sampler's ``x_T`` or model output (flagged, warned, NaN rows), and ``sample`` of NaN weights or of
``--temperature 1e300`` (exit 3).
"""

import argparse
import json
import os
import warnings

import numpy as np
import pytest
import torch

import solvers
from mrdiffusion import MultiResolutionSDE, cli
from mrdiffusion._io import atomic_save, atomic_write
from mrdiffusion.bench import default_config
from mrdiffusion.processes import EDMSchedule, StiffPointMassProcess
from mrdiffusion.sampling import Ancestral, EDMHeun, ExponentialAdams, sample

TINY_TRAIN = ["--data", "synthetic", "--steps", "2", "--batch-size", "8", "--width", "4", "--mid-width", "4",
              "--zdim", "1", "--no-progress"]


def _snapshot(root):
    snap = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.stat(path)
            snap[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return snap


def _edit_checkpoint(src, dst, edit):
    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    torch.save(ckpt, dst)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny trained run, checkpoints damaged in the ways listed, and hostile configuration files."""
    root = tmp_path_factory.mktemp("world")
    assert cli.main(["train", "--out", str(root / "run"), *TINY_TRAIN]) == 0
    good = str(root / "run" / "checkpoint.pt")

    def nan_weights(c):
        for part in ("model", "ema"):
            for v in c[part].values():
                if v.is_floating_point():
                    v.fill_(float("nan"))

    _edit_checkpoint(good, str(root / "nan" / "checkpoint.pt"), nan_weights)
    _edit_checkpoint(good, str(root / "mismatch" / "checkpoint.pt"),
                     lambda c: c["model_config"].update(width=8))  # weights are width 4
    _edit_checkpoint(good, str(root / "noema" / "checkpoint.pt"), lambda c: c.pop("ema"))
    np.savez(root / "secret.npz", x=np.zeros((16, 8, 8), dtype=np.int64))
    _edit_checkpoint(good, str(root / "datapath" / "checkpoint.pt"),
                     lambda c: c["data"].update(name=str(root / "secret.npz")))
    (root / "junk.pt").write_bytes(b"PK\x03\x04 not a checkpoint" * 8)
    torch.save({"format": "mrdiffusion.hvae/1", "args": argparse.Namespace(a=1)}, root / "pickled.pt")  # a global

    quick = default_config(quick=True)
    (root / "emptycell" / "cells").mkdir(parents=True)
    (root / "emptycell" / "cache").mkdir()
    (root / "emptycell" / "config.json").write_text(json.dumps({"config": quick.as_dict(),
                                                                "fingerprint": quick.fingerprint()}))
    (root / "emptycell" / "cells" / "linear__EulerMaruyama__dt1-8.json").write_text("{}")
    (root / "latin1.toml").write_bytes('problems = ["linear"]\n# caf\xe9\n'.encode("latin-1"))
    for name, problem in (("escape", "x/../../../escape"), ("escape2", "../../escape")):
        (root / f"{name}.toml").write_text(f'problems = ["{problem}"]\n[problem."{problem}"]\nkind = "linear"\n'
                                           f'levels = [0, 1]\ntimes = [0, 0.5]\n')
    (root / "afile").write_text("a file, not a folder\n")
    (root / "data").mkdir()
    np.savez(root / "data" / "good.npz", x=np.zeros((16, 8, 8), dtype=np.int64))
    return root


CASES = {
    # names from configurations become paths only when safe
    "bench problem x/../../../escape": (["bench", "--config", "{w}/escape.toml", "--out", "{w}/new"],
                                        "problems: 'x/../../../escape' cannot name a problem"),
    "bench problem ../../escape": (["bench", "--config", "{w}/escape2.toml", "--out", "{w}/new"],
                                   "problems: '../../escape' cannot name a problem"),
    "bench --out ''": (["bench", "--quick", "--out", ""], "--out: expected a folder path, got an empty string"),
    "bench non-UTF-8 --config": (["bench", "--config", "{w}/latin1.toml", "--out", "{w}/new"],
                                 "--config: {w}/latin1.toml is not UTF-8 text"),
    "bench --resume cell {}": (["bench", "--resume", "--out", "{w}/emptycell"],
                               "{w}/emptycell/cells/linear__EulerMaruyama__dt1-8.json is not a finished cell "
                               "(no 'problem' entry)"),
    "bench --seed 10^30": (["bench", "--seed", str(10**30), "--out", "{w}/new"], "argument --seed: expected an "
                                                                                 "integer in [0, 4294967295]"),
    # bench --hvae: options it ignores, the output folder first, only its own data paths
    "bench --hvae --config": (["bench", "--hvae", "{w}/run/checkpoint.pt", "--config", "{w}/latin1.toml",
                               "--out", "{w}/new"], "--config does not apply to --hvae"),
    "bench --hvae --resume": (["bench", "--hvae", "{w}/run/checkpoint.pt", "--resume", "--out", "{w}/new"],
                              "--resume does not apply to --hvae"),
    "bench --hvae --out FILE": (["bench", "--hvae", "{w}/run/checkpoint.pt", "--out", "{w}/afile"],
                                "--out: {w}/afile is a file"),
    "bench --hvae mismatched weights": (["bench", "--hvae", "{w}/mismatch/checkpoint.pt", "--out", "{w}/new"],
                                        "{w}/mismatch/checkpoint.pt: entry 'ema' does not match its model_config"),
    "bench --hvae no ema": (["bench", "--hvae", "{w}/noema/checkpoint.pt", "--out", "{w}/new"],
                            "{w}/noema/checkpoint.pt has no 'ema' entry"),
    "bench --hvae data path in checkpoint": (["bench", "--hvae", "{w}/datapath/checkpoint.pt", "--out", "{w}/new"],
                                             "pass --data PATH"),
    "bench --hvae pickled object": (["bench", "--hvae", "{w}/pickled.pt", "--out", "{w}/new"],
                                    "{w}/pickled.pt' could not be read (UnpicklingError)"),
    # sample
    "sample mismatched weights": (["sample", "{w}/mismatch", "--out", "{w}/new/s"],
                                  "{w}/mismatch/checkpoint.pt: entry 'ema' does not match its model_config"),
    "sample no ema": (["sample", "{w}/noema", "--out", "{w}/new/s"], "{w}/noema/checkpoint.pt has no 'ema' entry"),
    "sample pickled object": (["sample", "{w}/pickled.pt", "--out", "{w}/new/s"], "could not be read"),
    "sample junk": (["sample", "{w}/junk.pt", "--out", "{w}/new/s"], "{w}/junk.pt' could not be read"),
    "sample --steps 10^8": (["sample", "{w}/run", "--steps", "100000000", "--out", "{w}/new/s"],
                            "--steps: 100000000 top-down steps in all; expected at most 10,000"),
    "sample --n 10^9": (["sample", "{w}/run", "--n", str(10**9), "--out", "{w}/new/s"], "memory: sample: "),
    "sample --out ''": (["sample", "{w}/run", "--out", ""], "--out: expected an output prefix"),
    "sample --seed 2^64": (["sample", "{w}/run", "--seed", str(2**64), "--out", "{w}/new/s"], "argument --seed"),
    "sample unknown flag": (["sample", "{w}/run", "--bogus"], "(see mrdiffusion sample --help)"),
    # train
    "train --resume no ema": (["train", "--out", "{w}/noema", "--resume", *TINY_TRAIN],
                              "{w}/noema/checkpoint.pt has no 'ema' entry"),
    # refused by the data loader's bound on grey levels, before the memory estimate would be reached
    "train --levels 10^12": (["train", "--out", "{w}/new", "--data", "{w}/data/good.npz", "--levels", str(10**12)],
                             "--levels: expected 2..65536 grey levels"),
    "train --width 10^8": (["train", "--out", "{w}/new", *TINY_TRAIN, "--width", str(10**8)], "memory: train: "),
    "train --out ''": (["train", "--out", "", *TINY_TRAIN], "--out: expected a folder path"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, case, capsys, tmp_path, monkeypatch):
    argv, expected = CASES[case]
    argv = [a.format(w=world) for a in argv]
    monkeypatch.chdir(world)  # `--out ""` would mean the current folder: make that the watched one
    before = _snapshot(world)
    try:
        rc = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors
        rc = stop.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, (rc, captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"mrdiffusion {argv[0]}: error: "), lines[0]
    assert expected.format(w=world) in lines[0], lines[0]
    assert "Traceback" not in captured.err and "weights_only" not in captured.err  # no nudge to unpickle
    assert _snapshot(world) == before
    assert not os.path.exists(world.parent / "escape.pt") and not os.path.exists(world / "escape.pt")


@pytest.mark.parametrize("argv, how", [
    (["{w}/nan"], "every one of the 4 samples is non-finite"),
    (["{w}/run", "--temperature", "1e300"], "every one of the 4 samples is non-finite"),
])
def test_sample_of_nonfinite_output_exits_3(world, tmp_path, capsys, argv, how):
    argv = ["sample", *[a.format(w=world) for a in argv], "--n", "4", "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and how in err[0], err
    with np.load(tmp_path / "s.npz") as f:  # written, and every sample flagged
        assert f["nonfinite"].all()


def test_sample_says_how_many_when_some_are_nonfinite(world, tmp_path, capsys, monkeypatch):
    from mrdiffusion.hvae.model import HVAE

    real = HVAE.sample

    def some_bad(self, n, **kw):  # the first and third samples came out non-finite
        images, info = real(self, n, **kw)
        info["nonfinite"][[0, 2]] = True
        return images, info

    monkeypatch.setattr(HVAE, "sample", some_bad)
    assert cli.main(["sample", str(world / "run"), "--n", "5", "--out", str(tmp_path / "s")]) == 0
    captured = capsys.readouterr()
    assert "2 of 5 samples are non-finite" in captured.err and "non-finite fraction 0.400" in captured.out


def test_unknown_flag_at_the_top_points_to_the_top_help(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--bogus"])
    assert stop.value.code == 2 and "(see mrdiffusion --help)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- API



@pytest.mark.parametrize("solver", [None, Ancestral(), EDMHeun(), ExponentialAdams(2)], ids=repr)
def test_sampler_flags_and_warns_nan_model_output(solver):
    x_T = 80.0 * torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x0, info = sample(lambda x, s: torch.full_like(x, float("nan")), EDMSchedule(80.0), x_T, nfe=10,
                          solver=solver)
    assert torch.isnan(x0).all()  # not x_T returned as if it were a sample
    assert info.nonfinite.tolist() == [True] * 6 and info.nonfinite_count == 6
    assert torch.isfinite(info.nonfinite_time).all() and (info.nonfinite_time <= 80.0).all()
    ours = [w for w in caught if "went non-finite" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)


def test_sampler_flags_nan_rows_of_x_T_and_keeps_the_rest():
    x_T = 80.0 * torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref, ref_info = sample(lambda x, s: x / (1 + s**2), EDMSchedule(80.0), x_T, nfe=10)
    assert ref_info.nonfinite_count == 0
    bad = x_T.clone()
    bad[[1, 4], 2] = float("nan")
    with pytest.warns(RuntimeWarning, match="2 of 6 samples went non-finite"):
        x0, info = sample(lambda x, s: x / (1 + s**2), EDMSchedule(80.0), bad, nfe=10)
    assert info.nonfinite.tolist() == [False, True, False, False, True, False]
    assert torch.isnan(x0[[1, 4]]).all()
    keep = [0, 2, 3, 5]
    torch.testing.assert_close(x0[keep], ref[keep], rtol=0, atol=0)  # per-sample: the rest is unchanged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample(lambda x, s: x / (1 + s**2), EDMSchedule(80.0), bad, nfe=10, warn=False)  # opt out


class _NaNDrift(solvers.SDE):
    noise_type = "diagonal"

    def drift(self, t, x):
        return torch.full_like(x, float("nan"))

    def diffusion(self, t, x):
        return torch.zeros_like(x)


def test_sdeint_nan_drift_is_frozen_flagged_and_warned():
    x0 = torch.ones(5, 2, dtype=torch.float64)
    xs, info = solvers.sdeint(_NaNDrift(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.1, return_info=True)
    assert info.diverged.all() and torch.equal(xs[-1], x0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        solvers.sdeint(_NaNDrift(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.1)
    ours = [w for w in caught if "were frozen" in str(w.message)]
    assert len(ours) == 1 and "5 of 5 samples" in str(ours[0].message)
    with warnings.catch_warnings():  # asked for the info: no warning
        warnings.simplefilter("error")
        solvers.sdeint(_NaNDrift(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.1, return_info=True)


class _OU(solvers.SDE):
    noise_type = "diagonal"

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return torch.ones_like(x)


@pytest.mark.parametrize("x0, dt, match", [
    (torch.ones(4, 2), 1e-300, r"dt: 1e-300 takes about 1e\+300 steps over \[0.0, 1.0\]; expected at most "
                               r"max_steps=1000000"),
    (torch.ones(4, 2, dtype=torch.complex64), 0.1, "x0: expected a real floating-point tensor .* complex64"),
    (torch.ones(4, 2, dtype=torch.int64), 0.1, "x0: expected a real floating-point tensor .* int64"),
])
def test_sdeint_refuses_before_any_work(x0, dt, match):
    with pytest.raises(ValueError, match=match):
        solvers.sdeint(_OU(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=dt)


def _ones(t, x, level):
    return torch.ones(1, x.shape[1], *([1] * (x.ndim - 2)), dtype=x.dtype)


def test_multiresolution_refuses_empty_channels_and_a_level_of_40():
    with pytest.raises(ValueError, match="channels: expected a positive int, got 0"):
        MultiResolutionSDE(levels=[0, 1], times=[0, 0.5], T=1.0, drift=lambda t, x, lev: -x, diffusion=_ones,
                           noise_type="additive", channels=0)
    with pytest.raises(ValueError, match=r"memory: a multi-resolution process whose finest grid is "
                                         r"1099511627776×1099511627776 needs about"):
        MultiResolutionSDE(levels=[0, 40], times=[0, 0.5], T=1.0, drift=lambda t, x, lev: -x, diffusion=_ones,
                           noise_type="additive")
    mr = MultiResolutionSDE(levels=[0, 10], times=[0, 0.5], T=1.0, drift=lambda t, x, lev: -x, diffusion=_ones,
                            noise_type="additive")
    with pytest.raises(ValueError, match=r"memory: .* 1000000000 samples of 1 channels needs about"):
        mr.sample(solvers.EulerMaruyama(), batch=10**9, dt=0.25)


def test_stiff_process_refuses_nan_kappa():
    with pytest.raises(ValueError, match="kappa, eps: expected positive finite numbers, got kappa=nan"):
        StiffPointMassProcess([0, 1], [0, 0.5], 1.0, kappa=float("nan"))


def test_atomic_writer_refuses_a_target_outside_its_folder(tmp_path):
    (tmp_path / "out" / "cells").mkdir(parents=True)
    before = _snapshot(tmp_path)
    for bad in (tmp_path / "out" / "cells" / "x" / ".." / ".." / ".." / "escape.json",
                tmp_path / "out" / "cells" / ".." / ".." / "escape.json"):
        with pytest.raises(ValueError, match="leaves its folder"):
            atomic_write(bad, "{}")
        with pytest.raises(ValueError, match="leaves its folder"):
            atomic_save({"x": 1}, bad)
    with pytest.raises(ValueError, match="outside the output folder"):
        atomic_write(tmp_path / "elsewhere.json", "{}", root=tmp_path / "out")
    assert _snapshot(tmp_path) == before
    atomic_write(tmp_path / "out" / "cells" / "ok.json", "{}", root=tmp_path / "out")  # a plain name is fine
    assert (tmp_path / "out" / "cells" / "ok.json").read_text() == "{}"
