"""Sampling across point-mass activations, against Gaussian data per band and its exact denoiser.

Data: band ``k`` of every image is i.i.d. ``N(m_k, v_k)`` (independent bands),
so ``E[x_0 | x_t]`` is known in closed form per coefficient — and for a band
frozen at its point mass (``α = σ = 0``) it is the prior mean ``m_k`` (the SNR-0
limit), which is what the trained model is asked for at an activation.
"""

import math

import pytest
import torch

from mrdiffusion import sampling
from mrdiffusion.diffusion.families import make_family
from mrdiffusion.diffusion.sample import FixedTimes, _Live, activation_grid, check_nfe, sample_bands

D64 = torch.float64
MEAN = torch.tensor([-2.0, 0.3, -0.2, 0.1], dtype=D64)
VAR = torch.tensor([4.0, 0.5, 0.2, 0.05], dtype=D64)


def _setup():
    fam = make_family("pointmass", (1, 8, 8), 3)
    nz = fam.noising()
    band = nz.layout.dwt_level
    m, v = MEAN[band], VAR[band]
    calls = []

    def D(x, t):
        calls.append((t, x.clone()))
        a, s = nz.alpha_sigma(t, like=x)
        frozen = (a == 0) & (s == 0)
        den = torch.where(frozen, torch.ones_like(a), a * a * v + s * s)
        return m + torch.where(frozen, torch.zeros_like(a), a * v / den) * (x - a * m)

    return fam, nz, band, D, calls


def _prior(nz, n, seed=0):
    _, s = nz.alpha_sigma(nz.T, like=torch.zeros(1, dtype=D64))
    g = torch.Generator().manual_seed(seed)
    return s * torch.randn(n, 1, nz.layout.n, generator=g, dtype=D64)


def test_frozen_bands_stay_exactly_zero_until_their_activation():
    fam, nz, band, D, calls = _setup()
    x_T = _prior(nz, 64)
    x0, info = sample_bands(D, nz, x_T, nfe=14, solver=sampling.ExponentialAdams(order=3),
                            activations=fam.activation_times)
    assert info["nfe"] == 14 == len(calls) and all(a in info["times"] for a in fam.activation_times)
    for t, x in calls:
        for k, act in enumerate(fam.activations, start=1):
            if t >= act:  # frozen (and at the activation itself: the point mass the model sees)
                assert bool((x[..., band == k] == 0).all()), (t, k)
            else:
                assert bool((x[..., band == k] != 0).all()), (t, k)
    assert bool(torch.isfinite(x0).all())


def test_the_step_across_an_activation_is_the_closed_form_snr0_step():
    # one ExponentialAdams(1) step from a_k (band k: point mass, SNR 0) to t2: x2 = α2 D + σ2 ξ exactly, where
    # D = m_k (exact posterior mean: the band carries no information) and ξ the scale-free prior state.
    fam, nz, band, D, _ = _setup()
    a_k, t2 = fam.activations[1], 0.6  # the second detail level activates at 0.8
    live_band = torch.tensor([True, True, True, False])  # coarse and level 1 live, level 2 is new at 0.8
    new_band = torch.tensor([False, False, True, False])
    idx = live_band[band].nonzero().squeeze(1)
    new = new_band[band][idx]
    sub = _Live(nz, idx, new, a_k, [nz.schedules[0], nz.schedules[1]], a_k)
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(4000, 1, len(idx), generator=g, dtype=D64)

    def D_sub(x, t):
        full = torch.zeros(x.shape[0], 1, nz.layout.n, dtype=D64)
        full[..., idx] = torch.where(new, torch.zeros_like(x), x) if t == a_k else x
        return D(full, t)[..., idx]

    out, info = sampling.sample(D_sub, sub, xs, nfe=1, solver=sampling.ExponentialAdams(order=1),
                                grid=FixedTimes([a_k, t2]), t_start=a_k, t_end=t2)
    a2, s2 = nz.alpha_sigma(t2, like=torch.zeros(1, dtype=D64))
    a2, s2, m = a2[idx], s2[idx], MEAN[band][idx]
    expect = a2 * m + s2 * xs
    assert torch.allclose(out[..., new], expect[..., new], rtol=1e-13, atol=1e-15)
    # the law of the new band after the step: mean α2 m and variance σ2² (ξ standard normal)
    xb = out[..., new]
    assert abs(float(xb.mean()) - float((a2 * m)[new][0])) < 4 * float(s2[new][0]) / math.sqrt(xb.numel())


@pytest.mark.parametrize("solver", [sampling.ExponentialAdams(order=3), sampling.DPMSolverPP2M(),
                                    sampling.ExponentialAdams(order=2, eta=1.0)])
def test_samples_converge_to_the_data_law(solver):
    fam, nz, band, D, _ = _setup()
    x_T = _prior(nz, 8000, seed=1)
    errs = []
    for nfe in (10, 80):
        x0, _ = sample_bands(D, nz, x_T, nfe=nfe, solver=solver, activations=fam.activation_times, seed=5)
        var = torch.stack([x0[..., band == k].var() for k in range(4)])
        mean = torch.stack([x0[..., band == k].mean() for k in range(4)])
        errs.append(float(((var - VAR) / VAR).abs().max()))
        assert float((mean - MEAN).abs().max()) < 0.1
    assert errs[1] < 0.06, errs  # 8000 samples: the variance's sampling error is ~2-3 %
    assert errs[1] < errs[0]


def test_schemes_that_divide_by_alpha_are_refused():
    fam, nz, band, D, _ = _setup()
    x_T = _prior(nz, 4)
    for bad in (sampling.EDMHeun(), sampling.Ancestral(), sampling.ExponentialAdams(prediction="eps")):
        with pytest.raises(ValueError, match="point-mass"):
            sample_bands(D, nz, x_T, nfe=15, solver=bad, activations=fam.activation_times)


def test_nfe_must_fit_the_scheme_and_the_grid_holds_the_activations():
    with pytest.raises(ValueError, match="--nfe"):
        check_nfe(sampling.EDMHeun(), 12)
    check_nfe(sampling.EDMHeun(), 13)
    fam, nz, _, _, _ = _setup()
    ts = activation_grid(9, nz, fam.activation_times)
    assert len(ts) == 10 and ts[0] == nz.T and ts[-1] == 0.0 and all(a in ts for a in fam.activation_times)
    assert all(x > y for x, y in zip(ts, ts[1:]))
    with pytest.raises(ValueError, match="activation"):
        activation_grid(4, nz, fam.activation_times)


def test_scalar_noising_is_one_plain_sample_call():
    fam = make_family("scalar", (1, 8, 8), 3)
    nz = fam.noising()
    from mrdiffusion.processes.noising import gaussian_denoiser

    den = gaussian_denoiser(nz, torch.zeros(nz.layout.n, dtype=D64), torch.ones(nz.layout.n, dtype=D64))
    x_T = 80.0 * torch.randn(2000, 1, nz.layout.n, generator=torch.Generator().manual_seed(0), dtype=D64)
    x0, info = sample_bands(den, nz, x_T, nfe=20, solver=sampling.ExponentialAdams(order=3))
    ref, _ = sampling.sample(den, nz, x_T, nfe=20, solver=sampling.ExponentialAdams(order=3))
    assert torch.equal(x0, ref) and info["nfe"] == 20
