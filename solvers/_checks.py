"""Validation the driver runs once, before any work: times, stages, shapes, noise sources."""

from __future__ import annotations

import math

import torch

from ._brownian import as_brownian

__all__ = ["as_times", "broadcasts_to", "probe", "grid", "check_source", "check_state", "check_step_count"]


def check_state(x0, name="x0"):
    """``ValueError`` unless ``x0`` is a real floating-point tensor (the schemes add noise and scale by steps)."""
    if not isinstance(x0, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor (batch, *event) or a 0-d tensor, got {type(x0).__name__}")
    if x0.is_complex() or not x0.is_floating_point():
        raise ValueError(f"{name}: expected a real floating-point tensor (float32 or float64), got dtype "
                         f"{str(x0.dtype).replace('torch.', '')}; convert it first, e.g. {name}.double()")


def check_step_count(ts, dt, max_steps, adaptive):
    """``ValueError`` if a fixed step ``dt`` would take more than ``max_steps`` steps over ``ts``.

    Checked before the grid is built: ``dt=1e-300`` over ``[0, 1]`` would otherwise never finish.
    """
    if dt is None or adaptive:
        return
    span = abs(ts[-1] - ts[0])
    n = span / dt
    if n > max_steps:
        raise ValueError(f"dt: {dt!r} takes about {n:.3g} steps over [{ts[0]}, {ts[-1]}]; expected at most "
                         f"max_steps={max_steps} (a dt of at least {span / max_steps:.3g}, or raise max_steps)")


def as_times(ts, name="ts"):
    """``ts`` as a list of floats, strictly increasing or strictly decreasing; returns ``(times, sign)``."""
    if isinstance(ts, torch.Tensor):
        if ts.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence of times, got a tensor of shape {tuple(ts.shape)}")
        ts = ts.detach().cpu().tolist()
    try:
        ts = [float(t) for t in ts]
    except TypeError as err:
        raise ValueError(f"{name}: expected a 1-D sequence of times, got {type(ts).__name__}") from err
    if len(ts) < 2:
        raise ValueError(f"{name}: expected at least two times (start and end), got {len(ts)}")
    if not all(math.isfinite(t) for t in ts):
        raise ValueError(f"{name}: times must be finite (no NaN or inf), got {ts[:8]}")
    up = all(b > a for a, b in zip(ts, ts[1:]))
    if not up and not all(b < a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"{name}: times must be strictly monotone (increasing, or decreasing for a reverse-time "
                         f"solve), got {ts[:8]}{'...' if len(ts) > 8 else ''}")
    return ts, (1.0 if up else -1.0)


def broadcasts_to(shape, target) -> bool:
    """Whether a tensor of ``shape`` broadcasts to exactly ``target`` (no torch.fx import, unlike
    ``torch.broadcast_shapes``, which costs seconds on first use)."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))


def probe(sde, x, t0, where=""):
    """Check the drift/diffusion shapes of typed terms ``sde`` once.

    Returns ``(brownian shape, view shape, general, tensor_g, g shape)``; the
    first two are ``None`` for an ODE. ``where`` names the stage in messages.
    """
    f = sde.drift(t0, x)
    if not isinstance(f, torch.Tensor) or f.shape != x.shape:
        got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(f"sde.drift{where}: returned {got}, expected a tensor of the state's shape "
                         f"{tuple(x.shape)}")
    noise = sde.noise_type
    if noise is None:
        return None, None, False, False, None
    g = sde.diffusion(t0, x)
    lead = [1] * max(x.ndim - 1, 0)
    batch = (x.shape[0],) if x.ndim else ()
    m = sde.brownian_size
    tensor_g = isinstance(g, torch.Tensor)
    gshape = tuple(g.shape) if tensor_g else ()
    general = noise == "general" or (noise == "additive" and (m is not None or len(gshape) == x.ndim + 1))
    if general:
        if len(gshape) != x.ndim + 1 or not broadcasts_to(gshape[:-1], x.shape):
            raise ValueError(f"sde.diffusion{where}: returned shape {gshape} for noise={noise!r}; expected "
                             f"(*state shape, m) = {(*x.shape, 'm')}")
        m = gshape[-1] if m is None else m
        if gshape[-1] != m:
            raise ValueError(f"sde.diffusion{where}: last dimension {gshape[-1]} does not match brownian_size={m}")
        return (*batch, m), (*batch, *lead, m) if x.ndim else (m,), True, True, gshape
    ok = broadcasts_to(gshape, x.shape)
    if not ok or (noise in ("diagonal", "scalar") and tensor_g and g.shape != x.shape):
        raise ValueError(f"sde.diffusion{where}: returned shape {gshape} for noise={noise!r}; expected the "
                         f"state's shape {tuple(x.shape)}")
    if noise == "scalar":
        return batch, (*batch, *lead) if x.ndim else (), False, tensor_g, gshape
    return tuple(x.shape), tuple(x.shape), False, tensor_g, gshape


def grid(points, dt):
    """Step times through ``points`` (sorted), uniform steps of at most ``dt`` between consecutive points."""
    if dt is None:
        return list(points)
    out = [points[0]]
    for a, b in zip(points, points[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        out.extend(a + (b - a) * k / n for k in range(1, n))
        out.append(b)
    return out


def check_source(brownian, bshape, span, solver, where=""):
    """Normalise a Brownian source and check its shape, time span and Lévy area against the solve."""
    try:
        path = as_brownian(brownian)
    except TypeError as err:
        raise ValueError(f"brownian{where}: {err}") from None
    shape = path.shape
    # torchsde's layout is accepted too: one row per sample, flattened, (batch, prod(event)); for scalar
    # noise (batch, 1). The batch size and the elements per sample must agree either way.
    flat = (shape is not None and len(shape) == 2 and len(bshape) >= 1 and shape[0] == bshape[0]
            and shape[1] == math.prod(bshape[1:]))
    if shape is not None and tuple(shape) != tuple(bshape) and not flat:
        raise ValueError(f"brownian{where}: has shape {tuple(shape)}, but this SDE needs increments of shape "
                         f"{tuple(bshape)}")
    t0, t1 = path.t0, path.t1
    if t0 is not None and t1 is not None:
        tol = 1e-9 * max(1.0, abs(t1 - t0))
        if span[0] < t0 - tol or span[1] > t1 + tol:
            raise ValueError(f"brownian{where}: covers [{t0}, {t1}], but the solve needs [{span[0]}, {span[1]}]")
    if solver.needs_levy_area and not path.has_levy_area:
        raise ValueError(f"brownian{where}: solver {solver.name} needs the space-time Lévy area; pass "
                         f"BrownianPath(..., levy_area=True) or leave brownian=None")
    return path
