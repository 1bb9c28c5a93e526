"""Opt-in fast path: a scheme whose step is compiled with :func:`torch.compile`.

The driver is unchanged: it still owns the grid, draws the Brownian increments
eagerly (so a seed gives the same noise as the plain path) and calls
``scheme.step`` once per step. Only the deterministic arithmetic of the step —
the drift and diffusion calls and the update — is compiled, which fuses the
element-wise work into one or two kernels.

When it pays (measured by ``python -m benchmarks.speed``): large states, where
the plain step is bound by memory traffic and allocations. It does not pay for
tiny states on CPU, where a compiled call (guards plus the kernel launch,
~50 µs here) costs more than the handful of eager ops it replaces. The first
call compiles (seconds; a minute on a machine whose inductor cache is cold),
and a new state shape or SDE object can trigger a recompile.

Numbers: the same as the plain path up to float round-off: fused kernels may
round differently from a sequence of eager ops, and step sizes that differ by
less than 1e-10 relative (the round-off jitter of a uniform grid) are snapped to
one value so that they share one compiled graph. ``tests/test_fast_path.py``
checks the agreement.
"""

from __future__ import annotations

import torch

from ._base import Scheme

__all__ = ["Compiled"]

_SNAP = 1e-10  # relative tolerance under which two step sizes count as the same (see Compiled.step)

_DECLARED = ("sde_type", "strong_order", "strong_order_additive", "strong_order_commutative", "weak_order", "weak_order_additive", "ode_order",
             "noise_treatment",
             "needs_levy_area", "needs_linear", "uses_drift_split", "stability_formula", "ms_stability_formula",
             "drift_evals", "diffusion_evals")


class Compiled(Scheme):
    """Wrap a scheme so that its ``step`` runs through :func:`torch.compile`.

    Example::

        xs = solvers.sdeint(sde, x0, ts, Compiled(solvers.EulerMaruyama()), dt=1e-3)

    Declared orders and needs are those of the wrapped scheme. Keyword
    arguments (``mode``, ``dynamic``, ``fullgraph``, ``backend``, ``options``)
    go to :func:`torch.compile`. The compiled function is built lazily, on the
    first step, and shared by every solve that uses this object.
    """

    compiled = True  # the driver then skips its shape-checking terms (new terms objects would recompile)

    def __init__(self, scheme: Scheme, **compile_kwargs):
        if isinstance(scheme, type) and issubclass(scheme, Scheme):
            raise ValueError(f"scheme: expected a scheme instance such as solvers.{scheme.__name__}(), "
                             f"got the class {scheme.__name__}")
        if not isinstance(scheme, Scheme) or isinstance(scheme, Compiled):
            raise ValueError(f"scheme: expected an uncompiled scheme instance, got {scheme!r}")
        self.scheme = scheme
        self.compile_kwargs = dict(compile_kwargs)
        for name in _DECLARED:  # not a probe: copies the wrapped scheme's declared facts, all of which exist
            setattr(self, name, getattr(scheme, name))
        self._step = None
        self._h = 0.0

    @property
    def name(self) -> str:
        return f"Compiled({self.scheme.name})"

    def order_for(self, noise) -> float:
        return self.scheme.order_for(noise)

    def weak_order_for(self, noise) -> float:
        return self.scheme.weak_order_for(noise)

    def incompatibility(self, sde, shape=None):
        return self.scheme.incompatibility(sde, shape)

    def prepare(self, sde):
        return self.scheme.prepare(sde)

    def operand(self, terms):
        return self.scheme.operand(terms)

    def stability_function(self, z):
        return self.scheme.stability_function(z)

    def ms_stability_factor(self, hl, hmu2):
        return self.scheme.ms_stability_factor(hl, hmu2)

    def step(self, sde, t, h, x, dW, ctx):
        if self._step is None:
            self._step = torch.compile(self.scheme.step, **self.compile_kwargs)
        # Schemes pass h as ``alpha=``/``value=`` of fused ops, which makes torch.compile guard on
        # its exact value; a uniform grid's steps differ by round-off (t_{k+1} - t_k), so without
        # snapping every step would recompile. Steps within _SNAP of the last one reuse it.
        if abs(h - self._h) <= _SNAP * self._h:
            h = self._h
        else:
            self._h = h
        return self._step(sde, t, h, x, dW, ctx)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.compile_kwargs.items())
        return f"Compiled({self.scheme!r}{args})"
