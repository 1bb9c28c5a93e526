import math

from .._base import ItoScheme, register


@register
class DerivativeFreeMilstein(ItoScheme):
    r"""Derivative-free Milstein (Itô): Milstein's correction from a finite difference of ``g``.

    With the support value ``Υ = X_n + h f(t_n, X_n) + g(t_n, X_n) √h``:

    .. math::
        X_{n+1} = X_n + h f + g\,\Delta W
                  + \frac{g(t_n, Υ) - g(t_n, X_n)}{2\sqrt h}\,(\Delta W^2 - h),

    since ``g(Υ) − g(X) = (g·∇)g √h + O(h)``. No derivative of ``g`` is
    needed, so it runs on any diffusion, differentiable or not, at one extra
    diffusion evaluation. Strong order 1 for diagonal (``g_i`` a function of
    ``x_i``), scalar and additive noise; weak order 1; ODE order 1,
    ``R(z) = 1 + z``. This is torchsde's ``method="milstein"`` with
    ``options={"grad_free": True}`` for Itô SDEs. Reference: Kloeden & Platen
    (1992), §11.1, eq. (11.1.3).
    """

    strong_order = 1.0
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0
    diffusion_evals = 2
    noise_treatment = {
        "diagonal": "g ⊙ ΔW + [g(Υ) − g] ⊙ (ΔW² − h)/(2√h), g_i a function of x_i (commutative)",
        "scalar": "g ΔW_b + [g(Υ) − g](ΔW_b² − h)/(2√h)",
        "additive": "g ΔW + [g(t_n) − g(t_n)]·… = g ΔW (Euler–Maruyama)",
    }
    stability_formula = "1 + z  (= Euler on ODEs)"
    ms_stability_formula = "(1 + hλ)² + hμ² + hμ² (hλ + √(hμ²))²/2 < 1  (μ > 0)"

    def stability_function(self, z):
        return 1 + z

    def ms_stability_factor(self, hl, hmu2):
        return (1 + hl) ** 2 + hmu2 + hmu2 * (hl + hmu2**0.5) ** 2 / 2

    def step(self, sde, t, h, x, dW, ctx):
        f = sde.drift(t, x)
        y = x.add(f, alpha=h)
        if dW is None:
            return y
        g = sde.diffusion(t, x)
        y = ctx.add_noise(y, g, dW)
        if ctx.noise_type == "additive":
            return y
        sqrt_h = math.sqrt(h)
        support = x.add(f, alpha=h) + g * sqrt_h
        return y + (sde.diffusion(t, support) - g) * ((dW * dW - h) / (2 * sqrt_h))
