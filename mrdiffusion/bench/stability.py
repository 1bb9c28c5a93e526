"""Linear and mean-square stability of every scheme, computed by running ``scheme.step`` itself.

- Linear stability: one step of ``x' = λx`` with ``h = 1`` from ``x = 1`` on a
  grid of complex ``z = hλ`` gives the amplification factor ``R(z)``; the
  scheme is stable where ``|R(z)| ≤ 1``. The closed forms in :data:`CLOSED_FORMS`
  are what the plot overlays (dashed) and the tests compare against.
- Mean-square stability: one step of ``dX = λX dt + μX dW`` (real λ, μ) with
  ``h = 1`` from ``X = 1``; ``E|X_1|²`` by 3-point Gauss–Hermite quadrature in
  the normal increment, exact for schemes whose step is a polynomial of degree
  ≤ 2 in ``ΔW`` (all of ours). Stable where ``E|X_1|² < 1``.
"""

from __future__ import annotations

import math

import torch

import solvers
from mrdiffusion.processes import LinearTestEquation

__all__ = ["CLOSED_FORMS", "MS_CLOSED_FORMS", "amplification", "ms_factor", "real_stability_interval"]

CLOSED_FORMS = {
    "EulerMaruyama": ("1 + z", lambda z: 1 + z),
    "TwoStepEuler": ("1 + z + z²/4  (default split f/2 + f/2)", lambda z: 1 + z + z * z / 4),
    "Heun": ("1 + z + z²/2", lambda z: 1 + z + z * z / 2),
    "Milstein": ("1 + z  (= Euler on ODEs)", lambda z: 1 + z),
    "SRA1": ("1 + z + z²/2  (drift part: RK2, a = 3/4, b = 1/3, 2/3)", lambda z: 1 + z + z * z / 2),
    "ExponentialEuler": ("exp(z)  (A-stable)", lambda z: torch.exp(z) if isinstance(z, torch.Tensor) else math.exp(z)),
    "DriftImplicitEuler": ("1 / (1 − z)  (A-stable)", lambda z: 1 / (1 - z)),
    "RK4": ("1 + z + z²/2 + z³/6 + z⁴/24", lambda z: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24),
}
"""Scheme name → (formula, function) of the amplification factor on ``x' = λx``, ``z = hλ``."""

MS_CLOSED_FORMS = {
    "EulerMaruyama": ("|1 + hλ|² + hμ² < 1", lambda a, b: (1 + a) ** 2 + b),
    "DriftImplicitEuler": ("(1 + hμ²) / (1 − hλ)² < 1", lambda a, b: (1 + b) / (1 - a) ** 2),
}
"""Scheme name → (condition, function of (hλ, hμ²)) of the one-step mean-square growth factor."""


def amplification(scheme, z):
    """``R(z)`` of ``scheme`` (an instance) for complex ``z = hλ`` (any tensor shape), from one ``step``."""
    z = torch.as_tensor(z, dtype=torch.complex128).reshape(-1)
    ctx = solvers.Context(None, False, False)
    out = scheme.step(LinearTestEquation(z), 0.0, 1.0, torch.ones_like(z), None, ctx)
    return out


def ms_factor(scheme, hl, hmu2):
    """``E|X_1|²`` after one step of ``dX = λX dt + μX dW`` from ``X_0 = 1``, ``h = 1``; flat float tensors."""
    hl = torch.as_tensor(hl, dtype=torch.float64).reshape(-1)
    mu = torch.as_tensor(hmu2, dtype=torch.float64).reshape(-1).clamp(min=0).sqrt()
    sde = LinearTestEquation(hl, mu)
    ctx = solvers.Context("diagonal", False, True)
    total = torch.zeros_like(hl)
    for xi, w in ((-math.sqrt(3.0), 1 / 6), (0.0, 2 / 3), (math.sqrt(3.0), 1 / 6)):
        x1 = scheme.step(sde, 0.0, 1.0, torch.ones_like(hl), torch.full_like(hl, xi), ctx)
        total = total + w * x1.square()
    return total


def real_stability_interval(scheme, *, limit=1e3):
    """The largest ``x`` with ``|R(−y)| ≤ 1`` for every ``y ∈ [0, x]`` (``inf`` beyond ``limit``)."""
    ys = torch.linspace(0.0, limit, 200_001, dtype=torch.float64)
    r = amplification(scheme, -ys).abs()
    bad = (r > 1 + 1e-12).nonzero()
    return math.inf if bad.numel() == 0 else float(ys[int(bad[0])] - ys[1])
