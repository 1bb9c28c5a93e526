from .._base import StratonovichScheme, register
from .stratonovich_heun import StratonovichHeun


@register
class StratonovichMidpoint(StratonovichScheme):
    r"""Stochastic midpoint rule (Stratonovich).

    .. math::
        \tilde X = X_n + \tfrac h2 f(t_n, X_n) + \tfrac12 g(t_n, X_n)\,\Delta W, \qquad
        X_{n+1} = X_n + h f(t_n + \tfrac h2, \tilde X) + g(t_n + \tfrac h2, \tilde X)\,\Delta W .

    Evaluating ``g`` at the midpoint makes the limit the Stratonovich solution;
    an Itô SDE gets its drift converted first (:meth:`Scheme.prepare`). This is
    torchsde's ``method="midpoint"``. Strong order 1 for diagonal, scalar and
    additive noise (commutative), 1/2 for general noise; weak order 1; ODE
    order 2 with ``R(z) = 1 + z + z²/2``. On ``dX = λX dt + μX dW`` one step is
    the same polynomial in ``ΔW`` as :class:`StratonovichHeun`'s, so the
    mean-square factors agree. Reference: Burrage, Burrage & Tian, Proc. R.
    Soc. A 460 (2004), §4.
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    strong_order_commutative = 1.0
    weak_order = 1.0
    ode_order = 2.0
    drift_evals = 2
    diffusion_evals = 2
    noise_treatment = {
        "diagonal": "g(t_n + h/2, X̃) ⊙ ΔW (strong order 1)",
        "scalar": "g(t_n + h/2, X̃) ΔW_b (strong order 1)",
        "additive": "g(t_n + h/2) ΔW (strong order 1)",
        "general": "Σ_k g_k(t_n + h/2, X̃) ΔW_k (no Lévy area: strong order 1/2)",
    }
    stability_formula = "1 + z + z²/2"
    ms_stability_formula = StratonovichHeun.ms_stability_formula
    ms_stability_factor = StratonovichHeun.ms_stability_factor

    def stability_function(self, z):
        return 1 + z + z * z / 2

    def step(self, sde, t, h, x, dW, ctx):
        f0 = sde.drift(t, x)
        tm = t + 0.5 * h
        if dW is None:
            return x.add(sde.drift(tm, x.add(f0, alpha=0.5 * h)), alpha=h)
        xm = x.add(f0, alpha=0.5 * h) + 0.5 * ctx.noise(sde.diffusion(t, x), dW)
        return ctx.add_noise(x.add(sde.drift(tm, xm), alpha=h), sde.diffusion(tm, xm), dW)
