"""The loops over time steps of one stage: a fixed grid (optionally checkpointed) and step-size control.

:func:`solvers.integrate` calls one of these per stage of a level schedule;
nothing else in the project loops over time steps.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from ._brownian import GridNoise

__all__ = ["Step", "run_fixed", "run_adaptive"]


class Step(NamedTuple):
    """One accepted step, as a ``callback`` sees it: ``x`` at ``t`` went to ``x_next`` at ``t_next``.

    ``dW`` is the Brownian increment the scheme used (``(dW, U)`` for schemes
    that need the space-time area, ``None`` for an ODE); ``stage`` is the index
    of the stage of a level schedule. Times are the caller's (decreasing in a
    reverse-time solve).
    """

    t: float
    t_next: float
    x: torch.Tensor
    x_next: torch.Tensor
    dW: object
    stage: int


def _draw(noise, bview, levy, t, t_next):
    if noise is None:
        return None
    if levy:
        dW, U = noise.space_time(t, t_next)
        return (dW, U) if bview is None else (dW.view(bview), U.view(bview))
    dW = noise.increment(t, t_next)
    return dW if bview is None else dW.view(bview)


def _steps(x, grid, i0, i1, c, first=True, outs=None):
    """Steps ``i0 .. i1-1`` of ``grid``; guards and saves unless ``outs`` collects the saved states."""
    sde, checked, ctx, noise, bview, levy = c["sde"], c["checked"], c["ctx"], c["noise"], c["bview"], c["levy"]
    every, callback, saves, sign = c["check_every"], c["callback"], c["saves"], c["sign"]
    step, guard, n = c["solver"].step, c["guard"], len(grid) - 1
    shape = x.shape
    for i in range(i0, i1):
        t, t_next = grid[i], grid[i + 1]
        dW = _draw(noise, bview, levy, t, t_next)
        x_new = step(checked if checked is not None and i % every == 0 else sde, t, t_next - t, x, dW, ctx)
        if x_new.shape != shape:
            raise ValueError(f"sde: the step at t={sign * t:g} changed the state's shape from {tuple(shape)} to "
                             f"{tuple(x_new.shape)}: check the shapes the drift and diffusion return")
        if callback is not None and first:
            callback(Step(sign * t, sign * t_next, x, x_new, dW, c["stage"]))
        x = x_new
        if outs is not None:
            if t_next in saves:
                outs.append(x)
            continue
        s = t_next in saves
        if s or (every and (i + 1) % every == 0) or i == n - 1:
            x = guard(x, t_next)
            if s:
                c["record"](t_next, x)
        if c["bar"] is not None:
            c["bar"].update(1)
    return x


def run_fixed(x, grid, **c):
    """Step through ``grid``; with ``checkpoint``, in segments recomputed during the backward pass."""
    n = len(grid) - 1
    info = c["info"]
    info.n_steps += n
    info.stage_steps.append(n)
    info.nfe += n * (c["solver"].drift_evals + (c["solver"].diffusion_evals if c["noise"] is not None else 0))
    if c["bar"] is not None:
        c["bar"].total = (c["bar"].total or 0) + n
    if not c["check_every"]:
        c["check_every"] = 0
        c["checked"] = None
    if c["checkpoint"] is None or not torch.is_grad_enabled():
        return _steps(x, grid, 0, n, c)
    return _checkpointed(x, grid, n, c)


def _checkpointed(x, grid, n, c):
    """√n (or fixed-size) segments through :func:`torch.utils.checkpoint.checkpoint`: only segment ends stay.

    A segment's noise must come out the same when it is recomputed: paths are
    functions of time, and grid noise restarts its (private) generator from
    the state saved at the segment start.
    """
    from torch.utils.checkpoint import checkpoint

    size = c["checkpoint"] if c["checkpoint"] is not True else max(1, math.ceil(math.sqrt(n)))
    noise, saves, guard = c["noise"], c["saves"], c["guard"]
    gen = noise.generator if isinstance(noise, GridNoise) else None
    for i0 in range(0, n, size):
        i1 = min(n, i0 + size)
        state = gen.get_state() if gen is not None else None
        first = [True]

        def segment(x_in, i0=i0, i1=i1, state=state, first=first):
            if state is not None:
                gen.set_state(state)
            outs = []
            x_out = _steps(x_in, grid, i0, i1, c, first=first[0], outs=outs)
            first[0] = False
            return (x_out, *outs)

        res = checkpoint(segment, x, use_reentrant=False, preserve_rng_state=False)
        x = guard(res[0], grid[i1])
        saved = [t for t in grid[i0 + 1:i1 + 1] if t in saves]
        for t, y in zip(saved, res[1:]):
            c["record"](t, x if t == grid[i1] else y)
        if c["bar"] is not None:
            c["bar"].update(i1 - i0)
    return x


def run_adaptive(x, stops, *, dt: Optional[float], rtol, atol, dt_min, max_steps, span, **c):
    """Step doubling on one Brownian path with a PI controller, landing on every time of ``stops``."""
    sde, solver, ctx, noise, bview, levy = c["sde"], c["solver"], c["ctx"], c["noise"], c["bview"], c["levy"]
    guard, info, callback, saves, sign = c["guard"], c["info"], c["callback"], c["saves"], c["sign"]
    order = solver.order_for(ctx.noise_type if noise is not None else None)
    q = order + (0.5 if noise is not None else 1.0)
    h = dt if dt is not None else span / 64
    dt_min = dt_min if dt_min is not None else span * 1e-10
    step = solver.step
    per_step = 3 * (solver.drift_evals + (solver.diffusion_evals if noise is not None else 0))
    shape = x.shape
    t, k, prev_err, accepted = stops[0], 1, 1.0, 0
    while k < len(stops):
        if info.n_steps + info.n_rejected >= max_steps:
            raise RuntimeError(f"max_steps={max_steps} reached at t={sign * t:g} (last step {h:g}); raise "
                               f"max_steps or loosen rtol/atol")
        target = stops[k]
        last = h >= (target - t) * (1 - 1e-12)
        t_new = target if last else t + h
        hh = t_new - t
        tm = t + 0.5 * hh
        x_full = step(sde, t, hh, x, _draw(noise, bview, levy, t, t_new), ctx)
        x_half = step(sde, t, 0.5 * hh, x, _draw(noise, bview, levy, t, tm), ctx)
        x_two = step(sde, tm, t_new - tm, x_half, _draw(noise, bview, levy, tm, t_new), ctx)
        info.nfe += per_step
        if x_two.shape != shape:
            raise ValueError(f"sde: the step at t={sign * t:g} changed the state's shape from {tuple(shape)} to "
                             f"{tuple(x_two.shape)}: check the shapes the drift and diffusion return")
        ok = ~guard.mask.view(guard.view)
        scale = atol + rtol * torch.maximum(x.abs(), x_two.abs())
        ratio = torch.where(ok, (x_two - x_full) / scale, torch.zeros_like(scale))
        err = float(ratio.square().mean().sqrt())
        if not math.isfinite(err):
            err = 1e10
        if err <= 1.0 or hh <= dt_min:
            x_next = guard(x_two, t_new)
            if callback is not None:
                callback(Step(sign * t, sign * t_new, x, x_next, None, c["stage"]))
            x, t = x_next, t_new
            info.n_steps += 1
            accepted += 1
            info.step_sizes.append(hh)
            if last:
                if t in saves:
                    c["record"](t, x)
                k += 1
            factor = 0.9 * max(err, 1e-10) ** (-0.7 / q) * prev_err ** (0.4 / q)
            prev_err = max(err, 1e-4)
            if c["bar"] is not None:
                c["bar"].update(1)
        else:
            info.n_rejected += 1
            factor = 0.9 * err ** (-1.0 / q)
        h = max(hh * min(5.0, max(0.2, factor)), dt_min)
    info.stage_steps.append(accepted)
    return x
