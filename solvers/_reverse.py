"""Reverse-time integration (a decreasing ``ts``) as a forward solve in ``τ = -t``.

With ``Y(τ) = X(-τ)``, the Itô SDE ``dX = f(t, X) dt + g(t, X) dW`` solved from
``t = a`` down to ``b < a`` becomes ``dY = -f(-τ, Y) dτ + g(-τ, Y) dB`` for
``τ`` from ``-a`` up to ``-b``, with ``B(τ) = W(-τ)``. Every scheme then steps
forward with ``h > 0`` and ``dB² ≈ h``, as it would on any SDE. For an ODE this
is exact (torchdiffeq's reverse-time ``odeint``); for an SDE it is the
convention of score-based samplers, where time runs from ``T`` down to 0 and the
noise is a Brownian motion in the reversed time.
"""

from __future__ import annotations

import torch

from ._brownian import BrownianSource
from ._terms import Terms

__all__ = ["reversed_terms", "ReversedBrownian"]


def _negated(fn):
    return None if fn is None else (lambda t, x: -fn(-t, x))


def reversed_terms(terms: Terms) -> Terms:
    """``τ ↦ (-f(-τ, y), g(-τ, y))``; the linear part, the nonlinear part and the drift split follow.

    ``linear_transition`` and the exact weight of a forcing are dropped (they
    are integrals over ``[s, t]`` in the caller's time; exponential schemes fall
    back to the mid-step linear part).
    """
    drift, diffusion, linear = terms.drift, terms.diffusion, terms.linear
    derivative = terms.diffusion_derivative
    split = None if terms.drift_split is None else tuple(_negated(part) for part in terms.drift_split)
    return terms.replace(
        drift=lambda t, x: -drift(-t, x),
        diffusion=None if diffusion is None else (lambda t, x: diffusion(-t, x)),
        drift_split=split,
        linear=None if linear is None else (lambda t: -linear(-t)),
        nonlinear=_negated(terms.nonlinear),
        linear_transition=None, nonlinear_weight=None, nonlinear_profile=None,
        diffusion_derivative=None if derivative is None else (lambda t, x: derivative(-t, x)))


class ReversedBrownian(BrownianSource):
    """``B(τ) = W(-τ)``: ``B(t) - B(s) = -(W(-s) - W(-t))`` and ``U_B = U_W - h dW`` over the mirrored step."""

    def __init__(self, source):
        self.source = source  # a BrownianSource (the driver normalises it first)
        self.has_levy_area = source.has_levy_area
        self.shape = source.shape
        t0, t1 = source.t0, source.t1
        self.t0, self.t1 = (None, None) if t0 is None or t1 is None else (-t1, -t0)

    def increment(self, s, t) -> torch.Tensor:
        return -self.source.increment(-t, -s)

    def space_time(self, s, t):
        # ∫_s^t (B_u - B_s) du = ∫_{-t}^{-s} (W_v - W_{-s}) dv = U_W - h (W_{-s} - W_{-t})
        dW, U = self.source.space_time(-t, -s)
        return -dW, U - (t - s) * dW
