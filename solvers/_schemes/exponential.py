import math

import torch

from .._base import ItoScheme, exp_, register
from .euler import NOISE_AS_INCREMENT


def phi1(z):
    """``(e^z - 1) / z`` with the removable singularity at 0, for floats and tensors."""
    if isinstance(z, torch.Tensor):
        small = z.abs() < 1e-8
        safe = torch.where(small, torch.ones_like(z), z)
        return torch.where(small, 1 + 0.5 * z, torch.expm1(safe) / safe)
    return 1 + 0.5 * z if abs(z) < 1e-8 else math.expm1(z) / z


def phi(k, z):
    """``φ_k(z) = ∫_0^1 e^{(1-θ)z} θ^{k-1}/(k-1)! dθ`` elementwise for a tensor ``z`` (``k ≥ 1``).

    ``φ_1 = (e^z - 1)/z``, ``φ_{k+1} = (φ_k - 1/k!)/z``; the recurrence cancels for small
    ``|z|``, where the Taylor series ``Σ_i z^i/(i+k)!`` is used instead (``|z| ≤ 1``, 24
    terms: below round-off). ``φ_k(-∞) = 0``.
    """
    z = torch.as_tensor(z)
    small = z.abs() <= 1.0
    zs = torch.where(small, z, torch.zeros_like(z))
    series = torch.zeros_like(z)
    for i in reversed(range(24)):
        series = series * zs + 1.0 / math.factorial(i + k)
    zl = torch.where(small, torch.ones_like(z), z)
    big = torch.expm1(zl) / zl
    for j in range(1, k):
        big = (big - 1.0 / math.factorial(j)) / zl
    negative = (zl.real if zl.is_complex() else zl) < 0
    big = torch.where(torch.isinf(zl) & negative, torch.zeros_like(z), big)
    return torch.where(small, series, big)


def _exp(z):
    return torch.exp(z) if isinstance(z, torch.Tensor) else math.exp(z)


def _sqrt(z):
    return torch.sqrt(z) if isinstance(z, torch.Tensor) else math.sqrt(z)


@register
class ExponentialEuler(ItoScheme):
    r"""Exponential Euler (stochastic exponential time differencing) for ``f = A(t) x + N(t, x)``.

    With ``Λ = ∫_t^{t+h} A`` and ``V = ∫_t^{t+h} exp(2∫_u^{t+h} A) du``:

    .. math::
        X_{n+1} = e^{Λ} X_n + h\,φ_1(Λ)\,N(t_n, X_n) + \sqrt{V/h}\; g(t_n, X_n)\,\Delta W_n,
        \qquad φ_1(z) = (e^z - 1)/z.

    When the SDE writes its nonlinear part as ``N(t, x) = c(t) M(t, x)`` and
    gives the exact weight ``sde.nonlinear_weight(t, t + h) = ∫ e^{Λ(u, t+h)}
    c(u) du`` (and ``sde.nonlinear_profile(t, x) = M``; ``M = 1`` when absent:
    an affine forcing ``c(t)``), the term ``h φ_1(Λ) N`` becomes
    ``nonlinear_weight · M(t_n, X_n)``: the forcing is integrated exactly
    instead of being frozen at the left point. Linear SDEs with affine forcing
    and additive noise are then exact in law at any step, and on a diffusion's
    :meth:`~mrdiffusion.processes.BandNoising.probability_flow` (``M`` the data
    prediction) the scheme is DDIM / DPM-Solver++(1).

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
        if sde.linear_transition is not None:
            lam, var = sde.linear_transition(t, t + h)
        else:
            lam = h * sde.linear(t + 0.5 * h)
            var = None
        if isinstance(lam, torch.Tensor):
            lam = lam.to(dtype=x.dtype, device=x.device)
        if isinstance(var, torch.Tensor):
            var = var.to(dtype=x.dtype, device=x.device)
        y = _exp(lam) * x
        if sde.nonlinear_weight is not None:
            # N(t, x) = c(t) M(t, x): the weight ∫ e^{Λ(u, t+h)} c(u) du is exact, M is frozen at t_n
            w = sde.nonlinear_weight(t, t + h)
            w = w.to(dtype=x.dtype, device=x.device) if isinstance(w, torch.Tensor) else w
            y = y + (w * sde.nonlinear_profile(t, x) if sde.nonlinear_profile is not None else w)
        elif not sde.linear_only:
            y = y + (h * phi1(lam)) * sde.nonlinear_part(t, x)
        if dW is None:
            return y
        if var is None:
            var = h * phi1(2 * lam)
        return y + _sqrt(var / h) * ctx.noise(sde.diffusion(t, x), dW)
