"""The noising families, above all point mass: exact zeros after the cut, SNR 0 before it, the SDE's marginals."""

import math

import pytest
import torch

from mrdiffusion.diffusion.families import CutCosineSchedule, make_family

D64 = torch.float64


def test_pointmass_bands_are_exactly_zero_from_their_activation_on():
    fam = make_family("pointmass", (1, 8, 8), 3)
    assert fam.activation_times == (2.0, 0.8, 0.32)  # the documented default: at least three
    nz = fam.noising()
    band = nz.layout.dwt_level
    for t in (0.32, 0.5, 0.8, 1.0, 2.0, 10.0, 80.0):
        a, s = nz.alpha_sigma(t, like=torch.zeros(1, dtype=D64))
        live = torch.tensor([True] + [t < x for x in fam.activations])[band]
        assert bool(((a == 0) & (s == 0))[~live].all()) and bool((s[live] > 0).all())
    a, s = fam.alpha_sigma(torch.tensor([0.32, 0.8, 2.0, 80.0], dtype=D64))
    for i, t in enumerate((0.32, 0.8, 2.0, 80.0)):
        for k, act in enumerate(fam.activations, start=1):
            if t >= act:
                assert float(a[i, k]) == 0.0 and float(s[i, k]) == 0.0


def test_snr_reaches_zero_before_the_cut():
    sch = CutCosineSchedule(0.5)
    for eps in (1e-2, 1e-4, 1e-6):
        t = 0.5 * (1 - eps)
        snr = sch.alpha(t) / math.sqrt(sch.var(t))
        assert snr < 2 * math.pi * eps / 4 * 1.01  # cot(π(1-ε)/2) = tan(πε/2) ≈ πε/2


@pytest.mark.parametrize("name", ["scalar", "perband", "pointmass"])
def test_vectorised_and_per_coefficient_answers_agree(name):
    fam = make_family(name, (1, 8, 8), 3)
    nz = fam.noising()
    band = nz.layout.dwt_level
    ts = torch.tensor([0.01, 0.2, 0.32, 0.7, 1.5, 3.0, 79.0], dtype=D64)
    A, S = fam.alpha_sigma(ts)
    for i, t in enumerate(ts.tolist()):
        a, s = nz.alpha_sigma(t, like=torch.zeros(1, dtype=D64))
        assert torch.allclose(a, A[i, band], rtol=1e-12, atol=0) and torch.allclose(s, S[i, band], rtol=1e-12,
                                                                                      atol=1e-300)


def test_pointmass_marginals_solve_its_sde():
    # α(t) = exp(∫_0^t f), var(t) = ∫_0^t exp(2∫_u^t f) g²(u) du — by quadrature, against the closed form
    sch = CutCosineSchedule(0.8)
    n = 200_000
    for t in (0.1, 0.4, 0.7, 0.79):
        h = t / n
        us = [(i + 0.5) * h for i in range(n)]
        F = 0.0
        var = 0.0
        for u in us:  # forward Euler on d var/dt = 2 f var + g², d log α/dt = f (midpoint rule)
            var += h * (2 * sch.f(u) * var + sch.g2(u))
            F += h * sch.f(u)
        assert abs(math.exp(F) - sch.alpha(t)) < 1e-6
        assert abs(var - sch.var(t)) < 2e-5 * max(1.0, sch.var(t) / 1e-3)


def test_perband_fine_bands_lose_their_signal_first():
    fam = make_family("perband", (1, 8, 8), 3)
    _, S = fam.alpha_sigma(torch.tensor([0.5], dtype=D64))
    assert fam.scales == (1.0, 2.0, 4.0, 8.0)
    assert all(float(S[0, k]) < float(S[0, k + 1]) for k in range(3))


def test_bad_activations_are_refused():
    with pytest.raises(ValueError, match="activations"):
        make_family("pointmass", (1, 8, 8), 3, activations=(0.3, 0.8, 2.0))
    with pytest.raises(ValueError, match="activations"):
        make_family("pointmass", (1, 8, 8), 3, activations=(2.0, 0.8))
    with pytest.raises(ValueError, match="noising"):
        make_family("cosine", (1, 8, 8), 3)
