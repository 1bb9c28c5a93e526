"""UniPC (predictor UniP-p, corrector UniC): measured ODE orders, one model evaluation per step, the last step.

Orders are log-log slopes of the error against the exact probability-flow map of Gaussian data (the
``tests/test_sampling.py`` problems: one EDM schedule, and per-band VP/VE schedules) over doublings of
the step count, self-started and with exact starting values for the multistep history.
"""

import math

import pytest
import torch

import solvers
from mrdiffusion.processes import EDMSchedule, gaussian_denoiser
from mrdiffusion.sampling import DenoisingProblem, EDMRho, Grid, UniformLogSNR, UniPC, sample

from test_sampling import NOISINGS, exact_flow, gaussian_problem

SCHEMES = [UniPC(p, v, pred, c) for p in (1, 2, 3) for c in (False, True) for v in ("bh1", "bh2")
           for pred in ("data", "eps")]


def exact_start(scheme, nz, D, x_T, times, mean, var):
    """The driver from grid point ``order - 1`` on, the history before it filled with the exact flow's outputs."""
    k = scheme.order - 1
    prob = DenoisingProblem(D, nz, times, x_T, False)
    for i in range(k):
        prob.denoise(prob.u_grid[i], exact_flow(nz, mean, var, x_T, times[0], times[i]))
    x = exact_flow(nz, mean, var, x_T, times[0], times[k])
    u = prob.u_grid
    return solvers.sdeint(prob, x, [u[k], u[-1]], scheme, tstops=u[k + 1:-1])[-1]


@pytest.mark.parametrize("name", list(NOISINGS))
@pytest.mark.parametrize("scheme", SCHEMES, ids=repr)
def test_ode_order_is_the_declared_one(scheme, name):
    """UniP-p alone has order p; with the corrector p + 1 (exact starting values: the formula's own order).

    Self-started, the warm-up steps (a first-order predictor first) bound the slope: at least
    ``min(order, 2)`` without the corrector and ``min(order, 3)`` with it."""
    assert scheme.ode_order == scheme.order + scheme.corrector
    nz = NOISINGS[name]
    mean, var = gaussian_problem(nz)
    t0, t1 = nz.T, 0.15 * nz.T
    gen = torch.Generator().manual_seed(1)
    a, s = nz.alpha_sigma(t0)
    x_T = a * mean + (a * a * var + s * s).sqrt() * torch.randn(64, 1, nz.layout.n, generator=gen,
                                                                dtype=torch.float64)
    exact = exact_flow(nz, mean, var, x_T, t0, t1)
    D = gaussian_denoiser(nz, mean, var)
    errs, errs_exact_start = [], []
    for n in (16, 32, 64):
        x, info = sample(D, nz, x_T, nfe=n, solver=scheme, grid=UniformLogSNR(), t_end=t1)
        assert info.steps == n and info.nfe == n  # one model evaluation per step, corrector included
        errs.append(float((x - exact).abs().max()))
        errs_exact_start.append(float((exact_start(scheme, nz, D, x_T, info.times, mean, var) - exact).abs().max()))
    bound = min(scheme.ode_order, 3 if scheme.corrector else 2)
    slope = math.log2(errs[-2] / errs[-1])
    assert bound - 0.3 <= slope <= scheme.ode_order + 0.8, (errs, slope)
    slope = math.log2(errs_exact_start[-2] / errs_exact_start[-1])
    assert scheme.ode_order - 0.3 <= slope <= scheme.ode_order + 0.8, (errs_exact_start, slope)


def test_the_corrector_pays_off():
    """Same order of the predictor, same NFE: the corrector at least halves the error at 32 steps."""
    nz = NOISINGS["per-band VP/VE"]
    mean, var = gaussian_problem(nz)
    t1 = 0.15 * nz.T
    x_T = torch.randn(16, 1, nz.layout.n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = exact_flow(nz, mean, var, x_T, nz.T, t1)
    D = gaussian_denoiser(nz, mean, var)
    for p in (1, 2, 3):
        err = [float((sample(D, nz, x_T, nfe=32, solver=UniPC(p, corrector=c), grid=UniformLogSNR(), t_end=t1)[0]
                      - exact).abs().max()) for c in (False, True)]
        assert err[1] < err[0] / 2, (p, err)


@pytest.mark.parametrize("scheme", [UniPC(3), UniPC(2, "bh2", "eps"), UniPC(1, corrector=False)], ids=repr)
def test_nfe_is_one_per_step_and_the_last_step_has_no_corrector(scheme):
    """Model calls at every grid time but the end (the corrector's evaluation is the next step's), never at
    σ = 0; the step onto σ = 0 returns α D of the last evaluation, exactly."""
    nz = NOISINGS["per-band VP/VE"]
    mean, var = gaussian_problem(nz)
    D = gaussian_denoiser(nz, mean, var)
    calls = []

    def model(x, t):
        calls.append((t, x))
        return D(x, t)

    x_T = torch.randn(32, 1, nz.layout.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for nfe in (1, 2, 5, 10):
        calls.clear()
        x, info = sample(model, nz, x_T, nfe=nfe, solver=scheme, grid=EDMRho(sigma_min=0.01))
        assert info.nfe == len(calls) == info.steps == nfe
        assert [t for t, _ in calls] == info.times[:-1] and info.times[-1] == 0.0
        t, x_last = calls[-1]
        a0, _ = nz.alpha_sigma(0.0, like=x)
        assert torch.isfinite(x).all() and torch.allclose(x, a0 * D(x_last, t), rtol=0, atol=1e-12)


def test_two_steps_by_hand():
    """Two steps, data prediction, ``B(h) = h``, ``t_end > 0``: step 1 is UniP-1 (DDIM) then UniC-1 with the
    model at the predicted point; step 2 (the last, no corrector; one step left so first order) starts from
    the corrected state with the output at the *predicted* state."""
    nz = EDMSchedule(10.0)
    gen = torch.Generator().manual_seed(4)
    mean, var = torch.randn(1, 3, generator=gen, dtype=torch.float64), 0.3 + torch.rand(1, 3, generator=gen,
                                                                                       dtype=torch.float64)

    def D(x, t):
        return mean + var / (var + t * t) * (x - mean)

    x0 = 10.0 * torch.randn(8, 3, generator=gen, dtype=torch.float64)
    s0, s1, s2 = 10.0, 1.0, 0.1

    class Fixed(Grid):
        def __call__(self, steps, t_start, t_end, noising=None):
            return [s0, s1, s2]

    x, info = sample(D, nz, x0, nfe=2, solver=UniPC(2, "bh1"), grid=Fixed(), t_end=s2)
    h1, h2 = math.log(s0 / s1), math.log(s1 / s2)
    D0 = D(x0, s0)
    x1p = (s1 / s0) * x0 + (1 - math.exp(-h1)) * D0
    D1 = D(x1p, s1)
    x1c = (s1 / s0) * x0 + (1 - math.exp(-h1)) * D0 + h1 * 0.5 * (D1 - D0)  # -α B(h) ρ (m_t - m_0), B = ĥ = -h
    want = (s2 / s1) * x1c + (1 - math.exp(-h2)) * D1
    assert info.nfe == 2 and torch.allclose(x, want, rtol=0, atol=1e-13)
    x_p, _ = sample(D, nz, x0, nfe=2, solver=UniPC(2, "bh1", corrector=False), grid=Fixed(), t_end=s2)
    assert torch.allclose(x_p, (s2 / s1) * x1p + (1 - math.exp(-h2)) * D1, rtol=0, atol=1e-13)


def test_bad_input_is_refused():
    for kw, word in (({"order": 4}, "order"), ({"order": True}, "order"), ({"variant": "bh3"}, "variant"),
                     ({"prediction": "score"}, "prediction")):
        with pytest.raises(ValueError, match=word):
            UniPC(**kw)


def _vp_sigma_hat_grid(sigmas):
    class DiffusersSigmas(Grid):
        def __call__(self, steps, t_start, t_end, noising=None):
            return [float(s) for s in sigmas]

    return DiffusersSigmas()


@pytest.mark.parametrize("order,variant,x0,final", [(3, "bh1", True, "sigma_min"), (2, "bh2", True, "zero"),
                                                    (3, "bh2", False, "sigma_min"), (1, "bh1", True, "sigma_min"),
                                                    (3, "bh2", True, "zero")])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers 0.42 under numpy 2
def test_matches_diffusers_unipc(order, variant, x0, final):
    """diffusers' ``UniPCMultistepScheduler`` on its own VP σ grid with the exact ε-model: the same iterates.

    A data-prediction exponential step is invariant under ``x = α y``, so ours runs in ``y = x/α`` on
    ``σ̂ = σ/α`` (EDM schedule, ``α = 1``) over the scheduler's ``σ̂``; the ε form too. (diffusers 0.42's
    ``bh1`` with ``final_sigmas_type="zero"`` returns NaN: ``B(h) = -h = -∞`` times a zero correction on the
    last step; ours takes that step as ``x = α D``.)"""
    diffusers = pytest.importorskip("diffusers")
    gen = torch.Generator().manual_seed(5)
    mean, var = torch.randn(1, 4, generator=gen, dtype=torch.float64), 0.3 + torch.rand(1, 4, generator=gen,
                                                                                       dtype=torch.float64)

    def D(y, sig):  # exact denoiser of N(mean, var) data at noise level σ̂ (α = 1)
        return mean + var / (var + sig * sig) * (y - mean)

    for steps in (5, 10):
        sched = diffusers.UniPCMultistepScheduler(solver_order=order, solver_type=variant, predict_x0=x0,
                                                  final_sigmas_type=final)
        sched.set_timesteps(steps)
        sched.sigmas = sig = sched.sigmas.to(torch.float64)  # its float32 σ̂ would limit the match to ~1e-5
        y_T = sig[0] * torch.randn(16, 4, generator=gen, dtype=torch.float64) + mean
        x = y_T / (1 + sig[0] ** 2).sqrt()
        for i, t in enumerate(sched.timesteps):
            a = 1 / (1 + sig[i] ** 2).sqrt()
            eps = (x / a - D(x / a, float(sig[i]))) / sig[i]  # ε = (x - αD)/σ, σ = σ̂ α
            x = sched.step(eps, t, x).prev_sample
        x = x * (1 + sig[-1] ** 2).sqrt()  # back to y = x/α
        ours, info = sample(D, EDMSchedule(float(sig[0])), y_T, nfe=steps, grid=_vp_sigma_hat_grid(sig),
                            solver=UniPC(order, variant, "data" if x0 else "eps"), t_end=float(sig[-1]))
        assert info.nfe == steps and torch.isfinite(x).all()
        assert torch.allclose(ours, x, rtol=1e-10, atol=1e-10), float((ours - x).abs().max())
