"""Ordinary mistakes on the command line: exit code 2, one line naming the argument or file, nothing written.

Every case runs the real CLI in-process (``mrdiffusion.cli.main``) and compares
a snapshot of the working folder (names, sizes, modification times, modes)
before and after: no new, truncated, changed or removed file.
"""

import json
import os

import numpy as np
import pytest
import torch

from mrdiffusion import cli
from mrdiffusion.bench import default_config

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


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with a trained tiny checkpoint, a --quick bench run's config, and bad data files."""
    root = tmp_path_factory.mktemp("world")
    assert cli.main(["train", "--out", str(root / "run"), *TINY_TRAIN]) == 0
    quick = default_config(quick=True)
    for name in ("quick", "badcell", "badconfig", "badref"):
        (root / name / "cells").mkdir(parents=True)
        (root / name / "cache").mkdir()
        (root / name / "config.json").write_text(json.dumps({"config": quick.as_dict(),
                                                             "fingerprint": quick.fingerprint()}))
    (root / "badcell" / "cells" / "linear-EulerMaruyama-0.125.json").write_text('{"problem": "linear", "sol')
    (root / "badconfig" / "config.json").write_text("{not json")
    (root / "badref" / "cache" / "reference-linear.pt").write_bytes(b"\x00" * 40)
    (root / "afile").write_text("a file, not a folder\n")
    (root / "data").mkdir()
    np.savez(root / "data" / "empty.npz", x=np.zeros((0, 8, 8), dtype=np.int64))
    np.savez(root / "data" / "good.npz", x=np.zeros((16, 8, 8), dtype=np.int64))
    good = (root / "data" / "good.npz").read_bytes()
    (root / "data" / "truncated.npz").write_bytes(good[:len(good) // 2])
    (root / "data" / "random.npz").write_bytes(np.random.default_rng(0).bytes(600))
    (root / "data" / "images").mkdir()
    (root / "data" / "images" / "broken.png").write_bytes(b"not a png")
    (root / "paths.toml").write_text("paths = 1000000000\n")
    (root / "fine.toml").write_text('problems = ["linear"]\n[problem.linear]\nlevels = [0, 1, 40]\n'
                                    'times = [0, 0.25, 0.5]\n')
    return root


CASES = {
    # bench: output paths
    "bench --out FILE": (["bench", "--out", "{w}/afile"], "--out: {w}/afile is a file"),
    "bench --out FILE/sub": (["bench", "--out", "{w}/afile/sub"], "--out: cannot create {w}/afile/sub"),
    "bench --out /proc": (["bench", "--out", "/proc/mrdiffusion-out"], "--out: cannot write /proc/mrdiffusion-out"),
    # bench --resume on damaged runs, and with other options than the stored run's
    "bench --resume bad cell": (["bench", "--resume", "--out", "{w}/badcell"],
                                "{w}/badcell/cells/linear-EulerMaruyama-0.125.json (a finished cell) is unreadable"),
    "bench --resume bad config": (["bench", "--resume", "--out", "{w}/badconfig"],
                                  "{w}/badconfig/config.json (the run's configuration) is unreadable"),
    "bench --resume bad reference": (["bench", "--resume", "--out", "{w}/badref"],
                                     "{w}/badref/cache/reference-linear.pt (a cached reference) is unreadable"),
    "bench --resume --device on --quick": (["bench", "--resume", "--device", "cpu", "--out", "{w}/quick"],
                                           "was made with --quick; add --quick"),
    # bench: configurations that cannot fit in memory
    "bench paths = 1e9": (["bench", "--config", "{w}/paths.toml", "--out", "{w}/new"], "memory: problem"),
    "bench levels = [0, 1, 40]": (["bench", "--config", "{w}/fine.toml", "--out", "{w}/new"],
                                  "problem.linear.levels: the finest level 40"),
    "bench --seed -1": (["bench", "--seed", "-1", "--out", "{w}/new"], "argument --seed"),
    # train: data files
    "train empty .npz": (["train", "--out", "{w}/new", "--data", "{w}/data/empty.npz"], "holds no images"),
    "train truncated .npz": (["train", "--out", "{w}/new", "--data", "{w}/data/truncated.npz"],
                             "{w}/data/truncated.npz is not a .npz archive"),
    "train random .npz": (["train", "--out", "{w}/new", "--data", "{w}/data/random.npz"],
                          "{w}/data/random.npz is not a .npz archive"),
    "train broken image": (["train", "--out", "{w}/new", "--data", "{w}/data/images"],
                           "{w}/data/images/broken.png is not a readable image"),
    # train: options
    "train --device foo": (["train", "--out", "{w}/new", "--device", "foo"], "argument --device"),
    "train --threads -1": (["train", "--out", "{w}/new", "--threads", "-1"], "argument --threads"),
    "train --warmup -10": (["train", "--out", "{w}/new", "--warmup", "-10"], "argument --warmup"),
    "train --budget-seconds nan": (["train", "--out", "{w}/new", "--budget-seconds", "nan"],
                                   "argument --budget-seconds"),
    "train --solver RK4": (["train", "--out", "{w}/new", "--solver", "RK4"], "argument --solver"),
    "train --solver SRA1": (["train", "--out", "{w}/new", "--solver", "SRA1"], "argument --solver"),
    "train --out FILE": (["train", "--out", "{w}/afile"], "--out: {w}/afile is a file"),
    "train --resume nothing": (["train", "--out", "{w}/new", "--resume"], "--resume: {w}/new/checkpoint.pt"),
    "train over a run": (["train", "--out", "{w}/run", *TINY_TRAIN], "{w}/run/checkpoint.pt exists"),
    # sample
    "sample --n 0": (["sample", "{w}/run", "--n", "0", "--out", "{w}/s"], "argument --n"),
    "sample --n -3": (["sample", "{w}/run", "--n", "-3", "--out", "{w}/s"], "argument --n"),
    "sample --temperature nan": (["sample", "{w}/run", "--temperature", "nan", "--out", "{w}/s"],
                                 "argument --temperature"),
    "sample --steps 2": (["sample", "{w}/run", "--steps", "2", "--out", "{w}/s"], "--steps: 2 steps cannot cover"),
    "sample --steps 1,2": (["sample", "{w}/run", "--steps", "1,2", "--out", "{w}/s"], "steps: expected 4 counts"),
    "sample missing": (["sample", "{w}/nothing.pt", "--out", "{w}/s"], "checkpoint: {w}/nothing.pt does not exist"),
    "sample --out FILE/x": (["sample", "{w}/run", "--out", "{w}/afile/x"], "--out: {w}/afile is a file"),
}
if not torch.cuda.is_available():
    CASES["sample --device cuda"] = (["sample", "{w}/run", "--device", "cuda", "--out", "{w}/s"],
                                     "device 'cuda' is not available")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(world, case, capsys):
    argv, expected = CASES[case]
    argv = [a.format(w=world) for a in argv]
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
    assert "Traceback" not in captured.err and "allow_pickle" not in captured.err
    assert _snapshot(world) == before


def test_outputs_honour_the_umask(world, tmp_path):
    old = os.umask(0o022)
    try:
        assert cli.main(["sample", str(world / "run"), "--n", "4", "--steps", "4", "--out",
                         str(tmp_path / "s")]) == 0
        from mrdiffusion._io import atomic_save, atomic_write

        atomic_write(tmp_path / "a.txt", "text")
        atomic_save({"x": 1}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    for name in ("s.png", "s.npz", "a.txt", "b.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    run = world / "run"
    for name in ("checkpoint.pt", "summary.json", "log.jsonl"):
        assert (run / name).stat().st_mode & 0o044 == 0o044, name  # group and others can read
