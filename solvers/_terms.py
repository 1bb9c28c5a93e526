"""The typed form of a problem: what the driver and the schemes see, built once at the boundary.

A user writes a problem in one of several shapes: a :class:`~solvers.SDE`
subclass (``drift``, ``diffusion``, ``noise_type`` and optional parts), a
torchsde-style module (``f``/``g``/``f_and_g``/``g_prod``, ``noise_type``,
``sde_type``), a pair of callables (:func:`~solvers.sde_from_functions`) or a
torchdiffeq-style ``func(t, y)`` (an ODE). :func:`as_terms` turns any of them,
once, into one frozen :class:`Terms`, checking the declared structure as it
goes; past that point no code asks an object which methods it has. diffrax
builds its ``ODETerm``/``ControlTerm`` the same way.

The SDE is ``dX = f(t, X) dt + g(t, X) ∘ dW`` (``∘``: Itô or Stratonovich,
``sde_type``), with, where the problem states them,

* a drift split ``f = f₁ + f₂`` (``drift_split``, for
  :class:`~solvers.TwoStepEuler`);
* a linear part ``f = A(t) X + N(t, X)`` (``linear``, ``nonlinear``,
  ``linear_only`` when ``N = 0``), its exact transition
  ``Λ = ∫_s^t A``, ``V = ∫_s^t e^{2∫_u^t A} du`` (``linear_transition``) and,
  for ``N(t, x) = c(t) M(t, x)``, the exact weight ``∫_s^t e^{Λ(u, t)} c(u) du``
  (``nonlinear_weight``) with ``M`` (``nonlinear_profile``; absent: ``M = 1``,
  an affine forcing);
* ``∂g_i/∂x_i`` for diagonal noise (``diffusion_derivative``);
* the number ``m`` of Brownian motions of general noise (``brownian_size``).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import torch

NOISE_TYPES = ("diagonal", "additive", "scalar", "general")
SDE_TYPES = ("ito", "stratonovich")

__all__ = ["Terms", "declared", "check_types", "NOISE_TYPES", "SDE_TYPES"]

# The optional parts of the SDE protocol, read once by ``declared``. ``noise`` is the deprecated name of
# ``noise_type``.
OPTIONAL = ("noise_type", "noise", "sde_type", "drift_parts", "drift_part1", "drift_part2", "linear", "nonlinear",
            "linear_only", "linear_transition", "nonlinear_weight", "nonlinear_profile", "diffusion_derivative",
            "brownian_size")

_ABSENT = object()


def declared(obj, names=OPTIONAL) -> dict:
    """The parts of ``names`` that ``obj`` defines, as ``{name: value}``.

    This is the one place that asks a user's object which optional names it
    has: a user's problem is duck-typed by design (torchsde and torchdiffeq
    objects are accepted unchanged), and :func:`as_terms` turns the answer into
    typed fields once.
    """
    out = {}
    for name in names:
        value = getattr(obj, name, _ABSENT)  # probe: the boundary that reads a duck-typed user object
        if value is not _ABSENT:
            out[name] = value
    return out


def _noise_type(parts, what) -> Optional[str]:
    """``noise_type`` from the declared parts; the older ``noise`` with a DeprecationWarning."""
    if "noise_type" in parts:
        return parts["noise_type"]
    if "noise" in parts:
        warnings.warn(f"{what}: the attribute 'noise' is deprecated; name it 'noise_type'", DeprecationWarning,
                      stacklevel=4)
        return parts["noise"]
    return "diagonal"


def check_types(noise_type, sde_type, what="sde"):
    if noise_type is not None and noise_type not in NOISE_TYPES:
        raise ValueError(f"{what}: noise_type={noise_type!r} is not one of {NOISE_TYPES} (or None for an ODE)")
    if sde_type not in SDE_TYPES:
        raise ValueError(f"{what}: sde_type={sde_type!r} is not one of {SDE_TYPES}")


@dataclass(frozen=True, eq=False)
class Terms:
    """One problem in typed form: every field a scheme may use, ``None`` where the problem does not state it.

    ``drift(t, x)`` and ``diffusion(t, x)`` take ``t`` as a Python float;
    ``diffusion`` is ``None`` for an ODE (``noise_type=None``). The shapes of
    their outputs are those of :mod:`solvers._sde`. ``problem`` is the object
    the terms were built from (named in messages; a scheme with its own problem
    type, such as a diffusion sampler, steps it directly).
    """

    drift: Callable[[float, torch.Tensor], torch.Tensor]
    diffusion: Optional[Callable[[float, torch.Tensor], Any]]
    noise_type: Optional[str]
    sde_type: str = "ito"
    drift_split: Optional[Tuple[Callable, Callable]] = None
    linear: Optional[Callable[[float], Any]] = None
    nonlinear: Optional[Callable[[float, torch.Tensor], torch.Tensor]] = None
    linear_only: bool = False
    linear_transition: Optional[Callable[[float, float], tuple]] = None
    nonlinear_weight: Optional[Callable[[float, float], Any]] = None
    nonlinear_profile: Optional[Callable[[float, torch.Tensor], torch.Tensor]] = None
    diffusion_derivative: Optional[Callable[[float, torch.Tensor], torch.Tensor]] = None
    brownian_size: Optional[int] = None
    problem: Any = None
    converted_from: Any = None  # the problem in the other calculus, when the drift was converted

    @property
    def name(self) -> str:
        """The problem's class name, for messages."""
        return type(self.problem).__name__ if self.problem is not None else "Terms"

    def nonlinear_part(self, t, x):
        """``N(t, x)``: ``nonlinear(t, x)`` when stated, else ``drift(t, x) - A(t) x``."""
        if self.nonlinear is not None:
            return self.nonlinear(t, x)
        a = self.linear(t)
        return self.drift(t, x) - (a.to(x) if isinstance(a, torch.Tensor) else a) * x

    def replace(self, **changes) -> "Terms":
        return dataclasses.replace(self, **changes)


def _split(parts):
    """``(f₁, f₂)`` from ``drift_part1``/``drift_part2`` or ``drift_parts`` (each part on its own when stated)."""
    both = parts.get("drift_parts")
    p1, p2 = parts.get("drift_part1"), parts.get("drift_part2")
    if p1 is None and p2 is None and both is None:
        return None
    if both is None and (p1 is None or p2 is None):
        raise ValueError("sde: defines only one of drift_part1/drift_part2; define both, or drift_parts(t, x)")
    first = p1 if p1 is not None else (lambda t, x: both(t, x)[0])
    second = p2 if p2 is not None else (lambda t, x: both(t, x)[1])
    return first, second


def _from_protocol(obj, what="sde") -> Terms:
    """Terms of an object with ``drift`` (and ``diffusion`` unless an ODE) and the optional parts."""
    parts = declared(obj)
    noise_type = _noise_type(parts, what)
    sde_type = parts.get("sde_type", "ito")
    check_types(noise_type, sde_type, what)
    diffusion = declared(obj, ("diffusion",)).get("diffusion") if noise_type is not None else None
    if noise_type is not None and diffusion is None:
        raise ValueError(f"{what}: {type(obj).__name__} has noise_type={noise_type!r} but no diffusion(t, x)")
    m = parts.get("brownian_size")
    if m is not None and not (isinstance(m, int) and m >= 1):
        raise ValueError(f"{what}: brownian_size={m!r}; expected a positive int (the number of Brownian motions)")
    linear = parts.get("linear")
    return Terms(drift=obj.drift, diffusion=diffusion, noise_type=noise_type, sde_type=sde_type,
                 drift_split=_split(parts), linear=linear,
                 nonlinear=parts.get("nonlinear") if linear is not None else None,
                 linear_only=bool(parts.get("linear_only", False)) and linear is not None,
                 linear_transition=parts.get("linear_transition") if linear is not None else None,
                 nonlinear_weight=parts.get("nonlinear_weight") if linear is not None else None,
                 nonlinear_profile=parts.get("nonlinear_profile") if linear is not None else None,
                 diffusion_derivative=parts.get("diffusion_derivative"), brownian_size=m, problem=obj)
