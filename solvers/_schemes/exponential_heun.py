import torch

from .._base import ItoScheme, exp_, register
from .exponential import phi


@register
class ExponentialHeun(ItoScheme):
    r"""Exponential Heun (ETD2RK with the noise in the predictor) for ``f = A(t) x + N(t, x)``, additive noise.

    With ``Λ = ∫_t^{t+h} A``, ``V`` as in :class:`ExponentialEuler` and the noise
    term ``ζ = \sqrt{V/h}\, g(t_n)\, ΔW_n``:

    .. math::
        \tilde X = e^{Λ} X_n + h φ_1(Λ) N(t_n, X_n) + ζ,\qquad
        X_{n+1} = \tilde X + h φ_2(Λ) \bigl[N(t_{n+1}, \tilde X) - N(t_n, X_n)\bigr],

    ``φ_2(z) = (e^z - 1 - z)/z²``: the nonlinear part is interpolated linearly in
    time and integrated against the exact exponential weight (Cox & Matthews,
    J. Comput. Phys. 176 (2002), ETD2RK); the predictor carries the same noise,
    as the derivative-free weak order 2 scheme for additive noise does (Kloeden &
    Platen, *Numerical Solution of SDEs*, §15.1). Weak order 2 for additive noise
    (measured on the bench's ``gaussian`` problem), ODE order 2, strong order 1.
    The linear part comes from ``sde.linear_transition`` when defined (else ``A``
    frozen at mid-step). Where ``e^Λ = 0`` (a step onto a point mass, ``Λ = -∞``)
    the correction is dropped: the step is exponential Euler there.

    When the SDE gives the exact weight of its nonlinear part ``c(t) M(t, x)``
    (``nonlinear_weight``, ``nonlinear_profile``; see :class:`ExponentialEuler`),
    ``M`` is interpolated instead of ``N``: an affine forcing is then exact, and
    on a diffusion's probability flow the scheme is a second-order exponential
    Heun in the data prediction, down to ``σ = 0``.
    """

    strong_order = 1.0
    weak_order = 2.0
    ode_order = 2.0
    needs_linear = True
    noise_treatment = {"additive": "√(V/h) · g(t_n) ΔW in the predictor, carried into the corrector"}
    stability_formula = "exp(z)  (A-stable)"
    drift_evals = 2

    def stability_function(self, z):
        """``R(z) = e^z``: on ``x' = λx`` all of ``λ`` is the linear part, integrated exactly."""
        return exp_(z)

    @staticmethod
    def _nonlinear(sde, t, x):
        return sde.nonlinear_part(t, x)

    def _weighted_step(self, sde, t, h, x, dW, ctx, lam, var):
        """``N = c(t) M(t, x)`` with the exact weight ``W = ∫ e^{Λ(u,t+h)} c(u) du``: ``M`` interpolated linearly,
        ``X_{n+1} = X̃ + W θ (M(t_{n+1}, X̃) - M_n)``, ``θ = φ_2(Λ)/φ_1(Λ)`` (exact for constant ``A``, ``c``)."""
        w = sde.nonlinear_weight(t, t + h)
        w = w.to(dtype=x.dtype, device=x.device) if isinstance(w, torch.Tensor) else w
        profile = sde.nonlinear_profile
        m0 = profile(t, x) if profile is not None else 1.0
        pred = torch.exp(lam) * x + w * m0
        if dW is not None:
            pred = pred + torch.sqrt(var / h) * ctx.noise(sde.diffusion(t, x), dW)
        if profile is None:  # an affine forcing: the weight is already exact
            return pred
        finite = torch.isfinite(lam) & (lam != 0)
        safe = torch.where(finite, lam, -torch.ones_like(lam))
        theta = torch.where(finite, phi(2, safe) / phi(1, safe), torch.where(lam == 0, 0.5, 1.0))
        return pred + w * theta * (profile(t + h, pred) - m0)

    def step(self, sde, t, h, x, dW, ctx):
        if sde.linear_transition is not None:
            lam, var = sde.linear_transition(t, t + h)
        else:
            a = sde.linear(t + 0.5 * h)
            a = torch.as_tensor(a)
            lam, var = h * (a if a.is_complex() else a.to(torch.float64)), None
        lam = torch.as_tensor(lam).to(dtype=x.dtype, device=x.device)
        if sde.nonlinear_weight is not None:
            if var is None:
                var = h * phi(1, 2 * lam)
            return self._weighted_step(sde, t, h, x, dW, ctx, lam,
                                       torch.as_tensor(var).to(dtype=x.dtype, device=x.device))
        n0 = self._nonlinear(sde, t, x)
        pred = torch.exp(lam) * x + (h * phi(1, lam)) * n0
        if dW is not None:
            var = h * phi(1, 2 * lam) if var is None else torch.as_tensor(var).to(dtype=x.dtype, device=x.device)
            pred = pred + torch.sqrt(var / h) * ctx.noise(sde.diffusion(t, x), dW)
        w2 = h * phi(2, lam)
        corr = w2 * (self._nonlinear(sde, t + h, pred) - n0)
        return pred + torch.where(torch.isfinite(lam), corr, torch.zeros_like(corr))
