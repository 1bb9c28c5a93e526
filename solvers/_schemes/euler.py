from .._base import Scheme


class EulerMaruyama(Scheme):
    r"""Euler–Maruyama; forward Euler on ODEs.

    .. math:: X_{n+1} = X_n + h f(t_n, X_n) + g(t_n, X_n)\,\Delta W_n

    Strong order 1/2 (1 for additive noise), weak order 1, ODE order 1; every
    noise type. Reference: Kloeden & Platen, *Numerical Solution of Stochastic
    Differential Equations* (1992), §10.2.
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0

    def step(self, sde, t, h, x, dW, ctx):
        y = x.add(sde.drift(t, x), alpha=h)
        if dW is None:
            return y
        return ctx.add_noise(y, sde.diffusion(t, x), dW)
