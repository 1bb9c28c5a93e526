"""The driver: shapes, noise types, interop, divergence handling, adaptivity, bad input."""

import math

import pytest
import torch

import solvers
from problems import GBM, OU

ALL = [solvers.EulerMaruyama(), solvers.TwoStepEuler(), solvers.Heun(), solvers.Milstein(), solvers.SRA1(),
       solvers.ExponentialEuler(), solvers.DriftImplicitEuler()]


@pytest.mark.parametrize("solver", ALL, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_scheme_any_shape(solver, dtype):
    x0 = torch.randn(4, 3, 8, 8, dtype=dtype)
    ts = torch.linspace(0, 1, 5)
    out = solvers.sdeint(OU(), x0, ts, solver, dt=0.05, seed=0)
    assert out.shape == (5, 4, 3, 8, 8) and out.dtype == dtype
    assert torch.equal(out[0], x0) and torch.isfinite(out).all()


def test_seed_reproducible_and_ts_saved_on_grid():
    x0 = torch.zeros(16, 2, dtype=torch.float64)
    a = solvers.sdeint(OU(), x0, [0.0, 0.3, 1.0], solvers.EulerMaruyama(), dt=0.1, seed=7)
    b = solvers.sdeint(OU(), x0, [0.0, 0.3, 1.0], solvers.EulerMaruyama(), dt=0.1, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a[1], a[2])


def test_general_and_scalar_noise():
    class General(solvers.SDE):
        noise_type = "general"

        def drift(self, t, x):
            return -x

        def diffusion(self, t, x):  # (batch, 3) state driven by 2 Brownian motions
            return torch.stack([x, torch.ones_like(x)], dim=-1)

    class Scalar(solvers.SDE):
        noise_type = "scalar"

        def drift(self, t, x):
            return -x

        def diffusion(self, t, x):
            return torch.ones_like(x)

    x0 = torch.ones(5, 3, dtype=torch.float64)
    path = solvers.BrownianPath((5, 2), 0.0, 1.0, seed=0, dtype=torch.float64)
    out = solvers.sdeint(General(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=1.0, brownian=path)[-1]
    dW = path.increment(0.0, 1.0)
    assert torch.allclose(out, x0 - x0 + x0 * dW[:, :1] + dW[:, 1:])
    path1 = solvers.BrownianPath((5,), 0.0, 1.0, seed=0, dtype=torch.float64)
    out = solvers.sdeint(Scalar(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=1.0, brownian=path1)[-1]
    assert torch.allclose(out, path1.increment(0.0, 1.0)[:, None].expand(5, 3))


def test_torchsde_module_and_brownian_interval_match_torchsde_euler():
    torchsde = pytest.importorskip("torchsde")

    class TorchsdeOU(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -2.0 * y + torch.sin(t)

        def g(self, t, y):
            return 0.5 + 0.1 * y**2

    batch, d, dt = 8, 3, 2.0**-5  # dyadic: torchsde accumulates t += dt, exact only for dyadic steps
    y0 = torch.randn(batch, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(batch, d), dtype=torch.float64, entropy=42)
    theirs = torchsde.sdeint(TorchsdeOU(), y0, ts, bm=bm, method="euler", dt=dt)
    ours = solvers.sdeint(TorchsdeOU(), y0, ts, solvers.EulerMaruyama(), dt=dt, brownian=bm)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)


def test_torchdiffeq_style_ode_and_bridge():
    def func(t, y):
        return -y

    x0 = torch.ones(2, 2, dtype=torch.float64)
    rk4 = solvers.sdeint(func, x0, [0.0, 1.0], solvers.RK4(), dt=0.01)[-1]
    dopri, nfe = solvers.odeint_torchdiffeq(func, x0, [0.0, 1.0], return_nfe=True)
    assert torch.allclose(rk4, x0 * math.exp(-1.0), rtol=1e-9)
    assert torch.allclose(dopri[-1], x0 * math.exp(-1.0), rtol=1e-7) and nfe > 0


def test_divergent_samples_are_flagged_frozen_and_the_rest_continue():
    def blowup(t, x):  # an ODE: dx/dt = x² explodes in finite time for x0 > 0
        return x * x

    x0 = torch.tensor([[5.0], [0.1], [-1.0]], dtype=torch.float64)
    out, info = solvers.sdeint(blowup, x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.01, return_info=True,
                               check_every=1)
    assert info.diverged.tolist() == [True, False, False]
    assert 0 < info.diverged_time[0] < 1 and math.isnan(info.diverged_time[1])
    assert torch.isfinite(out).all()
    alone = solvers.sdeint(blowup, x0[1:], [0.0, 1.0], solvers.EulerMaruyama(), dt=0.01)
    assert torch.equal(out[:, 1:], alone)
    with pytest.raises(solvers.DivergenceError, match=r"samples \[0\]"):
        solvers.sdeint(blowup, x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.01, on_divergence="raise")


def test_adaptive_converges_on_the_same_path():
    sde = GBM(a=0.5, b=0.8)
    x0 = torch.ones(200, 1, dtype=torch.float64)
    path = solvers.BrownianPath((200, 1), 0.0, 1.0, seed=3, dtype=torch.float64)
    exact = sde.exact(x0, 1.0, path.increment(0.0, 1.0))
    errs, steps = [], []
    for rtol in (1e-2, 1e-3, 1e-4):
        out, info = solvers.sdeint(sde, x0, [0.0, 0.5, 1.0], solvers.Milstein(), adaptive=True, dt=0.25,
                                   rtol=rtol, atol=rtol, brownian=path, return_info=True)
        errs.append(float((out[-1] - exact).abs().mean()))
        steps.append(info.n_steps)
    assert errs[0] > errs[1] > errs[2] and steps[0] < steps[1] < steps[2]
    assert errs[2] < 0.2 * errs[0], errs


def test_adaptive_ode_hits_requested_accuracy():
    x0 = torch.ones(1, 1, dtype=torch.float64)
    out, info = solvers.sdeint(lambda t, x: -x, x0, [0.0, 2.0], solvers.RK4(), adaptive=True, rtol=1e-8,
                               atol=1e-10, return_info=True)
    assert abs(float(out[-1]) - math.exp(-2.0)) < 1e-7 and info.n_steps < 200


# ----------------------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    x0 = torch.zeros(4, 2)
    em = solvers.EulerMaruyama()
    with pytest.raises(ValueError, match="ts: times must be strictly monotone"):
        solvers.sdeint(OU(), x0, [0.0, 1.0, 0.5], em)
    with pytest.raises(ValueError, match="dt: expected a positive"):
        solvers.sdeint(OU(), x0, [0.0, 1.0], em, dt=0.0)
    with pytest.raises(ValueError, match="dt: expected a positive"):
        solvers.sdeint(OU(), x0, [0.0, 1.0], em, dt=-0.1)
    with pytest.raises(ValueError, match="solver: expected a scheme instance"):
        solvers.sdeint(OU(), x0, [0.0, 1.0], solvers.EulerMaruyama)
    with pytest.raises(ValueError, match="solver SRA1 supports noise types.*GBM has noise_type='diagonal'"):
        solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.SRA1())
    with pytest.raises(ValueError, match="solver RK4 supports noise types"):
        solvers.sdeint(OU(), x0, [0.0, 1.0], solvers.RK4())
    with pytest.raises(ValueError, match="solver ExponentialEuler needs the linear part.*GBM"):
        solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.ExponentialEuler())


def test_mismatched_drift_and_diffusion_shapes():
    class BadDiffusion(solvers.SDE):
        noise_type = "diagonal"

        def drift(self, t, x):
            return -x

        def diffusion(self, t, x):
            return torch.ones(x.shape[0], x.shape[1] + 1)

    class BadDrift(BadDiffusion):
        def drift(self, t, x):
            return x[:, :1]

    x0 = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"sde.diffusion: returned shape \(4, 3\)"):
        solvers.sdeint(BadDiffusion(), x0, [0.0, 1.0], solvers.EulerMaruyama())
    with pytest.raises(ValueError, match=r"sde.drift: returned \(4, 1\)"):
        solvers.sdeint(BadDrift(), x0, [0.0, 1.0], solvers.EulerMaruyama())


def test_tableaus_are_checked_at_construction():
    with pytest.raises(ValueError, match="b sums to"):
        solvers.ButcherTableau(a=((), (0.5,)), b=(0.5, 0.6), c=(0.0, 0.5), order=2)
    with pytest.raises(ValueError, match="row 1 of a sums"):
        solvers.ButcherTableau(a=((), (0.4,)), b=(0.5, 0.5), c=(0.0, 0.5), order=2)
    with pytest.raises(ValueError, match="beta2 sums to"):
        solvers.SRATableau(c0=(0.0, 0.75), c1=(1.0, 0.0), a0=((), (0.75,)), b0=((), (1.5,)),
                           alpha=(1 / 3, 2 / 3), beta1=(1.0, 0.0), beta2=(-1.0, 0.9))


def test_nfe_and_step_counts():
    x0 = torch.zeros(4, 2)
    _, info = solvers.sdeint(OU(), x0, [0.0, 1.0], solvers.Heun(), dt=0.125, return_info=True)
    assert info.n_steps == 8 and info.nfe == 8 * 4
