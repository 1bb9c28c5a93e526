"""``sample(model, noising, x_T, nfe=…)``: few-step sampling of a diffusion through the one driver."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import torch

import solvers

from ._grids import EDMRho, Grid
from ._model import PREDICTIONS, as_denoiser
from ._noising import as_noising, sigma_hat
from ._problem import DenoisingProblem, StepNoise
from ._schemes import ExponentialAdams, SamplerScheme

__all__ = ["sample", "SampleInfo", "DEFAULT_SOLVER", "DEFAULT_GRID"]

DEFAULT_SOLVER = ExponentialAdams(order=3, prediction="eps")
"""Third-order exponential Adams on the noise prediction (DPM-Solver(3M) / DEIS-AB3 in ``λ``), ODE: the most
accurate scheme of ``python -m benchmarks.fewstep`` at 10 NFE and within 1.3× of the best at 20
(``docs/sampling.md``). For guided or thresholded sampling prefer the data-prediction form,
``ExponentialAdams(3)``."""

DEFAULT_GRID = EDMRho(rho=7.0, sigma_min=0.002)
"""Karras et al.'s ρ = 7 grid in the noisiest band's ``σ/α``, down to 0.002, then one step to ``σ = 0``."""


@dataclass
class SampleInfo:
    """What :func:`sample` did: model evaluations actually made, steps, the time grid, solver and grid.

    ``nonfinite`` is a bool tensor ``(batch,)``: the samples whose state or model output went non-finite
    (NaN or infinite, or beyond ``1e20`` in magnitude) during the solve, as :class:`solvers.SolveInfo`'s
    ``diverged``; their rows of the returned ``x_0`` are NaN. ``nonfinite_time`` holds the diffusion
    time ``t`` at which each was found (the driver checks every 16 steps and at the end, so this is the first
    check at or after the step where it happened; NaN for the samples that stayed finite).
    """

    nfe: int
    steps: int
    times: list
    solver: str
    grid: str
    nonfinite: Optional[torch.Tensor] = None
    nonfinite_time: Optional[torch.Tensor] = None

    @property
    def nonfinite_count(self) -> int:
        return int(self.nonfinite.sum()) if self.nonfinite is not None else 0


def sample(model, noising, x_T, *, nfe=10, solver=None, grid=None, seed=0, prediction="data", t_start=None,
           t_end=0.0, sample_ids=None, brownian=None, warn=True):
    """Sample from a diffusion model in at most ``nfe`` model evaluations.

    Args:
        model: ``model(x, t)`` returning the data prediction ``D`` (k-diffusion
            / EDM denoisers with :class:`~mrdiffusion.processes.EDMSchedule`,
            where ``t = σ``), the noise ``ε`` or the score, per ``prediction``.
        noising: a :class:`~mrdiffusion.processes.BandNoising` (one schedule
            per Haar band; states ``(batch, C, n)`` of packed band
            coefficients) or one schedule (``VPSchedule``, ``VESchedule``,
            ``EDMSchedule``) for every coordinate.
        x_T: the starting state at ``t_start`` (default ``noising.T``).
        nfe: the budget of model evaluations; the info says how many were made.
        solver: a sampler scheme (default :data:`DEFAULT_SOLVER`).
        grid: a :class:`~mrdiffusion.sampling.Grid` (default :data:`DEFAULT_GRID`).
        seed, sample_ids: the noise of stochastic schemes is a deterministic
            function of ``(seed, step, sample id, element)``: the same model and
            seed give every sample the same result for any batch size.
        prediction: ``"data"``, ``"eps"`` or ``"score"``.
        t_end: where to stop (default 0, where ``σ = 0``; the last step is then
            first order and returns ``α D`` exactly).
        brownian: override the noise: a callable ``(s, t) -> ΔW`` in the
            driver's time ``u = t_start - t`` (tests use it).
        warn: one ``RuntimeWarning`` when some samples went non-finite
            (``False``: report them in the info only).

    Returns:
        ``(x_0, info)``, ``info`` a :class:`SampleInfo`. A sample whose state
        or model output went non-finite is never returned as a finished
        sample: its row of ``x_0`` is NaN and ``info.nonfinite`` flags it.
    """
    if not isinstance(x_T, torch.Tensor) or x_T.ndim < 1 or not x_T.is_floating_point():
        raise ValueError(f"x_T: expected a floating-point tensor (batch, *event), got "
                         f"{tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__}")
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe: expected a positive int, got {nfe!r}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")
    solver = DEFAULT_SOLVER if solver is None else solver
    if not isinstance(solver, SamplerScheme):
        raise ValueError(f"solver: expected a sampler scheme such as mrdiffusion.sampling.ExponentialAdams(), "
                         f"got {solver!r}")
    grid = DEFAULT_GRID if grid is None else grid
    if not isinstance(grid, Grid):
        raise ValueError(f"grid: expected a grid object such as mrdiffusion.sampling.EDMRho(), got {grid!r}")
    noising = as_noising(noising)
    t_start = noising.T if t_start is None else float(t_start)
    t_end = float(t_end)
    if not 0.0 <= t_end < t_start:
        raise ValueError(f"t_start, t_end: expected 0 <= t_end < t_start, got t_start={t_start}, t_end={t_end}")
    if sigma_hat(noising, t_start) <= 0:
        raise ValueError(f"t_start: the noise level at t_start={t_start} is zero; nothing to sample")
    to_zero = sigma_hat(noising, t_end) == 0.0
    steps = solver.steps_for(nfe, to_zero)
    times = grid(steps, t_start, t_end, noising)
    prob = DenoisingProblem(as_denoiser(model, noising, prediction), noising, times, x_T, solver.stochastic)
    noise = None  # the solve's Brownian source, also read by schemes with stages (DenoisingProblem.normals)
    if solver.stochastic:
        noise = brownian if brownian is not None else StepNoise(tuple(x_T.shape), prob.u_grid, seed, x_T.dtype,
                                                                x_T.device, sample_ids)
    prob.brownian = noise
    u = prob.u_grid
    # the driver's divergence check every 16 steps and at the end: one read of the device per check, none per
    # step (a GPU solve does not wait on the host); a sample that went non-finite is flagged at the first check
    # after it did, which is the time reported
    xs, solve = solvers.sdeint(prob, x_T, [u[0], u[-1]], solver, tstops=u[1:-1], brownian=noise,
                               return_info=True)
    x0 = xs[-1]
    bad = solve.diverged.to(x0.device)
    if x0.ndim == 0:
        bad = bad.reshape(())
    if bool(bad.any()):  # frozen at the last finite state by the driver: not a sample, make it NaN
        x0 = torch.where(bad.view((-1,) + (1,) * (x0.ndim - 1)) if x0.ndim else bad,
                         torch.full_like(x0, float("nan")), x0)
        if warn:
            n_bad, n = int(bad.sum()), bad.numel()
            first = float(torch.nanquantile(solve.diverged_time[solve.diverged], 0.0)) if n_bad else float("nan")
            warnings.warn(f"mrdiffusion.sampling.sample: {n_bad} of {n} samples went non-finite (first at "
                          f"t={t_start - first:g}; NaN model output or state); their rows are NaN, see "
                          f"info.nonfinite", RuntimeWarning, stacklevel=2)
    when = torch.where(solve.diverged, t_start - solve.diverged_time, solve.diverged_time)
    return x0, SampleInfo(nfe=prob.nfe, steps=steps, times=list(times), solver=repr(solver), grid=repr(grid),
                          nonfinite=solve.diverged.reshape(-1).cpu(), nonfinite_time=when)
