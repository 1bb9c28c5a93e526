"""The peers benchmark: its mixtures' exact denoisers, its metrics' floor, the skip without diffusers, a smoke run."""

import json
import math

import pytest
import torch

from benchmarks import _diffusers, fewstep_peers
from benchmarks._mixtures import MIXTURES, Metrics


@pytest.mark.parametrize("name", list(MIXTURES))
def test_denoiser_is_the_posterior_mean(name):
    """``D(y, σ̂)`` against a self-normalised importance estimate of ``E[x_0 | y]`` from exact draws."""
    mix = MIXTURES[name]()
    gen = torch.Generator().manual_seed(0)
    xs, _ = mix.sample(400_000, gen)
    y = mix.sample(3, gen)[0] + 0.3 * torch.randn(3, mix.dim, generator=gen, dtype=torch.float64)
    D = mix.denoiser()
    for sig in (0.3, 1.0):
        logw = -(y.unsqueeze(1) - xs.unsqueeze(0)).square().sum(-1) / (2 * sig * sig)  # (3, N)
        w = torch.softmax(logw, 1)
        est = w @ xs
        ess = 1 / w.square().sum(1)
        assert torch.allclose(D(y, sig), est, atol=6 / ess.min().sqrt().item()), (D(y, sig), est, ess)
    assert torch.allclose(D(y, 1e-9), y, atol=1e-9)


def test_metrics_of_exact_samples_are_at_the_floor_and_a_biased_sample_is_not():
    mix = MIXTURES["aniso6d"]()
    x0, _ = mix.sample(8192, torch.Generator().manual_seed(1))
    met = Metrics(mix, x0, seed=0)
    fresh, _ = mix.sample(8192, torch.Generator().manual_seed(2))
    sd = met.floor_sd(reps=10)
    ex = met.excess(fresh)
    assert all(abs(ex[m]) < 5 * sd[m] + 1e-12 for m in ex), (ex, sd)
    wide = met.excess(mix.means[0] + 1.3 * (x0 - mix.means[0]))  # a sample too spread out
    assert wide["sw2"] > 10 * sd["sw2"] and wide["std_err"] > 10 * sd["std_err"]
    ci = met.bootstrap(fresh, reps=20)
    assert all(lo <= ex[m] <= hi or abs(ex[m]) < 5 * sd[m] for m, (lo, hi) in ci.items())


def test_quick_run_and_the_skip_reason_without_diffusers(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_diffusers, "load", lambda: (None, "diffusers is not installed (test)"))
    fewstep_peers.main(["--samples", "96", "--nfes", "4", "--problems", "ring2d", "--out", str(tmp_path)])
    assert "diffusers skipped: diffusers is not installed (test)" in capsys.readouterr().out
    res = json.loads((tmp_path / "fewstep_peers.json").read_text())
    assert res["meta"]["diffusers"] is None and "test" in res["meta"]["diffusers_skipped"]
    rows = res["results"][0]["rows"]
    fams = {r["family"] for r in rows}
    assert {"ours", "default"} <= fams and "diffusers" not in fams
    assert all(r["nfe"] <= r["budget"] == 4 and math.isfinite(r["flow"]) for r in rows if r["family"] != "k-diffusion")
    assert (tmp_path / "fewstep_peers.md").stat().st_size > 0


def test_diffusers_peers_get_their_exact_model():
    """Every diffusers peer, given the exact model, is finite and converges to the exact flow as NFE grows."""
    dm, why = _diffusers.load()
    if dm is None:
        pytest.skip(why)
    mix = MIXTURES["ring2d"]()
    gen = torch.Generator().manual_seed(3)
    x0, _ = mix.sample(256, gen)
    eps = torch.randn(256, 2, generator=gen, dtype=torch.float64)
    D = mix.denoiser()
    for name in _diffusers.PEERS:
        errs = []
        for nfe in (10, 80):
            y, calls, s0 = _diffusers.run_peer(dm, name, D, x0, eps, nfe)
            assert calls == nfe and torch.isfinite(y).all()
            ref = fewstep_peers.converged_flow(D, x0 + s0 * eps, s0, rtol=1e-8)
            errs.append(float((y - ref).square().mean().sqrt()))
        assert errs[1] < errs[0] / 5 and errs[1] < 0.01, (name, errs)  # the σ̂ = 0.01 ends leave ~3e-3


def test_bad_arguments_exit_naming_the_argument(tmp_path):
    for argv, name in ((["--problems", "ring2d,nope"], "--problems"), (["--samples", "3"], "--samples"),
                       (["--nfes", "5,x"], "--nfes")):
        with pytest.raises(SystemExit, match=name):
            fewstep_peers.main([*argv, "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())
