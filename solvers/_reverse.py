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
from ._sde import noise_type_of

__all__ = ["ReversedSDE", "ReversedBrownian"]


class ReversedSDE:
    """``τ ↦ (-f(-τ, y), g(-τ, y))``; the linear part and drift split follow, ``linear_transition`` does not."""

    def __init__(self, sde):
        self.sde = sde
        self.noise = self.noise_type = noise_type_of(sde)
        if hasattr(sde, "brownian_size"):
            self.brownian_size = sde.brownian_size
        if hasattr(sde, "linear"):
            self.linear = lambda t: -sde.linear(-t)
            self.linear_only = getattr(sde, "linear_only", False)
            if hasattr(sde, "nonlinear"):
                self.nonlinear = lambda t, x: -sde.nonlinear(-t, x)
        if hasattr(sde, "drift_part1") and hasattr(sde, "drift_part2"):
            self.drift_part1 = lambda t, x: -sde.drift_part1(-t, x)
            self.drift_part2 = lambda t, x: -sde.drift_part2(-t, x)
        elif hasattr(sde, "drift_parts"):
            self.drift_parts = lambda t, x: tuple(-f for f in sde.drift_parts(-t, x))
        if hasattr(sde, "diffusion_derivative"):
            self.diffusion_derivative = lambda t, x: sde.diffusion_derivative(-t, x)

    def drift(self, t, x):
        return -self.sde.drift(-t, x)

    def diffusion(self, t, x):
        return self.sde.diffusion(-t, x)

    def __repr__(self) -> str:
        return f"ReversedSDE({self.sde!r})"


class ReversedBrownian(BrownianSource):
    """``B(τ) = W(-τ)``: ``B(t) - B(s) = -(W(-s) - W(-t))`` and ``U_B = U_W - h dW`` over the mirrored step."""

    def __init__(self, source):
        self.source = source
        self.has_levy_area = getattr(source, "has_levy_area", False)
        self.shape = getattr(source, "shape", None)
        t0, t1 = getattr(source, "t0", None), getattr(source, "t1", None)
        self.t0, self.t1 = (None, None) if t0 is None or t1 is None else (-t1, -t0)

    def increment(self, s, t) -> torch.Tensor:
        return -self.source.increment(-t, -s)

    def space_time(self, s, t):
        # ∫_s^t (B_u - B_s) du = ∫_{-t}^{-s} (W_v - W_{-s}) dv = U_W - h (W_{-s} - W_{-t})
        dW, U = self.source.space_time(-t, -s)
        return -dW, U - (t - s) * dW
