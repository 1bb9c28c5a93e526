from .._base import ItoScheme, register
from .._convert import diffusion_and_correction


@register
class Milstein(ItoScheme):
    r"""Milstein scheme for diagonal, scalar and additive noise (Itô).

    .. math::
        X_{n+1} = X_n + h f + g\,\Delta W + \tfrac12 (g\cdot\nabla) g\,(\Delta W^2 - h)

    For diagonal noise ``g_i`` must depend on ``x_i`` only (commutative noise),
    so ``(g·∇)g_i = g_i ∂g_i/∂x_i``; for scalar noise the full directional
    derivative ``J_g g`` is used. The derivative comes from
    ``sde.diffusion_derivative(t, x)`` (``∂g_i/∂x_i``, diagonal noise) when the
    SDE defines it, else from :mod:`torch.func` (one vector-Jacobian product for
    diagonal noise, one Jacobian-vector product for scalar noise); either way it
    stays on the autograd graph, so gradients of a solve with respect to ``x_0``
    and to the parameters of the drift and the diffusion are exact (see
    :func:`solvers.diffusion_and_correction`). For additive noise the correction
    vanishes and the scheme is Euler–Maruyama.

    Strong order 1, weak order 1, ODE order 1; ``R(z) = 1 + z``; mean-square
    factor ``(1 + hλ)² + hμ² + (hμ²)²/2``. Reference: G. N. Milstein,
    *Approximate integration of stochastic differential equations*, Theory
    Probab. Appl. 19 (1974); Kloeden & Platen (1992), §10.3.
    """

    strong_order = 1.0
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0
    noise_treatment = {
        "diagonal": "g ⊙ ΔW + ½ g ∂g/∂x ⊙ (ΔW² − h), g_i a function of x_i (commutative)",
        "scalar": "g ΔW_b + ½ (J_g g)(ΔW_b² − h)",
        "additive": "g ΔW: the correction vanishes (Euler–Maruyama)",
    }
    stability_formula = "1 + z  (= Euler on ODEs)"
    ms_stability_formula = "(1 + hλ)² + hμ² + (hμ²)²/2 < 1"

    def stability_function(self, z):
        return 1 + z

    def ms_stability_factor(self, hl, hmu2):
        return (1 + hl) ** 2 + hmu2 + hmu2 * hmu2 / 2

    def step(self, sde, t, h, x, dW, ctx):
        y = x.add(sde.drift(t, x), alpha=h)
        if dW is None:
            return y
        if ctx.noise_type == "additive":
            return ctx.add_noise(y, sde.diffusion(t, x), dW)
        g, gdg = diffusion_and_correction(sde, t, x, ctx.noise_type)
        y = ctx.add_noise(y, g, dW)
        return y + 0.5 * gdg * (dW * dW - h)
