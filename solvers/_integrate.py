"""The one driver: :func:`sdeint`.

The driver owns the time grid, the Brownian increments, saving, divergence
checks and progress; schemes only know how to take one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._base import Context, Scheme
from ._brownian import BrownianPath, as_brownian
from ._sde import as_sde

__all__ = ["sdeint", "SolveInfo", "DivergenceError"]


class DivergenceError(FloatingPointError):
    """Raised by :func:`sdeint` with ``on_divergence="raise"`` when a sample stops being finite."""


@dataclass
class SolveInfo:
    """Statistics of one solve (``sdeint(..., return_info=True)``).

    ``diverged`` is a bool tensor of shape ``(batch,)``; ``diverged_time`` holds
    the time at which a sample was found non-finite or beyond ``max_abs`` (NaN
    for samples that stayed finite). Diverged samples are frozen at their last
    checked finite value; the rest of the batch is unaffected.
    """

    nfe: int = 0
    n_steps: int = 0
    n_rejected: int = 0
    diverged: torch.Tensor | None = None
    diverged_time: torch.Tensor | None = None
    step_sizes: list = field(default_factory=list)

    @property
    def diverged_fraction(self) -> float:
        return float(self.diverged.float().mean()) if self.diverged is not None else 0.0


# ----------------------------------------------------------------------------- validation


def _as_times(ts):
    if isinstance(ts, torch.Tensor):
        if ts.ndim != 1:
            raise ValueError(f"ts: expected a 1-D sequence of times, got a tensor of shape {tuple(ts.shape)}")
        ts = ts.detach().cpu().tolist()
    try:
        ts = [float(t) for t in ts]
    except TypeError as err:
        raise ValueError(f"ts: expected a 1-D sequence of times, got {type(ts).__name__}") from err
    if len(ts) < 2:
        raise ValueError(f"ts: expected at least two times (start and end), got {len(ts)}")
    if not all(math.isfinite(t) for t in ts):
        raise ValueError(f"ts: times must be finite, got {ts}")
    if any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"ts: times must be strictly increasing, got {ts[:8]}{'...' if len(ts) > 8 else ''}")
    return ts


def _broadcasts_to(shape, target) -> bool:
    """Whether a tensor of ``shape`` broadcasts to exactly ``target`` (no torch.fx import, unlike
    ``torch.broadcast_shapes``, which costs seconds on first use)."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))


def _probe(sde, x0, t0):
    """Check drift/diffusion shapes once; return (brownian shape, view shape, general, tensor_g)."""
    f = sde.drift(t0, x0)
    if not isinstance(f, torch.Tensor) or f.shape != x0.shape:
        got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise ValueError(f"sde.drift: returned {got}, expected a tensor of x0.shape = {tuple(x0.shape)}")
    noise = sde.noise
    if noise is None:
        return None, None, False, False
    g = sde.diffusion(t0, x0)
    batch, lead = x0.shape[0], [1] * (x0.ndim - 1)
    m = getattr(sde, "brownian_size", None)
    tensor_g = isinstance(g, torch.Tensor)
    gshape = tuple(g.shape) if tensor_g else ()
    general = noise == "general" or (noise == "additive" and (m is not None or len(gshape) == x0.ndim + 1))
    if general:
        if len(gshape) != x0.ndim + 1 or not _broadcasts_to(gshape[:-1], x0.shape):
            raise ValueError(f"sde.diffusion: returned shape {gshape} for noise={noise!r}; expected "
                             f"(*x0.shape, m) = {(*x0.shape, 'm')}")
        m = gshape[-1] if m is None else m
        if gshape[-1] != m:
            raise ValueError(f"sde.diffusion: last dimension {gshape[-1]} does not match brownian_size={m}")
        return (batch, m), (batch, *lead, m), True, True
    ok = _broadcasts_to(gshape, x0.shape)
    if not ok or (noise in ("diagonal", "scalar") and tensor_g and g.shape != x0.shape):
        raise ValueError(f"sde.diffusion: returned shape {gshape} for noise={noise!r}; expected "
                         f"x0.shape = {tuple(x0.shape)}")
    if noise == "scalar":
        return (batch,), (batch, *lead), False, tensor_g
    return tuple(x0.shape), tuple(x0.shape), False, tensor_g


def _grid(ts, dt, tstops):
    """Step times: every ``ts`` and ``tstops`` point, and uniform steps of at most ``dt`` between them."""
    points = sorted(set(ts) | {float(s) for s in tstops if ts[0] < float(s) < ts[-1]})
    if dt is None:
        return points
    grid = [points[0]]
    for a, b in zip(points, points[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        grid.extend(a + (b - a) * k / n for k in range(1, n))
        grid.append(b)
    return grid


# ----------------------------------------------------------------------------- divergence


class _Guard:
    """Per-sample divergence mask; bad samples are frozen at their last checked value."""

    def __init__(self, x0, max_abs, on_divergence):
        self.mask = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
        self.time = torch.full((x0.shape[0],), float("nan"), dtype=torch.float64)
        self.frozen = x0
        self.max_abs = max_abs
        self.raise_ = on_divergence == "raise"
        self.any_bad = False  # mirrors bool(self.mask.any()) without a device sync
        self.view = (-1,) + (1,) * (x0.ndim - 1)

    def __call__(self, x, t):
        if not self.any_bad and x.numel():
            # Fast path while every sample is healthy: one reduction and one sync. max|x| is NaN if
            # any entry is NaN, and NaN fails the comparison, so nothing slips through.
            if float(x.abs().max()) <= self.max_abs:
                self.frozen = x
                return x
        flat = x.reshape(x.shape[0], -1)
        bad = ~(flat.abs() <= self.max_abs).all(1)  # NaN compares False: caught too
        new = bad & ~self.mask
        if bool(new.any()):
            idx = new.nonzero().flatten().tolist()
            if self.raise_:
                raise DivergenceError(f"samples {idx[:20]}{'...' if len(idx) > 20 else ''} became non-finite "
                                      f"or exceeded max_abs={self.max_abs:g} by t={t:g}")
            self.mask = self.mask | new
            self.time[new.cpu()] = t
            self.any_bad = True
        if self.any_bad:
            x = torch.where(self.mask.view(self.view), self.frozen, x)
        self.frozen = x
        return x


# ----------------------------------------------------------------------------- the driver

# the type that element-wise CPU/CUDA kernels compute in for a state dtype (torch's "opmath" type)
_OPMATH = {torch.float64: torch.float64, torch.float32: torch.float32, torch.float16: torch.float32,
           torch.bfloat16: torch.float32}


def sdeint(sde, x0, ts, solver, *, dt=None, brownian=None, adaptive=False, rtol=1e-3, atol=1e-6,
           dt_min=None, max_steps=1_000_000, tstops=(), seed=None, generator=None, progress=False,
           return_info=False, on_divergence="freeze", max_abs=1e20, check_every=16):
    """Solve an Itô SDE (or an ODE) and return the states at ``ts``.

    Args:
        sde: an object with ``drift(t, x)``, ``diffusion(t, x)`` and ``noise``
            (see :mod:`solvers._sde`), a torchsde-style module (``f``, ``g``,
            ``noise_type``, ``sde_type="ito"``) or a torchdiffeq-style
            ``func(t, y)`` (an ODE).
        x0: initial state, a tensor ``(batch, *event)`` of any shape.
        ts: increasing times at which to save; ``ts[0]`` is the initial time.
        solver: a scheme instance such as ``solvers.Heun()``.
        dt: fixed step (steps between consecutive save/stop times are
            shortened uniformly to land on them); ``None`` steps from save time
            to save time. With ``adaptive=True`` it is the initial step.
        brownian: ``None`` (fixed grid: draw ``sqrt(h)·ξ`` per step, no tree;
            adaptive: a :class:`BrownianPath` seeded by ``seed``), a
            :class:`BrownianPath`, or any callable ``(s, t) -> increment``
            (torchsde's ``BrownianInterval`` included).
        adaptive: step-size control by step doubling on the same Brownian
            path, with a PI controller (``rtol``, ``atol``, ``dt_min``,
            ``max_steps``).
        tstops: extra times that must lie on the step grid (e.g. resolution
            changes).
        seed, generator: randomness of the no-tree fixed-grid mode (a
            ``torch.Generator`` or a seed for a new one; default: global RNG).
        progress: show a tqdm progress bar.
        return_info: also return a :class:`SolveInfo`.
        on_divergence: ``"freeze"`` (flag the sample in ``info.diverged``,
            freeze it, continue with the rest) or ``"raise"``
            (:class:`DivergenceError`).
        max_abs: a state entry beyond this magnitude counts as diverged.
        check_every: divergence check period in steps (also at every save).

    Returns:
        ``(len(ts), *x0.shape)`` tensor, and a :class:`SolveInfo` if asked.
    """
    # --- validate everything before any work
    if isinstance(solver, type) and issubclass(solver, Scheme):
        raise ValueError(f"solver: expected a scheme instance such as solvers.{solver.__name__}(), "
                         f"got the class {solver.__name__}")
    if not isinstance(solver, Scheme):
        raise ValueError(f"solver: expected a scheme instance such as solvers.EulerMaruyama(), got {solver!r}")
    if not isinstance(x0, torch.Tensor) or x0.ndim < 1:
        raise ValueError(f"x0: expected a tensor of shape (batch, *event), got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    ts = _as_times(ts)
    if dt is not None and not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: expected a positive finite step or None, got {dt!r}")
    if on_divergence not in ("freeze", "raise"):
        raise ValueError(f"on_divergence: expected 'freeze' or 'raise', got {on_divergence!r}")
    if check_every is not None and (not isinstance(check_every, int) or check_every < 0):
        raise ValueError(f"check_every: expected a non-negative int or None, got {check_every!r}")
    if adaptive and (rtol <= 0 or atol < 0):
        raise ValueError(f"rtol/atol: expected rtol > 0 and atol >= 0, got rtol={rtol}, atol={atol}")
    sde = as_sde(sde)
    solver.check(sde, tuple(x0.shape))
    sde = solver.prepare(sde)
    bshape, bview, general, tensor_g = _probe(sde, x0, ts[0])
    noisy = bshape is not None
    ctx = Context(sde.noise, general, tensor_g)
    path = None
    if brownian is not None and noisy:
        path = as_brownian(brownian)
        if solver.needs_levy_area and not path.has_levy_area:
            raise ValueError(f"brownian: solver {solver.name} needs the space-time Lévy area; pass "
                             f"BrownianPath(..., levy_area=True) or leave brownian=None")
    elif adaptive and noisy:
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        path = BrownianPath(bshape, ts[0], ts[-1], seed=seed, dtype=x0.dtype, device=x0.device,
                            levy_area=solver.needs_levy_area)
    if generator is None and seed is not None and path is None and noisy:
        generator = torch.Generator(device=x0.device).manual_seed(int(seed))

    guard = _Guard(x0, max_abs, on_divergence)
    info = SolveInfo()
    out = torch.empty((len(ts), *x0.shape), dtype=x0.dtype, device=x0.device)
    out[0] = x0
    if adaptive:
        _adaptive_loop(sde, x0, ts, solver, ctx, path, bview, guard, out, info, dt, rtol, atol, dt_min,
                       max_steps, tstops, progress)
    else:
        _fixed_loop(sde, x0, ts, solver, ctx, path, bview, guard, out, info, dt, tstops, generator,
                    progress, check_every, noisy)
    per_step = solver.drift_evals + (solver.diffusion_evals if noisy else 0)
    info.nfe = per_step * (info.n_steps + info.n_rejected) * (3 if adaptive else 1) + ctx.extra_nfe
    info.diverged, info.diverged_time = guard.mask, guard.time
    return (out, info) if return_info else out


def _increment(path, bview, levy, s, t):
    if levy:
        dW, U = path.space_time(s, t)
        return dW.view(bview), U.view(bview)
    return path.increment(s, t).view(bview)


def _progress(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sdeint", unit="step", leave=False)


def _fixed_loop(sde, x0, ts, solver, ctx, path, bview, guard, out, info, dt, tstops, generator, progress,
                check_every, noisy):
    grid = _grid(ts, dt, tstops)
    n = len(grid) - 1
    save_at = [-1] * (n + 1)
    j = 1
    for i, t in enumerate(grid):
        if j < len(ts) and t == ts[j]:
            save_at[i] = j
            j += 1
    levy = solver.needs_levy_area
    # randn_like on a template draws exactly what torch.randn(bview, generator=..., dtype=..., device=...)
    # draws, at about half the per-call overhead (no shape/dtype/device argument parsing).
    like = scales = None
    if noisy and path is None:
        same = x0.shape == torch.Size(bview) and x0.is_contiguous()
        like = x0 if same else torch.empty(bview, dtype=x0.dtype, device=x0.device)
        # sqrt(h) as a cached 0-d tensor of the op's compute type: multiplying by it skips wrapping a
        # Python float on every call (~2.5 µs of a ~30 µs step at tiny states) and gives the same bits,
        # since a Python scalar is cast to that same type (float32 for 32- and 16-bit states) before use.
        opmath = _OPMATH.get(x0.dtype)
        scales = {} if opmath is not None else None
    randn_like = torch.randn_like
    step = solver.step
    bar = _progress(n, progress)
    tick = max(1, n // 200)
    x = x0
    for i in range(n):
        t, t_next = grid[i], grid[i + 1]
        h = t_next - t
        if not noisy:
            dW = None
        elif path is not None:
            dW = _increment(path, bview, levy, t, t_next)
        else:
            dW = randn_like(like) if generator is None else randn_like(like, generator=generator)
            sq = math.sqrt(h)
            if scales is None:
                dW.mul_(sq)
            else:
                scale = scales.get(sq)
                if scale is None:
                    if len(scales) >= 64:  # a grid with many distinct steps: keep the cache small
                        scales.clear()
                    scale = scales[sq] = torch.tensor(sq, dtype=opmath)
                dW.mul_(scale)
            if levy:  # U = ∫(W_u - W_t) du = h ΔW / 2 + N(0, h³/12), independent parts
                extra = randn_like(like, generator=generator)
                dW = (dW, 0.5 * h * dW + math.sqrt(h**3 / 12) * extra)
        x = step(sde, t, h, x, dW, ctx)
        s = save_at[i + 1]
        if s >= 0 or (check_every and (i + 1) % check_every == 0) or i == n - 1:
            x = guard(x, t_next)
            if s >= 0:
                out[s] = x
        if bar is not None and (i + 1) % tick == 0:
            bar.update(tick)
    if bar is not None:
        bar.close()
    info.n_steps = n


def _adaptive_loop(sde, x0, ts, solver, ctx, path, bview, guard, out, info, dt, rtol, atol, dt_min,
                   max_steps, tstops, progress):
    t_start, t_end = ts[0], ts[-1]
    stops = _grid(ts, None, tstops)[1:]
    save = {t: k for k, t in enumerate(ts)}
    order = solver.order_for(ctx.noise_type if path is not None else None)
    q = order + (0.5 if path is not None else 1.0)
    span = t_end - t_start
    h = dt if dt is not None else span / 64
    dt_min = dt_min if dt_min is not None else span * 1e-10
    levy = solver.needs_levy_area
    step = solver.step
    bar = _progress(None, progress)

    def inc(s, t):
        return None if path is None else _increment(path, bview, levy, s, t)

    x, t, k, prev_err = x0, t_start, 0, 1.0
    while t < t_end:
        if info.n_steps + info.n_rejected >= max_steps:
            raise RuntimeError(f"max_steps={max_steps} reached at t={t:g} (last step {h:g}); raise max_steps "
                               f"or loosen rtol/atol")
        target = stops[k]
        last = h >= (target - t) * (1 - 1e-12)
        t_new = target if last else t + h
        hh = t_new - t
        tm = t + 0.5 * hh
        x_full = step(sde, t, hh, x, inc(t, t_new), ctx)
        x_half = step(sde, t, 0.5 * hh, x, inc(t, tm), ctx)
        x_two = step(sde, tm, t_new - tm, x_half, inc(tm, t_new), ctx)
        ok = ~guard.mask.view(guard.view)
        scale = atol + rtol * torch.maximum(x.abs(), x_two.abs())
        ratio = torch.where(ok, (x_two - x_full) / scale, torch.zeros_like(scale))
        err = float(ratio.square().mean().sqrt())
        if not math.isfinite(err):
            err = 1e10
        if err <= 1.0 or hh <= dt_min:
            x, t = guard(x_two, t_new), t_new
            info.n_steps += 1
            info.step_sizes.append(hh)
            if last:
                if t in save:
                    out[save[t]] = x
                k += 1
            factor = 0.9 * max(err, 1e-10) ** (-0.7 / q) * prev_err ** (0.4 / q)
            prev_err = max(err, 1e-4)
            if bar is not None:
                bar.update(1)
        else:
            info.n_rejected += 1
            factor = 0.9 * err ** (-1.0 / q)
        h = max(hh * min(5.0, max(0.2, factor)), dt_min)
    if bar is not None:
        bar.close()
