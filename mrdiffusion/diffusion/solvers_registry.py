"""One name → scheme registry for ``mrdiffusion sample --solver``: the few-step samplers and the SDE/ODE schemes.

``NAME`` or ``NAME:key=value,key=value`` (values read as Python literals:
numbers, booleans, strings), e.g. ``ExponentialAdams:order=2,eta=1`` or
``Heun``. The few-step samplers (:data:`mrdiffusion.sampling.SAMPLERS`) run
through :func:`mrdiffusion.sampling.sample`; the schemes of :mod:`solvers`
(:data:`solvers.SCHEMES`) integrate the reverse-time SDE, or with ``--ode``
the probability-flow ODE, of a :class:`~mrdiffusion.sampling.DenoisingProblem`
down to ``σ̂ = 0.002`` and finish with one denoising evaluation.
"""

from __future__ import annotations

import ast

import solvers

from ..sampling import SAMPLERS

__all__ = ["REGISTRY", "parse_solver", "names"]

REGISTRY = {**SAMPLERS, **{k: v for k, v in solvers.SCHEMES.items() if k not in SAMPLERS}}


def names():
    return ", ".join(REGISTRY)


def parse_solver(text):
    """``(scheme object, is_few_step_sampler)`` from ``NAME[:key=value,…]``; ``ValueError`` naming ``--solver``."""
    name, _, params = text.partition(":")
    if name not in REGISTRY:
        raise ValueError(f"--solver: unknown scheme {name!r}; expected one of {names()}, optionally with "
                         f"parameters as NAME:key=value,...")
    kwargs = {}
    for item in filter(None, params.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"--solver: expected NAME:key=value,... (e.g. ExponentialAdams:order=2), got {text!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    try:
        scheme = REGISTRY[name](**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--solver: {text!r}: {' '.join(str(err).split())}") from None
    return scheme, name in SAMPLERS
