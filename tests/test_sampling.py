"""Few-step diffusion samplers: exact conversions, grids, measured ODE orders, σ = 0, per-sample noise, peers."""

import math

import pytest
import torch

import solvers
from mrdiffusion.processes import BandNoising, EDMSchedule, VESchedule, VPSchedule, gaussian_denoiser
from mrdiffusion.sampling import (Ancestral, ActivationRefined, DPMSolverPP2M, DPMSolverPP2S, DPMSolverPP3S, EDMEuler,
                                  EDMHeun, DenoisingProblem, EDMRho, ExponentialAdams, UniformLogSNR, UniformTime, from_data, sample, to_data)

ODE_SCHEMES = [ExponentialAdams(1), ExponentialAdams(2), ExponentialAdams(3), ExponentialAdams(2, prediction="eps"),
               ExponentialAdams(3, prediction="eps"), DPMSolverPP2M(), DPMSolverPP2S(), DPMSolverPP3S(), EDMEuler(),
               EDMHeun()]


def gaussian_problem(noising, seed=0):
    n = noising.layout.n
    gen = torch.Generator().manual_seed(seed)
    var = 0.2 + torch.rand(1, 1, n, generator=gen, dtype=torch.float64)
    mean = torch.randn(1, 1, n, generator=gen, dtype=torch.float64)
    return mean, var


def exact_flow(noising, mean, var, x, t0, t1):
    """The probability-flow ODE map of Gaussian data from t0 to t1, per coordinate (standardised value kept)."""
    a0, s0 = noising.alpha_sigma(t0, like=x)
    a1, s1 = noising.alpha_sigma(t1, like=x)
    return a1 * mean + (a1 * a1 * var + s1 * s1).sqrt() / (a0 * a0 * var + s0 * s0).sqrt() * (x - a0 * mean)


NOISINGS = {
    "edm": BandNoising((4, 4), 2, schedules=EDMSchedule(5.0), T=5.0),
    "per-band VP/VE": BandNoising((4, 4), 2, schedules=[VPSchedule(0.1, 10.0), VPSchedule(0.5, 20.0),
                                                        VESchedule(0.05, 5.0)]),
}


def test_conversions_are_exact_and_safe_at_sigma_zero():
    gen = torch.Generator().manual_seed(0)
    x, D = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    alpha, sigma = torch.tensor(0.7, dtype=torch.float64), torch.rand(3, generator=gen, dtype=torch.float64) + 0.1
    for kind in ("data", "eps", "score"):
        out = from_data(D, kind, x, alpha, sigma)
        assert torch.allclose(to_data(out, kind, x, alpha, sigma), D, rtol=0, atol=1e-13)
    eps = from_data(D, "eps", x, alpha, sigma)
    assert torch.allclose(from_data(D, "score", x, alpha, sigma), -eps / sigma, rtol=0, atol=1e-12)
    zero = torch.zeros(3, dtype=torch.float64)
    for kind in ("eps", "score"):  # at σ = 0 every convention says D = x/α, exactly and without NaN
        assert torch.equal(to_data(torch.randn(5, 3, generator=gen, dtype=torch.float64), kind, x, alpha, zero),
                           x / alpha)
        with pytest.raises(ValueError, match="sigma"):
            from_data(D, kind, x, alpha, zero)


def exact_start(scheme, nz, D, x_T, times, mean, var):
    """Run ``scheme`` over ``times`` through the driver with exact starting values for its multistep history.

    The first ``order - 1`` grid points get the exact flow and the model output there, so the measured
    slope is the order of the multistep formula itself (self-started, the order-1 first step limits the
    global order to 2).
    """
    k = getattr(scheme, "order", 1) - 1 if isinstance(scheme, ExponentialAdams) else int(isinstance(
        scheme, DPMSolverPP2M))
    prob = DenoisingProblem(D, nz, times, x_T, False)
    for i in range(k):
        prob.denoise(prob.u_grid[i], exact_flow(nz, mean, var, x_T, times[0], times[i]))
    x = exact_flow(nz, mean, var, x_T, times[0], times[k])
    u = prob.u_grid
    return solvers.sdeint(prob, x, [u[k], u[-1]], scheme, tstops=u[k + 1:-1])[-1]


@pytest.mark.parametrize("name", list(NOISINGS))
@pytest.mark.parametrize("scheme", ODE_SCHEMES, ids=repr)
def test_ode_order_is_the_declared_one(scheme, name):
    """Error against the exact flow to t_end with σ(t_end) > 0; log-log slope over a doubling of steps.

    Self-started through ``sample`` the slope is at least ``min(order, 2)``; with exact starting values
    (the multistep formula alone) at least the declared order.
    """
    nz = NOISINGS[name]
    mean, var = gaussian_problem(nz)
    t0, t1 = nz.T, 0.15 * nz.T
    gen = torch.Generator().manual_seed(1)
    a, s = nz.alpha_sigma(t0)
    x_T = a * mean + (a * a * var + s * s).sqrt() * torch.randn(64, 1, nz.layout.n, generator=gen,
                                                                dtype=torch.float64)
    exact = exact_flow(nz, mean, var, x_T, t0, t1)
    D = gaussian_denoiser(nz, mean, var)
    errs, errs_exact_start = [], []
    for n in (16, 32, 64):
        x, info = sample(D, nz, x_T, nfe=n * scheme.evals_per_step, solver=scheme, grid=UniformLogSNR(), t_end=t1)
        assert info.steps == n and info.nfe == n * scheme.evals_per_step
        errs.append(float((x - exact).abs().max()))
        x = exact_start(scheme, nz, D, x_T, info.times, mean, var)
        errs_exact_start.append(float((x - exact).abs().max()))
    slope = math.log2(errs[-2] / errs[-1])
    assert min(scheme.ode_order, 2) - 0.25 <= slope <= scheme.ode_order + 0.8, (errs, slope)
    slope = math.log2(errs_exact_start[-2] / errs_exact_start[-1])
    assert scheme.ode_order - 0.25 <= slope <= scheme.ode_order + 0.8, (errs_exact_start, slope)


@pytest.mark.parametrize("scheme", ODE_SCHEMES + [ExponentialAdams(3, eta=1.0), DPMSolverPP2M(eta=0.5), Ancestral(),
                                                   DPMSolverPP2S(eta=1.0)], ids=repr)
def test_sampling_to_sigma_zero_is_finite_within_budget(scheme):
    nz = NOISINGS["per-band VP/VE"]
    mean, var = gaussian_problem(nz)
    D = gaussian_denoiser(nz, mean, var)
    calls = []

    def model(x, t):
        calls.append(t)
        return D(x, t)

    x_T = torch.randn(32, 1, nz.layout.n, dtype=torch.float64)
    for nfe in (1, 2, 5, 10):
        calls.clear()
        x, info = sample(model, nz, x_T, nfe=nfe, solver=scheme, grid=EDMRho(sigma_min=0.01))
        assert torch.isfinite(x).all()
        assert info.nfe == len(calls) <= nfe and info.times[-1] == 0.0 and 0.0 not in calls
    # the last step onto σ = 0 returns α D of the state before it, exactly (first order, no log 0)
    x, info = sample(model, nz, x_T, nfe=1, solver=scheme, grid=EDMRho())
    assert torch.allclose(x, D(x_T, nz.T), rtol=0, atol=1e-12)


@pytest.mark.parametrize("scheme", [ExponentialAdams(2, eta=1.0), DPMSolverPP2M(eta=0.3), Ancestral(),
                                    DPMSolverPP2S(eta=0.7)], ids=repr)
def test_same_seed_same_samples_for_any_batch_size(scheme):
    nz = NOISINGS["edm"]
    mean, var = gaussian_problem(nz)
    D = gaussian_denoiser(nz, mean, var)
    x_T = 5 * torch.randn(7, 1, nz.layout.n, dtype=torch.float64)
    full, _ = sample(D, nz, x_T, nfe=6, solver=scheme, seed=3)
    head, _ = sample(D, nz, x_T[:2], nfe=6, solver=scheme, seed=3)
    tail, _ = sample(D, nz, x_T[4:], nfe=6, solver=scheme, seed=3, sample_ids=[4, 5, 6])
    assert torch.equal(full[:2], head) and torch.equal(full[4:], tail)
    other, _ = sample(D, nz, x_T, nfe=6, solver=scheme, seed=4)
    assert not torch.allclose(full, other)


@pytest.mark.parametrize("scheme", [ExponentialAdams(1, eta=1.0), ExponentialAdams(3, eta=1.0),
                                    DPMSolverPP2M(eta=1.0), Ancestral(), DPMSolverPP2S(eta=1.0)], ids=repr)
def test_stochastic_samplers_reach_the_data_law(scheme):
    nz = NOISINGS["per-band VP/VE"]
    mean, var = gaussian_problem(nz)
    D = gaussian_denoiser(nz, mean, var)
    N = 20000
    a, s = nz.alpha_sigma(nz.T)
    gen = torch.Generator().manual_seed(5)
    x_T = a * mean + (a * a * var + s * s).sqrt() * torch.randn(N, 1, nz.layout.n, generator=gen, dtype=torch.float64)
    nfe = 80 if scheme.ode_order > 1 else 320  # first-order SDE samplers converge slowly (~1/NFE)
    x, _ = sample(D, nz, x_T, nfe=nfe, solver=scheme, grid=UniformLogSNR(sigma_min=0.01), seed=1)
    z = (x - mean) / var.sqrt()
    assert float(z.mean(0).abs().max()) < 4.5 / math.sqrt(N) + 0.02
    assert float((z.var(0) - 1).abs().max()) < 4.5 * math.sqrt(2 / N) + 0.03


def test_grids():
    nz = NOISINGS["per-band VP/VE"]
    for grid in (UniformTime(), UniformLogSNR(), EDMRho()):
        ts = grid(10, nz.T, 0.0, nz)
        assert len(ts) == 11 and ts[0] == nz.T and ts[-1] == 0.0
        assert all(b < a for a, b in zip(ts, ts[1:]))
    # EDM ρ grid: Karras et al.'s σ levels, then 0 (as k-diffusion's get_sigmas_karras)
    edm = BandNoising((2, 2), 1, schedules=EDMSchedule(80.0), T=80.0)
    ts = EDMRho(rho=7.0, sigma_min=0.002)(5, 80.0, 0.0, edm)
    ramp = [i / 4 for i in range(5)]
    want = [(80 ** (1 / 7) + r * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for r in ramp] + [0.0]
    assert all(abs(a - b) <= 1e-9 * max(1.0, b) for a, b in zip(ts, want))
    lam = UniformLogSNR(sigma_min=0.01)(5, 80.0, 0.0, edm)
    logs = [math.log(s) for s in lam[:-1]]
    assert max(abs((b - a) - (logs[1] - logs[0])) for a, b in zip(logs, logs[1:])) < 1e-9
    act = ActivationRefined(activation_times=(0.25, 0.5))(12, 0.0, 1.0)
    assert len(act) == 13 and 0.25 in act and 0.5 in act and act[-1] == 1.0
    i = act.index(0.25)
    assert act[i + 1] - act[i] < act[i + 2] - act[i + 1]  # short steps right after the activation


def test_bad_input_is_refused_before_any_work():
    nz = NOISINGS["edm"]
    D = gaussian_denoiser(nz, *gaussian_problem(nz))
    x = torch.randn(2, 1, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="nfe"):
        sample(D, nz, x, nfe=0)
    with pytest.raises(ValueError, match="solver"):
        sample(D, nz, x, solver=ExponentialAdams)
    with pytest.raises(ValueError, match="grid"):
        sample(D, nz, x, grid="karras")
    with pytest.raises(ValueError, match="prediction"):
        sample(D, nz, x, prediction="v")
    with pytest.raises(ValueError, match="noising"):
        sample(D, object(), x)
    with pytest.raises(ValueError, match="order"):
        ExponentialAdams(order=4)
    with pytest.raises(ValueError, match="eta"):
        ExponentialAdams(eta=2.0)


def test_matches_k_diffusion_samplers_on_their_grids():
    """Independent implementation: k-diffusion 0.1.1's Euler, Heun and DPM-Solver++(2M) on the Karras grid."""
    from benchmarks._kdiffusion import load_sampling

    kd, why = load_sampling()
    if kd is None:
        pytest.skip(why)
    nz = BandNoising((4, 4), 2, schedules=EDMSchedule(50.0), T=50.0)
    mean, var = gaussian_problem(nz)
    D = gaussian_denoiser(nz, mean, var)

    def denoiser(x, sigma):
        return D(x, float(sigma.reshape(-1)[0]))

    x_T = 50 * torch.randn(8, 1, 16, dtype=torch.float64)
    sigmas = kd.get_sigmas_karras(10, 0.002, 50.0, rho=7.0).to(torch.float64)
    for ours, theirs, nfe in ((EDMEuler(), kd.sample_euler, 10), (EDMHeun(), kd.sample_heun, 19),
                              (DPMSolverPP2M(), kd.sample_dpmpp_2m, 10)):
        x, info = sample(D, nz, x_T, nfe=nfe, solver=ours, grid=EDMRho(sigma_min=0.002))
        # their grid is computed in float32: the same to 1e-6; run theirs on our float64 times
        assert info.nfe == nfe and [float(t) for t in sigmas] == pytest.approx(info.times, rel=1e-6, abs=1e-9)
        y = theirs(denoiser, x_T.clone(), torch.tensor(info.times, dtype=torch.float64), disable=True)
        assert torch.allclose(x, y, rtol=0, atol=1e-10 * float(y.abs().max())), ours


def test_step_noise_pieces_add_up_and_are_independent():
    """A two-stage scheme draws the halves of a step: they sum to the step's ΔW and are independent normals."""
    from mrdiffusion.sampling._problem import StepNoise

    u = [0.0, 0.3, 0.7, 1.6]
    noise = StepNoise((4000, 3), u, seed=2, dtype=torch.float64, device=None)
    whole = noise.increment(0.3, 0.7)
    a, b = noise.increment(0.3, 0.45), noise.increment(0.45, 0.7)
    assert torch.allclose(a + b, whole, rtol=0, atol=1e-12)
    # variances 0.15 and 0.25, uncorrelated (4000 × 3 draws: standard error of the correlation ≈ 0.009)
    assert abs(float(a.var()) / 0.15 - 1) < 0.06 and abs(float(b.var()) / 0.25 - 1) < 0.06
    assert abs(float(torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1])) < 0.04
    assert torch.equal(noise.increment(0.0, 0.3), noise.increment(0.0, 0.3))
    with pytest.raises(ValueError, match="inside one grid step"):
        noise.increment(0.5, 1.0)
    with pytest.raises(ValueError, match="already cut at 0.45"):  # one cut per step: no silently wrong bridge
        noise.increment(0.3, 0.5)
    with pytest.raises(ValueError, match="both ends inside"):
        noise.increment(0.8, 0.9)
