"""The one driver: :func:`integrate` (and :func:`sdeint`, its fixed-shape face).

The driver owns the time grid, the noise, level schedules (a state that changes
resolution at given times), saving, per-step callbacks, divergence freezing,
shape checks and progress; schemes only know how to take one step. This module
is the only loop over time steps in the project.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, List, Literal, Optional, Sequence, Tuple, Union, overload

import torch

from ._base import Context, Scheme
from ._brownian import BrownianPath, GridNoise
from ._checks import as_times, check_source, check_state, check_step_count, grid, probe
from ._convert import as_terms
from ._guard import DivergenceError, Guard, shape_checked
from ._reverse import ReversedBrownian, reversed_terms
from ._stepping import Step, run_adaptive, run_fixed

__all__ = ["sdeint", "integrate", "Stage", "Solution", "Step", "SolveInfo", "DivergenceError"]


@dataclass(frozen=True)
class Stage:
    """One stage of a level schedule: from ``t_start`` on, the state follows ``sde``.

    ``embed(x) -> x`` carries the state across ``t_start`` (for instance
    :func:`mrdiffusion.haar.embed` into a finer grid; ``None``: unchanged; the
    first stage's ``embed`` is never called). ``brownian`` is this stage's noise
    source (``None``: the ``brownian`` given to the driver, or fresh grid draws).
    """

    t_start: float
    sde: Any
    embed: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    brownian: Any = None


@dataclass
class SolveInfo:
    """Statistics of one solve.

    ``diverged`` is a bool tensor of shape ``(batch,)``; ``diverged_time`` holds
    the time at which a sample was found non-finite or beyond ``max_abs`` (NaN
    for samples that stayed finite). Diverged samples are frozen at their last
    checked finite value (carried through embeddings); the rest of the batch is
    unaffected. ``stage_steps[k]`` counts the accepted steps of stage ``k``.
    """

    nfe: int = 0
    n_steps: int = 0
    n_rejected: int = 0
    diverged: Optional[torch.Tensor] = None
    diverged_time: Optional[torch.Tensor] = None
    step_sizes: list = field(default_factory=list)
    stage_steps: list = field(default_factory=list)

    @property
    def diverged_fraction(self) -> float:
        return float(self.diverged.float().mean()) if self.diverged is not None else 0.0


@dataclass
class Solution:
    """What :func:`integrate` returns.

    ``ys[i]`` is what was saved at ``ts[i]``: the state, or ``save(t, x)``.
    ``ys`` is one stacked tensor ``(len(ts), *shape)`` when every saved value
    is a tensor of one shape (a fixed-shape solve without ``save``), else a
    list. ``stages[i]`` is the index of the stage in force at ``ts[i]`` (a save
    time equal to a stage start belongs to the new stage, after the embedding).
    """

    ts: List[float]
    ys: Union[torch.Tensor, list]
    stages: List[int]
    info: SolveInfo


def _as_stages(schedule, t0, sign) -> List[Stage]:
    # probe: a level schedule is any object with schedule() (solvers cannot import mrdiffusion's classes)
    if callable(getattr(schedule, "schedule", None)):
        schedule = schedule.schedule()
    if isinstance(schedule, (list, tuple)) and schedule and all(isinstance(s, Stage) for s in schedule):
        stages = list(schedule)
        starts = [float(s.t_start) for s in stages]
        if starts[0] != t0:
            raise ValueError(f"schedule: the first stage must start at ts[0] = {t0}, got t_start={starts[0]}")
        if any(sign * (b - a) <= 0 or not math.isfinite(b) for a, b in zip(starts, starts[1:])):
            raise ValueError(f"schedule: stage starts must be finite and strictly {'in' if sign > 0 else 'de'}creasing "
                             f"like ts, got {starts}")
        return [Stage(t, as_terms(s.sde), s.embed, s.brownian) for t, s in zip(starts, stages)]
    if isinstance(schedule, (list, tuple)):
        raise ValueError("sde: expected an SDE, or a level schedule: a non-empty list of solvers.Stage")
    return [Stage(t0, as_terms(schedule))]


def _check_solver(solver):
    if isinstance(solver, type) and issubclass(solver, Scheme):
        raise ValueError(f"solver: expected a scheme instance such as solvers.{solver.__name__}(), "
                         f"got the class {solver.__name__}")
    if not isinstance(solver, Scheme):
        raise ValueError(f"solver: expected a scheme instance such as solvers.EulerMaruyama(), got {solver!r}")


def _own_generator(generator, seed, device, checkpointed):
    """The generator grid noise draws from; a private copy when segments are recomputed (checkpointing)."""
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    if not checkpointed:
        return generator, None
    user = generator
    if user is None:
        user = torch.default_generator if device.type == "cpu" else torch.cuda.default_generators[
            device.index if device.index is not None else torch.cuda.current_device()]
    own = torch.Generator(device=device)
    own.set_state(user.get_state())
    return own, user


def integrate(schedule, x0: torch.Tensor, ts, solver: Scheme, *, dt: Optional[float] = None, brownian=None,
              save: Optional[Callable] = None, callback: Optional[Callable[[Step], None]] = None,
              adaptive: bool = False, rtol: float = 1e-3, atol: float = 1e-6, dt_min: Optional[float] = None,
              max_steps: int = 1_000_000, tstops: Sequence[float] = (), seed: Optional[int] = None,
              generator: Optional[torch.Generator] = None, progress: bool = False,
              on_divergence: Literal["freeze", "raise"] = "freeze", max_abs: float = 1e20,
              check_every: Optional[int] = 16, checkpoint: Union[None, bool, int] = None,
              _fixed_shape: bool = False) -> Solution:
    """Solve an SDE, an ODE or a level schedule of them; return a :class:`Solution`.

    ``schedule`` is an SDE (anything :func:`sdeint` accepts), a list of
    :class:`Stage` (the state may change shape at each stage start), or an
    object with ``schedule() -> list of Stage`` (a multi-resolution SDE).
    ``save(t, x)`` (optional) is evaluated at every time of ``ts`` and its
    value stored instead of the state. ``callback(step)`` (optional) sees
    every accepted step as a :class:`Step` (``t``, ``t_next``, ``x``,
    ``x_next``, ``dW``, ``stage``): moments, KL terms, norms. With several
    stages and a ``dt``, ``dt`` must divide every stage's span. Every other
    argument is as in :func:`sdeint`.
    """
    # --- validate everything before any work
    _check_solver(solver)
    check_state(x0)
    ts_in = ts
    ts, sign = as_times(ts)
    time_grad = isinstance(ts_in, torch.Tensor) and ts_in.requires_grad
    if dt is not None and not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: expected a positive finite step or None, got {dt!r}")
    check_step_count(ts, dt, max_steps, adaptive)
    if on_divergence not in ("freeze", "raise"):
        raise ValueError(f"on_divergence: expected 'freeze' or 'raise', got {on_divergence!r}")
    if check_every is not None and (not isinstance(check_every, int) or check_every < 0):
        raise ValueError(f"check_every: expected a non-negative int or None, got {check_every!r}")
    if adaptive and not (rtol > 0 and atol >= 0):
        raise ValueError(f"rtol/atol: expected rtol > 0 and atol >= 0, got rtol={rtol}, atol={atol}")
    if checkpoint is not None and not (checkpoint is True or checkpoint is False or (
            isinstance(checkpoint, int) and checkpoint >= 1)):
        raise ValueError(f"checkpoint: expected None, True (√n segments) or a positive number of steps per "
                         f"segment, got {checkpoint!r}")
    checkpoint = None if checkpoint is False else checkpoint
    if checkpoint is not None and adaptive:
        raise ValueError("checkpoint: recomputation needs a fixed grid; use adaptive=False with checkpoint")
    tstops = [float(s) for s in tstops]
    if not all(math.isfinite(s) for s in tstops):
        raise ValueError(f"tstops: times must be finite, got {tstops}")
    if save is not None and not callable(save):
        raise ValueError(f"save: expected a function save(t, x), got {save!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback: expected a function callback(step), got {callback!r}")
    stages = _as_stages(schedule, ts[0], sign)
    ends = [s.t_start for s in stages[1:]] + [ts[-1]]
    if any(sign * (e - s.t_start) <= 0 for s, e in zip(stages, ends)):
        raise ValueError(f"schedule: every stage must start before ts[-1] = {ts[-1]}, got starts "
                         f"{[s.t_start for s in stages]}")
    if dt is not None and len(stages) > 1:
        for k, (s, e) in enumerate(zip(stages, ends)):
            n = abs(e - s.t_start) / dt
            if abs(n - round(n)) > 1e-9 * max(1.0, n) or round(n) < 1:
                raise ValueError(f"dt={dt} does not divide the span [{s.t_start}, {e}] of stage {k}: a step "
                                 f"would skip the stage start {e}")

    # probe every stage on the embedded initial state: shapes, noise sources, scheme support
    plans, x = [], x0
    device = x0.device
    for k, st in enumerate(stages):
        where = f" (stage {k})" if len(stages) > 1 else ""
        if k and st.embed is not None:
            x = st.embed(x)
        solver.check(st.sde, tuple(x.shape))  # before any work
        sde = solver.prepare(st.sde)  # the terms in the scheme's calculus
        bshape, bview, general, tensor_g, gshape = probe(sde, x, st.t_start, where)
        if bshape is not None and time_grad:
            raise ValueError("ts: gradients with respect to the times are defined for ODEs only (noise=None)")
        span = sorted((st.t_start, ends[k]))
        src = st.brownian if st.brownian is not None else brownian
        if bshape is not None and src is not None:
            src = check_source(src, bshape, span, solver, where)
            if sign < 0:
                src = ReversedBrownian(src)
        plans.append(dict(sde=sde if sign > 0 else reversed_terms(sde), src=src, bshape=bshape, bview=bview,
                          ctx=Context(sde.noise_type, general, tensor_g), gshape=gshape, shape=tuple(x.shape),
                          dtype=x.dtype))
    gen, user_gen = _own_generator(generator, seed, device, checkpoint is not None)

    # --- solve, in internal time τ = sign·t (a decreasing ts runs forward in -t)
    info = SolveInfo()
    tau = [sign * t for t in ts]
    guard = Guard(x0, max_abs, on_divergence, sign)
    ys, stage_of = [None] * len(ts), [0] * len(ts)
    ts_grad = ts_in if time_grad else None
    # sdeint's one stacked tensor, filled as the solve goes: a list stacked at the end would hold every saved
    # state twice at its peak
    out = torch.empty((len(ts), *x0.shape), dtype=x0.dtype, device=x0.device) if (
        _fixed_shape and save is None) else None

    def record(i, k, x):
        if ts_grad is not None and i > 0:  # ∂x(t_i)/∂t_i = f(t_i, x(t_i)) (exact-flow derivative)
            x = x + (ts_grad[i] - ts_grad[i].detach()).to(x.dtype) * stages[k].sde.drift(ts[i], x)
        if out is not None:
            out[i] = x
        else:
            ys[i] = x if save is None else save(ts[i], x)
        stage_of[i] = k

    x = x0
    record(0, 0, x0)
    if ts_grad is not None:  # ∂x(t)/∂t_0 = -J f(t_0, x_0): move x_0 along -f by the (zero) change of t_0
        x = x0 - (ts_grad[0] - ts_grad[0].detach()).to(x0.dtype) * stages[0].sde.drift(ts[0], x0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="integrate", unit="step", leave=False)
    seed_base = None
    for k, (st, plan) in enumerate(zip(stages, plans)):
        if k:
            x = st.embed(x) if st.embed is not None else x
            if _fixed_shape and tuple(x.shape) != tuple(x0.shape):
                raise ValueError(f"sde: stage {k} changes the state's shape to {tuple(x.shape)}; sdeint returns one "
                                 f"stacked tensor, use solvers.integrate for a schedule that changes shape")
            guard.carry(x)
        a, b = sign * st.t_start, sign * ends[k]
        inside = {i: t for i, t in enumerate(tau) if a <= t < b or (k == len(stages) - 1 and t == b)}
        stops = sorted({a, b} | set(inside.values()) | {sign * s for s in tstops if a < sign * s < b})
        noisy = plan["bshape"] is not None
        src = plan["src"]
        levy = solver.needs_levy_area
        if noisy and src is None:
            if adaptive:
                if seed_base is None:
                    seed_base = int(seed) if seed is not None else int(
                        torch.randint(0, 2**62, (1,), generator=generator).item())
                src = BrownianPath(plan["bshape"], a, b, seed=seed_base + k, dtype=plan["dtype"], device=device,
                                   levy_area=levy)
            else:
                src = GridNoise(plan["bview"], generator=gen, dtype=plan["dtype"], device=device, levy_area=levy,
                                like=x if x.is_contiguous() else None)
        # every drift and diffusion output is checked against the shapes of the first step (a compiled step
        # is left alone: new terms objects would make torch.compile retrace)
        terms = plan["sde"] if solver.compiled else shape_checked(plan["sde"], plan["gshape"], sign)
        saves = {tau_i: i for i, tau_i in inside.items()}
        if k and a in saves:  # right-continuous: a save time at a stage start sees the embedded state
            record(saves[a], k, x)
        common = dict(sde=solver.operand(terms), checked=None, solver=solver, ctx=plan["ctx"], noise=src if noisy else None,
                      bview=None if isinstance(src, GridNoise) else plan["bview"], levy=levy, guard=guard,
                      callback=callback, stage=k, sign=sign, bar=bar, info=info, saves=saves,
                      record=lambda tau_i, x, k=k, saves=saves: record(saves[tau_i], k, x))
        if adaptive:
            x = run_adaptive(x, stops, dt=dt, rtol=rtol, atol=atol, dt_min=dt_min, max_steps=max_steps,
                             span=tau[-1] - tau[0], **common)
        else:
            x = run_fixed(x, grid(stops, dt), check_every=check_every, checkpoint=checkpoint, **common)
    if bar is not None:
        bar.close()
    if user_gen is not None:
        user_gen.set_state(gen.get_state())
    info.nfe += sum(p["ctx"].extra_nfe for p in plans)
    info.diverged, info.diverged_time = guard.mask, guard.time
    if out is not None:
        ys = out
    elif save is None and all(isinstance(y, torch.Tensor) and y.shape == ys[0].shape for y in ys):
        ys = torch.stack(ys)
    return Solution(ts, ys, stage_of, info)


@overload
def sdeint(sde, x0: torch.Tensor, ts, solver: Scheme, *, return_info: Literal[False] = False,
           **kwargs) -> torch.Tensor: ...
@overload  # noqa: E302
def sdeint(sde, x0: torch.Tensor, ts, solver: Scheme, *, return_info: Literal[True],
           **kwargs) -> Tuple[torch.Tensor, SolveInfo]: ...
def sdeint(sde, x0: torch.Tensor, ts, solver: Scheme, *, dt: Optional[float] = None, brownian=None,  # noqa: E302
           adaptive: bool = False, rtol: float = 1e-3, atol: float = 1e-6, dt_min: Optional[float] = None,
           max_steps: int = 1_000_000, tstops: Sequence[float] = (), seed: Optional[int] = None,
           generator: Optional[torch.Generator] = None, progress: bool = False, return_info: bool = False,
           on_divergence: Literal["freeze", "raise"] = "freeze", max_abs: float = 1e20,
           check_every: Optional[int] = 16, checkpoint: Union[None, bool, int] = None,
           callback: Optional[Callable[[Step], None]] = None):
    """Solve an Itô SDE (or an ODE) and return the states at ``ts``.

    Args:
        sde: an object with ``drift(t, x)``, ``diffusion(t, x)`` and ``noise``
            (see :mod:`solvers._sde`), a torchsde-style module (``f``, ``g``,
            ``noise_type``, ``sde_type="ito"``), a torchdiffeq-style
            ``func(t, y)`` (an ODE), or a level schedule (a list of
            :class:`Stage`) whose stages keep the state's shape (otherwise
            use :func:`integrate`).
        x0: initial state, a tensor ``(batch, *event)`` of any shape, or 0-d.
        ts: strictly increasing times at which to save, or strictly decreasing
            for a reverse-time solve; ``ts[0]`` is the initial time. For an ODE,
            a tensor ``ts`` that requires grad gets gradients (the exact flow's
            ``∂x(t_i)/∂t_i = f`` and ``∂x(t_i)/∂t_0 = -J f(t_0, x_0)``).
        solver: a scheme instance such as ``solvers.Heun()``.
        dt: fixed step (steps between consecutive save/stop times are
            shortened uniformly to land on them); ``None`` steps from save time
            to save time. With ``adaptive=True`` it is the initial step.
        brownian: ``None`` (fixed grid: :class:`GridNoise`, no tree; adaptive:
            a :class:`BrownianPath` seeded by ``seed``), or any Brownian source
            (:class:`BrownianPath`, a tabulated path, a callable ``(s, t) ->
            increment`` such as torchsde's ``BrownianInterval``), whose shape
            must be that of the increments.
        adaptive: step-size control by step doubling on the same Brownian
            path, with a PI controller (``rtol``, ``atol``, ``dt_min``,
            ``max_steps``). A fixed ``dt`` is refused before any work if it
            would take more than ``max_steps`` steps over ``ts``.
        tstops: extra times that must lie on the step grid.
        seed, generator: randomness of grid noise (a ``torch.Generator`` or a
            seed for a new one; default: global RNG).
        progress: show a tqdm progress bar.
        return_info: also return a :class:`SolveInfo`. Without it, a solve
            that froze diverged samples warns once (``RuntimeWarning``).
        on_divergence: ``"freeze"`` (flag the sample in ``info.diverged``,
            freeze it, continue with the rest) or ``"raise"``
            (:class:`DivergenceError`).
        max_abs: a state entry beyond this magnitude counts as diverged.
        check_every: period in steps of the divergence check (also at every
            save and stage end). The shapes of the drift's and diffusion's
            outputs are checked on every call: one that changes mid-solve
            (even to a shape that would broadcast) raises, naming the time.
        checkpoint: exact gradients in bounded memory: ``True`` splits the
            grid into about ``√n`` segments, an int sets the steps per segment;
            only segment ends are kept and each segment is recomputed in the
            backward pass (divergence is then checked at segment ends).
        callback: ``callback(step)`` after every accepted step (:class:`Step`).

    Returns:
        ``(len(ts), *x0.shape)`` tensor, and a :class:`SolveInfo` if asked.
    """
    sol = integrate(sde, x0, ts, solver, dt=dt, brownian=brownian, adaptive=adaptive, rtol=rtol, atol=atol,
                    dt_min=dt_min, max_steps=max_steps, tstops=tstops, seed=seed, generator=generator,
                    progress=progress, on_divergence=on_divergence, max_abs=max_abs, check_every=check_every,
                    checkpoint=checkpoint, callback=callback, _fixed_shape=True)
    if not return_info and sol.info.diverged is not None and bool(sol.info.diverged.any()):
        n = int(sol.info.diverged.sum())  # frozen samples look finished: say so when the info is not asked for
        warnings.warn(f"solvers.sdeint: {n} of {sol.info.diverged.numel()} samples became non-finite or exceeded "
                      f"max_abs and were frozen at their last finite state; pass return_info=True and read "
                      f"info.diverged", RuntimeWarning, stacklevel=2)
    return (sol.ys, sol.info) if return_info else sol.ys
