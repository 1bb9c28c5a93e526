from .._base import ItoScheme, register
from .euler import NOISE_AS_INCREMENT


@register
class Heun(ItoScheme):
    r"""Stochastic Heun (improved Euler) for Itô SDEs.

    Predictor ``X̃ = X_n + h f(t_n, X_n) + g(t_n, X_n) ΔW``, then

    .. math::
        X_{n+1} = X_n + \tfrac h2 \bigl[f(t_n, X_n) + f(t_{n+1}, \tilde X)\bigr]
                  + \tfrac12\bigl[g(t_n) + g(t_{n+1})\bigr]\Delta W

    for additive noise (trapezoidal in drift and diffusion: strong order 1), and
    ``+ g(t_n, X_n) ΔW`` for other noise types, which keeps the Itô limit
    (averaging ``g`` at the predictor would converge to the Stratonovich
    solution: that is :class:`~solvers.StratonovichHeun`): strong order 1/2
    there. Weak order 1, and 2 for additive noise, where the scheme is Kloeden
    and Platen's explicit order-2.0 weak scheme (§15.1); on ODEs it is Heun's method, order 2, with
    ``R(z) = 1 + z + z²/2``; mean-square factor on ``dX = λX dt + μX dW``:
    ``(1 + hλ + (hλ)²/2)² + (1 + hλ/2)² hμ²``. Reference: Kloeden & Platen
    (1992), §15.1; Rümelin, SIAM J. Numer. Anal. 19 (1982).
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    weak_order_additive = 2.0
    ode_order = 2.0
    drift_evals = 2
    diffusion_evals = 2
    noise_treatment = dict(NOISE_AS_INCREMENT,
                           additive="½[g(t_n) + g(t_{n+1})] ΔW, trapezoidal (strong order 1)")
    stability_formula = "1 + z + z²/2"
    ms_stability_formula = "(1 + hλ + (hλ)²/2)² + (1 + hλ/2)² hμ² < 1"

    def stability_function(self, z):
        return 1 + z + z * z / 2

    def ms_stability_factor(self, hl, hmu2):
        return (1 + hl + hl * hl / 2) ** 2 + (1 + hl / 2) ** 2 * hmu2

    def step(self, sde, t, h, x, dW, ctx):
        f0 = sde.drift(t, x)
        if dW is None:
            f1 = sde.drift(t + h, x.add(f0, alpha=h))
            return x.add(f0 + f1, alpha=0.5 * h)
        noise = ctx.noise(sde.diffusion(t, x), dW)
        xp = x.add(f0, alpha=h) + noise
        f1 = sde.drift(t + h, xp)
        if ctx.noise_type == "additive":
            noise = 0.5 * (noise + ctx.noise(sde.diffusion(t + h, xp), dW))
        return x.add(f0 + f1, alpha=0.5 * h) + noise
