import math

import torch

from .._noising import sigma_hat
from ._base import SamplerScheme, StepEnds


class DPMSolverPP2S(SamplerScheme):
    r"""DPM-Solver++(2S): single-step, second order, data prediction; ODE (``eta = 0``) or SDE (``eta > 0``).

    The intermediate time ``t_m`` halves the step in the reference
    ``λ`` (:func:`~mrdiffusion.sampling.sigma_hat`) (``r = 1/2`` there; every other coordinate uses its own
    ``r = (λ_m - λ_1)/h``). With ``ρ = e^{-h}``, ``ρ_m = e^{-rh}``, ``ν = 1 + η`` and the sampling SDE
    family of :class:`ExponentialAdams` (``η = 0`` the probability-flow ODE, ``η = 1`` the reverse SDE):

    .. math::
        u = \frac{σ_m}{σ_1} ρ_m^{η} x_1 + α_m (1 - ρ_m^{ν}) D_1 + σ_m \sqrt{1 - ρ_m^{2η}}\, ξ_a,

        x_2 = \frac{σ_2}{σ_1} ρ^{η} x_1 + α_2 (1 - ρ^{ν})
              \Bigl[\bigl(1 - \tfrac{1}{2r}\bigr) D_1 + \tfrac{1}{2r} D(u, t_m)\Bigr]
              + σ_2 \Bigl[ρ_{m2}^{η} \sqrt{1 - ρ_m^{2η}}\, ξ_a + \sqrt{1 - ρ_{m2}^{2η}}\, ξ_b\Bigr],

    ``ρ_{m2} = ρ/ρ_m``, where ``ξ_a`` and ``ξ_b`` are the normalised Brownian increments of the two halves of
    the step (from the solve's own noise source, so they add up to the step's increment): the noise of the
    exact linear flow over ``[t_1, t_m]`` and ``[t_m, t_2]``, composed exactly, whose variance is
    ``σ_2²(1 - ρ^{2η})``. ``eta = 0`` is Lu et al. 2022 (arXiv:2211.01095), Alg. 1; ``eta > 0`` is its
    stochastic counterpart in the SDE family of SA-Solver (Xue et al. 2023), a single-step sibling of
    k-diffusion's ``sample_dpmpp_sde`` (which is ancestral). Two model evaluations per step; the step onto
    ``σ = 0`` is first order (``x_2 = α_2 D_1``, one evaluation). ODE order 2; weak order 2 for the additive
    noise of the sampling SDE (measured in ``tests/test_sampling_weak_order.py``, exactly on Gaussian data and
    by coupled Monte Carlo on a mixture).
    """

    ode_order = 2.0
    evals_per_step = 2
    drift_evals = 2

    def __init__(self, band=None, eta=0.0):
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta: expected a number in [0, 1], got {eta!r}")
        self.eta = float(eta)
        self.stochastic = self.eta > 0
        self.weak_order_additive = 2.0 if self.stochastic else None
        self.band = None if band is None else int(band)

    def __repr__(self):
        return f"DPMSolverPP2S(eta={self.eta:g})" if self.eta else "DPMSolverPP2S()"

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        if e.final:
            return (e.s2 / e.s1) * x - e.a2 * torch.expm1(-e.h) * D
        eta, nu = self.eta, 1.0 + self.eta
        # the reference band's λ-midpoint: σ̂_m = sqrt(σ̂_1 σ̂_2)
        sh1 = sigma_hat(sde.noising, sde.time(u), self.band)
        sh2 = sigma_hat(sde.noising, sde.time(u + h), self.band)
        um = sde.time_at_sigma_hat(u, u + h, math.sqrt(sh1 * sh2), band=self.band)
        am, sm = sde.alpha_sigma(um)
        hm = torch.log(e.s1 * am) - torch.log(sm * e.a1)  # λ_m - λ_1, per coordinate
        xm = (sm / e.s1) * torch.exp(-eta * hm) * x - am * torch.expm1(-nu * hm) * D
        if eta:
            xi_a, xi_b = sde.normals(u, um), sde.normals(um, u + h)
            amp_a = torch.sqrt(-torch.expm1(-2 * eta * hm))  # √(1 - ρ_m^{2η})
            xm = xm + sm * amp_a * xi_a
        Dm = sde.denoise(um, xm, record=False)
        r = hm / e.h
        mix = (1 - 1 / (2 * r)) * D + Dm / (2 * r)
        out = (e.s2 / e.s1) * torch.exp(-eta * e.h) * x - e.a2 * torch.expm1(-nu * e.h) * mix
        if eta:
            h2 = e.h - hm  # λ_2 - λ_m
            out = out + e.s2 * (torch.exp(-eta * h2) * amp_a * xi_a + torch.sqrt(-torch.expm1(-2 * eta * h2)) * xi_b)
        return out
