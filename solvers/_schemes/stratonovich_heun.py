from .._base import StratonovichScheme, register


def _commutative(general):
    return {
        "diagonal": "½[g(t_n, X_n) + g(t_{n+1}, X̃)] ⊙ ΔW (strong order 1)",
        "scalar": "½[g(t_n, X_n) + g(t_{n+1}, X̃)] ΔW_b (strong order 1)",
        "additive": "½[g(t_n) + g(t_{n+1})] ΔW (strong order 1)",
        "general": general,
    }


@register
class StratonovichHeun(StratonovichScheme):
    r"""Stochastic Heun in its classical form: trapezoidal in drift *and* diffusion (Stratonovich).

    Predictor ``X̃ = X_n + h f(t_n, X_n) + g(t_n, X_n) ΔW``, then

    .. math::
        X_{n+1} = X_n + \tfrac h2 \bigl[f(t_n, X_n) + f(t_{n+1}, \tilde X)\bigr]
                  + \tfrac12 \bigl[g(t_n, X_n) + g(t_{n+1}, \tilde X)\bigr] \Delta W .

    Averaging ``g`` at the predictor makes the limit the Stratonovich solution;
    an Itô SDE gets its drift converted first (:meth:`Scheme.prepare`). This is
    torchsde's ``method="heun"``. Strong order 1 for diagonal, scalar and
    additive noise (commutative), 1/2 for general noise; weak order 1 (2 for
    additive noise, where it coincides with :class:`~solvers.Heun`); ODE
    order 2 with ``R(z) = 1 + z + z²/2``. Reference: Burrage, Burrage & Tian,
    Proc. R. Soc. A 460 (2004); Rümelin, SIAM J. Numer. Anal. 19 (1982).
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    strong_order_commutative = 1.0
    weak_order = 1.0
    weak_order_additive = 2.0
    ode_order = 2.0
    drift_evals = 2
    diffusion_evals = 2
    noise_treatment = _commutative("½ Σ_k [g_k(t_n, X_n) + g_k(t_{n+1}, X̃)] ΔW_k (no Lévy area: strong order 1/2)")
    stability_formula = "1 + z + z²/2"
    ms_stability_formula = ("P² + P hμ² + (1 + a)² hμ² + ¾ (hμ²)² < 1, a = hλ − hμ²/2, P = 1 + a + a²/2  "
                            "(Itô dX = λX dt + μX dW, drift converted)")

    def stability_function(self, z):
        return 1 + z + z * z / 2

    def ms_stability_factor(self, hl, hmu2):
        a = hl - hmu2 / 2
        p = 1 + a + a * a / 2
        return p * p + p * hmu2 + (1 + a) ** 2 * hmu2 + 0.75 * hmu2 * hmu2

    def step(self, sde, t, h, x, dW, ctx):
        f0 = sde.drift(t, x)
        if dW is None:
            f1 = sde.drift(t + h, x.add(f0, alpha=h))
            return x.add(f0 + f1, alpha=0.5 * h)
        noise0 = ctx.noise(sde.diffusion(t, x), dW)
        xp = x.add(f0, alpha=h) + noise0
        f1 = sde.drift(t + h, xp)
        noise1 = ctx.noise(sde.diffusion(t + h, xp), dW)
        return x.add(f0 + f1, alpha=0.5 * h) + 0.5 * (noise0 + noise1)
