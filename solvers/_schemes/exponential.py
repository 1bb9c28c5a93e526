import math

import torch

from .._base import ItoScheme, exp_
from .euler import NOISE_AS_INCREMENT


def phi1(z):
    """``(e^z - 1) / z`` with the removable singularity at 0, for floats and tensors."""
    if isinstance(z, torch.Tensor):
        small = z.abs() < 1e-8
        safe = torch.where(small, torch.ones_like(z), z)
        return torch.where(small, 1 + 0.5 * z, torch.expm1(safe) / safe)
    return 1 + 0.5 * z if abs(z) < 1e-8 else math.expm1(z) / z


def _exp(z):
    return torch.exp(z) if isinstance(z, torch.Tensor) else math.exp(z)


def _sqrt(z):
    return torch.sqrt(z) if isinstance(z, torch.Tensor) else math.sqrt(z)


class ExponentialEuler(ItoScheme):
    r"""Exponential Euler (stochastic exponential time differencing) for ``f = A(t) x + N(t, x)``.

    With ``Λ = ∫_t^{t+h} A`` and ``V = ∫_t^{t+h} exp(2∫_u^{t+h} A) du``:

    .. math::
        X_{n+1} = e^{Λ} X_n + h\,φ_1(Λ)\,N(t_n, X_n) + \sqrt{V/h}\; g(t_n, X_n)\,\Delta W_n,
        \qquad φ_1(z) = (e^z - 1)/z.

    The linear part is integrated exactly, and the noise is scaled so that the
    one-step variance equals that of the stochastic convolution
    ``∫ e^{∫_u^{t+h} A} g dW_u`` (exact for ``g`` constant over the step). A
    linear SDE with additive noise started from a point mass therefore gets its
    exact mean and variance at every step size — stiff or not. ``A`` is
    ``sde.linear(t)`` (a float or a tensor broadcastable to ``x``: a diagonal
    operator); ``Λ`` and ``V`` come from ``sde.linear_transition(t, t + h)``
    when the SDE defines it, else ``A`` is frozen at the mid-step time:
    ``Λ = h A(t + h/2)``, ``V = h φ_1(2Λ)`` (exact for constant ``A``).

    Strong order 1/2 (1 for additive noise), weak order 1, ODE order 1; exact
    in law for linear additive-noise SDEs. Reference: Lord & Tambue, IMA J.
    Numer. Anal. 33 (2013); Jentzen & Kloeden, Proc. R. Soc. A 465 (2009).
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0
    needs_linear = True
    noise_treatment = {k: f"√(V/h) · ({v})" for k, v in NOISE_AS_INCREMENT.items()}
    stability_formula = "exp(z)  (A-stable)"
    ms_stability_formula = "e^{2hλ} + φ₁(2hλ) hμ² < 1  (λ the declared linear part)"

    def stability_function(self, z):
        """``R(z) = e^z``: the linear part (here all of ``λ``) is integrated exactly."""
        return exp_(z)

    def ms_stability_factor(self, hl, hmu2):
        """``e^{2hλ} + φ₁(2hλ) hμ²`` with ``φ₁(z) = (e^z − 1)/z``: the noise is scaled by ``√(V/h)``,
        ``V = h φ₁(2hλ)``."""
        z = 2 * hl
        return exp_(z) + (exp_(z) - 1) / z * hmu2

    def step(self, sde, t, h, x, dW, ctx):
        if hasattr(sde, "linear_transition"):
            lam, var = sde.linear_transition(t, t + h)
        else:
            lam = h * sde.linear(t + 0.5 * h)
            var = None
        if isinstance(lam, torch.Tensor):
            lam = lam.to(dtype=x.dtype, device=x.device)
        if isinstance(var, torch.Tensor):
            var = var.to(dtype=x.dtype, device=x.device)
        y = _exp(lam) * x
        if not getattr(sde, "linear_only", False):
            if hasattr(sde, "nonlinear"):
                n = sde.nonlinear(t, x)
            else:
                a = sde.linear(t)
                n = sde.drift(t, x) - (a.to(x) if isinstance(a, torch.Tensor) else a) * x
            y = y + (h * phi1(lam)) * n
        if dW is None:
            return y
        if var is None:
            var = h * phi1(2 * lam)
        return y + _sqrt(var / h) * ctx.noise(sde.diffusion(t, x), dW)
