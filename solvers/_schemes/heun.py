from .._base import Scheme


class Heun(Scheme):
    r"""Stochastic Heun (improved Euler) for Itô SDEs.

    Predictor ``X̃ = X_n + h f(t_n, X_n) + g(t_n, X_n) ΔW``, then

    .. math::
        X_{n+1} = X_n + \tfrac h2 \bigl[f(t_n, X_n) + f(t_{n+1}, \tilde X)\bigr]
                  + \tfrac12\bigl[g(t_n) + g(t_{n+1})\bigr]\Delta W

    for additive noise (trapezoidal in drift and diffusion: strong order 1), and
    ``+ g(t_n, X_n) ΔW`` for other noise types, which keeps the Itô limit
    (averaging ``g`` at the predictor would converge to the Stratonovich
    solution): strong order 1/2 there. Weak order 1; on ODEs it is Heun's
    method, order 2. Reference: Kloeden & Platen (1992), §15.1; Rümelin,
    SIAM J. Numer. Anal. 19 (1982).
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 2.0
    drift_evals = 2
    diffusion_evals = 2

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
