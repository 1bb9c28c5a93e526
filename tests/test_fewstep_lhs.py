"""Latin hypercube starts (``benchmarks._lhs``) and the few-step benchmark's ``error_lhs``.

(a) per-coordinate sample moments of LHS draws are within a few predicted standard deviations of the law, and
the prediction (exact truncated-normal moments per stratum) is far below the i.i.d. ``1/√N``; (b) for an ODE
sampler the LHS sampled error equals the exact-law error up to a bound computed from the starts, which the i.i.d.
sampled error misses by far; (c) each draw is marginally an exact draw of the start law (one start per stratum,
and a Kolmogorov–Smirnov test of one fixed sample index over many seeds, which two wrong constructions fail).
"""

import math

import pytest
import torch
from scipy import stats

from benchmarks._lhs import latin_hypercube_normal
from benchmarks.fewstep import _impulses, build_problem, exact_error, exact_law, w2_error
from mrdiffusion.processes import gaussian_denoiser
from mrdiffusion.sampling import ExponentialAdams, UniformLogSNR, sample

DT = torch.float64


def stratum_sd_of_averages(n):
    """Standard deviations of the LHS averages of ``Z`` and ``Z²`` (``Z ~ N(0, 1)``, ``n`` strata).

    One draw per stratum ``S_k = [z_k, z_{k+1}]``, ``z_k = Φ^{-1}(k/n)``, independent across strata, so
    ``Var(avg f) = n^{-2} Σ_k Var(f(Z) | S_k)``. Conditional moments by parts, with ``P(S_k) = 1/n``:
    ``E[Z | S] = n (φ(a) - φ(b))``, ``E[Z^{p} | S] = n (a^{p-1} φ(a) - b^{p-1} φ(b)) + (p - 1) E[Z^{p-2} | S]``.
    """
    z = torch.special.ndtri(torch.arange(n + 1, dtype=DT) / n)
    fin = torch.isfinite(z)
    zf = torch.where(fin, z, torch.zeros_like(z))
    phi = torch.where(fin, torch.exp(-0.5 * zf * zf) / math.sqrt(2 * math.pi), torch.zeros_like(z))

    def edge(p):  # a^{p} φ(a) - b^{p} φ(b) per stratum, 0 at ±∞
        g = zf**p * phi
        return g[:-1] - g[1:]

    m1 = n * edge(0)
    m2 = 1 + n * edge(1)
    m4 = n * edge(3) + 3 * m2
    var1, var2 = m2 - m1**2, m4 - m2**2
    return float(var1.sum().sqrt() / n), float(var2.sum().sqrt() / n)


def test_lhs_moments_are_nearly_exact_and_far_better_than_iid():
    """(a) ``|z̄| ≤ 5 σ₁`` and ``|ŝ - 1| ≤ 3 σ₂ + 1/N`` per coordinate, with the predicted ``σ₁, σ₂ ≪ 1/√N``.

    ``σ₁, σ₂`` are the exact standard deviations of the LHS averages of ``z`` and ``z²`` (see
    :func:`stratum_sd_of_averages`; at N = 4096, ``σ₁ ≈ 8.7e-5`` against ``1/√N = 0.0156``). The sum over
    strata is nearly Gaussian, so 5σ over 16 coordinates × 8 seeds fails with probability < 1e-4 for a correct
    construction; ``ŝ² = N/(N-1) (avg z² - z̄²)`` gives ``ŝ - 1 ≈ (avg z² - 1)/2 + 1/(2N)``, inside
    ``3σ₂ + 1/N``. The observed RMS of ``z̄`` must also match ``σ₁`` (within 30 %: 128 values), which a
    construction with the wrong stratum law would miss. I.i.d. draws of the same size are ≥ 50× further off in
    the mean (predicted: 180×) and ≥ 15× in the sd (predicted: ``(1/√(2N)) / (σ₂/2) ≈ 33``; the sd gains less,
    because ``z²`` varies more than ``z`` within the two unbounded tail strata: ``σ₂ ≈ 2.8/N``).
    """
    n, d = 4096, 16
    s1, s2 = stratum_sd_of_averages(n)
    assert s1 < 0.01 / math.sqrt(n) and s2 < 0.05 / math.sqrt(n)
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(1, d, generator=gen, dtype=DT)
    sd = 0.1 + torch.rand(1, d, generator=gen, dtype=DT)
    zbar, shat, zbar_iid, shat_iid = [], [], [], []
    for seed in range(8):
        x = latin_hypercube_normal(n, mean, sd, generator=torch.Generator().manual_seed(seed))
        assert x.shape == (n, d) and x.dtype == DT and torch.isfinite(x).all()
        z = (x - mean) / sd
        zbar.append(z.mean(0))
        shat.append(z.std(0))
        z_iid = torch.randn(n, d, generator=gen, dtype=DT)
        zbar_iid.append(z_iid.mean(0))
        shat_iid.append(z_iid.std(0))
    zbar, shat, zbar_iid, shat_iid = map(torch.cat, (zbar, shat, zbar_iid, shat_iid))
    assert zbar.abs().max() <= 5 * s1, (float(zbar.abs().max()), s1)
    assert (shat - 1).abs().max() <= 3 * s2 + 1 / n, (float((shat - 1).abs().max()), s2)
    rms = float(zbar.square().mean().sqrt())
    assert 0.7 * s1 < rms < 1.3 * s1, (rms, s1)
    assert zbar_iid.square().mean().sqrt() > 50 * rms
    assert (shat_iid - 1).square().mean().sqrt() > 15 * (shat - 1).square().mean().sqrt()


def test_lhs_sampled_error_of_an_ode_sampler_is_its_exact_error():
    """(b) ``ExponentialAdams(3)`` (ODE) from LHS starts: ``|error_lhs - exact| ≤ B``, while i.i.d. is ≫ B off.

    With the exact denoiser the sampler maps each coordinate affinely, ``x_0 = A x_T + B`` (monotone), so the
    sample mean and sd of ``x_0`` are off the exact output law by ``sd_out·z̄`` and ``sd_out·(ŝ - 1)``, with
    ``z̄, ŝ`` the standardised starts' mean and sd and ``sd_out = |A| sd_T`` the exact output sd. The error is
    an RMS over coordinates of the vector (mean error, sd error); by the triangle inequality it moves by at most
    ``B = RMS_c sd_out,c √(z̄_c² + (ŝ_c - 1)²)``, computed here from the starts (no other tolerance but
    round-off, 1e-9). At N = 4096, ``B ≈ 1e-4`` by (a); the i.i.d. starts' error is off by about the i.i.d.
    floor, ~0.009.
    """
    nz, mean, var = build_problem("scalar")
    model = gaussian_denoiser(nz, mean, var)
    a, s = nz.alpha_sigma(nz.T)
    law = (a * mean).reshape(1, 1, -1), (a * a * var + s * s).sqrt().reshape(1, 1, -1)
    scheme, grid, nfe, n = ExponentialAdams(3), UniformLogSNR(sigma_min=0.002), 20, 4096

    def run(x, noise):
        return sample(model, nz, x, nfe=nfe, solver=scheme, grid=grid, brownian=_impulses(noise))[0]

    exact = exact_error(run, law, mean, var, 2 * nfe + 4)
    _, sd_out = exact_law(run, law, 2 * nfe + 4)
    x_lhs = latin_hypercube_normal(n, *law, generator=torch.Generator().manual_seed(1))
    x_iid = law[0] + law[1] * torch.randn(n, 1, nz.layout.n, generator=torch.Generator().manual_seed(1), dtype=DT)
    gaps = {}
    for name, x_T in (("lhs", x_lhs), ("iid", x_iid)):
        z = ((x_T - law[0]) / law[1]).reshape(n, -1)
        bound = float((sd_out.square() * (z.mean(0).square() + (z.std(0) - 1).square())).mean().sqrt())
        err = w2_error(sample(model, nz, x_T, nfe=nfe, solver=scheme, grid=grid, seed=0)[0], mean, var)
        gaps[name] = (abs(err - exact), bound)
    gap, bound = gaps["lhs"]
    assert 1e-4 < exact < 0.01, exact  # resolvable by LHS at this N, not by i.i.d. starts
    assert bound < 3e-4 and gap <= bound + 1e-9, gaps
    assert gaps["iid"][0] > 10 * bound, gaps


def test_lhs_one_start_per_stratum_and_exact_marginal():
    """(c) every coordinate has one start in each stratum ``[k/N, (k+1)/N)`` of the start law, and a fixed
    sample index is, over 4000 seeds, a draw of that law (KS test, p > 1e-3, fixed seeds: deterministic).

    Two wrong constructions fail the same KS test: no permutation (sample 0 always in the lowest stratum) and
    the stratum midpoints (a discrete law, KS distance 1/(2N) = 0.0625 ≫ the 1e-3 critical value 0.031).
    """
    n, reps = 8, 4000
    mean, sd = torch.tensor([[0.3, -1.0, 2.0]], dtype=DT), torch.tensor([[1.0, 0.5, 3.0]], dtype=DT)
    x = latin_hypercube_normal(64, mean, sd, generator=torch.Generator().manual_seed(0))
    cells = (torch.special.ndtr((x - mean) / sd) * 64).floor().long()
    assert (cells.sort(0).values == torch.arange(64).unsqueeze(1)).all()

    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([latin_hypercube_normal(n, mean, sd, generator=gen) for _ in range(reps)])  # (reps, n, 3)
    u = torch.special.ndtr((draws - mean) / sd)
    for i in (0, n - 1):
        for c in range(3):
            assert stats.kstest(u[:, i, c].numpy(), "uniform").pvalue > 1e-3
    # the wrong constructions, as a check that this test can fail
    g = torch.Generator().manual_seed(2)
    no_perm = (0 + torch.rand(reps, generator=g, dtype=DT)) / n
    perm0 = torch.stack([torch.randperm(n, generator=g)[0] for _ in range(reps)]).to(DT)
    midpoint = (perm0 + 0.5) / n
    for wrong in (no_perm, midpoint):
        assert stats.kstest(wrong.numpy(), "uniform").pvalue < 1e-6


@pytest.mark.parametrize("args, kwargs, what", [
    ((0, torch.zeros(1, 2), torch.ones(1, 2)), {}, "n"),
    ((4, torch.zeros(2), torch.ones(2)), {}, "shape"),
    ((4, torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])), {}, "sd"),
    ((4, torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2)), {}, "floating"),
])
def test_lhs_bad_input(args, kwargs, what):
    with pytest.raises(ValueError, match=what):
        latin_hypercube_normal(*args, **kwargs)
