from ._base import SamplerScheme, StepEnds


class EDMEuler(SamplerScheme):
    r"""Euler in the EDM noise level ``σ̂ = σ/α`` of the scaled state ``z = x/α``, per coordinate.

    EDM's ODE ``dz/dσ̂ = (z - D)/σ̂`` (Karras et al. 2022, Alg. 1 without the
    Heun correction; k-diffusion's ``sample_euler``), one step per coordinate
    in its own ``σ̂``:

    .. math:: z_2 = z_1 + (σ̂_2 - σ̂_1)\,\frac{z_1 - D_1}{σ̂_1},\qquad x_2 = α_2 z_2.

    (It coincides with DDIM, ``z_2 = D_1 + (σ̂_2/σ̂_1)(z_1 - D_1)``.) ODE order 1.
    """

    def __repr__(self):
        return "EDMEuler()"

    def step(self, sde, u, h, x, dW, ctx):
        e = StepEnds(sde, u, h)
        D = sde.denoise(u, x)
        z = x / e.a1
        sh1, sh2 = e.s1 / e.a1, e.s2 / e.a2
        return e.a2 * (z + (sh2 - sh1) * (z - D) / sh1)
