import math

import torch

from .._noising import sigma_hat
from ._base import SamplerScheme, StepEnds


class DPMSolverPP2S(SamplerScheme):
    r"""DPM-Solver++(2S): single-step, second order, data prediction, ODE.

    The intermediate time ``t_m`` halves the step in the reference
    ``λ`` (:func:`~mrdiffusion.sampling.sigma_hat`) (``r = 1/2`` there; every other coordinate uses its own
    ``r = (λ_m - λ_1)/h``):

    .. math::
        u = \frac{σ_m}{σ_1} x_1 + α_m (1 - e^{-rh}) D_1,\qquad
        x_2 = \frac{σ_2}{σ_1} x_1 + α_2 (1 - e^{-h})
              \Bigl[\bigl(1 - \tfrac{1}{2r}\bigr) D_1 + \tfrac{1}{2r} D(u, t_m)\Bigr].

    Lu et al. 2022 (arXiv:2211.01095), Alg. 1. Two model evaluations per
    step; the step onto ``σ = 0`` is first order (``x_2 = α_2 D_1``, one
    evaluation). ODE order 2.
    """

    ode_order = 2.0
    evals_per_step = 2
    drift_evals = 2

    def __init__(self, band=None):
        self.band = None if band is None else int(band)

    def __repr__(self):
        return "DPMSolverPP2S()"

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        first = (e.s2 / e.s1) * x - e.a2 * torch.expm1(-e.h) * D
        if e.final:
            return first
        # the reference band's λ-midpoint: σ̂_m = sqrt(σ̂_1 σ̂_2)
        sh1 = sigma_hat(sde.noising, sde.time(u), self.band)
        sh2 = sigma_hat(sde.noising, sde.time(u + h), self.band)
        um = sde.time_at_sigma_hat(u, u + h, math.sqrt(sh1 * sh2), band=self.band)
        am, sm = sde.alpha_sigma(um)
        rho_m = (sm * e.a1) / (e.s1 * am)
        xm = (sm / e.s1) * x - am * torch.expm1(torch.log(rho_m)) * D
        Dm = sde.denoise(um, xm, record=False)
        r = torch.log(rho_m) / torch.log(e.rho)
        return (e.s2 / e.s1) * x - e.a2 * torch.expm1(-e.h) * ((1 - 1 / (2 * r)) * D + Dm / (2 * r))
