"""The noise-prediction form of ExponentialAdams, written as one weighted sum of the stored states, against
the Newton form it expands (divided differences of ε in λ, written out here independently)."""

import pytest
import torch

from mrdiffusion.processes import BandNoising, EDMSchedule, VPSchedule, gaussian_denoiser
from mrdiffusion.sampling import EDMRho, ExponentialAdams, as_noising, sample
from solvers._schemes.exponential import phi


def newton_form(D, nz, times, x, order):
    """DPM-Solver(3M) in ε, Newton form, float64, on the same grid: x_2 = (α_2/α_1) x - σ_2 [h φ_1 ε_n +
    w_1 d_1 + (2h³φ_3 - s_1 w_1) d_2], with the DPM-Solver rule of lower order for the last steps."""
    hist = []  # (λ, ε) newest last
    n = len(times) - 1
    for i in range(n):
        t1, t2 = times[i], times[i + 1]
        a1, s1 = nz.alpha_sigma(t1, like=x)
        a2, s2 = nz.alpha_sigma(t2, like=x)
        Dx = D(x, t1)
        if bool((s2 == 0).any()):  # the step onto σ = 0: x = α D exactly
            x = a2 * Dx
            continue
        lam1, lam2 = torch.log(a1 / s1), torch.log(a2 / s2)
        h = lam2 - lam1
        eps = (x - a1 * Dx) / s1
        q = min(order, len(hist) + 1, n - i)
        integral = h * phi(1, h) * eps
        if q >= 2:
            sa = hist[-1][0] - lam1
            d1 = (eps - hist[-1][1]) / (-sa)
            w1 = h * h * phi(2, h)
            integral = integral + w1 * d1
            if q >= 3:
                sb = hist[-2][0] - lam1
                d1p = (hist[-1][1] - hist[-2][1]) / (sa - sb)
                integral = integral + (2 * h**3 * phi(3, h) - sa * w1) * (d1 - d1p) / (-sb)
        hist.append((lam1, eps))
        x = (a2 / a1) * x - s2 * integral
    return x


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("kind", ["edm", "vp", "per-band"])
def test_eps_form_is_the_newton_form(order, kind):
    if kind == "per-band":
        nz = BandNoising((4, 4), 2, schedules=[VPSchedule(0.1, 10.0), VPSchedule(0.5, 20.0), VPSchedule(1.0, 30.0)])
        shape = (64, 1, 16)
    else:
        nz = as_noising(EDMSchedule(80.0) if kind == "edm" else VPSchedule())
        shape = (64, 2, 3)
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(shape[1:], dtype=torch.float64, generator=gen)
    var = torch.rand(shape[1:], dtype=torch.float64, generator=gen) + 0.1
    D = gaussian_denoiser(nz, mean, var)
    x_T = torch.randn(shape, dtype=torch.float64, generator=gen) * nz.alpha_sigma(nz.T, like=mean)[1]
    ours, info = sample(D, nz, x_T, nfe=8, solver=ExponentialAdams(order, prediction="eps"))
    ref = newton_form(D, nz, EDMRho(rho=7.0, sigma_min=0.002)(info.steps, nz.T, 0.0, nz), x_T, order)
    assert info.nfe == 8
    assert torch.allclose(ours, ref, rtol=1e-11, atol=1e-11), (ours - ref).abs().max()
