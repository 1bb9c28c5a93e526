import torch

from .._base import ItoScheme, register
from .._convert import as_terms
from .euler import NOISE_AS_INCREMENT


@register
class DriftImplicitEuler(ItoScheme):
    r"""Drift-implicit Euler–Maruyama (θ-method), explicit in the noise.

    .. math::
        X_{n+1} = X_n + h\bigl[(1-θ) f(t_n, X_n) + θ f(t_{n+1}, X_{n+1})\bigr] + g(t_n, X_n)\,\Delta W_n

    The implicit equation ``y = r + θ h f(t_{n+1}, y)`` is solved

    * exactly when the SDE declares a purely linear drift (``linear(t)`` and
      ``linear_only = True``): ``y = r / (1 - θ h A)``;
    * with the linear part exact and fixed-point iterations on the rest when
      the SDE gives ``linear(t)`` with a non-zero nonlinear part;
    * otherwise by Newton's method with the per-sample Jacobian from
      ``torch.func`` (the drift must act on each sample independently).

    ``θ = 1`` (default) is backward Euler in the drift, mean-square stable for
    ``dX = λX dt + μX dW`` whenever ``(1 + hμ²) / (1 - hλ)² < 1``. Strong order
    1/2 (1 for additive noise), weak order 1, ODE order 1 (2 for ``θ = 1/2``).
    Reference: Higham, Mao & Stuart, SIAM J. Numer. Anal. 40 (2002);
    Kloeden & Platen (1992), §12.2.
    """

    strong_order = 0.5
    strong_order_additive = 1.0
    weak_order = 1.0
    ode_order = 1.0
    noise_treatment = NOISE_AS_INCREMENT

    def __init__(self, theta: float = 1.0, *, tol: float = 1e-10, max_iter: int = 50, max_newton_size: int = 1024):
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta: expected a number in [0, 1], got {theta!r}")
        if max_iter < 1:
            raise ValueError(f"max_iter: expected a positive integer, got {max_iter!r}")
        self.theta, self.tol, self.max_iter = float(theta), float(tol), int(max_iter)
        self.max_newton_size = int(max_newton_size)
        self.drift_evals = 2 if theta < 1 else 1
        if theta == 0.5:
            self.ode_order = 2.0

    def __repr__(self):
        return f"DriftImplicitEuler(theta={self.theta})"

    # ------------------------------------------------------------------ facts

    @property
    def stability_formula(self):
        th = self.theta
        if th == 1:
            return "1 / (1 − z)  (A-stable)"
        if th == 0:
            return "1 + z  (= Euler–Maruyama)"
        note = "A-stable" if th >= 0.5 else "not A-stable"
        return f"(1 + {1 - th:g}z) / (1 − {th:g}z)  ({note})"

    @property
    def ms_stability_formula(self):
        th = self.theta
        if th == 1:
            return "(1 + hμ²) / (1 − hλ)² < 1"
        return f"((1 + {1 - th:g}hλ)² + hμ²) / (1 − {th:g}hλ)² < 1"

    def stability_function(self, z):
        th = self.theta
        return (1 + (1 - th) * z) / (1 - th * z)

    def ms_stability_factor(self, hl, hmu2):
        th = self.theta
        return ((1 + (1 - th) * hl) ** 2 + hmu2) / (1 - th * hl) ** 2

    def incompatibility(self, sde, shape=None):
        reason = super().incompatibility(sde, shape)
        if reason is not None or self.theta == 0 or shape is None or as_terms(sde).linear is not None:
            return reason
        n = 1
        for s in tuple(shape)[1:]:
            n *= int(s)
        if n > self.max_newton_size:
            return (f"DriftImplicitEuler: Newton's method would build a dense {n}x{n} Jacobian per sample for "
                    f"states of shape {tuple(shape)}; give the SDE a linear part linear(t) (solved exactly, the "
                    f"rest by fixed point) or raise max_newton_size={self.max_newton_size}")
        return None

    def step(self, sde, t, h, x, dW, ctx):
        th = self.theta
        r = x
        if th < 1:
            r = r.add(sde.drift(t, x), alpha=(1 - th) * h)
        if dW is not None:
            r = ctx.add_noise(r, sde.diffusion(t, x), dW)
        if th == 0:
            return r
        t1 = t + h
        if sde.linear is not None:
            a = sde.linear(t1)
            denom = 1 - th * h * (a.to(x) if isinstance(a, torch.Tensor) else a)
            if sde.linear_only:
                return r / denom
            return self._fixed_point(sde, t1, h, r, denom, ctx)
        return self._newton(sde, t1, h, r, ctx)

    def _fixed_point(self, sde, t1, h, r, denom, ctx):
        nonlinear = sde.nonlinear_part
        y = r / denom
        for _ in range(self.max_iter):
            y_new = (r + self.theta * h * nonlinear(t1, y)) / denom
            ctx.extra_nfe += 1
            done = (y_new - y).abs().max() <= self.tol * (1 + y_new.abs().max())
            y = y_new
            if done:
                break
        return y

    def _newton(self, sde, t1, h, r, ctx):
        th = self.theta
        batch, event = r.shape[0], r.shape[1:]
        n = r[0].numel()
        if n > self.max_newton_size:
            raise ValueError(f"DriftImplicitEuler: Newton's method would build a dense {n}x{n} Jacobian per sample; "
                             f"give the SDE a linear part linear(t) (solved exactly, the rest by fixed point) or "
                             f"raise max_newton_size={self.max_newton_size}")

        def f_one(y1):  # the drift of one sample, flattened
            return sde.drift(t1, y1.view(1, *event)).reshape(-1)

        jac = torch.func.vmap(torch.func.jacrev(f_one))
        eye = torch.eye(n, dtype=r.dtype, device=r.device)
        y = r.reshape(batch, n)
        for _ in range(self.max_iter):
            fy = sde.drift(t1, y.view_as(r)).reshape(batch, n)
            resid = y - th * h * fy - r.reshape(batch, n)
            J = jac(y)
            ctx.extra_nfe += 2
            delta = torch.linalg.solve(eye - th * h * J, resid.unsqueeze(-1)).squeeze(-1)
            y = y - delta
            if delta.abs().max() <= self.tol * (1 + y.abs().max()):
                break
        return y.view_as(r)
