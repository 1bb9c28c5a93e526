import torch

from ._base import SamplerScheme, StepEnds


class DPMSolverPP2M(SamplerScheme):
    r"""DPM-Solver++(2M), and its SDE variant for ``eta > 0``, as published (midpoint form).

    Per coordinate, ``h = λ₂ - λ₁``, ``ρ = e^{-h}``, ``r = (λ₁ - λ₀)/h``:

    .. math::
        x_2 = \frac{σ_2}{σ_1} ρ^{η} x_1 + α_2 (1 - ρ^{1+η})
              \Bigl[D_1 + \frac{1}{2r}(D_1 - D_0)\Bigr] + σ_2\sqrt{1 - ρ^{2η}}\,ξ.

    Lu et al. 2022 (arXiv:2211.01095), Alg. 2; the SDE form is k-diffusion's
    ``sample_dpmpp_2m_sde(solver_type="midpoint")``. The difference quotient
    approximates the exact weight of :class:`ExponentialAdams` (``order=2``) to
    second order. First step and the step onto ``σ = 0`` are first order.
    ODE order 2; weak order 2 for ``eta > 0`` (the sampling SDE's noise is
    additive; measured in ``tests/test_sampling_weak_order.py``).
    """

    ode_order = 2.0

    def __init__(self, eta=0.0, lower_order_final=True):
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta: expected a number in [0, 1], got {eta!r}")
        self.eta, self.lower_order_final = float(eta), bool(lower_order_final)
        self.stochastic = self.eta > 0
        self.weak_order_additive = 2.0 if self.stochastic else None

    def __repr__(self):
        return f"DPMSolverPP2M(eta={self.eta:g})"

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        nu, eta = 1.0 + self.eta, self.eta
        prev = [] if e.final else sde.previous(u, 1)
        if self.lower_order_final and sde.steps_left(u) == 1:
            prev = []
        # Full-size temporaries are updated in place (each product and sum is the same IEEE operation as the
        # out-of-place formula): fewer allocations of state-sized tensors per step.
        c_D = e.a2 * torch.expm1(-nu * e.h)
        if prev:
            r = (sde.log_snr(u) - sde.log_snr(prev[0][0])) / e.h
            Dt = torch.sub(D, prev[0][1]).div_(2 * r).add_(D)  # D + (D - D_prev) / (2r)
            Dt.mul_(c_D)
        else:
            Dt = c_D * D
        out = torch.mul((e.s2 / e.s1) * (e.rho**eta if eta > 0 else 1.0), x).sub_(Dt)
        if self.stochastic and dW is not None:
            out.add_(self.xi(dW, h).mul_(e.s2 * torch.sqrt(-torch.expm1(-2 * eta * e.h))))
        return out
