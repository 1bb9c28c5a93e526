"""Scheme base classes and the per-solve context the driver hands to every step.

A scheme is a stateless object that carries its own facts as class attributes
and methods (diffrax puts its ``term_structure`` and Itô/Stratonovich markers
on each solver the same way):

* what it converges to: :class:`ItoScheme` or :class:`StratonovichScheme`
  (``sde_type``), or neither for an ODE-only scheme (``sde_type = None``);
* which noise types it takes and how it treats each (``noise_treatment``), and
  its strong order per noise type (:meth:`Scheme.order_for`), weak order and
  ODE order;
* what it needs from the SDE: a linear part (``needs_linear``), the space-time
  Lévy area (``needs_levy_area``), an optional drift split
  (``uses_drift_split``);
* its linear stability function ``R(z)`` on ``x' = λx``, ``z = hλ``
  (:meth:`Scheme.stability_function`, ``stability_formula``) and, where known,
  its one-step mean-square factor on ``dX = λX dt + μX dW``
  (:meth:`Scheme.ms_stability_factor`, ``ms_stability_formula``).

The driver (:func:`solvers.sdeint`) turns the user's problem into typed
:class:`~solvers._terms.Terms` once, calls :meth:`Scheme.check` once, before
the first step (``supports`` is the boolean form), converts the drift when the
SDE is written in the other calculus (:meth:`Scheme.prepare`), and then calls
``scheme.step(terms, t, h, x, dW, ctx)`` on every step: a scheme reads the
drift, diffusion and optional parts as fields of the terms, never by asking the
user's object. ``dW`` is the Brownian
increment over ``[t, t + h]`` already shaped to broadcast against the
diffusion (``None`` for an ODE); schemes with ``needs_levy_area`` receive the
pair ``(dW, U)`` with ``U = ∫_t^{t+h} (W_u - W_t) du``.
"""

from __future__ import annotations

import math

import torch

from ._convert import as_terms, with_sde_type
from ._terms import Terms

__all__ = ["Scheme", "ItoScheme", "StratonovichScheme", "Context", "SCHEMES", "register"]

SCHEMES: dict = {}
"""Name → scheme class: every scheme that can be built from its name alone (command lines, config files).
Filled by :func:`register` where each scheme is defined, in import order."""


def register(cls):
    """Class decorator: make a scheme nameable under its class name in :data:`SCHEMES`.

    Used where the scheme is defined (``@register`` above the class), so a new
    scheme file is all it takes for the CLI, the bench configuration and the
    HVAE to see it. The class must build with no arguments (its defaults).
    """
    if not (isinstance(cls, type) and issubclass(cls, Scheme)):
        raise TypeError(f"register: expected a Scheme subclass, got {cls!r}")
    if SCHEMES.get(cls.__name__, cls) is not cls:
        raise ValueError(f"register: a scheme named {cls.__name__!r} is already registered ({SCHEMES[cls.__name__]!r})")
    SCHEMES[cls.__name__] = cls
    return cls


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

    Class attributes that tests, the driver and the bench read:

    ``sde_type``              ``"ito"``, ``"stratonovich"`` or ``None`` (ODE only); set by the
                              marker base classes :class:`ItoScheme` / :class:`StratonovichScheme`
    ``strong_order``          strong order for the non-additive noise types it supports
    ``strong_order_additive`` strong order for additive noise (default: ``strong_order``)
    ``strong_order_commutative`` strong order for diagonal and scalar noise (default: ``strong_order``),
                              for schemes that reach a higher order on commutative noise than on general noise
    ``weak_order``            weak order
    ``weak_order_additive``   weak order for additive noise (default: ``weak_order``)
    ``ode_order``             classical order on ODEs (``None``: does not solve ODEs)
    ``noise_treatment``       noise type → how the scheme treats it (its keys are ``noise_types``)
    ``needs_levy_area``       wants ``(dW, U)`` instead of ``dW``
    ``needs_linear``          needs the linear part ``terms.linear``
    ``uses_drift_split``      uses the drift split ``terms.drift_split`` when given
    ``stability_formula``     ``R(z)`` as text; ``stability_function(z)`` computes it
    ``ms_stability_formula``  the mean-square condition as text (``None``: not stated)
    ``drift_evals``, ``diffusion_evals``  evaluations per step, for the NFE count
    """

    sde_type: str | None = None
    strong_order: float | None = 0.5
    strong_order_additive: float | None = None
    strong_order_commutative: float | None = None
    weak_order: float | None = 1.0
    weak_order_additive: float | None = None
    ode_order: float | None = 1.0
    noise_treatment: dict = {}
    needs_levy_area: bool = False
    needs_linear: bool = False
    uses_drift_split: bool = False
    stability_formula: str | None = None
    ms_stability_formula: str | None = None
    drift_evals: int = 1
    diffusion_evals: int = 1
    compiled: bool = False  # True for a step run through torch.compile (the driver then skips its shape check)

    @property
    def noise_types(self) -> frozenset:
        """The noise types this scheme solves (the keys of ``noise_treatment``)."""
        return frozenset(self.noise_treatment)

    @property
    def name(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ orders

    def order_for(self, noise) -> float:
        """The strong order to expect for a given noise type (``None``: ODE order)."""
        if noise is None:
            return self.ode_order
        if noise == "additive" and self.strong_order_additive is not None:
            return self.strong_order_additive
        if noise in ("diagonal", "scalar") and self.strong_order_commutative is not None:
            return self.strong_order_commutative
        return self.strong_order

    def weak_order_for(self, noise) -> float:
        """The weak order to expect for a given noise type (``None``: ODE order)."""
        if noise is None:
            return self.ode_order
        if noise == "additive" and self.weak_order_additive is not None:
            return self.weak_order_additive
        return self.weak_order

    # ------------------------------------------------------------------ stability

    def stability_function(self, z):
        """``R(z)``: one step of ``x' = λx`` from ``x = 1`` with ``z = hλ`` (floats or complex tensors)."""
        raise NotImplementedError(f"{self.name} states no stability function")

    def ms_stability_factor(self, hl, hmu2):
        """``E|X_1|²`` after one step of ``dX = λX dt + μX dW`` from ``X_0 = 1`` as a function of
        ``(hλ, hμ²)`` (floats or arrays), or ``None`` where no closed form is stated."""
        return None

    # ------------------------------------------------------------------ compatibility

    def incompatibility(self, sde, shape=None) -> str | None:
        """Why this scheme cannot solve ``sde`` for states of ``shape`` (``None`` if it can).

        ``sde`` is any problem :func:`~solvers._convert.as_terms` accepts, or its
        terms. Only the declared structure is read (no drift or diffusion is
        evaluated), so this is free to call before any work.
        """
        try:
            terms = as_terms(sde)
        except ValueError as err:  # a declared type out of range
            return str(err)
        noise = terms.noise_type
        if noise is None:
            if self.ode_order is None:
                return f"solver {self.name} does not solve ODEs, but sde {terms.name} is an ODE (noise_type=None)"
        elif noise not in self.noise_types:
            return (f"solver {self.name} supports noise types {sorted(self.noise_types)}, but sde {terms.name} "
                    f"has noise_type={noise!r}")
        if self.needs_linear and terms.linear is None:
            return f"solver {self.name} needs the linear part of the drift, but sde {terms.name} defines no linear(t)"
        return None

    def supports(self, sde, shape=None) -> bool:
        """Whether this scheme can solve ``sde`` for states of ``shape`` (see :meth:`incompatibility`)."""
        return self.incompatibility(sde, shape) is None

    def check(self, sde, shape=None) -> None:
        """Raise ``ValueError`` (naming solver and SDE) if this scheme cannot solve ``sde``."""
        reason = self.incompatibility(sde, shape)
        if reason is not None:
            raise ValueError(reason)

    def prepare(self, sde) -> Terms:
        """The terms this scheme should step: the typed terms of ``sde`` (see
        :func:`~solvers._convert.as_terms`) or, when ``sde_type`` is the other calculus and the noise is
        not additive, those terms with the drift converted (``f_Itô = f_Strat + ½ Σ_k (∂g_k/∂x) g_k``,
        by autograd; see :func:`solvers.with_sde_type`)."""
        terms = as_terms(sde)
        if self.sde_type is None or terms.noise_type in (None, "additive") or terms.sde_type == self.sde_type:
            return terms
        return as_terms(with_sde_type(terms, self.sde_type))

    def operand(self, terms: Terms):
        """What :meth:`step` receives for ``terms`` (after :meth:`prepare`): the terms themselves. A scheme
        that steps a problem type of its own (a diffusion sampler) returns ``terms.problem``."""
        return terms

    def step(self, sde, t: float, h: float, x: torch.Tensor, dW, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}()"


class ItoScheme(Scheme):
    """Marker: the scheme converges to the Itô solution (Stratonovich SDEs get their drift converted)."""

    sde_type = "ito"


class StratonovichScheme(Scheme):
    """Marker: the scheme converges to the Stratonovich solution (Itô SDEs get their drift converted)."""

    sde_type = "stratonovich"


def polynomial_formula(coeffs) -> str:
    """``1 + z + z²/2 + …`` from the coefficients ``(1, 1, 1/2, …)`` of a stability polynomial."""
    from fractions import Fraction

    sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    terms = []
    for k, c in enumerate(coeffs):
        c = Fraction(c).limit_denominator(10**6)
        if c == 0:
            continue
        power = "" if k == 0 else ("z" if k == 1 else f"z{str(k).translate(sup)}")
        if k == 0:
            terms.append(str(c))
        elif c.numerator == 1:
            terms.append(power + (f"/{c.denominator}" if c.denominator != 1 else ""))
        else:
            terms.append(f"{c.numerator}{power}" + (f"/{c.denominator}" if c.denominator != 1 else ""))
    return " + ".join(terms) if terms else "0"


def exp_(z):
    """``exp`` for floats, numpy arrays and tensors."""
    if isinstance(z, torch.Tensor):
        return torch.exp(z)
    if isinstance(z, (int, float)):
        return math.exp(z)
    import numpy as np

    return np.exp(z)

