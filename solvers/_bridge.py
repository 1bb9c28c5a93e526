"""A thin bridge to torchdiffeq for ODEs (probability-flow ODEs included)."""

from __future__ import annotations

import torch

from ._checks import as_times
from ._sde import as_sde

__all__ = ["odeint_torchdiffeq"]


def odeint_torchdiffeq(ode, x0, ts, *, method="dopri5", rtol=1e-7, atol=1e-9, return_nfe=False, **options):
    """Solve ``dx/dt = drift(t, x)`` with :func:`torchdiffeq.odeint`.

    ``ode`` is anything :func:`solvers.sdeint` accepts; only its drift is used
    (so an SDE's probability-flow ODE object, or a plain ``func(t, y)``, works).
    Returns ``(len(ts), *x0.shape)``, and the number of drift evaluations when
    ``return_nfe=True``. Extra keyword arguments go to ``torchdiffeq.odeint``.
    """
    import torchdiffeq

    times, _ = as_times(ts)
    sde = as_sde(ode)
    count = [0]

    def func(t, y):
        count[0] += 1
        return sde.drift(float(t), y)

    t_tensor = torch.tensor(times, dtype=x0.dtype, device=x0.device)
    out = torchdiffeq.odeint(func, x0, t_tensor, method=method, rtol=rtol, atol=atol, **options)
    return (out, count[0]) if return_nfe else out
