"""What every diffusion sampler scheme shares: the per-coordinate step quantities and the NFE budget."""

from __future__ import annotations

import math

import torch

import solvers

from .._problem import DenoisingProblem

__all__ = ["SamplerScheme", "StepEnds"]


class StepEnds:
    """Per-coordinate quantities of one step ``u → u + h`` (``t₁ → t₂``, ``t₁ > t₂``).

    ``rho = e^{-(λ₂ - λ₁)} = σ₂α₁/(σ₁α₂)`` is computed as a ratio, never through
    ``λ``, so a step onto ``σ₂ = 0`` gives ``rho = 0`` exactly (no ``log 0``);
    ``h = λ₂ - λ₁`` is then ``+∞`` and ``final`` is true.
    """

    __slots__ = ("a1", "s1", "a2", "s2", "rho", "h", "final")

    def __init__(self, sde, u, h):
        self.a1, self.s1 = sde.alpha_sigma(u)
        self.a2, self.s2 = sde.alpha_sigma(u + h)
        self.rho = (self.s2 * self.a1) / (self.s1 * self.a2)
        self.final = sde.reaches_zero(u + h)
        self.h = -torch.log(self.rho)


class SamplerScheme(solvers.Scheme):
    """Base of the diffusion samplers: stateless step rules on a :class:`~mrdiffusion.sampling.DenoisingProblem`.

    ``evals_per_step`` model evaluations per step; a step onto ``σ = 0`` costs
    ``final_evals`` (a lower-order final step). ``stochastic`` schemes receive
    ``ΔW`` over the step in ``u`` and use ``ξ = ΔW/√h``.
    """

    strong_order = 0.5
    weak_order = 1.0
    ode_order = 1.0
    noise_treatment = {"additive": "ξ = ΔW/√h over the step in u, scaled by the scheme's own noise coefficient"}
    evals_per_step = 1
    final_evals = 1
    stochastic = False

    def incompatibility(self, sde, shape=None):
        problem = sde.problem if isinstance(sde, solvers.Terms) else sde
        if not isinstance(problem, DenoisingProblem):
            return (f"solver {self.name} samples diffusions: it needs a DenoisingProblem (denoise(), "
                    f"alpha_sigma()), such as the one mrdiffusion.sampling.sample builds; got "
                    f"{type(problem).__name__}")
        return super().incompatibility(sde, shape)

    def operand(self, terms):
        """A sampler steps the :class:`~mrdiffusion.sampling.DenoisingProblem` itself (its model, its grid)."""
        return terms.problem

    def steps_for(self, nfe, to_zero=True):
        """The most steps whose model evaluations fit in ``nfe`` (at least one)."""
        if to_zero:
            return max(1, 1 + (nfe - self.final_evals) // self.evals_per_step)
        return max(1, nfe // self.evals_per_step)

    @staticmethod
    def xi(dW, h):
        return dW / math.sqrt(h)
