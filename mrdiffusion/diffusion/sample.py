r"""Sampling a learned multi-resolution diffusion, including across point-mass activations.

For ``scalar`` and ``perband`` noising this is :func:`mrdiffusion.sampling.sample`
as it stands (per-coefficient ``α``, ``σ``). For ``pointmass`` noising every
band ``k ≥ 1`` is exactly zero for ``t ≥ a_k``, where ``α_k = σ_k = 0`` and its
log-SNR ``λ_k = \log(α_k/σ_k)`` is ``0/0``; the samplers' ratios
``ρ = σ_2α_1/(σ_1α_2)`` would be NaN there. So :func:`sample_bands` does this:

1. **Grid.** :func:`activation_grid`: Karras' ρ = 7 grid in the coarse band's
   ``σ̂_0 = t`` with ``steps - m`` steps, plus the ``m`` activation times
   inserted as grid points (so every activation is a step boundary).
2. **Frozen bands.** Between activations the solve runs on the *live*
   coefficients only (a sub-state); frozen bands stay exactly zero and cost
   nothing — no ``0/0`` is ever formed.
3. **The step across an activation is exact.** Band ``k``'s SNR reaches 0
   before its cut (:mod:`.families`), so at ``t = a_k`` the band's law given
   everything else is ``x = σ ξ`` with ``ξ ~ N(0, I)`` independent and
   ``σ → 0``: a point mass in ``x``, the standard normal in the scale-free
   state ``x/σ``. The segment that starts at ``a_k`` hands the sampler the new
   band as ``ξ`` with ``α = 0, σ = 1`` at its first time (SNR 0, exactly the
   prior of a diffusion at ``λ = -∞``) and the denoiser is asked for
   ``D(x, a_k)`` with the band at its point mass (zero), which is
   ``E[x_0^{(k)} | x_{a_k}]`` (the model is trained for it, :mod:`.loss`).
   The exponential schemes' first step then has ``ρ = 0`` and gives
   ``x_2 = α_2 D + σ_2 ξ`` — the ODE carrying ``ξ``, the SDE drawing a fresh
   normal — with no ``log 0``; multistep schemes restart (first order) at
   every activation. The tests check this step against its closed form on
   Gaussian data with the exact denoiser.
4. **Schemes.** The data-prediction exponential schemes
   (:class:`~mrdiffusion.sampling.ExponentialAdams` with ``prediction="data"``,
   any order and ``eta``; :class:`~mrdiffusion.sampling.DPMSolverPP2M`) are
   written with ``ρ`` and ``α_2`` only and step from ``α_1 = 0`` exactly.
   Those that divide by ``α_1`` (the noise-prediction form
   ``(α_2/α_1) x``), use ``σ̂ = σ/α`` itself (``EDMEuler``, ``EDMHeun``,
   ``Ancestral``, infinite at SNR 0) or place stages inside a step by ``σ̂``
   (``DPMSolverPP2S``/``3S``) are refused for point-mass noising with a
   message naming the ones that work.
"""

from __future__ import annotations

import torch

from ..sampling import EDMRho, Grid, sample as _sample
from ..sampling._schemes import DPMSolverPP2M, ExponentialAdams

__all__ = ["FixedTimes", "activation_grid", "sample_bands", "POINTMASS_SCHEMES", "pointmass_ready", "check_nfe"]

POINTMASS_SCHEMES = (ExponentialAdams, DPMSolverPP2M)
"""Sampler schemes that step from SNR 0 (``α = 0``) exactly: data-prediction exponential schemes, ``ρ = 0``."""


def pointmass_ready(solver):
    """Whether ``solver`` steps from SNR 0 exactly (data prediction; no ``1/α`` or ``σ/α``)."""
    return isinstance(solver, POINTMASS_SCHEMES) and getattr(solver, "prediction", "data") == "data"


class FixedTimes(Grid):
    """A grid given as its times (``t_start`` first); refuses a call for another number of steps."""

    def __init__(self, times):
        self.times = [float(t) for t in times]

    def __call__(self, steps, t_start, t_end, noising=None):
        if steps != len(self.times) - 1:
            raise ValueError(f"steps: this grid has {len(self.times) - 1} steps, asked for {steps}")
        return list(self.times)

    def __repr__(self):
        return f"FixedTimes({len(self.times) - 1} steps)"


def activation_grid(steps, noising, activations, base=None):
    """``steps + 1`` times from ``noising.T`` down to 0 that contain every activation time.

    The base grid (default EDM's ρ = 7 in the coarse band's ``σ̂``, band 0) has
    ``steps - m`` steps; the ``m`` activations are inserted. Needs
    ``steps ≥ m + 2``.
    """
    cuts = sorted({float(a) for a in activations if 0 < a < noising.T}, reverse=True)
    m = len(cuts)
    if steps < m + 2:
        raise ValueError(f"--nfe: {steps} steps cannot cover the {m} activation times; need at least {m + 2} steps")
    base = EDMRho(rho=7.0, sigma_min=0.002, band=0) if base is None else base
    times = sorted(set(base(steps - m, noising.T, 0.0, noising)) | set(cuts), reverse=True)
    while len(times) < steps + 1:  # a cut fell on a base time: split the longest step in two
        i = max(range(len(times) - 1), key=lambda i: times[i] - times[i + 1])
        times.insert(i + 1, 0.5 * (times[i] + times[i + 1]))
    return times


class _Live:
    """The noising seen by one segment: the live coefficients ``idx``; new ones are SNR 0 at ``t_new``."""

    def __init__(self, noising, idx, new, t_new, schedules, T):
        self.noising, self.idx, self.new, self.t_new = noising, idx, new, t_new
        self.schedules, self.T = schedules, T

    def alpha_sigma(self, t, like=None):
        a, s = self.noising.alpha_sigma(t, like=like)
        a, s = a[self.idx], s[self.idx]
        if t == self.t_new and self.new.any():
            a = torch.where(self.new, torch.zeros_like(a), a)
            s = torch.where(self.new, torch.ones_like(s), s)
        return a, s

    def drift_diffusion(self, t, like=None):
        f, g2 = self.noising.drift_diffusion(t, like=like)
        f, g2 = f[self.idx], g2[self.idx]
        if t == self.t_new and self.new.any():
            f, g2 = torch.where(self.new, torch.zeros_like(f), f), torch.where(self.new, torch.zeros_like(g2), g2)
        return f, g2


def check_nfe(solver, nfe):
    """``ValueError`` unless ``nfe`` model evaluations are used exactly by ``solver`` (to ``σ = 0``)."""
    e, f = solver.evals_per_step, solver.final_evals
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < f or (nfe - f) % e:
        form = f"{f} + {e}·k" if e > 1 else "a positive integer"
        raise ValueError(f"--nfe: {solver!r} uses {e} model evaluation(s) per step and {f} on the last one, so "
                         f"--nfe must be {form} (k = 0, 1, …); got {nfe}")


def sample_bands(denoiser, noising, x_T, *, nfe, solver, activations=(), grid=None, seed=0, sample_ids=None):
    """Sample ``D(x, t)`` under ``noising`` from ``x_T`` at ``noising.T`` to ``t = 0`` in ``nfe`` evaluations.

    ``activations``: the point-mass activation times (empty: one plain
    :func:`~mrdiffusion.sampling.sample` call with ``grid``). ``x_T`` holds
    zeros in the bands frozen at ``T``. Returns ``(x_0, info)`` with
    ``info = {"nfe", "steps", "times"}``.
    """
    check_nfe(solver, nfe)
    cuts = [a for a in activations if 0 < a < noising.T]
    if not cuts:
        x, info = _sample(denoiser, noising, x_T, nfe=nfe, solver=solver, grid=grid, seed=seed,
                          sample_ids=sample_ids)
        return x, {"nfe": info.nfe, "steps": info.steps, "times": info.times}
    if not pointmass_ready(solver):
        raise ValueError(f"--solver: {solver!r} cannot step from a point-mass activation (SNR 0, it divides by "
                         f"α or needs σ/α); use ExponentialAdams (data prediction, any order and eta) or "
                         f"DPMSolverPP2M")
    steps = solver.steps_for(nfe, True)
    times = activation_grid(steps, noising, cuts)
    band = noising.layout.dwt_level
    acts = [float("inf")] + [float(a) for a in activations]  # band k is live for t < acts[k]
    bounds = [i for i, t in enumerate(times) if t in cuts]
    pieces = [0, *bounds, len(times) - 1]
    x = x_T.clone()
    total, gen = 0, torch.Generator().manual_seed(seed * 7919 + 17)
    for j, (i0, i1) in enumerate(zip(pieces, pieces[1:])):
        seg = times[i0:i1 + 1]
        t0 = seg[0]
        live_band = torch.tensor([t0 <= a for a in acts])
        new_band = torch.tensor([t0 == a for a in acts])
        idx = live_band[band].nonzero().squeeze(1).to(x.device)
        new = new_band[band][idx.cpu()].to(x.device)
        schedules = [s for s, lv, nw in zip(noising.schedules, live_band, new_band) if lv and not nw]
        sub = _Live(noising, idx, new, t0, schedules, t0)
        xs = x[..., idx]
        if new.any():  # the new bands' scale-free state at SNR 0: the standard normal prior
            xi = torch.randn(xs.shape, generator=gen, dtype=xs.dtype).to(xs.device)
            xs = torch.where(new, xi, xs)

        def D_sub(xsub, t, idx=idx, new=new, t0=t0):
            full = torch.zeros_like(x)
            full[..., idx] = torch.where(new, torch.zeros_like(xsub), xsub) if t == t0 else xsub
            return denoiser(full, t)[..., idx]

        last = i1 == len(times) - 1
        n_steps = len(seg) - 1
        seg_nfe = solver.final_evals + (n_steps - 1) * solver.evals_per_step if last else \
            n_steps * solver.evals_per_step
        out, info = _sample(D_sub, sub, xs, nfe=seg_nfe, solver=solver, grid=FixedTimes(seg), seed=seed + 1000 * j,
                            t_start=t0, t_end=seg[-1], sample_ids=sample_ids)
        total += info.nfe
        x = torch.zeros_like(x)
        x[..., idx] = out
    return x, {"nfe": total, "steps": steps, "times": times}
