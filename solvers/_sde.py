"""The SDE protocol and adapters for torchsde- and torchdiffeq-style problems.

An SDE here is any object with

``drift(t, x)``
    the Itô drift ``f(t, x)``, a tensor of ``x.shape``;
``diffusion(t, x)``
    the diffusion ``g(t, x)``: of ``x.shape`` for ``"diagonal"``, ``"additive"``
    and ``"scalar"`` noise, of ``(*x.shape, m)`` for ``"general"`` noise (and for
    ``"additive"`` noise driven by ``m`` Brownian motions);
``noise``
    one of ``"diagonal"`` (``g ⊙ dW``, one Brownian motion per element),
    ``"additive"`` (``g`` does not depend on ``x``), ``"scalar"`` (one Brownian
    motion per sample, ``g ⊙ dW_b``) or ``"general"`` (``Σ_k g[..., k] dW[b, k]``).
    ``None`` marks an ODE.

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
    ``∂g_i/∂x_i`` for :class:`~solvers.Milstein` (default: autograd).
``brownian_size``
    ``m`` for general noise (inferred from one call of ``diffusion`` if absent).
"""

from __future__ import annotations

import torch

NOISE_TYPES = ("diagonal", "additive", "scalar", "general")

__all__ = ["SDE", "NOISE_TYPES", "as_sde", "sde_from_functions"]


class SDE:
    """Base class for user SDEs. Subclass and define ``drift`` and ``diffusion``.

    Example::

        class OrnsteinUhlenbeck(solvers.SDE):
            noise = "additive"

            def __init__(self, theta, sigma):
                self.theta, self.sigma = theta, sigma

            def drift(self, t, x):
                return -self.theta * x

            def diffusion(self, t, x):
                return torch.full_like(x, self.sigma)
    """

    noise = "diagonal"

    def drift(self, t, x):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must define drift(t, x)")

    def diffusion(self, t, x):  # pragma: no cover - interface
        raise NotImplementedError(f"{type(self).__name__} must define diffusion(t, x)")


class _FunctionSDE(SDE):
    def __init__(self, drift, diffusion, noise, drift_parts=None, linear=None, brownian_size=None):
        self._drift, self._diffusion = drift, diffusion
        self.noise = noise
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


def sde_from_functions(drift, diffusion=None, noise="diagonal", *, drift_parts=None, linear=None,
                       brownian_size=None):
    """Build an SDE from plain functions ``drift(t, x)`` and ``diffusion(t, x)``.

    With ``diffusion=None`` the result is an ODE (``noise=None``).
    """
    if diffusion is None:
        noise = None
    return _FunctionSDE(drift, diffusion, noise, drift_parts, linear, brownian_size)


class _TorchsdeAdapter(SDE):
    """Wraps a torchsde-style module (``f``, ``g``, ``noise_type``, ``sde_type``)."""

    def __init__(self, module):
        sde_type = getattr(module, "sde_type", "ito")
        if sde_type != "ito":
            raise ValueError(f"sde: torchsde-style module has sde_type={sde_type!r}; only 'ito' is supported")
        noise_type = getattr(module, "noise_type", None)
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"sde: torchsde-style module has noise_type={noise_type!r}; "
                             f"expected one of {NOISE_TYPES}")
        self.module = module
        self.noise = noise_type
        self._squeeze = noise_type == "scalar"  # torchsde's scalar g is (batch, d, 1)
        self._tcache = (None, None)

    def _t(self, t, x):
        key, val = self._tcache
        if key != (t, x.dtype, x.device):
            val = torch.as_tensor(t, dtype=x.dtype, device=x.device)
            self._tcache = ((t, x.dtype, x.device), val)
        return val

    def drift(self, t, x):
        return self.module.f(self._t(t, x), x)

    def diffusion(self, t, x):
        g = self.module.g(self._t(t, x), x)
        return g.squeeze(-1) if self._squeeze else g


class _ODEAdapter(SDE):
    """Wraps a torchdiffeq-style ``func(t, y)`` as an ODE (``noise=None``)."""

    noise = None

    def __init__(self, func):
        self.func = func

    def drift(self, t, x):
        return self.func(torch.as_tensor(t, dtype=x.dtype, device=x.device), x)

    def diffusion(self, t, x):
        return None


def as_sde(obj):
    """Return an object following the SDE protocol for ``obj``.

    Accepts an object with ``drift``/``diffusion`` (returned unchanged), a
    torchsde-style module with ``f``/``g``/``noise_type``, or a plain callable
    ``func(t, y)`` (a torchdiffeq-style ODE).
    """
    if hasattr(obj, "drift"):
        noise = getattr(obj, "noise", "diagonal")
        if noise is not None and noise not in NOISE_TYPES:
            raise ValueError(f"sde: noise={noise!r} is not one of {NOISE_TYPES} (or None for an ODE)")
        if noise is not None and not hasattr(obj, "diffusion"):
            raise ValueError(f"sde: {type(obj).__name__} has noise={noise!r} but no diffusion(t, x)")
        return obj
    if hasattr(obj, "f") and hasattr(obj, "g"):
        return _TorchsdeAdapter(obj)
    if callable(obj):
        return _ODEAdapter(obj)
    raise ValueError(f"sde: expected an object with drift(t, x) and diffusion(t, x), a torchsde-style module "
                     f"with f/g/noise_type, or a callable func(t, y); got {type(obj).__name__}")
