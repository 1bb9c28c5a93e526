from .._base import ItoScheme, register

NOISE_AS_INCREMENT = {
    "diagonal": "g ⊙ ΔW, one Brownian motion per element",
    "additive": "g(t_n) ΔW (exact in the noise: strong order 1)",
    "scalar": "g ΔW_b, one Brownian motion per sample",
    "general": "Σ_k g[..., k] ΔW_k",
}
"""How a scheme that only ever forms ``g(t_n, X_n) ΔW`` treats each noise type."""


@register
class EulerMaruyama(ItoScheme):
    r"""Euler–Maruyama; forward Euler on ODEs.

    .. math:: X_{n+1} = X_n + h f(t_n, X_n) + g(t_n, X_n)\,\Delta W_n

    Itô. Strong order 1/2 (1 for additive noise), weak order 1, ODE order 1;
    every noise type. Stability function ``R(z) = 1 + z``; mean-square stable
    on ``dX = λX dt + μX dW`` where ``|1 + hλ|² + hμ² < 1``. Reference: Kloeden &
    Platen, *Numerical Solution of Stochastic Differential Equations* (1992),
    §10.2; Higham, SIAM J. Numer. Anal. 38 (2000) for the mean-square factor.
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0
    noise_treatment = NOISE_AS_INCREMENT
    stability_formula = "1 + z"
    ms_stability_formula = "|1 + hλ|² + hμ² < 1"

    def stability_function(self, z):
        return 1 + z

    def ms_stability_factor(self, hl, hmu2):
        return (1 + hl) ** 2 + hmu2

    def step(self, sde, t, h, x, dW, ctx):
        y = x.add(sde.drift(t, x), alpha=h)
        if dW is None:
            return y
        return ctx.add_noise(y, sde.diffusion(t, x), dW)
