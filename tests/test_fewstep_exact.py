"""``benchmarks.fewstep.exact_error``: the noise-free error of a sampler's output law, checked against sampling."""

import math

import pytest
import torch

from benchmarks.fewstep import _impulses, build_problem, exact_error, w2_error
from mrdiffusion.processes import gaussian_denoiser
from mrdiffusion.sampling import DPMSolverPP2S, EDMRho, ExponentialAdams, sample


@pytest.mark.parametrize("scheme", [ExponentialAdams(2, prediction="eps"), ExponentialAdams(1, eta=1.0),
                                    DPMSolverPP2S(eta=1.0)], ids=repr)
def test_exact_error_matches_a_large_sample(scheme):
    """The sampled error of N = 40000 samples differs from the exact one by sampling noise only.

    Per coordinate the sampled W2 has a standard error of about sd·√(1.5/N) ≤ 0.006 (data sd ≤ 1); the RMS
    over 16 coordinates moves by at most that, so 0.02 (> 3 standard errors) separates noise from a wrong law
    (a sampler whose noise were dropped would be off by its whole injected variance, > 0.1 here).
    """
    nz, mean, var = build_problem("perband")
    model = gaussian_denoiser(nz, mean, var)
    a, s = nz.alpha_sigma(nz.T)
    law = (a * mean).reshape(1, 1, -1), (a * a * var + s * s).sqrt().reshape(1, 1, -1)
    exact = exact_error(lambda x, noise: sample(model, nz, x, nfe=6, solver=scheme, grid=EDMRho(),
                                                brownian=_impulses(noise))[0], law, mean, var, 20)
    gen = torch.Generator().manual_seed(3)
    x_T = law[0] + law[1] * torch.randn(40000, 1, nz.layout.n, generator=gen, dtype=torch.float64)
    x0, _ = sample(model, nz, x_T, nfe=6, solver=scheme, grid=EDMRho(), seed=5)
    sampled = w2_error(x0, mean, var)
    assert math.isfinite(exact) and exact > 0.02
    assert abs(sampled - exact) < 0.02, (sampled, exact)
    if scheme.stochastic:  # without its noise the law would be far off
        frozen = exact_error(lambda x, noise: sample(model, nz, x, nfe=6, solver=scheme, grid=EDMRho(),
                                                     brownian=lambda s, t: torch.zeros_like(x))[0],
                             law, mean, var, 20)
        assert abs(frozen - exact) > 0.1
