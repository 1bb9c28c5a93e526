"""``mrdiffusion bench --hvae``: a trained HVAE as a bench problem; and the plain loop of the speed case."""

import csv
import json
import math

import pytest
import torch

import solvers
from mrdiffusion.bench.hvae import FACTORS, scaled_steps, supported_schemes
from mrdiffusion.cli import main as cli_main
from mrdiffusion.hvae import HVAE, HVAEConfig
from mrdiffusion.hvae.checkpoint import model_from_checkpoint
from mrdiffusion.hvae.data import Dataset, digits
from mrdiffusion.hvae.train import TrainConfig, evaluate, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = HVAEConfig(width=8, mid_width=4, zdim=2, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 1, 2, 2))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("hvae-run")
    d = digits()
    train(TINY, TrainConfig(steps=3, batch_size=16, log_every=1), Dataset("digits", d.train[:64], d.test, d.levels),
          out, progress=False)
    return out / "checkpoint.pt"


def test_supported_schemes_are_the_ones_the_model_accepts():
    names = supported_schemes(HVAE(TINY))
    assert {"TwoStepEuler", "EulerMaruyama", "Heun"} <= set(names)
    assert not {"Milstein", "SRA1", "ExponentialEuler"} & set(names)  # general latent noise, no linear part
    assert "ExponentialEuler" in supported_schemes(HVAE(HVAEConfig(**{**TINY.to_dict(), "decay": True})))


def test_scaled_steps():
    assert scaled_steps((1, 2, 3, 3), 0.5) == (1, 1, 2, 2)
    assert scaled_steps((1, 2, 3, 3), 4) == (4, 8, 12, 12)
    assert scaled_steps((0, 2, 3, 3), 2) == (0, 4, 6, 6)


def test_bench_hvae_end_to_end(checkpoint, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--hvae", str(checkpoint), "--quick", "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "results.json").read_text())
    model, _ = model_from_checkpoint(str(checkpoint))
    schemes = supported_schemes(model)
    recs = doc["records"]
    assert [(r["scheme"], r["factor"]) for r in recs] == [(s, f) for s in schemes for f in FACTORS]
    for r in recs:
        if r["error"]:
            continue
        scheme = solvers.SCHEMES[r["scheme"]]
        assert r["n_steps"] == sum(scaled_steps(TINY.dec_blocks, r["factor"]))
        assert r["nfe"] >= scheme.drift_evals * r["n_steps"]
        assert len(r["norm_curve"]["t"]) == r["n_steps"] + 1
        assert math.isclose(r["norm_curve"]["t"][-1], sum(TINY.dec_blocks))
    # the trained cell is the model as trained: the ELBO of train.evaluate with the same seed
    trained = next(r for r in recs if r["scheme"] == "TwoStepEuler" and r["factor"] == 1.0)
    x_test = digits().test[:64]
    assert math.isclose(trained["test_bpd"], evaluate(model, x_test, seed=12345), rel_tol=1e-9)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == len(recs)
    for name in ("report.md", "elbo.png", "instability.png"):
        assert (out / name).stat().st_size > 0
    assert "| TwoStepEuler | 1 (trained) |" in capsys.readouterr().out


def test_bench_hvae_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert cli_main(["bench", "--hvae", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint" in capsys.readouterr().err


def test_plain_vdvae_loop_of_the_speed_case_computes_our_loss():
    from benchmarks.hvae_speed import vdvae_loss

    torch.manual_seed(0)
    model = HVAE(HVAEConfig(**{**TINY.to_dict(), "dec_blocks": (1, 2, 2, 2)})).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randint(0, 17, (4, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    ours = model(x, torch.Generator().manual_seed(2))[0]
    plain = vdvae_loss(model, x, torch.Generator().manual_seed(2))
    assert torch.allclose(ours, plain, rtol=1e-12, atol=0)
