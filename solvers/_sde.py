"""The SDE protocol a user writes to, the :class:`SDE` base class, and the plain-function and ODE adapters.

The driver and the schemes never read this protocol directly: :func:`solvers.as_terms`
(:mod:`solvers._convert`) turns a problem into typed :class:`~solvers._terms.Terms` once,
at the boundary; the change of calculus lives there too (:func:`solvers.with_sde_type`).

An SDE here is any object with

``drift(t, x)``
    the drift ``f(t, x)``, a tensor of ``x.shape``;
``diffusion(t, x)``
    the diffusion ``g(t, x)``: of ``x.shape`` for ``"diagonal"``, ``"additive"``
    and ``"scalar"`` noise, of ``(*x.shape, m)`` for ``"general"`` noise (and for
    ``"additive"`` noise driven by ``m`` Brownian motions);
``noise_type``
    one of ``"diagonal"`` (``g ⊙ dW``, one Brownian motion per element; ``g_i``
    may depend on ``x_i`` only for the schemes that differentiate ``g``),
    ``"additive"`` (``g`` does not depend on ``x``), ``"scalar"`` (one Brownian
    motion per sample, ``g ⊙ dW_b``) or ``"general"`` (``Σ_k g[..., k] dW[b, k]``).
    ``None`` marks an ODE. The older name ``noise`` is deprecated: it still
    works, with a DeprecationWarning (on :class:`SDE` subclasses the two names
    always agree; other objects are read once, at the boundary).
``sde_type``
    ``"ito"`` (default) or ``"stratonovich"``: which integral ``g dW`` means.
    A scheme of the other calculus steps the converted drift
    ``f_Itô = f_Strat + ½ Σ_k (∂g_k/∂x) g_k`` (see :func:`with_sde_type`).

``t`` is passed as a Python float. Optional parts, used by the schemes that
need them:

``drift_parts(t, x) -> (f1, f2)``
    a split ``f = f1 + f2`` for :class:`~solvers.TwoStepEuler`; to save work
    define ``drift_part1(t, x)`` and ``drift_part2(t, x)`` instead.
``linear(t) -> A``
    the linear part of ``f = A(t) x + N(t, x)``; ``A`` a float or a tensor
    broadcastable to ``x`` (a diagonal operator). ``nonlinear(t, x)`` returns
    ``N`` (default: ``drift(t, x) - A(t) x``); a class attribute
    ``linear_only = True`` declares ``N = 0``.
``linear_transition(s, t) -> (Lam, V)``
    exact ``Lam = ∫_s^t A(u) du`` and ``V = ∫_s^t exp(2 ∫_u^t A) du``; without
    it, ``A`` is frozen at the mid-step time (exact for constant ``A``).
``nonlinear_weight(s, t)``, ``nonlinear_profile(t, x)``
    for ``N(t, x) = c(t) M(t, x)``: the exact weight ``∫_s^t e^{Λ(u, t)} c(u) du``
    and ``M`` (absent: ``M = 1``, an affine forcing), for the exponential schemes.
``diffusion_derivative(t, x)``
    ``∂g_i/∂x_i`` for :class:`~solvers.Milstein` on diagonal noise (default:
    autograd).
``brownian_size``
    ``m`` for general noise (inferred from one call of ``diffusion`` if absent).
"""

from __future__ import annotations

import warnings

import torch

from ._terms import NOISE_TYPES, SDE_TYPES, Terms, check_types, declared

__all__ = ["SDE", "NOISE_TYPES", "SDE_TYPES", "sde_from_functions", "noise_type_of", "sde_type_of"]


def noise_type_of(sde):
    """The noise type of ``sde``: ``sde.noise_type``, else the older ``sde.noise``, else ``"diagonal"``."""
    if isinstance(sde, Terms):
        return sde.noise_type
    parts = declared(sde, ("noise_type", "noise"))
    return parts.get("noise_type", parts.get("noise", "diagonal"))


def sde_type_of(sde):
    """``sde.sde_type`` (``"ito"`` when absent)."""
    if isinstance(sde, Terms):
        return sde.sde_type
    return declared(sde, ("sde_type",)).get("sde_type", "ito")


class SDE:
    """Base class for user SDEs. Subclass and define ``drift`` and ``diffusion``.

    Example::

        class OrnsteinUhlenbeck(solvers.SDE):
            noise_type = "additive"

            def __init__(self, theta, sigma):
                self.theta, self.sigma = theta, sigma

            def drift(self, t, x):
                return -self.theta * x

            def diffusion(self, t, x):
                return torch.full_like(x, self.sigma)

    ``noise`` is the older, deprecated name of ``noise_type``: setting it (as a
    class attribute or on an instance) sets both, with a DeprecationWarning;
    reading it still gives the noise type.
    """

    noise_type = "diagonal"
    noise = "diagonal"
    sde_type = "ito"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "noise_type" in own and "noise" not in own:
            cls.noise = own["noise_type"]
        elif "noise" in own and "noise_type" not in own and _is_noise_type(own["noise"]):
            warnings.warn(f"{cls.__name__}: the class attribute 'noise' is deprecated; name it 'noise_type'",
                          DeprecationWarning, stacklevel=2)
            cls.noise_type = own["noise"]

    def __setattr__(self, name, value):
        if name in ("noise", "noise_type") and _is_noise_type(value):
            if name == "noise":
                warnings.warn(f"{type(self).__name__}: the attribute 'noise' is deprecated; set 'noise_type'",
                              DeprecationWarning, stacklevel=2)
            super().__setattr__("noise", value)
            super().__setattr__("noise_type", value)
        else:
            super().__setattr__(name, value)

    def drift(self, t, x):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must define drift(t, x)")

    def diffusion(self, t, x):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must define diffusion(t, x)")


def _is_noise_type(value):
    return value is None or isinstance(value, str)


# ----------------------------------------------------------------------------- plain functions


class _FunctionSDE(SDE):
    def __init__(self, drift, diffusion, noise_type, drift_parts=None, linear=None, brownian_size=None,
                 sde_type="ito"):
        self._drift, self._diffusion = drift, diffusion
        self.noise_type = noise_type
        self.sde_type = sde_type
        if drift_parts is not None:
            self.drift_parts = drift_parts
        if linear is not None:
            self.linear = linear
        if brownian_size is not None:
            self.brownian_size = brownian_size

    def drift(self, t, x):
        return self._drift(t, x)

    def diffusion(self, t, x):
        return self._diffusion(t, x)


def sde_from_functions(drift, diffusion=None, noise_type="diagonal", *, drift_parts=None, linear=None,
                       brownian_size=None, sde_type="ito", noise=None):
    """Build an SDE from plain functions ``drift(t, x)`` and ``diffusion(t, x)``.

    With ``diffusion=None`` the result is an ODE (``noise_type=None``). ``noise``
    is the older, deprecated name of ``noise_type``.
    """
    if noise is not None:
        warnings.warn("sde_from_functions: the argument 'noise' is deprecated; name it 'noise_type'",
                      DeprecationWarning, stacklevel=2)
        noise_type = noise
    if diffusion is None:
        noise_type = None
    check_types(noise_type, sde_type, "sde")
    return _FunctionSDE(drift, diffusion, noise_type, drift_parts, linear, brownian_size, sde_type)


class _ODEAdapter(SDE):
    """Wraps a torchdiffeq-style ``func(t, y)`` as an ODE (``noise_type=None``)."""

    noise_type = None

    def __init__(self, func):
        self.func = func

    def drift(self, t, x):
        return self.func(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)

    def diffusion(self, t, x):
        return None
