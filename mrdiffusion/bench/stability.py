"""Linear and mean-square stability of every scheme, computed by running ``scheme.step`` itself.

- Linear stability: one step of ``x' = λx`` with ``h = 1`` from ``x = 1`` on a
  grid of complex ``z = hλ`` gives the amplification factor ``R(z)``; the
  scheme is stable where ``|R(z)| ≤ 1``. Each scheme states its closed form
  (``scheme.stability_function``, ``scheme.stability_formula``): that is what
  the plot overlays (dashed) and the tests compare against.
- Mean-square stability: one step of ``dX = λX dt + μX dW`` (real λ, μ) with
  ``h = 1`` from ``X = 1``; ``E|X_1|²`` by 3-point Gauss–Hermite quadrature in
  the normal increment, exact for schemes whose step is a polynomial of degree
  ≤ 2 in ``ΔW`` (all of ours). Stable where ``E|X_1|² < 1``. Closed forms,
  where a scheme states one: ``scheme.ms_stability_factor``,
  ``scheme.ms_stability_formula``.
"""

from __future__ import annotations

import math

import torch

import solvers
from mrdiffusion.processes import LinearTestEquation

__all__ = ["amplification", "ms_factor", "real_stability_interval"]


def amplification(scheme, z):
    """``R(z)`` of ``scheme`` (an instance) for complex ``z = hλ`` (any tensor shape), from one ``step``."""
    z = torch.as_tensor(z, dtype=torch.complex128).reshape(-1)
    ctx = solvers.Context(None, False, False)
    out = scheme.step(scheme.prepare(LinearTestEquation(z)), 0.0, 1.0, torch.ones_like(z), None, ctx)
    return out


def ms_factor(scheme, hl, hmu2):
    """``E|X_1|²`` after one step of ``dX = λX dt + μX dW`` from ``X_0 = 1``, ``h = 1``; flat float tensors.

    A Stratonovich scheme steps the equation with its drift converted (``scheme.prepare``).
    """
    hl = torch.as_tensor(hl, dtype=torch.float64).reshape(-1)
    mu = torch.as_tensor(hmu2, dtype=torch.float64).reshape(-1).clamp(min=0).sqrt()
    sde = scheme.prepare(LinearTestEquation(hl, mu))
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
