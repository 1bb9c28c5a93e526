from ._base import SamplerScheme, StepEnds


class EDMHeun(SamplerScheme):
    r"""Heun's method in ``σ̂ = σ/α`` on ``z = x/α`` (Karras et al. 2022, Alg. 1), per coordinate.

    .. math::
        d_1 = \frac{z_1 - D(x_1, t_1)}{σ̂_1},\quad \tilde z = z_1 + (σ̂_2 - σ̂_1) d_1,\quad
        z_2 = z_1 + (σ̂_2 - σ̂_1)\frac{d_1 + d_2}{2},\quad d_2 = \frac{\tilde z - D(α_2\tilde z, t_2)}{σ̂_2}.

    Two evaluations per step; the step onto ``σ̂ = 0`` is the Euler step
    (lower-order final step, as EDM does). ODE order 2.
    """

    ode_order = 2.0
    evals_per_step = 2
    drift_evals = 2

    def __repr__(self):
        return "EDMHeun()"

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        z = x / e.a1
        sh1, sh2 = e.s1 / e.a1, e.s2 / e.a2
        d1 = (z - D) / sh1
        ze = z + (sh2 - sh1) * d1
        if e.final:
            return e.a2 * ze
        D2 = sde.denoise(u + h, e.a2 * ze, record=False)
        d2 = (ze - D2) / sh2
        return e.a2 * (z + (sh2 - sh1) * 0.5 * (d1 + d2))
