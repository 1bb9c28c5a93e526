"""The linear test equation of stability analysis, ``dX = λ X dt + μ X dW``."""

from __future__ import annotations

import torch

import solvers


class LinearTestEquation(solvers.SDE):
    """``dX = λ X dt + μ X dW``: geometric Brownian motion, and the ODE ``x' = λx`` when ``μ is None``.

    ``λ`` and ``μ`` are floats or tensors broadcastable to the state (complex
    ``λ`` works for schemes built from plain arithmetic: one ``step`` on
    ``x = 1`` gives the amplification factor ``R(hλ)``). Declares its linear
    part (``linear_only``), so exponential and drift-implicit schemes solve it
    exactly in the drift, and ``∂g/∂x = μ`` for Milstein. Mean-square stability
    of Euler–Maruyama: ``|1 + hλ|² + hμ² < 1``.
    """

    linear_only = True

    def __init__(self, lam, mu=None):
        self.lam, self.mu = lam, mu
        self.noise_type = None if mu is None else "diagonal"

    def drift(self, t, x):
        return self.lam * x

    def diffusion(self, t, x):
        return None if self.mu is None else self.mu * x

    def diffusion_derivative(self, t, x):
        return torch.as_tensor(self.mu, dtype=x.dtype, device=x.device).expand_as(x)

    def linear(self, t):
        return self.lam
