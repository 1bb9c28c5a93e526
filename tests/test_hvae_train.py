"""HVAE training: end to end, bit-exact resume after an interruption, update skipping, bad input, data."""

import json
import os

import numpy as np
import pytest
import torch

import solvers
from mrdiffusion.hvae import HVAEConfig
from mrdiffusion.hvae.cli import main as cli_main
from mrdiffusion.hvae.data import Dataset, digits, load_dataset, synthetic
from mrdiffusion.hvae.train import TrainConfig, train

TINY = HVAEConfig(width=8, mid_width=4, zdim=2, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 1, 1, 2))
TINY_ARGS = ["--width", "8", "--mid-width", "4", "--zdim", "2", "--enc-blocks", "1,1,1,1", "--dec-blocks", "1,1,1,2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    d = digits()
    return Dataset("digits-small", d.train[:256], d.test[:64], d.levels)


def _states(path):
    ckpt = torch.load(os.path.join(path, "checkpoint.pt"), weights_only=True)
    return ckpt


def _assert_same_run(a, b):
    assert a["step"] == b["step"] and a["skipped"] == b["skipped"]
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[k][name], sb[k][name])


class _Interrupt(solvers.TwoStepEuler):
    """Two-step Euler that raises KeyboardInterrupt at its ``n``-th step (simulates a killed job)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def step(self, *args):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return super().step(*args)


def test_interrupted_training_resumes_bit_exactly(tmp_path, data):
    cfg = TrainConfig(steps=7, batch_size=16, ckpt_every=3, log_every=1, seed=3)
    train(TINY, cfg, data, tmp_path / "straight", progress=False)
    steps_per_batch = sum(TINY.dec_blocks)
    with pytest.raises(KeyboardInterrupt):  # killed during step 5 (after the checkpoint at step 3)
        train(TINY, cfg, data, tmp_path / "killed", progress=False, solver=_Interrupt(4 * steps_per_batch + 2))
    assert _states(tmp_path / "killed")["step"] == 3  # lost only the steps since the last checkpoint
    summary = train(TINY, cfg, data, tmp_path / "killed", resume=True, progress=False)
    assert summary["steps"] == 7
    _assert_same_run(_states(tmp_path / "straight"), _states(tmp_path / "killed"))
    # extending a finished run is a resume too
    longer = TrainConfig(**{**cfg.to_dict(), "steps": 9})
    assert train(TINY, longer, data, tmp_path / "killed", resume=True, progress=False)["steps"] == 9


def test_updates_above_the_threshold_are_skipped_and_counted(tmp_path, data):
    cfg = TrainConfig(steps=3, batch_size=16, skip_threshold=1e-9, seed=0)
    summary = train(TINY, cfg, data, tmp_path, progress=False)
    assert summary["skipped"] == 3 and summary["skipped_nonfinite"] == 0
    ckpt = _states(tmp_path)
    torch.manual_seed(0)
    from mrdiffusion.hvae import HVAE

    fresh = HVAE(TINY).state_dict()
    assert all(torch.equal(fresh[k], ckpt["model"][k]) for k in fresh)  # nothing was applied


def test_bad_input_is_refused_before_any_step(tmp_path, data):
    cfg = TrainConfig(steps=2, batch_size=16)
    bad_range = Dataset("x", data.train.clamp(max=16) + 1, data.test, 17)  # level 17 does not exist
    with pytest.raises(ValueError, match="outside the model's grey levels"):
        train(TINY, cfg, bad_range, tmp_path / "a", progress=False)
    wrong_shape = Dataset("x", data.train[..., :4, :4], data.test[..., :4, :4], 17)
    with pytest.raises(ValueError, match="resolution stack"):
        train(TINY, cfg, wrong_shape, tmp_path / "b", progress=False)
    floats = Dataset("x", data.train.double() + 0.5, data.test, 17)
    with pytest.raises(ValueError, match="non-integer"):
        train(TINY, cfg, floats, tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="power of two"):
        HVAEConfig(image_size=6)
    with pytest.raises(ValueError, match="dec_blocks"):
        HVAEConfig(dec_blocks=(1, 2))  # 8×8 needs four resolutions
    for sub in "abc":
        assert not (tmp_path / sub / "log.jsonl").exists()
    # a checkpoint of another configuration
    train(TINY, cfg, data, tmp_path / "run", progress=False)
    other = HVAEConfig(**{**TINY.to_dict(), "width": 12})
    with pytest.raises(ValueError, match="width"):
        train(other, cfg, data, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train(TINY, TrainConfig(steps=4, batch_size=32), data, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ValueError, match="exists"):
        train(TINY, cfg, data, tmp_path / "run", progress=False)


def test_cli_train_then_sample_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(["train", "--out", str(out), "--steps", "60", "--batch-size", "32", "--lr", "5e-3",
                   "--ckpt-every", "25", "--no-progress", *TINY_ARGS])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 60 and np.isfinite(summary["test_bpd"])
    first, last = np.mean([r["loss"] for r in log[:2]]), np.mean([r["loss"] for r in log[-2:]])
    assert last < first - 1.0, (first, last)
    assert {"recon", "kl1", "kl2", "kl4", "kl8", "grad_norm", "skipped"} <= set(log[-1])
    rc = cli_main(["sample", str(out), "--n", "8", "--solver", "Heun", "--steps", "2,2,2,4",
                   "--out", str(tmp_path / "s")])
    assert rc == 0
    with np.load(tmp_path / "s.npz") as f:
        assert f["images"].shape == (8, 1, 8, 8) and f["norms"].shape == (11, 8)
        assert f["images"].min() >= 0 and f["images"].max() <= 16
    assert (tmp_path / "s.png").stat().st_size > 0
    # CLI errors are messages, not tracebacks
    assert cli_main(["train", "--out", str(out), "--no-progress", *TINY_ARGS]) == 2
    assert "exists" in capsys.readouterr().err


def test_data_sources(tmp_path):
    s = synthetic(n=50, size=8)
    assert s.train.shape[1:] == (1, 8, 8) and 0 <= int(s.train.min()) and int(s.train.max()) <= 16
    x = np.random.default_rng(0).integers(0, 4, size=(20, 4, 4))
    np.savez(tmp_path / "mine.npz", x=x, levels=4)
    d = load_dataset(str(tmp_path / "mine.npz"))
    assert d.levels == 4 and d.train.shape[1:] == (1, 4, 4) and d.train.shape[0] + d.test.shape[0] == 20
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((4, 4), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    d = load_dataset(str(folder))
    assert d.levels == 256 and d.train.shape[1:] == (1, 4, 4)
    np.savez(tmp_path / "bad.npz", x=np.random.rand(3, 4, 4))
    with pytest.raises(ValueError, match="integer"):
        load_dataset(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError):
        load_dataset("no-such-thing")
