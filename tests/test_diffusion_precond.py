"""Per-band EDM preconditioning: Karras et al.'s identities, the α-form, frozen bands and the loss weight."""

import math

import torch

from mrdiffusion.diffusion.precond import C_NOISE_FROZEN, Precond, edm_coefficients
from mrdiffusion.multires import BandLayout

D64 = torch.float64


def _edm(sigma, sd):
    """Table 1 of Karras et al. 2022, written independently for α = 1."""
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / math.sqrt(sigma**2 + sd**2)
    c_in = 1 / math.sqrt(sigma**2 + sd**2)
    return c_skip, c_out, c_in, 0.25 * math.log(sigma)


def test_alpha_one_is_edm_table_1():
    sd = 0.5
    for sigma in (0.002, 0.1, 0.5, 1.0, 7.0, 80.0):
        got = edm_coefficients(torch.tensor(1.0, dtype=D64), torch.tensor(sigma, dtype=D64),
                               torch.tensor(sd, dtype=D64))
        for g, w in zip(got, _edm(sigma, sd)):
            assert abs(float(g) - w) <= 1e-14 * max(1.0, abs(w))


def test_alpha_form_equals_edm_on_the_scaled_state():
    # D = c_skip(σ̂) x/α + c_out(σ̂) F(c_in(σ̂) x/α) with σ̂ = σ/α; the α-form multiplies x directly
    sd = torch.tensor(0.7, dtype=D64)
    for a, s in ((0.9, 0.3), (0.2, 1.5), (1e-3, 0.8), (0.6, 1e-3)):
        a_, s_ = torch.tensor(a, dtype=D64), torch.tensor(s, dtype=D64)
        c_skip, c_out, c_in, c_noise = edm_coefficients(a_, s_, sd)
        e_skip, e_out, e_in, e_noise = _edm(s / a, 0.7)
        assert torch.allclose(c_skip, torch.tensor(e_skip / a, dtype=D64), rtol=1e-13)
        assert torch.allclose(c_in, torch.tensor(e_in / a, dtype=D64), rtol=1e-13)
        assert torch.allclose(c_out, torch.tensor(e_out, dtype=D64), rtol=1e-13)
        if 1e-4 <= s / a <= 1e4:
            assert abs(float(c_noise) - e_noise) < 1e-13


def test_unit_variance_input_and_target_and_loss_weight():
    # data N(0, σ_d²): Var(c_in x) = 1, Var((x0 - c_skip x)/c_out) = 1, and λ c_out² = 1
    sd = 0.4
    for a, s in ((1.0, 0.05), (1.0, 3.0), (0.5, 0.5), (0.01, 0.9)):
        c_skip, c_out, c_in, _ = (float(c) for c in edm_coefficients(torch.tensor(a, dtype=D64),
                                                                    torch.tensor(s, dtype=D64),
                                                                    torch.tensor(sd, dtype=D64)))
        var_x = a * a * sd * sd + s * s
        assert abs(c_in**2 * var_x - 1) < 1e-12
        # x0 - c_skip x = (1 - c_skip a) x0 - c_skip s ε
        var_t = ((1 - c_skip * a) ** 2 * sd**2 + (c_skip * s) ** 2) / c_out**2
        assert abs(var_t - 1) < 1e-12
        lam = (s * s + a * a * sd * sd) / (s * s * sd * sd)
        assert abs(lam * c_out**2 - 1) < 1e-12


def test_frozen_band_is_no_input_and_predicts_at_snr_zero():
    z = torch.zeros((), dtype=D64)
    c_skip, c_out, c_in, c_noise = edm_coefficients(z, z, torch.tensor(0.3, dtype=D64))
    assert float(c_skip) == 0 and float(c_in) == 0 and float(c_out) == 0.3 and float(c_noise) == C_NOISE_FROZEN
    # SNR 0 (α = 0, σ > 0): the same c_skip, c_out as the frozen limit
    c_skip0, c_out0, _, _ = edm_coefficients(z, torch.tensor(2.0, dtype=D64), torch.tensor(0.3, dtype=D64))
    assert float(c_skip0) == 0 and abs(float(c_out0) - 0.3) < 1e-15


def test_zero_network_is_the_exact_denoiser_of_gaussian_bands():
    # F ≡ 0 gives D = c_skip x, which is E[x0 | x] for x0 ~ N(0, σ_{d,k}²) per band
    layout = BandLayout((4, 4), 2, 2)
    sd = torch.tensor([1.5, 0.5, 0.2])

    class Zero(torch.nn.Module):
        def forward(self, img, c_noise):
            assert c_noise.shape == (img.shape[0], 3)
            return torch.zeros_like(img)

    pre = Precond(Zero(), layout, sd).double()
    alpha = torch.tensor([[1.0, 0.7, 0.3]], dtype=D64)
    sigma = torch.tensor([[0.5, 0.6, 0.9]], dtype=D64)
    x = torch.randn(5, 1, layout.n, dtype=D64)
    D = pre(x, alpha, sigma)
    k = layout.dwt_level
    a, s, v = alpha[0, k], sigma[0, k], sd.double()[k] ** 2
    assert torch.allclose(D, a * v / (a * a * v + s * s) * x, rtol=1e-6)
