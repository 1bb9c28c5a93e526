"""Scheme base class and the per-solve context the driver hands to every step.

A scheme is a stateless object with declared orders and needs; the driver
(:func:`solvers.sdeint`) checks compatibility once, before the first step, and
then calls ``scheme.step(sde, t, h, x, dW, ctx)`` on every step. ``dW`` is the
Brownian increment over ``[t, t + h]`` already shaped to broadcast against the
diffusion (``None`` for an ODE); schemes with ``needs_levy_area`` receive the
pair ``(dW, U)`` with ``U = ∫_t^{t+h} (W_u - W_t) du``.
"""

from __future__ import annotations

import torch

from ._sde import NOISE_TYPES

__all__ = ["Scheme", "Context"]


class Context:
    """What a step needs to know about the noise structure of one solve.

    ``ctx.noise(g, dW)`` is the noise term ``g dW`` for the SDE's noise type;
    ``ctx.add_noise(y, g, dW)`` returns ``y + g dW`` (fused where possible).
    ``ctx.extra_nfe`` counts function evaluations a scheme makes beyond its
    declared per-step counts (Newton iterations, say).
    """

    __slots__ = ("general", "tensor_g", "extra_nfe", "noise_type")

    def __init__(self, noise_type, general, tensor_g):
        self.noise_type = noise_type
        self.general = general
        self.tensor_g = tensor_g
        self.extra_nfe = 0

    def noise(self, g, dW):
        if self.general:
            return (g * dW).sum(-1)
        return g * dW

    def add_noise(self, y, g, dW):
        if self.general:
            return y + (g * dW).sum(-1)
        if self.tensor_g:
            return torch.addcmul(y, g, dW)
        return y + g * dW


class Scheme:
    """Base class of all schemes.

    Class attributes that tests and the driver read:

    ``strong_order``          strong order for the general noise types it supports
    ``strong_order_additive`` strong order for additive noise (default: ``strong_order``)
    ``weak_order``            weak order
    ``ode_order``             classical order on ODEs (``None``: does not solve ODEs)
    ``noise_types``           the noise types it supports
    ``needs_levy_area``       wants ``(dW, U)`` instead of ``dW``
    ``needs_linear``          needs ``sde.linear(t)``
    ``drift_evals``, ``diffusion_evals``  evaluations per step, for the NFE count
    """

    strong_order: float = 0.5
    strong_order_additive: float | None = None
    weak_order: float = 1.0
    ode_order: float | None = 1.0
    noise_types: frozenset = frozenset(NOISE_TYPES)
    needs_levy_area: bool = False
    needs_linear: bool = False
    drift_evals: int = 1
    diffusion_evals: int = 1

    @property
    def name(self) -> str:
        return type(self).__name__

    def order_for(self, noise) -> float:
        """The strong order to expect for a given noise type (``None``: ODE order)."""
        if noise is None:
            return self.ode_order
        if noise == "additive" and self.strong_order_additive is not None:
            return self.strong_order_additive
        return self.strong_order

    def check(self, sde) -> None:
        """Raise ``ValueError`` (naming solver and SDE) if this scheme cannot solve ``sde``."""
        noise = getattr(sde, "noise", "diagonal")
        sde_name = type(sde).__name__
        if noise is None:
            if self.ode_order is None:
                raise ValueError(f"solver {self.name} does not solve ODEs, but sde {sde_name} is an ODE "
                                 f"(noise=None)")
        elif noise not in self.noise_types:
            raise ValueError(f"solver {self.name} supports noise types {sorted(self.noise_types)}, but sde "
                             f"{sde_name} has noise={noise!r}")
        if self.needs_linear and not hasattr(sde, "linear"):
            raise ValueError(f"solver {self.name} needs the linear part of the drift, but sde {sde_name} "
                             f"defines no linear(t)")

    def step(self, sde, t: float, h: float, x: torch.Tensor, dW, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}()"
