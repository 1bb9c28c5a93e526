import torch

from .._base import Scheme


class Milstein(Scheme):
    r"""Milstein scheme for diagonal, scalar and additive noise (Itô).

    .. math::
        X_{n+1} = X_n + h f + g\,\Delta W + \tfrac12 (g\cdot\nabla) g\,(\Delta W^2 - h)

    For diagonal noise ``g_i`` must depend on ``x_i`` only (commutative noise),
    so ``(g·∇)g_i = g_i ∂g_i/∂x_i``; for scalar noise the full directional
    derivative ``J_g g`` is used. The derivative comes from
    ``sde.diffusion_derivative(t, x)`` (``∂g_i/∂x_i``, diagonal noise) when the
    SDE defines it, else from autograd (one vector-Jacobian product for
    diagonal noise, one forward-mode Jacobian-vector product for scalar noise);
    autograd derivatives are detached, so solves with Milstein are not
    differentiated through the correction term. For additive noise the
    correction vanishes and the scheme is Euler–Maruyama.

    Strong order 1, weak order 1, ODE order 1. Reference: G. N. Milstein,
    *Approximate integration of stochastic differential equations*, Theory
    Probab. Appl. 19 (1974); Kloeden & Platen (1992), §10.3.
    """

    strong_order = 1.0
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0
    noise_types = frozenset({"diagonal", "scalar", "additive"})

    def step(self, sde, t, h, x, dW, ctx):
        y = x.add(sde.drift(t, x), alpha=h)
        if dW is None:
            return y
        if ctx.noise_type == "additive":
            return ctx.add_noise(y, sde.diffusion(t, x), dW)
        g, gdg = self._g_and_correction(sde, t, x, ctx)
        y = ctx.add_noise(y, g, dW)
        return y + 0.5 * gdg * (dW * dW - h)

    @staticmethod
    def _g_and_correction(sde, t, x, ctx):
        if ctx.noise_type == "diagonal" and hasattr(sde, "diffusion_derivative"):
            g = sde.diffusion(t, x)
            return g, g * sde.diffusion_derivative(t, x)
        if ctx.noise_type == "diagonal":
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                g = sde.diffusion(t, xg)
                # Σ_i g_i ∂g_i/∂x_j = g_j ∂g_j/∂x_j when g_i depends on x_i only.
                (gdg,) = torch.autograd.grad(g, xg, grad_outputs=g.detach())
            return g.detach(), gdg
        g = sde.diffusion(t, x)
        _, gdg = torch.func.jvp(lambda z: sde.diffusion(t, z), (x.detach(),), (g.detach(),))
        return g, gdg
