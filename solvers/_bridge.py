"""A thin bridge to torchdiffeq for ODEs (probability-flow ODEs included)."""

from __future__ import annotations

import torch

from ._checks import as_times
from ._convert import as_terms

__all__ = ["odeint_torchdiffeq"]


def odeint_torchdiffeq(ode, x0: torch.Tensor, ts, *, method: str = "dopri5", rtol: float = 1e-7,
                       atol: float = 1e-9, return_info: bool = False, return_nfe: bool = False, **options):
    """Solve ``dx/dt = drift(t, x)`` with :func:`torchdiffeq.odeint`.

    ``ode`` is anything :func:`solvers.sdeint` accepts; only its drift is used
    (so an SDE's probability-flow ODE object, or a plain ``func(t, y)``, works).
    Returns ``(len(ts), *x0.shape)``; with ``return_info=True`` also a
    :class:`~solvers.SolveInfo` whose ``nfe`` counts drift evaluations, as
    :func:`solvers.sdeint` does (``return_nfe=True`` returns the bare count, kept
    for older callers). Extra keyword arguments go to ``torchdiffeq.odeint``.
    """
    import torchdiffeq

    times, _ = as_times(ts)
    sde = as_terms(ode)
    count = [0]

    def func(t, y):
        count[0] += 1
        return sde.drift(float(t), y)

    t_tensor = torch.tensor(times, dtype=x0.dtype, device=x0.device)
    out = torchdiffeq.odeint(func, x0, t_tensor, method=method, rtol=rtol, atol=atol, **options)
    if return_info:
        from ._integrate import SolveInfo

        return out, SolveInfo(nfe=count[0])
    return (out, count[0]) if return_nfe else out
