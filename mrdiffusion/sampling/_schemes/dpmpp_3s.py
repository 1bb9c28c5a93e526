import torch

from .._noising import sigma_hat
from ._base import SamplerScheme, StepEnds


class DPMSolverPP3S(SamplerScheme):
    r"""DPM-Solver++(3S): single-step, third order, data prediction, ODE.

    Two intermediate times at ``r₁ = 1/3`` and ``r₂ = 2/3`` of the step in the reference ``λ``
    (:func:`~mrdiffusion.sampling.sigma_hat`); every coordinate uses its own ``r_i = (λ_i - λ_s)/h``, so
    per-band schedules need no special case. With ``φ₁ = e^{-h} - 1``, ``φ₂ = φ₁/h + 1``,
    ``φ₃ = φ₂/h - 1/2`` (at ``rh``: ``φ₁₁``, ``φ₁₂``, ``φ₂₂`` below):

    .. math::
        u_1 &= \frac{σ_1}{σ_s} x - α_1 φ_1(r_1 h) D_s,\\
        u_2 &= \frac{σ_2}{σ_s} x - α_2 φ_1(r_2 h) D_s + \frac{r_2}{r_1} α_2 φ_2(r_2 h) (D(u_1) - D_s),\\
        x_t &= \frac{σ_t}{σ_s} x - α_t φ_1 D_s + α_t φ_2 Δ_1 - α_t φ_3 Δ_2,

    where ``Δ₁ ≈ h D'`` and ``Δ₂ ≈ h² D''`` (derivatives in ``λ``) are the divided differences of
    ``D_s, D(u_1), D(u_2)`` at ``0, r₁, r₂``: ``Δ₁ = (r₂ d₁ - r₁ d₂)/(r₂ - r₁)``,
    ``Δ₂ = 2 (d₂ - d₁)/(r₂ - r₁)``, ``d_i = (D(u_i) - D_s)/r_i``. This is the Taylor form of
    Lu et al. 2022 (DPM-Solver++, arXiv:2211.01095; DPM-Solver's ``singlestep_dpm_solver_third_update``):
    exact for ``D`` quadratic in ``λ``, for any distinct ``r₁, r₂`` — so per coordinate too. Three model
    evaluations per step; the step onto ``σ = 0`` is first order (``x_t = α_t D_s``, one evaluation).
    ODE order 3.
    """

    ode_order = 3.0
    evals_per_step = 3
    drift_evals = 3

    def __init__(self, band=None):
        self.band = None if band is None else int(band)

    def __repr__(self):
        return "DPMSolverPP3S()"

    def _stage(self, sde, u, h, frac, e):
        """The time ``u_i`` at the fraction ``frac`` of the reference λ-step, its ``α, σ`` and per-coordinate
        ``λ_i - λ_s``."""
        sh1 = sigma_hat(sde.noising, sde.time(u), self.band)
        sh2 = sigma_hat(sde.noising, sde.time(u + h), self.band)
        ui = sde.time_at_sigma_hat(u, u + h, sh1 ** (1 - frac) * sh2 ** frac, band=self.band)
        ai, si = sde.alpha_sigma(ui)
        rh = -torch.log((si * e.a1) / (e.s1 * ai))  # λ_i - λ_s per coordinate
        return ui, ai, si, rh

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        if e.final:
            return (e.s2 / e.s1) * x - e.a2 * torch.expm1(-e.h) * D
        u1, a1, s1, rh1 = self._stage(sde, u, h, 1 / 3, e)
        u2, a2, s2, rh2 = self._stage(sde, u, h, 2 / 3, e)
        r1, r2 = rh1 / e.h, rh2 / e.h
        x1 = (s1 / e.s1) * x - a1 * torch.expm1(-rh1) * D
        D1 = sde.denoise(u1, x1, record=False)
        phi22 = torch.expm1(-rh2) / rh2 + 1
        x2 = (s2 / e.s1) * x - a2 * torch.expm1(-rh2) * D + (r2 / r1) * a2 * phi22 * (D1 - D)
        D2 = sde.denoise(u2, x2, record=False)
        d1, d2 = (D1 - D) / r1, (D2 - D) / r2
        delta1 = (r2 * d1 - r1 * d2) / (r2 - r1)
        delta2 = 2 * (d2 - d1) / (r2 - r1)
        phi1 = torch.expm1(-e.h)
        phi2 = phi1 / e.h + 1
        phi3 = phi2 / e.h - 0.5
        return (e.s2 / e.s1) * x - e.a2 * phi1 * D + e.a2 * phi2 * delta1 - e.a2 * phi3 * delta2
