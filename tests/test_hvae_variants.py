"""The HVAE variants of the point-mass instability experiment (benchmarks/hvae_instability.py): starts, decay, grid.

Each is checked against a hand-written formula, not against itself: the
exponential step of the decay model against ``e^{-κh} x + h φ₁(-κh) N(x) +
sqrt(h φ₁(-2κh)/h) g dB``, the Gaussian start against its mean and standard
deviation (20 000 draws, tolerance 5 standard errors), the graded grid against
``t_k + n (i/n)²``.
"""

import math

import pytest
import torch

import solvers
from mrdiffusion.hvae import HVAE, HVAEConfig
from test_hvae_identity import _noise, _randomised  # the same randomised float64 model and noise

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(width=8, mid_width=4, zdim=2, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 2, 2, 2))


def _phi1(z):
    return torch.expm1(z) / z


def test_exponential_euler_steps_the_learned_decay_exactly():
    model = _randomised(HVAEConfig(**SMALL, decay=True, solver="ExponentialEuler"))
    with torch.no_grad():
        model.decay.add_(torch.linspace(-1.0, 3.0, model.decay.numel()).view_as(model.decay))  # κ from ~0.3 to ~4
    batch, noise = 3, _noise(model, 3)
    with torch.no_grad():
        ours, _, _ = model.top_down(batch, None, noise=noise)
        x = None
        for i, st in enumerate(model.schedule()):
            if x is None or x.shape[-1] != st.res:
                x = model.activate(x, st.res, batch)
            blk = model.blocks[st.block]
            kappa = torch.nn.functional.softplus(model.decay[st.block]).view(1, -1, 1, 1)
            m, log_s, mu1 = blk.prior(x)
            nonlinear = mu1 + blk.z_proj(m) + blk.resnet(x)  # N at x: one stage
            noise_term = torch.nn.functional.conv2d(log_s.exp() * noise[i], blk.z_proj.weight)
            lam = -kappa * st.h
            x = (lam.exp() * x + st.h * _phi1(lam) * nonlinear
                 + (_phi1(2 * lam)).sqrt() * noise_term * math.sqrt(st.h))
    assert torch.allclose(ours, x, rtol=0, atol=1e-10), float((ours - x).abs().max())


def test_decay_model_under_two_step_euler_puts_the_decay_in_the_first_part():
    model = _randomised(HVAEConfig(**SMALL, decay=True))
    sde = model._sde(1)
    x = torch.randn(2, 8, 2, 2, dtype=torch.float64)
    kappa = torch.nn.functional.softplus(model.decay[1]).view(1, -1, 1, 1)
    assert torch.allclose(sde.drift(0.0, x), sde.nonlinear(0.0, x) - kappa * x)
    assert torch.allclose(sde.drift(0.0, x), sde.drift_part1(0.0, x) + sde.drift_part2(0.0, x))
    assert torch.equal(sde.linear(0.0), -kappa)


def test_exponential_euler_is_refused_without_a_linear_part():
    with pytest.raises(ValueError, match="linear"):
        HVAE(HVAEConfig(**SMALL, solver="ExponentialEuler"))


def test_gaussian_start_has_its_learned_mean_and_spread():
    model = _randomised(HVAEConfig(**SMALL, start="gaussian"))
    with torch.no_grad():
        model.log_sd["2"].fill_(math.log(0.3))
    g = torch.Generator().manual_seed(0)
    n = 20000
    with torch.no_grad():
        coarse = torch.zeros(n, 8, 1, 1, dtype=torch.float64)
        x = model.activate(coarse, 2, n, g)
    mean, sd = x.mean(0), x.std(0)
    assert (mean - model.bias_xs["2"][0]).abs().max() < 5 * 0.3 / math.sqrt(n)
    assert (sd - 0.3).abs().max() < 5 * 0.3 / math.sqrt(2 * n)


def test_gaussian_start_with_vanishing_spread_is_the_point_mass_model():
    gauss = _randomised(HVAEConfig(**SMALL, start="gaussian"))
    point = HVAE(HVAEConfig(**SMALL, start="bias_xs")).double()
    point.load_state_dict({k: v for k, v in gauss.state_dict().items() if not k.startswith("log_sd")})
    with torch.no_grad():
        for p in gauss.log_sd.values():
            p.fill_(-80.0)
        noise = _noise(gauss, 4)
        a = gauss.top_down(4, None, noise=noise, generator=torch.Generator().manual_seed(3))[0]
        b = point.top_down(4, None, noise=noise)[0]
    assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_graded_grid_refines_right_after_each_activation():
    model = HVAE(HVAEConfig(**{**SMALL, "dec_blocks": (1, 2, 3, 3)}, grid="graded"))
    sched = model.schedule()
    t0 = 0
    for res, n in zip(model.config.resolutions, model.config.dec_blocks):
        mine = [s for s in sched if s.res == res]
        assert [s.t for s in mine] == pytest.approx([t0 + n * (i / n) ** 2 for i in range(n)])
        assert sum(s.h for s in mine) == pytest.approx(n)
        assert all(a.h < b.h for a, b in zip(mine, mine[1:]))
        assert [s.block for s in mine] == list(range(t0, t0 + n))  # one block per step, as trained
        t0 += n
    refined = model.schedule((2, 4, 6, 6))
    assert len(refined) == 18 and refined[0].h == pytest.approx(0.25)


def test_old_checkpoint_configs_load_as_the_single_point_mass_model():
    d = HVAEConfig(**SMALL).to_dict()
    del d["start"], d["decay"], d["grid"]
    config = HVAEConfig.from_dict(d)
    assert config.start == "x0" and not config.decay and config.grid == "uniform"
    assert "x0" in dict(HVAE(config).named_parameters())


@pytest.mark.parametrize("field,value", [("start", "zero"), ("grid", "log"), ("decay", "yes")])
def test_bad_variant_fields_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        HVAEConfig(**SMALL, **{field: value})


def test_instability_experiment_runs_end_to_end_quick(tmp_path):
    from benchmarks.hvae_instability import main

    main(["--quick", "--out", str(tmp_path)])
    for name in ("instability_quick.md", "instability_quick.json", "instability_quick_gradnorm_steps.png",
                 "instability_quick_skips.png", "instability_quick_training.png"):
        assert (tmp_path / name).stat().st_size > 0
