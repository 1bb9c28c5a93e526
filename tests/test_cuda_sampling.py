"""Sampling on a GPU: the same answer as the CPU, and no host synchronisation inside the step loop.

Skipped, with the reason, where CUDA is absent. The CPU-side parts that make this possible are tested here on
every machine: the scalar schedule's coefficients are 0-d CPU tensors (an element-wise CUDA kernel takes them as
scalar arguments), and whether a step lands on σ = 0 is read from the schedules on the host.
"""

import warnings

import pytest
import torch

import solvers
from mrdiffusion.processes import BandNoising, EDMSchedule, VPSchedule, gaussian_denoiser
from mrdiffusion.sampling import DEFAULT_SOLVER, DPMSolverPP2M, ExponentialAdams, ScalarNoising, sample

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def test_scalar_coefficients_stay_on_the_cpu_for_any_state_device():
    x = torch.zeros(3, dtype=torch.float32, device="meta")  # any device: the coefficients do not follow it
    a, s = ScalarNoising(EDMSchedule(80.0)).alpha_sigma(3.0, like=x)
    assert a.device.type == s.device.type == "cpu" and a.ndim == s.ndim == 0 and a.dtype == torch.float32
    assert float(s) == 3.0 and float(a) == 1.0


def test_a_step_onto_zero_noise_is_known_without_reading_the_device():
    """``reaches_zero`` (host, from the schedules) says what ``(σ == 0).any()`` on the coefficients says."""
    from mrdiffusion.sampling import DenoisingProblem, EDMRho

    nz = BandNoising((4, 4), 2, schedules=[VPSchedule(0.1, 10.0), VPSchedule(0.5, 20.0), VPSchedule(1.0, 30.0)])
    times = EDMRho()(6, nz.T, 0.0, nz)
    x = torch.zeros(2, 1, 16, dtype=torch.float64)
    prob = DenoisingProblem(lambda x, t: x, nz, times, x, False)
    for u in prob.u_grid:
        assert prob.reaches_zero(u) == bool((prob.alpha_sigma(u)[1] == 0).any()), u
    assert prob.reaches_zero(prob.u_grid[-1]) and not prob.reaches_zero(prob.u_grid[-2])


def _gaussian_problem(device, dtype=torch.float64):
    mean = torch.linspace(-1, 1, 16, dtype=dtype).view(1, 4, 4)
    var = torch.linspace(0.2, 2.0, 16, dtype=dtype).view(1, 4, 4)
    schedule = EDMSchedule(80.0)
    D = gaussian_denoiser(ScalarNoising(schedule), mean.to(device), var.to(device))
    x_T = 80.0 * torch.randn(64, 1, 4, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    return D, schedule, x_T.to(device)


@cuda
@pytest.mark.parametrize("solver", [DEFAULT_SOLVER, DPMSolverPP2M(), ExponentialAdams(2, eta=1.0)], ids=repr)
def test_cuda_samples_equal_the_cpu_samples(solver):
    """Same start, same seed, closed-form denoiser: CUDA and CPU agree to float64 round-off (the stochastic
    sampler's noise is the counter-based Brownian path, a function of the seed alone)."""
    out = {}
    for device in ("cpu", "cuda"):
        D, schedule, x_T = _gaussian_problem(device)
        out[device] = sample(D, schedule, x_T, nfe=10, solver=solver, seed=3)[0].cpu()
    assert torch.allclose(out["cuda"], out["cpu"], rtol=1e-12, atol=1e-12)


def _syncs(fn):
    """``fn()`` under torch's synchronisation debug mode; the number of host synchronisations it reported."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


@cuda
def test_the_default_sampler_does_not_synchronise_per_step():
    """The number of host synchronisations of a solve does not grow with its steps: the only one is the
    divergence check's read at the end of the solve (``check_every`` steps apart, 16 by default)."""
    D, schedule, x_T = _gaussian_problem("cuda", torch.float32)
    sample(D, schedule, x_T, nfe=5)  # warm-up: first-call set-up is not the step loop
    few = _syncs(lambda: sample(D, schedule, x_T, nfe=5))
    many = _syncs(lambda: sample(D, schedule, x_T, nfe=15))
    assert many == few <= 1, (few, many)


@cuda
def test_a_fixed_step_sdeint_does_not_synchronise_per_step():
    class OU(solvers.SDE):
        noise_type = "additive"

        def drift(self, t, x):
            return -x

        def diffusion(self, t, x):
            return 1.0

    x0 = torch.zeros(256, 8, device="cuda")
    gen = torch.Generator("cuda").manual_seed(0)
    solve = lambda n: solvers.sdeint(OU(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=1.0 / n,  # noqa: E731
                                     check_every=10**9, brownian=solvers.GridNoise(x0.shape, generator=gen,
                                                                                   like=x0))
    solve(8)
    assert _syncs(lambda: solve(8)) == _syncs(lambda: solve(64)) <= 2
