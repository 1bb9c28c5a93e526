"""Explicit Runge–Kutta schemes for ODEs, defined by Butcher tableaus."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._base import Scheme, polynomial_formula, register


def explicit_stability(a, b, z):
    """``R(z) = 1 + z bᵀ (I − zA)⁻¹ 1`` of an explicit tableau, by its stage recursion
    ``Y_i = 1 + z Σ_j a_ij Y_j``, ``R = 1 + z Σ_i b_i Y_i`` (floats, arrays or tensors)."""
    ys = []
    for i, row in enumerate(a):
        y = 1
        for j, aij in enumerate(row):
            if aij:
                y = y + z * aij * ys[j]
        ys.append(y)
    return 1 + z * sum(bi * y for bi, y in zip(b, ys) if bi)


def explicit_stability_polynomial(a, b):
    """Coefficients ``(1, bᵀ1, bᵀA1, bᵀA²1, …)`` of the stability polynomial of an explicit tableau."""
    s = len(b)
    coeffs, v = [1.0], [1.0] * s
    for _ in range(s):
        coeffs.append(sum(bi * vi for bi, vi in zip(b, v)))
        v = [sum(a[i][j] * v[j] for j in range(len(a[i]))) for i in range(s)]
    return coeffs


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Butcher tableau, checked at construction (``Σ_j a_ij = c_i``, ``Σ b = 1``)."""

    a: tuple
    b: tuple
    c: tuple
    order: float

    def __post_init__(self):
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(f"ButcherTableau: a, b, c must all have {s} stages")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"ButcherTableau: row {i} of a must have {i} entries (explicit scheme)")
            if not math.isclose(sum(row), self.c[i], abs_tol=1e-12):
                raise ValueError(f"ButcherTableau: row {i} of a sums to {sum(row)}, but c[{i}] = {self.c[i]}")
        if not math.isclose(sum(self.b), 1.0, abs_tol=1e-12):
            raise ValueError(f"ButcherTableau: b sums to {sum(self.b)}, expected 1")


RK4_TABLEAU = ButcherTableau(
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
    order=4.0,
)


class ExplicitRK(Scheme):
    """An explicit Runge–Kutta scheme for ODEs (``noise_type=None``) given by a :class:`ButcherTableau`.

    Neither Itô nor Stratonovich (``sde_type = None``): it refuses SDEs. Its
    stability function is the tableau's polynomial ``1 + z bᵀ(I − zA)⁻¹1``.
    """

    strong_order = None
    weak_order = None
    noise_treatment = {}  # ODEs only
    diffusion_evals = 0

    def __init__(self, tableau: ButcherTableau):
        if not isinstance(tableau, ButcherTableau):
            raise ValueError(f"tableau: expected a ButcherTableau, got {type(tableau).__name__}")
        self.tableau = tableau
        self.ode_order = tableau.order
        self.drift_evals = len(tableau.b)
        self.stability_formula = polynomial_formula(explicit_stability_polynomial(tableau.a, tableau.b))

    def stability_function(self, z):
        return explicit_stability(self.tableau.a, self.tableau.b, z)

    def step(self, sde, t, h, x, dW, ctx):
        tab = self.tableau
        ks = []
        out = x
        for i in range(len(tab.b)):
            y = x
            for j, a in enumerate(tab.a[i]):
                if a:
                    y = y.add(ks[j], alpha=h * a)
            ks.append(sde.drift(t + tab.c[i] * h, y))
            out = out.add(ks[i], alpha=h * tab.b[i])
        return out


@register
class RK4(ExplicitRK):
    """The classical fourth-order Runge–Kutta method, for ODEs. Reference: Hairer, Nørsett & Wanner I, §II.1."""

    def __init__(self):
        super().__init__(RK4_TABLEAU)

    def __repr__(self):
        return "RK4()"
