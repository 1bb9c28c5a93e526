"""Weak order of the stochastic few-step samplers, measured as a log–log slope without Monte-Carlo noise.

Problem: the few-step benchmark's Gaussian data on 16 Haar band coefficients with the exact denoiser
(``benchmarks.fewstep.build_problem``), scalar VE noising and the per-band variant (fine bands noised
faster). Every sampler is then affine per coordinate in its start and in the normals it draws, so its
output law is Gaussian and known exactly from impulse responses (``benchmarks.fewstep.exact_law``,
itself checked against 40,000 samples in ``tests/test_fewstep_exact.py``).

Setting, and why:
- Sampling starts at ``σ̂ = 50`` from a Gaussian law (the marginal, its mean shifted by one standard
  deviation: :func:`weak_errors`) and stops at the time where the noisiest band's ``σ̂`` is 0.05; the
  output law is compared with the exact law of the sampling SDE there. Stopping at a positive
  noise level leaves out the two errors that do not shrink with the step: the first-order last step onto
  ``σ = 0`` (it returns ``α D``, whose variance is short of the data's by ``O(σ_min²)``) and the stop at
  ``sigma_min`` itself. What is left is the scheme's own error.
- Grid: ``UniformLogSNR``, equal steps in the reference band's ``λ`` (``h = log(50/0.05)/N ≈ 6.9/N``).
  The schemes are built in ``λ`` (exact linear part, ``D`` interpolated in ``λ``), so this is the grid on
  which a step halving halves every ``h``; on the per-band schedules the other bands' ``λ_k`` are smooth
  functions of the reference ``λ`` away from ``t = 0``. ``UniformTime`` is *not* such a family near
  ``t = 0``: a VE band with ``σ_k,min`` has ``σ_k ∝ √t`` there, so the last uniform-``t`` step spans a
  ``λ``-interval that does not shrink with ``N`` (ending at ``σ̂ = 0.002`` on the per-band problem,
  ``ExponentialAdams(2, eta=1)`` measured slopes -0.7, 0.6, 1.0, 1.2 from 8 to 128 steps and its
  third-order sibling errors of 13 to 45; on ``UniformLogSNR`` both measure 2).
- Steps ``N = 32, 64, 128, 256`` (three halvings, ``h`` from 0.22 down to 0.027): the asymptotic regime.
  At 8–16 steps the first-order schemes still measure 0.55–0.75 and the multistep ones are erratic.

Weak error: max over coordinates of ``|mean error| + |variance error|`` of the output law (as in
``docs/sampling.md``'s table for the solvers-level schemes). Slope: least squares of ``log error`` on
``log h`` over the four step counts.

What is asserted, per scheme and per band: the slope is at least the declared weak order for the
sampling SDE's additive noise (``weak_order_for("additive")``) minus 0.2. There is no sampling noise
here, so 0.2 is only the room the approach to the asymptote needs at these ``N`` (the first-order schemes
measure 0.90–0.96, rising; the tightest band 1.84, see below), while a scheme one order short misses it
by 0.7 (1.10 against 1.8, ``test_the_measurement_sees_a_wrong_noise``). The declared orders are 1 for
the one-step schemes and 2 for the multistep SDE schemes of ODE order ≥ 2 (the third-order one is held to
2 by its self-started first-order first step, as its ODE form is). Here ``D`` is affine in ``x``; on a
non-Gaussian mixture, where it is not, :func:`mixture_weak_differences` (Monte Carlo, both step counts on
one Brownian path) measures the same orders.
"""

import math

import pytest
import torch

from benchmarks.fewstep import _impulses, build_problem, exact_law
from mrdiffusion.processes import BandNoising, VESchedule, VPSchedule, gaussian_denoiser
from mrdiffusion.sampling import (Ancestral, DPMSolverPP2M, DPMSolverPP2S, ExponentialAdams, UniformLogSNR, sample,
                                  time_of_sigma_hat)

STEPS = (32, 64, 128, 256)
SIGMA_END = 0.05
GRID = UniformLogSNR()
SCHEMES = (
    ExponentialAdams(1, eta=1.0),
    ExponentialAdams(2, eta=1.0),
    ExponentialAdams(3, eta=1.0),
    ExponentialAdams(2, eta=0.5),
    DPMSolverPP2M(eta=1.0),
    Ancestral(),  # with eta = 1 the same step as ExponentialAdams(1, eta=1) (DDPM), a check of both
    Ancestral(eta=0.5),
    DPMSolverPP2S(eta=1.0),  # single step, two stages: the stage's noise is the first half of the step's path
    DPMSolverPP2S(eta=0.5),
)


class UnscaledNoise(ExponentialAdams):
    """Deliberately wrong: uses ``ΔW`` as if it were the unit normal ``ξ = ΔW/√h`` (noise scaling dropped)."""

    @staticmethod
    def xi(dW, h):
        return dW


class TruncatedNoise(ExponentialAdams):
    """Deliberately wrong at first order: noise amplitude ``σ₂√(2ηh)`` for ``σ₂√(1 - e^{-2ηh})``."""

    def step(self, sde, u, h, x, dW, ctx):
        out = super().step(sde, u, h, x, None, ctx)  # the step without its noise
        s2, lam_step = sde.alpha_sigma(u + h)[1], sde.log_snr(u + h) - sde.log_snr(u)
        return out + s2 * torch.sqrt(2 * self.eta * lam_step) * self.xi(dW, h)


def setting(kind):
    """(noising, exact denoiser, end time, data mean, data variance) for the benchmark's data, means flat."""
    if kind == "vp/ve":  # the benchmark's data under tests/test_sampling.py's per-band VP/VE noising (α ≠ 1)
        _, mean, var = build_problem("scalar")
        nz = BandNoising((4, 4), 2, schedules=[VPSchedule(0.1, 10.0), VPSchedule(0.5, 20.0), VESchedule(0.05, 5.0)])
    else:
        nz, mean, var = build_problem(kind)
    t_end = time_of_sigma_hat(nz, SIGMA_END, 0.0, nz.T)
    return nz, gaussian_denoiser(nz, mean, var), t_end, mean.reshape(-1), var.reshape(-1)


def sde_eta(scheme):
    """The ``η`` of the sampling SDE a scheme converges to: its own, or ``η²`` for :class:`Ancestral`
    (whose fresh noise is ``σ̂_↑² ≈ 2η²h σ̂²`` and deterministic factor ``≈ ρ^{1+η²}`` per step)."""
    return scheme.eta**2 if isinstance(scheme, Ancestral) else scheme.eta


def weak_errors(scheme, kind, steps=STEPS):
    """Per step count, the per-coordinate weak error ``|mean error| + |variance error|`` (flat tensors).

    The start is the marginal at ``T`` shifted by one of its standard deviations, ``N(α_T m + s_T, s_T²)``
    with ``s_T² = α_T² v + σ_T²``. From the marginal's own mean every scheme here would be exact in the mean
    (along that path ``D`` is the data mean, a constant); off it the mean has dynamics to get right. In
    ``z = x/α`` and ``σ̂ = σ/α`` the η-SDE moves a deviation ``y = z - m`` by
    ``dy/dσ̂ = (1 + η) σ̂ y / (v + σ̂²)``, so the exact output mean is
    ``α_e [m + ((v + σ̂_e²)/(v + σ̂_T²))^{(1+η)/2} s_T/α_T]``; the variance does not depend on the start's
    mean and is the marginal's, ``α_e² v + σ_e²``.
    """
    nz, model, t_end, m, v = setting(kind)
    (a_T, s_T), (a_e, s_e) = nz.alpha_sigma(nz.T), nz.alpha_sigma(t_end)
    sd_T = (a_T * a_T * v + s_T * s_T).sqrt()
    start = ((a_T * m + sd_T).reshape(1, 1, -1), sd_T.reshape(1, 1, -1))
    shrink = ((v + (s_e / a_e) ** 2) / (v + (s_T / a_T) ** 2)) ** ((1 + sde_eta(scheme)) / 2)
    mean_e, var_e = a_e * (m + shrink * sd_T / a_T), a_e * a_e * v + s_e * s_e
    out = []
    for n in steps:
        mo, sd = exact_law(lambda x, noise: sample(model, nz, x, nfe=n * scheme.evals_per_step, solver=scheme,
                                                   grid=GRID, t_end=t_end, brownian=_impulses(noise))[0],
                           start, n * draws_per_step(scheme) + 4)
        out.append((mo - mean_e).abs() + (sd * sd - var_e).abs())
    return out


def draws_per_step(scheme):
    """Noise queries per step: the driver's ``ΔW``, plus one per half step for the two-stage SDE scheme."""
    return 3 if isinstance(scheme, DPMSolverPP2S) else 1


def slope(errs, steps=STEPS):
    """Least-squares slope of ``log err`` against ``log h`` (``h ∝ 1/N``)."""
    xs = [-math.log(n) for n in steps]
    ys = [math.log(e) for e in errs]
    xm, ym = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - xm) * (y - ym) for x, y in zip(xs, ys)) / sum((x - xm) ** 2 for x in xs)


PRE_ASYMPTOTIC = pytest.mark.xfail(strict=True, reason=(
    "ExponentialAdams(3, eta=1) under VP/VE: its coarse band's variance error changes sign between 32 and 64 "
    "steps, so the fit over 32-256 reads 1.79 (0.29 in that band); the halvings 64 -> 1024 measure 1.39, "
    "1.77, 1.90, 1.95 there"))


@pytest.mark.parametrize("scheme, kind", [
    pytest.param(sc, kind, marks=PRE_ASYMPTOTIC if kind == "vp/ve" and sc.ode_order == 3 else ())
    for sc in SCHEMES for kind in ("scalar", "perband", "vp/ve")], ids=lambda v: v if isinstance(v, str) else repr(v))
def test_weak_order_is_the_declared_one(scheme, kind):
    assert scheme.stochastic
    errs = weak_errors(scheme, kind)
    err = [float(e.max()) for e in errs]
    p = slope(err)
    assert all(a > b for a, b in zip(err, err[1:])), err
    declared = scheme.weak_order_for("additive")
    assert p >= declared - 0.2, (err, p)
    if kind != "scalar":  # the order holds in every Haar band, each with its own schedule
        nz = setting(kind)[0]
        for level in range(nz.layout.levels + 1):
            band = nz.layout.dwt_level == level
            pb = slope([float(e[band].max()) for e in errs])
            # DPMSolverPP2M's finest band is the tightest (1.84): its error changes sign near N = 16, so the
            # halvings measure 1.63, 1.90, 1.96, then 1.98, 1.99 at 512, 1024 steps: pre-asymptotic, not lower.
            assert pb >= declared - 0.2, (level, pb)


def test_the_measurement_sees_a_wrong_noise():
    """The slope tells a correct noise from a dropped scaling (no convergence) and from a first-order one."""
    right = [float(e.max()) for e in weak_errors(ExponentialAdams(2, eta=1.0), "scalar")]
    unscaled = [float(e.max()) for e in weak_errors(UnscaledNoise(2, eta=1.0), "scalar")]
    truncated = [float(e.max()) for e in weak_errors(TruncatedNoise(2, eta=1.0), "scalar")]
    assert slope(unscaled) < 0.2 and unscaled[-1] > 100 * right[-1], (unscaled, right)
    assert abs(slope(truncated) - 1.0) < 0.2 and truncated[-1] > 10 * right[-1], (truncated, right)


@pytest.mark.parametrize("scheme", [ExponentialAdams(1, eta=1.0), ExponentialAdams(2, eta=1.0),
                                    DPMSolverPP2M(eta=1.0), DPMSolverPP2S(eta=1.0)], ids=repr)
def test_weak_order_on_non_gaussian_data(scheme):
    """The declared order where ``D`` is not affine: ``E[X_N² - X_2N²]`` for N = 16, 32, 64, coupled.

    With 20,000 samples the last difference (≈ 3e-3 for the order-2 schemes) has a standard error ≈ 6e-4,
    so the slope over the two halvings has a standard error ≈ 0.1; seeds 1, 2, 3 measured 0.96–1.00 for
    order 1 and 1.97–2.25 for order 2. 0.3 below the declared order is three standard errors; an order-1
    scheme stays below 1.5, so an order-2 claim cannot pass by chance. (The third-order scheme's differences
    fall below the Monte-Carlo resolution at 64 steps; it is left to the exact test above.)
    """
    e = scheme.evals_per_step  # the same step counts for every scheme: N = 16, 32, 64, 128 steps
    row = mixture_weak_differences(scheme, 20000, steps=tuple(e * n for n in (16, 32, 64, 128)))["x²"]
    p = slope([abs(m) for m, _ in row], (16, 32, 64))
    declared = scheme.weak_order_for("additive")
    assert p >= declared - 0.3, (row, p)
    if declared < 2:
        assert p < 1.5, (row, p)


def mixture_weak_differences(scheme, samples, steps=(16, 32, 64, 128, 256), seed=1):
    """Non-Gaussian data, Monte Carlo: ``E[φ(X_N) - φ(X_2N)]`` and its standard error, X_N and X_2N on one path.

    Data: the 1-D mixture ``0.3 N(-1, 0.3²) + 0.7 N(1.5, 0.5²)`` with its exact denoiser, EDM noising
    from ``σ = 50`` (exact start samples) to ``σ = 0.05`` on ``UniformLogSNR``; the Brownian path is tabulated
    on the finest grid, whose points include every coarser grid's, so all step counts see the same path and
    the difference has a small variance. For weak order ``p`` the difference shrinks like ``N^-p``.
    ``python tests/test_sampling_weak_order.py mixture`` prints it at 200,000 samples (about a minute).
    """
    from mrdiffusion.processes import EDMSchedule, gaussian_mixture_denoiser
    from mrdiffusion.sampling import as_noising

    pi, mu, sd = (torch.tensor(v, dtype=torch.float64) for v in ([0.3, 0.7], [-1.0, 1.5], [0.3, 0.5]))
    nz, t0, t1 = as_noising(EDMSchedule(50.0)), 50.0, SIGMA_END
    model = gaussian_mixture_denoiser(nz, pi, mu.reshape(2, 1), (sd**2).reshape(2, 1))
    gen = torch.Generator().manual_seed(seed)
    k = torch.multinomial(pi, samples, replacement=True, generator=gen)
    x_T = (mu[k] + sd[k] * torch.randn(samples, generator=gen, dtype=torch.float64)
           + t0 * torch.randn(samples, generator=gen, dtype=torch.float64)).reshape(samples, 1)
    u = [t0 - t for t in GRID(max(steps), t0, t1, nz)]
    u[0] = 0.0
    dW = torch.randn(len(u) - 1, samples, 1, generator=gen, dtype=torch.float64)
    dW = dW * torch.tensor([b - a for a, b in zip(u, u[1:])], dtype=torch.float64).sqrt().reshape(-1, 1, 1)
    W = torch.cat([torch.zeros(1, samples, 1, dtype=torch.float64), dW.cumsum(0)])

    def at(v):
        j = min(range(len(u)), key=lambda i: abs(u[i] - v))
        assert abs(u[j] - v) <= 1e-9 * max(1.0, v)
        return W[j]

    outs = [sample(model, nz, x_T, nfe=n, solver=scheme, grid=GRID, t_start=t0, t_end=t1,
                   brownian=lambda s, t: at(t) - at(s))[0] for n in steps]
    res = {}
    for name, phi in (("x", lambda x: x), ("x²", lambda x: x * x), ("tanh 2x", lambda x: torch.tanh(2 * x))):
        d = [phi(a) - phi(b) for a, b in zip(outs, outs[1:])]
        res[name] = [(float(v.mean()), float(v.std()) / math.sqrt(samples)) for v in d]
    return res


if __name__ == "__main__" and "mixture" in __import__("sys").argv:
    n = 200000
    print(f"E[φ(X_N) - φ(X_2N)] ± standard error, N = 16, 32, 64, 128, {n} samples")
    for sc in (ExponentialAdams(1, eta=1.0), ExponentialAdams(2, eta=1.0), ExponentialAdams(3, eta=1.0),
               DPMSolverPP2M(eta=1.0), DPMSolverPP2S(eta=1.0)):
        steps = tuple(sc.evals_per_step * m for m in (16, 32, 64, 128, 256))  # NFE: the same step counts
        for name, row in mixture_weak_differences(sc, n, steps).items():
            halvings = ", ".join(f"{math.log2(abs(a[0] / b[0])):.2f}" for a, b in zip(row, row[1:]))
            print(f"{sc!r} | {name} | {', '.join(f'{m:.2e} ± {e:.0e}' for m, e in row)} | {halvings}", flush=True)
elif __name__ == "__main__":  # the table in docs/sampling.md
    print(f"| scheme | weak error, scalar VE, N = {' / '.join(map(str, STEPS))} | slope | per-band VE: slope "
          "(per level) | per-band VP/VE |")
    print("|---|---|---|---|---|")
    for sc in (*SCHEMES, UnscaledNoise(2, eta=1.0), TruncatedNoise(2, eta=1.0)):
        cells = []
        for kind in ("scalar", "perband", "vp/ve"):
            errs = weak_errors(sc, kind)
            err = [float(e.max()) for e in errs]
            if kind == "scalar":
                cells += [" / ".join(f"{e:.3g}" for e in err), f"{slope(err):.2f}"]
                continue
            level = setting(kind)[0].layout.dwt_level
            bands = ", ".join(f"{slope([float(e[level == k].max()) for e in errs]):.2f}" for k in range(3))
            cells.append(f"{slope(err):.2f} ({bands})")
        name = f"`{sc!r}`" if sc in SCHEMES else f"wrong: {type(sc).__name__}, order 2"
        print(f"| {name} | " + " | ".join(cells) + " |")
