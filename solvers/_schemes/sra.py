"""Stochastic Runge–Kutta schemes for additive noise (Rößler's SRA family) as data."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._base import ItoScheme, polynomial_formula, register
from .rk import explicit_stability, explicit_stability_polynomial


@dataclass(frozen=True)
class SRATableau:
    r"""Coefficients of an explicit SRA scheme (Rößler 2010, Table 5.1 notation).

    Stages ``H_i = X + h Σ_j a0[i][j] f(t + c0[j] h, H_j) + Σ_j b0[i][j] g(t + c1[j] h) U/h``,
    update ``X' = X + h Σ_i α_i f(t + c0[i] h, H_i) + Σ_i g(t + c1[i] h)(β1_i ΔW + β2_i U/h)``
    with ``U = ∫_t^{t+h} (W_u - W_t) du``. Checked at construction: row sums of
    ``a0`` equal ``c0``, ``Σ α = 1``, ``Σ β1 = 1``, ``Σ β2 = 0`` (consistency).
    """

    c0: tuple
    c1: tuple
    a0: tuple
    b0: tuple
    alpha: tuple
    beta1: tuple
    beta2: tuple

    def __post_init__(self):
        s = len(self.alpha)
        rows = {"c0": self.c0, "c1": self.c1, "a0": self.a0, "b0": self.b0, "beta1": self.beta1, "beta2": self.beta2}
        for name, row in rows.items():
            if len(row) != s:
                raise ValueError(f"SRATableau: {name} has {len(row)} entries, expected {s} stages")
        for i in range(s):
            if len(self.a0[i]) != i or len(self.b0[i]) != i:
                raise ValueError(f"SRATableau: row {i} of a0/b0 must have {i} entries (explicit scheme)")
            if not math.isclose(sum(self.a0[i]), self.c0[i], abs_tol=1e-12):
                raise ValueError(f"SRATableau: row {i} of a0 sums to {sum(self.a0[i])}, but c0[{i}] = {self.c0[i]}")
        for name, weights, target in (("alpha", self.alpha, 1.0), ("beta1", self.beta1, 1.0), ("beta2", self.beta2, 0.0)):
            total = sum(weights)
            if not math.isclose(total, target, abs_tol=1e-12):
                raise ValueError(f"SRATableau: {name} sums to {total}, expected {target}")

    @property
    def stages(self) -> int:
        return len(self.alpha)


# Rößler (2010), SRA1: strong order 1.5 for additive noise, deterministic order 2.
SRA1_TABLEAU = SRATableau(
    c0=(0.0, 0.75), c1=(1.0, 0.0),
    a0=((), (0.75,)), b0=((), (1.5,)),
    alpha=(1 / 3, 2 / 3), beta1=(1.0, 0.0), beta2=(-1.0, 1.0),
)


class StochasticRungeKuttaAdditive(ItoScheme):
    """Explicit stochastic Runge–Kutta scheme for additive noise from an :class:`SRATableau`.

    Needs the space-time integral ``U`` from the Brownian path (the driver
    supplies it). Additive noise only, where Itô and Stratonovich agree. Its
    stability function is that of the drift tableau ``(a0, α)``. Reference: A. Rößler, *Runge–Kutta methods for the strong
    approximation of solutions of stochastic differential equations*, SIAM J.
    Numer. Anal. 48(3) (2010), 922–952.
    """

    strong_order = 1.5
    strong_order_additive = 1.5
    weak_order = 2.0
    ode_order = 2.0
    noise_treatment = {"additive": "Σ_i g(t_n + c1_i h)(β1_i ΔW + β2_i U/h), U the space-time Lévy area"}
    needs_levy_area = True

    def __init__(self, tableau: SRATableau):
        if not isinstance(tableau, SRATableau):
            raise ValueError(f"tableau: expected an SRATableau, got {type(tableau).__name__}")
        self.tableau = tableau
        self.drift_evals = tableau.stages
        self.diffusion_evals = len({c for c in tableau.c1})
        self.stability_formula = polynomial_formula(explicit_stability_polynomial(tableau.a0, tableau.alpha))

    def stability_function(self, z):
        return explicit_stability(self.tableau.a0, self.tableau.alpha, z)

    def step(self, sde, t, h, x, dW, ctx):
        tab = self.tableau
        if dW is None:  # ODE: the deterministic RK scheme given by (a0, alpha, c0)
            dW_, U = None, None
        else:
            dW_, U = dW
            U_h = U / h
        g_at = {}

        def g(c):  # additive noise: g depends on time only, evaluated once per distinct node
            if c not in g_at:
                g_at[c] = sde.diffusion(t + c * h, x)
            return g_at[c]

        fs = []
        out = x
        for i in range(tab.stages):
            H = x
            for j in range(i):
                if tab.a0[i][j]:
                    H = H.add(fs[j], alpha=h * tab.a0[i][j])
                if dW_ is not None and tab.b0[i][j]:
                    H = H + tab.b0[i][j] * ctx.noise(g(tab.c1[j]), U_h)
            fs.append(sde.drift(t + tab.c0[i] * h, H))
            out = out.add(fs[i], alpha=h * tab.alpha[i])
            if dW_ is not None and (tab.beta1[i] or tab.beta2[i]):
                out = out + ctx.noise(g(tab.c1[i]), tab.beta1[i] * dW_ + tab.beta2[i] * U_h)
        return out


@register
class SRA1(StochasticRungeKuttaAdditive):
    r"""Rößler's SRA1: strong order 3/2 for additive noise, two drift stages.

    .. math::
        H_1 &= X_n + \tfrac34 h f(t_n, X_n) + \tfrac32 g(t_{n+1}) U/h, \\
        X_{n+1} &= X_n + h\bigl[\tfrac13 f(t_n, X_n) + \tfrac23 f(t_n + \tfrac34 h, H_1)\bigr]
                  + g(t_{n+1})(\Delta W - U/h) + g(t_n)\, U/h,

    with ``U = ∫ (W_u − W_{t_n}) du`` over the step. Additive noise only; ODE
    order 2. Reference: Rößler (2010), Table 5.1 (SRA1).
    """

    def __init__(self):
        super().__init__(SRA1_TABLEAU)
        self.stability_formula = "1 + z + z²/2  (drift part: RK2, a = 3/4, b = 1/3, 2/3)"

    def __repr__(self):
        return "SRA1()"
