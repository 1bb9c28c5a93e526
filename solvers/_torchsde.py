"""Adapter for torchsde-style modules: every part of torchsde's module contract, any noise type, Itô or
Stratonovich (the calculus is converted by the scheme, see :meth:`solvers.Scheme.prepare`)."""

from __future__ import annotations

import torch

from ._sde import SDE
from ._terms import NOISE_TYPES, check_types, declared

__all__ = ["TorchsdeAdapter", "TORCHSDE_PARTS"]

TORCHSDE_PARTS = ("f", "g", "f_and_g", "g_prod", "f_and_g_prod")


def _defines_forward(obj):
    """Whether ``obj`` defines its own ``forward`` (``nn.Module``'s placeholder does not count)."""
    forward = declared(type(obj), ("forward",)).get("forward")
    return forward is not None and forward is not torch.nn.Module.forward


class TorchsdeAdapter(SDE):
    """Wraps a torchsde-style module: ``noise_type``, ``sde_type`` and the drift and diffusion as any of

    * ``f(t, y)`` and ``g(t, y)``;
    * ``forward(t, y)`` (the drift, called as ``module(t, y)``) and ``g`` or ``g_prod``;
    * ``f_and_g(t, y) -> (f, g)`` (one call serves the drift and the diffusion of a step);
    * ``g_prod(t, y, v)`` (``g·v``) instead of ``g``, with ``f``, ``forward`` or ``f_and_g_prod``;
    * ``f_and_g_prod(t, y, v) -> (f, g·v)``.

    ``g`` has torchsde's shapes: ``(batch, d)`` for diagonal noise, ``(batch, d, 1)``
    for scalar noise, ``(batch, d, m)`` for general and additive noise. From a
    ``g_prod`` alone the diffusion is recovered exactly as ``g_prod(t, y, e_k)``
    for the unit vectors ``e_k`` (one call for diagonal and scalar noise, ``m``
    for general noise, which then needs ``module.brownian_size`` = ``m``).
    """

    def __init__(self, module):
        parts = declared(module, ("noise_type", "sde_type", "brownian_size") + TORCHSDE_PARTS)
        noise_type = parts.get("noise_type")
        sde_type = parts.get("sde_type", "ito")
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"sde: torchsde-style module has noise_type={noise_type!r}; expected one of {NOISE_TYPES}")
        check_types(noise_type, sde_type, "sde")
        has = {name: callable(parts.get(name)) for name in TORCHSDE_PARTS}
        has["forward"] = _defines_forward(module)
        if not (has["f"] or has["f_and_g"] or has["f_and_g_prod"] or has["forward"]):
            raise ValueError("sde: torchsde-style module defines no drift; expected f(t, y), forward(t, y), "
                             "f_and_g(t, y) or f_and_g_prod(t, y, v)")
        if not (has["g"] or has["f_and_g"] or has["g_prod"] or has["f_and_g_prod"]):
            raise ValueError("sde: torchsde-style module defines no diffusion; expected g(t, y), f_and_g(t, y), "
                             "g_prod(t, y, v) or f_and_g_prod(t, y, v)")
        self.module = module
        self.noise_type = noise_type
        self.sde_type = sde_type
        self._has = has
        self._stacked = noise_type in ("general", "additive") and not (has["g"] or has["f_and_g"])
        self._m = parts.get("brownian_size")  # the module's m, if it states one
        if self._stacked:
            m = self._m
            if not isinstance(m, int) or m < 1:
                raise ValueError(f"sde: a {noise_type}-noise module that gives only g_prod needs brownian_size = m "
                                 f"(the number of Brownian motions)")
            self.brownian_size = m
        self._squeeze = noise_type == "scalar"  # torchsde's scalar g is (batch, d, 1)
        self._tcache = (None, None)
        self._fg_cache = None  # (t, x, f, g) of the last f_and_g call

    def _t(self, t, x):
        key, val = self._tcache
        if key != (t, x.dtype, x.device):
            val = torch.as_tensor(t, dtype=x.dtype, device=x.device)
            self._tcache = ((t, x.dtype, x.device), val)
        return val

    def _f_and_g(self, t, x):
        c = self._fg_cache
        if c is not None and c[0] == t and c[1] is x:
            return c[2], c[3]
        f, g = self.module.f_and_g(self._t(t, x), x)
        self._fg_cache = (t, x, f, g)
        return f, g

    def _g_prod(self, t, x, v):
        if self._has["g_prod"]:
            return self.module.g_prod(self._t(t, x), x, v)
        return self.module.f_and_g_prod(self._t(t, x), x, v)[1]

    def drift(self, t, x):
        if self._has["f"]:
            return self.module.f(self._t(t, x), x)
        if self._has["f_and_g"]:
            return self._f_and_g(t, x)[0]
        if self._has["forward"]:
            return self.module(self._t(t, x), x)
        # f_and_g_prod only: the drift part does not depend on v
        return self.module.f_and_g_prod(self._t(t, x), x, self._unit(x, None))[0]

    def diffusion(self, t, x):
        if self._has["g"]:
            g = self.module.g(self._t(t, x), x)
        elif self._has["f_and_g"]:
            g = self._f_and_g(t, x)[1]
        elif self._stacked:
            g = torch.stack([self._g_prod(t, x, self._unit(x, k)) for k in range(self.brownian_size)], dim=-1)
        else:
            g = self._g_prod(t, x, self._unit(x, None))
        return g.squeeze(-1) if self._squeeze and g.ndim == x.ndim + 1 else g

    def _unit(self, x, k):
        """The vector ``v`` with ``g_prod(t, x, v)`` = ``g`` (diagonal, scalar) or ``g[..., k]`` (general,
        additive)."""
        if self.noise_type == "diagonal":
            return torch.ones_like(x)
        if self.noise_type == "scalar":
            return x.new_ones((x.shape[0], 1))
        m = self._m or 1
        v = x.new_zeros((x.shape[0], m))
        if k is not None:
            v[:, k] = 1
        return v
