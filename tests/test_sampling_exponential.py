"""Exponential schemes on the bench's ``gaussian`` problem and on the noising's reverse-time equations.

Moments of a scheme that is affine in ``(x, ΔW)`` (both exponential schemes on an affine problem with
additive noise) are computed exactly, without Monte-Carlo error, from impulse responses: sample 0 gets
no noise (its end state is the mean), sample ``j`` gets ``√h`` at step ``j`` only (its deviation from
sample 0 is the response ``G_j √h``), and ``Var = Σ_j (G_j √h)²``.
"""

import math

import pytest
import torch

import solvers
from mrdiffusion.processes import BandNoising, GaussianReverseProcess, VESchedule, VPSchedule, gaussian_score
from mrdiffusion.sampling import ExponentialAdams, UniformTime, sample


def gaussian_bench_problem():
    """The bench's default ``gaussian`` problem (three levels, activations at 0, 1/4, 3/8)."""
    return GaussianReverseProcess.power_law([0, 1, 2], [0.0, 0.25, 0.375], 1.0, decay=1.5)


class GenericNonlinearPart(solvers.SDE):
    """A level SDE seen without its exact forcing weight: the affine forcing is a general nonlinear part."""

    noise_type = "additive"

    def __init__(self, sde):
        self.sde = sde
        self.linear, self.linear_transition = sde.linear, sde.linear_transition

    def drift(self, t, y):
        return self.sde.drift(t, y)

    def diffusion(self, t, y):
        return self.sde.diffusion(t, y)


def exact_moments(proc, solver, dt, generic=False):
    steps = sum(round((lev.t_end - lev.t_start) / dt) for lev in proc.levels)
    shape = (steps + 1, proc.channels, proc.layout.n)
    count = [0]

    def impulses(s, t):
        out = torch.zeros(shape, dtype=torch.float64)
        out[count[0] + 1] = math.sqrt(t - s)
        count[0] += 1
        return out

    y = torch.zeros(shape, dtype=torch.float64)
    for lev in proc.levels:  # the band view, level by level (a test's own reference loop)
        sde = proc.band_sde(lev.index)
        y = solvers.sdeint(GenericNonlinearPart(sde) if generic else sde, y, [lev.t_start, lev.t_end], solver, dt=dt,
                           brownian=impulses)[-1]
    assert count[0] == steps
    return y[0], (y[1:] - y[0]).square().sum(0)


def weak_errors(solver, dts, generic=False):
    proc = gaussian_bench_problem()
    m, v = proc.band_moments(proc.T)
    out = []
    for dt in dts:
        mean, var = exact_moments(proc, solver, dt, generic)
        out.append(float((mean - m).abs().max() + (var - v).abs().max()))
    return out


def test_exponential_euler_is_exact_in_law_on_gaussian():
    """Affine forcing integrated exactly: weak error at round-off at every step, even one step per level."""
    errs = weak_errors(solvers.ExponentialEuler(), [1 / 8, 1 / 16, 1 / 64, 1 / 256])
    assert max(errs) < 1e-13, errs


def test_exponential_heun_has_weak_order_two_on_gaussian():
    """With the forcing as a general nonlinear part (no exact weight) the measured weak order is 2; with the
    weight the scheme is exact, as ExponentialEuler is."""
    assert max(weak_errors(solvers.ExponentialHeun(), [1 / 8, 1 / 64])) < 1e-13
    errs = weak_errors(solvers.ExponentialHeun(), [1 / 8, 1 / 16, 1 / 32, 1 / 64], generic=True)
    slopes = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert min(slopes[1:]) >= 1.8 and max(slopes) <= 2.3, (errs, slopes)
    assert solvers.ExponentialHeun.weak_order == 2.0


def test_euler_maruyama_reference_is_first_order_on_gaussian():
    """The impulse-response moments are not trivially exact: Euler–Maruyama shows its order 1."""
    errs = weak_errors(solvers.EulerMaruyama(), [1 / 16, 1 / 32, 1 / 64])
    assert weak_errors(solvers.ExponentialEuler(), [1 / 16], generic=True)[0] > 1e-4  # the weight matters
    slopes = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert 0.9 <= min(slopes) and max(slopes) <= 1.3, (errs, slopes)


def _noising_problem():
    nz = BandNoising((4, 4), 2, schedules=[VPSchedule(0.1, 10.0), VPSchedule(0.5, 20.0), VESchedule(0.05, 5.0)])
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(1, 1, nz.layout.n, generator=gen, dtype=torch.float64)
    var = 0.2 + torch.rand(1, 1, nz.layout.n, generator=gen, dtype=torch.float64)
    a, s = nz.alpha_sigma(nz.T)
    y_T = a * mean + (a * a * var + s * s).sqrt() * torch.randn(4000, 1, nz.layout.n, generator=gen,
                                                                dtype=torch.float64)
    return nz, mean, var, y_T


def test_probability_flow_exposes_its_linear_part_exponential_euler_is_ddim():
    """ExponentialEuler on probability_flow() takes the data-prediction split exactly: it is DDIM step for step,
    down to σ = 0 (no log 0, no NaN), per band."""
    nz, mean, var, y_T = _noising_problem()
    score = gaussian_score(nz, mean, var)
    ode = nz.probability_flow(score)
    ours = solvers.sdeint(ode, y_T, [0.0, 1.0], solvers.ExponentialEuler(), dt=1 / 10)[-1]

    def D(x, t):
        a, v = nz.marginal(t, x)
        return (x + v * score(t, x)) / a

    ddim, info = sample(D, nz, y_T, nfe=10, solver=ExponentialAdams(1), grid=UniformTime())
    assert torch.isfinite(ours).all() and info.nfe == 10
    assert torch.allclose(ours, ddim, rtol=0, atol=1e-10)


def test_reverse_exposes_its_linear_part_exponential_euler_converges():
    """On reverse() ExponentialEuler is SDE-DPM-Solver++(1): runs to σ = 0 and converges in law at first order."""
    nz, mean, var, y_T = _noising_problem()
    sde = nz.reverse(gaussian_score(nz, mean, var))
    errs = []
    for n in (16, 64, 256):  # dyadic steps: cheap Brownian queries
        path = solvers.BrownianPath(tuple(y_T.shape), 0.0, 1.0, seed=1, dtype=torch.float64)
        y0 = solvers.sdeint(sde, y_T, [0.0, 1.0], solvers.ExponentialEuler(), dt=1 / n, brownian=path)[-1]
        assert torch.isfinite(y0).all()
        z = (y0 - mean) / var.sqrt()
        errs.append(float((z.var(0) - 1).abs().max()))
    assert errs[2] < 0.07 and errs[0] / errs[1] > 2 and errs[1] / errs[2] > 2, errs
    with pytest.raises(ValueError, match="linear"):
        solvers.sdeint(solvers.sde_from_functions(lambda t, x: -x, lambda t, x: x * 0 + 1, "additive"), y_T[:2],
                       [0.0, 1.0], solvers.ExponentialHeun(), dt=0.1)
