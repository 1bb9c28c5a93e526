"""The boundary: any user problem to typed :class:`~solvers._terms.Terms`, and the change of calculus.

:func:`as_terms` is the one function that turns a user's object (a
:class:`~solvers.SDE` subclass, a torchsde-style module, two callables, a
torchdiffeq-style ``func(t, y)``) into typed terms; :func:`with_sde_type`
rewrites terms for the other calculus, with the drift correction of
:func:`diffusion_and_correction`.
"""

from __future__ import annotations

import torch

from ._sde import NOISE_TYPES, SDE_TYPES, _ODEAdapter, sde_type_of
from ._terms import Terms, _from_protocol, declared
from ._torchsde import TORCHSDE_PARTS, TorchsdeAdapter

__all__ = ["as_sde", "as_terms", "with_sde_type", "ito_correction", "diffusion_and_correction"]


def _as_protocol(obj):
    """``obj`` as an object with ``drift``/``diffusion``: itself, a torchsde adapter or an ODE adapter."""
    parts = declared(obj, ("drift", "noise_type", "sde_type") + TORCHSDE_PARTS)
    if "drift" in parts:
        return obj
    if any(callable(parts.get(name)) for name in TORCHSDE_PARTS):
        return TorchsdeAdapter(obj)
    if "noise_type" in parts or "sde_type" in parts:
        raise ValueError(f"sde: {type(obj).__name__} declares noise_type/sde_type but defines no diffusion; "
                         f"expected g(t, y), f_and_g(t, y) or g_prod(t, y, v)")
    if callable(obj):
        return _ODEAdapter(obj)
    raise ValueError(f"sde: expected an object with drift(t, x) and diffusion(t, x), a torchsde-style module "
                     f"with f/g/noise_type, or a callable func(t, y); got {type(obj).__name__}")


def as_terms(obj) -> Terms:
    """The typed :class:`~solvers._terms.Terms` of ``obj``, checked once.

    ``obj`` is a :class:`~solvers._terms.Terms` (returned unchanged), an object with
    ``drift(t, x)``/``diffusion(t, x)`` (a :class:`~solvers.SDE` subclass or any
    object following its protocol), a torchsde-style module (``f``/``g``,
    ``forward``/``g``, ``f_and_g``, ``g_prod``, ``f_and_g_prod``; any noise type,
    ``sde_type`` ``"ito"`` or ``"stratonovich"``), or a plain callable
    ``func(t, y)`` (a torchdiffeq-style ODE).
    """
    if isinstance(obj, Terms):
        return obj
    return _from_protocol(_as_protocol(obj))


def as_sde(obj):
    """Return an object following the SDE protocol for ``obj`` (checked as :func:`as_terms` checks it).

    Accepts an object with ``drift``/``diffusion`` (returned unchanged), a
    torchsde-style module (see :class:`solvers._torchsde.TorchsdeAdapter`), or a
    plain callable ``func(t, y)`` (a torchdiffeq-style ODE).
    """
    sde = _as_protocol(obj)
    _from_protocol(sde)  # checks the declared types
    return sde


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
    sde = as_terms(sde)
    if noise_type == "additive":
        g = sde.diffusion(t, x)
        return g, torch.zeros_like(torch.as_tensor(g, dtype=x.dtype, device=x.device)).expand_as(x)

    def g_of(z):
        return sde.diffusion(t, z)

    if noise_type == "diagonal":
        if sde.diffusion_derivative is not None:
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
    sde = as_terms(sde)
    noise_type = sde.noise_type if noise_type is None else noise_type
    return 0.5 * diffusion_and_correction(sde, t, x, noise_type)[1]


def _converted(base: Terms, sde_type, original) -> Terms:
    """``base`` with its drift rewritten for the other calculus: ``f ± ½ Σ_k (∂g_k/∂x) g_k`` (see
    :func:`with_sde_type`). The linear part, its transition, the diffusion and its derivative are unchanged;
    the correction joins the nonlinear part and the first drift part."""
    half = 0.5 if sde_type == "ito" else -0.5

    def correction(t, x):
        return half * diffusion_and_correction(base, t, x, base.noise_type)[1]

    def drift(t, x):
        return base.drift(t, x) + correction(t, x)

    def nonlinear(t, x):
        if base.nonlinear is not None:
            n = base.nonlinear(t, x)
        elif base.linear_only:
            n = torch.zeros_like(x)
        else:
            n = base.nonlinear_part(t, x)
        return n + correction(t, x)
    split = None
    if base.drift_split is not None:
        part1, part2 = base.drift_split
        split = (lambda t, x: part1(t, x) + correction(t, x), part2)
    return Terms(drift=drift, diffusion=base.diffusion, noise_type=base.noise_type, sde_type=sde_type,
                 drift_split=split, linear=base.linear, nonlinear=nonlinear if base.linear is not None else None,
                 linear_only=False,
                 linear_transition=base.linear_transition, diffusion_derivative=base.diffusion_derivative,
                 brownian_size=base.brownian_size, problem=base.problem, converted_from=original)


def with_sde_type(sde, sde_type):
    """``sde`` rewritten as an ``sde_type`` SDE with the same solution, as typed :class:`~solvers._terms.Terms`.

    ``f_Itô = f_Strat + ½ Σ_k (∂g_k/∂x) g_k`` and back; the diffusion is
    unchanged. The derivative comes from autograd (:func:`diffusion_and_correction`),
    so gradients flow through the converted drift. Additive noise and ODEs need
    no conversion and are returned unchanged, as is an SDE already of ``sde_type``;
    converting a converted SDE back returns the original.
    """
    if sde_type not in SDE_TYPES:
        raise ValueError(f"sde_type: expected one of {SDE_TYPES}, got {sde_type!r}")
    terms = as_terms(sde)
    if terms.noise_type in (None, "additive") or terms.sde_type == sde_type:
        return sde
    if terms.converted_from is not None and sde_type_of(terms.converted_from) == sde_type:
        return terms.converted_from
    return _converted(terms, sde_type, sde)
