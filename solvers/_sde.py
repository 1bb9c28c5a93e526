"""The SDE protocol, the Itô ↔ Stratonovich drift conversion, and adapters for torchsde- and torchdiffeq-style problems.

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
    ``None`` marks an ODE. The older name ``noise`` is still accepted (on
    :class:`SDE` subclasses the two names always agree; duck-typed objects are
    read through :func:`noise_type_of`, which prefers ``noise_type``).
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
``diffusion_derivative(t, x)``
    ``∂g_i/∂x_i`` for :class:`~solvers.Milstein` on diagonal noise (default:
    autograd).
``brownian_size``
    ``m`` for general noise (inferred from one call of ``diffusion`` if absent).
"""

from __future__ import annotations

import torch

NOISE_TYPES = ("diagonal", "additive", "scalar", "general")
SDE_TYPES = ("ito", "stratonovich")

__all__ = ["SDE", "NOISE_TYPES", "SDE_TYPES", "as_sde", "sde_from_functions", "noise_type_of", "sde_type_of",
           "with_sde_type", "ito_correction", "diffusion_and_correction"]


def noise_type_of(sde):
    """The noise type of ``sde``: ``sde.noise_type``, else the older ``sde.noise``, else ``"diagonal"``."""
    if hasattr(sde, "noise_type"):
        return sde.noise_type
    return getattr(sde, "noise", "diagonal")


def sde_type_of(sde):
    """``sde.sde_type`` (``"ito"`` when absent)."""
    return getattr(sde, "sde_type", "ito")


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

    ``noise`` is the older name of ``noise_type``; setting either (as a class
    attribute or on an instance) sets both.
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
            cls.noise_type = own["noise"]

    def __setattr__(self, name, value):
        if name in ("noise", "noise_type") and _is_noise_type(value):
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


# ----------------------------------------------------------------------------- derivatives of the diffusion


def diffusion_and_correction(sde, t, x, noise_type):
    """``(g, c)`` with ``c = Σ_k (∂g_k/∂x) g_k``, the term behind Milstein's correction and the
    Itô ↔ Stratonovich drift conversion.

    * ``"diagonal"``: ``c_i = g_i ∂g_i/∂x_i`` (``g_i`` a function of ``x_i``): from
      ``sde.diffusion_derivative`` when defined, else one vector-Jacobian product;
    * ``"scalar"``: ``c = J_g g``, one Jacobian-vector product;
    * ``"general"``: ``c = Σ_k J_{g_k} g_k``, one Jacobian-vector product per Brownian motion;
    * ``"additive"``: ``c = 0``.

    The products stay on the ordinary autograd graph whenever something is
    tracked (``torch.autograd.grad(..., create_graph=True)`` when ``x`` is, a
    :mod:`torch.func` product when only parameters of ``g`` are): gradients flow
    through ``c`` to ``x`` and to any parameter of the diffusion. When nothing
    is tracked (``torch.no_grad``, or no tensor requiring grad) the cheaper
    detached product is used. A diffusion that does not depend on ``x`` gives
    ``c = 0``.
    """
    if noise_type == "additive":
        g = sde.diffusion(t, x)
        return g, torch.zeros_like(torch.as_tensor(g, dtype=x.dtype, device=x.device)).expand_as(x)

    def g_of(z):
        return sde.diffusion(t, z)

    if noise_type == "diagonal":
        if hasattr(sde, "diffusion_derivative"):
            g = g_of(x)
            return g, g * sde.diffusion_derivative(t, x)
        if not torch.is_grad_enabled():  # nothing to differentiate
            return _untracked_diagonal_correction(g_of, x)
        g = g_of(x)
        if not g.requires_grad:  # neither x nor any parameter of g is tracked
            return _untracked_diagonal_correction(g_of, x)
        if x.requires_grad:  # the graph through g already reaches x: differentiate it, keeping the graph
            (c,) = torch.autograd.grad(g, x, grad_outputs=g, create_graph=True, allow_unused=True)
            return g, torch.zeros_like(x) if c is None else c
        g, vjp = torch.func.vjp(g_of, x)  # parameters tracked, x not: a functional VJP keeps their graph
        (c,) = vjp(g)  # Σ_i g_i ∂g_i/∂x_j = g_j ∂g_j/∂x_j when g_i depends on x_i only
        return g, c
    g = g_of(x)
    if noise_type == "scalar":
        _, c = torch.func.jvp(g_of, (x,), (g,))
        return g, c
    if noise_type == "general":
        c = torch.zeros_like(x)
        for k in range(g.shape[-1]):
            _, jg = torch.func.jvp(g_of, (x,), (g[..., k],))
            c = c + jg[..., k]
        return g, c
    raise ValueError(f"noise_type: expected one of {NOISE_TYPES}, got {noise_type!r}")


def _untracked_diagonal_correction(g_of, x):
    """``(g, g ⊙ ∂g/∂x)`` with nothing on the autograd graph (plain autograd: ~3x cheaper than
    :func:`torch.func.vjp` at small states)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        g = g_of(xg)
        c = None
        if g.requires_grad:
            (c,) = torch.autograd.grad(g, xg, grad_outputs=g.detach(), allow_unused=True)
    return g.detach(), torch.zeros_like(x) if c is None else c


def ito_correction(sde, t, x, noise_type=None):
    """``½ Σ_k (∂g_k/∂x) g_k``: Itô drift = Stratonovich drift + this (see :func:`diffusion_and_correction`)."""
    noise_type = noise_type_of(sde) if noise_type is None else noise_type
    return 0.5 * diffusion_and_correction(sde, t, x, noise_type)[1]


class _ConvertedSDE(SDE):
    """``sde`` with its drift rewritten for the other calculus (see :func:`with_sde_type`)."""

    linear_only = False

    def __init__(self, base, sde_type):
        self.base = base
        self.sde_type = sde_type
        self.noise_type = noise_type_of(base)
        self.sign = 1.0 if sde_type == "ito" else -1.0
        for name in ("linear", "linear_transition", "brownian_size", "diffusion_derivative"):
            if hasattr(base, name):
                setattr(self, name, getattr(base, name))
        if hasattr(base, "linear"):
            self.nonlinear = self._nonlinear
        if hasattr(base, "drift_part1") or hasattr(base, "drift_parts"):
            self.drift_part1, self.drift_part2 = self._part1, self._part2

    def _correction(self, t, x):
        return (0.5 * self.sign) * diffusion_and_correction(self.base, t, x, self.noise_type)[1]

    def drift(self, t, x):
        return self.base.drift(t, x) + self._correction(t, x)

    def diffusion(self, t, x):
        return self.base.diffusion(t, x)

    def _nonlinear(self, t, x):
        if hasattr(self.base, "nonlinear"):
            n = self.base.nonlinear(t, x)
        elif getattr(self.base, "linear_only", False):
            n = torch.zeros_like(x)
        else:
            a = self.base.linear(t)
            n = self.base.drift(t, x) - (a.to(x) if isinstance(a, torch.Tensor) else a) * x
        return n + self._correction(t, x)

    def _part1(self, t, x):
        f1 = self.base.drift_part1(t, x) if hasattr(self.base, "drift_part1") else self.base.drift_parts(t, x)[0]
        return f1 + self._correction(t, x)

    def _part2(self, t, x):
        return self.base.drift_part2(t, x) if hasattr(self.base, "drift_part2") else self.base.drift_parts(t, x)[1]


def with_sde_type(sde, sde_type):
    """``sde`` rewritten as an ``sde_type`` SDE with the same solution.

    ``f_Itô = f_Strat + ½ Σ_k (∂g_k/∂x) g_k`` and back; the diffusion is
    unchanged. The derivative comes from autograd (:func:`diffusion_and_correction`),
    so gradients flow through the converted drift. Additive noise and ODEs need
    no conversion and are returned unchanged, as is an SDE already of ``sde_type``.
    """
    if sde_type not in SDE_TYPES:
        raise ValueError(f"sde_type: expected one of {SDE_TYPES}, got {sde_type!r}")
    if noise_type_of(sde) in (None, "additive") or sde_type_of(sde) == sde_type:
        return sde
    if isinstance(sde, _ConvertedSDE) and sde.base.sde_type == sde_type:
        return sde.base
    return _ConvertedSDE(sde, sde_type)


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
    is the older name of ``noise_type``.
    """
    if noise is not None:
        noise_type = noise
    if diffusion is None:
        noise_type = None
    _check_types(noise_type, sde_type, "sde")
    return _FunctionSDE(drift, diffusion, noise_type, drift_parts, linear, brownian_size, sde_type)


def _check_types(noise_type, sde_type, what):
    if noise_type is not None and noise_type not in NOISE_TYPES:
        raise ValueError(f"{what}: noise_type={noise_type!r} is not one of {NOISE_TYPES} (or None for an ODE)")
    if sde_type not in SDE_TYPES:
        raise ValueError(f"{what}: sde_type={sde_type!r} is not one of {SDE_TYPES}")


class _ODEAdapter(SDE):
    """Wraps a torchdiffeq-style ``func(t, y)`` as an ODE (``noise_type=None``)."""

    noise_type = None

    def __init__(self, func):
        self.func = func

    def drift(self, t, x):
        return self.func(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)

    def diffusion(self, t, x):
        return None


def as_sde(obj):
    """Return an object following the SDE protocol for ``obj``.

    Accepts an object with ``drift``/``diffusion`` (returned unchanged), a
    torchsde-style module (see :class:`solvers._torchsde.TorchsdeAdapter`: ``f``/``g``,
    ``forward``/``g``, ``f_and_g``, ``g_prod``, ``f_and_g_prod``; any noise type,
    ``sde_type`` ``"ito"`` or ``"stratonovich"``), or a plain callable
    ``func(t, y)`` (a torchdiffeq-style ODE).
    """
    if hasattr(obj, "drift"):
        noise_type = noise_type_of(obj)
        _check_types(noise_type, sde_type_of(obj), "sde")
        if noise_type is not None and not hasattr(obj, "diffusion"):
            raise ValueError(f"sde: {type(obj).__name__} has noise_type={noise_type!r} but no diffusion(t, x)")
        return obj
    from ._torchsde import TORCHSDE_PARTS, TorchsdeAdapter

    if any(callable(getattr(obj, name, None)) for name in TORCHSDE_PARTS):
        return TorchsdeAdapter(obj)
    if hasattr(obj, "noise_type") or hasattr(obj, "sde_type"):
        raise ValueError(f"sde: {type(obj).__name__} declares noise_type/sde_type but defines no diffusion; "
                         f"expected g(t, y), f_and_g(t, y) or g_prod(t, y, v)")
    if callable(obj):
        return _ODEAdapter(obj)
    raise ValueError(f"sde: expected an object with drift(t, x) and diffusion(t, x), a torchsde-style module "
                     f"with f/g/noise_type, or a callable func(t, y); got {type(obj).__name__}")
