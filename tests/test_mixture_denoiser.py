"""The Gaussian-mixture denoiser against Tweedie's formula through autograd, and against the Gaussian one."""

import math

import pytest
import torch

from mrdiffusion.processes import BandNoising, VESchedule, VPSchedule, gaussian_denoiser, gaussian_mixture_denoiser


def _problem(schedules, K=5, seed=0):
    nz = BandNoising((4, 4), 2, schedules=schedules)
    gen = torch.Generator().manual_seed(seed)
    n = nz.layout.n
    w = torch.rand(K, generator=gen, dtype=torch.float64) + 0.2
    mu = torch.randn(K, 1, n, generator=gen, dtype=torch.float64)
    var = 0.05 + 0.2 * torch.rand(K, 1, n, generator=gen, dtype=torch.float64)
    return nz, w, mu, var


def _log_density(nz, w, mu, var, x, t):
    """``log p_t(x)`` written directly: a log-sum-exp of the components' Gaussian log densities."""
    a, s = nz.alpha_sigma(t, like=x)
    terms = []
    for k in range(w.numel()):
        tot = a * a * var[k] + s * s
        terms.append(math.log(w[k] / w.sum()) - 0.5 * (((x - a * mu[k]) ** 2) / tot + torch.log(2 * math.pi * tot))
                     .flatten(1).sum(1))
    return torch.logsumexp(torch.stack(terms), 0)


@pytest.mark.parametrize("schedules", [VESchedule(0.002, 50.0), [VESchedule(0.002, 50.0), VESchedule(0.02, 50.0),
                                                                  VESchedule(0.2, 50.0)],
                                       [VPSchedule(0.1, 20.0), VPSchedule(0.1, 10.0), VPSchedule(0.1, 5.0)]])
@pytest.mark.parametrize("t", [0.9, 0.3, 0.05, 1e-3])
def test_equals_tweedie_through_autograd(schedules, t):
    """``D = (x + σ² ∇ log p_t(x)) / α`` (Tweedie), the score by autograd of the density: agree to round-off."""
    nz, w, mu, var = _problem(schedules)
    a, s = nz.alpha_sigma(t)
    gen = torch.Generator().manual_seed(1)
    x = (a * mu[2] + (a * a * 0.3 + s * s).sqrt() * torch.randn(7, 1, nz.layout.n, generator=gen,
                                                                dtype=torch.float64)).requires_grad_(True)
    (score,) = torch.autograd.grad(_log_density(nz, w, mu, var, x, t).sum(), x)
    tweedie = (x + s * s * score) / a
    D = gaussian_mixture_denoiser(nz, w, mu, var)(x.detach(), t)
    assert torch.allclose(D, tweedie.detach(), rtol=1e-10, atol=1e-10)


def test_one_component_is_the_gaussian_denoiser_and_sigma_zero_is_exact():
    nz, w, mu, var = _problem(VESchedule(0.002, 50.0), K=1)
    x = torch.randn(5, 1, nz.layout.n, dtype=torch.float64)
    for t in (0.7, 0.01):
        assert torch.allclose(gaussian_mixture_denoiser(nz, w, mu, var)(x, t), gaussian_denoiser(nz, mu, var)(x, t),
                              rtol=1e-13, atol=1e-13)
    nz, w, mu, var = _problem(VESchedule(0.002, 50.0), K=4)
    D0 = gaussian_mixture_denoiser(nz, w, mu, var)(x, 0.0)
    assert torch.isfinite(D0).all() and torch.allclose(D0, x, rtol=0, atol=1e-15)


def test_bad_arguments_name_themselves():
    nz, w, mu, var = _problem(VESchedule(0.002, 50.0), K=3)
    with pytest.raises(ValueError, match="weights"):
        gaussian_mixture_denoiser(nz, -w, mu, var)
    with pytest.raises(ValueError, match="means, variances"):
        gaussian_mixture_denoiser(nz, w, mu[:2], var[:2])
    with pytest.raises(ValueError, match="variances"):
        gaussian_mixture_denoiser(nz, w, mu, 0 * var)
