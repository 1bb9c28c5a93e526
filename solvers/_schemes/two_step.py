from .._base import ItoScheme, register
from .euler import NOISE_AS_INCREMENT


@register
class TwoStepEuler(ItoScheme):
    r"""Two-step forward Euler: the drift split in two with the noise between them.

    With ``f = f_1 + f_2`` (``sde.drift_parts`` or ``sde.drift_part1/2``):

    .. math::
        Y &= X_n + h f_1(t_n, X_n) + g(t_n, X_n)\,\Delta W_n, \\
        X_{n+1} &= Y + h f_2(t_n, Y).

    This is the top-down block of a VDVAE-style hierarchical VAE read as an SDE
    step (docs/design.md §3): prior-branch residual and latent injection, then the
    residual block at the intermediate state. **Default split** when the SDE
    gives none: ``f_1 = f_2 = f / 2``; on ``x' = λx`` the amplification factor
    is then ``R(z) = 1 + z + z²/4 = (1 + z/2)²``, and on ``dX = λX dt + μX dW``
    the mean-square factor is ``(1 + hλ/2)² [(1 + hλ/2)² + hμ²]``.

    Itô. Strong order 1/2 (1 for additive noise), weak order 1, ODE order 1;
    every noise type. Reference: Falck et al., *A Multi-Resolution Framework
    for U-Nets with Applications to Hierarchical VAEs*, NeurIPS 2022, §4.
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0
    drift_evals = 2
    noise_treatment = NOISE_AS_INCREMENT
    uses_drift_split = True
    stability_formula = "1 + z + z²/4  (default split f/2 + f/2)"
    ms_stability_formula = "(1 + hλ/2)² [(1 + hλ/2)² + hμ²] < 1  (default split)"

    def stability_function(self, z):
        return 1 + z + z * z / 4

    def ms_stability_factor(self, hl, hmu2):
        a = (1 + hl / 2) ** 2
        return a * (a + hmu2)

    def step(self, sde, t, h, x, dW, ctx):
        split = sde.drift_split
        if split is not None:
            y = x.add(split[0](t, x), alpha=h)
        else:
            y = x.add(sde.drift(t, x), alpha=0.5 * h)
        if dW is not None:
            y = ctx.add_noise(y, sde.diffusion(t, x), dW)
        if split is not None:
            return y.add(split[1](t, y), alpha=h)
        return y.add(sde.drift(t, y), alpha=0.5 * h)
