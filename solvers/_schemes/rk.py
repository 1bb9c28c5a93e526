"""Explicit Runge–Kutta schemes for ODEs, defined by Butcher tableaus."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._base import Scheme


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
    """An explicit Runge–Kutta scheme for ODEs (``noise=None``) given by a :class:`ButcherTableau`."""

    strong_order = None
    weak_order = None
    noise_types = frozenset()
    diffusion_evals = 0

    def __init__(self, tableau: ButcherTableau):
        if not isinstance(tableau, ButcherTableau):
            raise ValueError(f"tableau: expected a ButcherTableau, got {type(tableau).__name__}")
        self.tableau = tableau
        self.ode_order = tableau.order
        self.drift_evals = len(tableau.b)

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


class RK4(ExplicitRK):
    """The classical fourth-order Runge–Kutta method, for ODEs. Reference: Hairer, Nørsett & Wanner I, §II.1."""

    def __init__(self):
        super().__init__(RK4_TABLEAU)

    def __repr__(self):
        return "RK4()"
