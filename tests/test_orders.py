"""Convergence orders as one table: every scheme × every noise type it supports × {strong, weak, ODE}.

Each row reads the scheme's declared order (``order_for``, ``weak_order_for``, ``ode_order``) and checks it
against a measured log–log slope (float64, fixed seeds), so metadata and behaviour cannot drift apart.

How each kind of order is measured, and why the tolerances are what they are:

* **ODE** — ``x' = Ax`` with a rotation–decay ``A`` (its diagonal declared as the linear part), exact flow
  by ``expm``; steps 2^-2 … 2^-6. Deterministic: tolerance 0.2 covers pre-asymptotic curvature only.
* **strong** — one vectorised batch of ``PATHS`` paths on one :class:`solvers.BrownianPath`, mean absolute
  error at ``T = 1`` for steps 2^-3 … 2^-8. Exact solutions for diagonal and scalar noise (geometric
  Brownian motion: ``X_T`` is a function of ``W_T``); additive noise: a nonlinear drift against SRA1 at
  2^-12 on the same path (its error, ~2^-18, is far below the finest measured one); general noise:
  non-commuting linear noise (no closed form) against Euler–Maruyama at 2^-13 on the same path (its
  error is ≈ 0.18 of the finest measured one and nearly independent of it, so it adds ≈ 1.5 % to it). With 500 paths the slope's sampling error is ≈ 0.05
  (seen across seeds); tolerance 0.15 (0.2 for order 1.5, whose finest errors approach the reference's).
* **weak** — ``E[X_T²]`` (or ``E[X_T]``), computed *exactly* for linear SDEs: every scheme's step on
  ``dX = λX dt + Σ_k μ_k X dW_k + σ dW`` is affine in ``X`` with coefficients polynomial in the Gaussian
  increments (degree ≤ 2), so Gauss–Hermite quadrature (5 nodes per Gaussian, exact to degree 9) gives
  the moments of one step and a recursion gives them after ``1/h`` steps: no Monte-Carlo error at all,
  so steps 2^-4 … 2^-9 cost nothing; tolerance 0.15 for pre-asymptotic curvature. A linear problem can only *raise* an observed order
  (e.g. the trapezoidal θ = ½ and midpoint rules reach weak order 2 on linear additive noise), so weak
  order 1 on additive noise is measured on a nonlinear drift instead, by Monte Carlo with 2^13 coupled
  paths against SRA1 at 2^-9 on the same path (standard error ≤ 1e-4 against errors ≥ 8e-4 at the finest
  step; tolerance 0.15).
"""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

import solvers
from problems import slope

T = 1.0
PATHS = 500
DTS = [2.0**-k for k in range(3, 9)]
WEAK_DTS = [2.0**-k for k in range(4, 10)]  # exact moments: small steps cost nothing
MC_DTS = [2.0**-k for k in range(2, 7)]
NOISE_TYPES = ("diagonal", "scalar", "additive", "general")


def all_schemes():
    return [solvers.EulerMaruyama(), solvers.TwoStepEuler(), solvers.Heun(), solvers.Milstein(), solvers.SRA1(),
            solvers.ExponentialEuler(), solvers.DriftImplicitEuler(), solvers.DriftImplicitEuler(theta=0.5),
            solvers.RK4(), solvers.StratonovichHeun(), solvers.StratonovichMidpoint(),
            solvers.DerivativeFreeMilstein(), solvers.ExponentialHeun()]


# ----------------------------------------------------------------------------- problems
# Every problem declares half of its linear coefficient as the linear part ``linear(t)``, so the exponential
# and drift-implicit schemes take their general (linear part + nonlinear rest) path and are not exact.


class LinearNoise(solvers.SDE):
    """``dX = a ⊙ X dt + b ⊙ X dW`` on states ``(batch, 2)``: diagonal (one W per element) or scalar noise
    (one W per sample). ``X_T = X_0 exp((a − b²/2) T + b W_T)``."""

    def __init__(self, noise_type, a=(0.5, -0.3), b=(0.8, 0.6)):
        self.noise_type = noise_type
        self.a, self.b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)

    def drift(self, t, x):
        return self.a * x

    def diffusion(self, t, x):
        return self.b * x

    def linear(self, t):
        return 0.5 * self.a

    def exact(self, x0, w):
        w = w.view(w.shape[0], -1)
        return x0 * torch.exp((self.a - 0.5 * self.b**2) * T + self.b * w)


class NonlinearAdditive(solvers.SDE):
    """``dX = (−X + sin X) dt + (1 + t)/2 dW``: additive, time-dependent noise, no closed form."""

    noise_type = "additive"

    def drift(self, t, x):
        return -x + torch.sin(x)

    def diffusion(self, t, x):
        return torch.full_like(x, 0.5 * (1 + t))

    def linear(self, t):
        return -0.5


class NonCommuting(solvers.SDE):
    """``dX = A X dt + Σ_k B_k X dW_k`` on ``(batch, 2)`` with ``B_1 B_2 ≠ B_2 B_1`` (no Lévy-area-free
    scheme beats strong order 1/2 here)."""

    noise_type = "general"
    A = torch.tensor([[-0.4, 0.3], [-0.2, -0.6]], dtype=torch.float64)
    B = torch.tensor([[[0.3, 0.4], [0.0, 0.2]], [[0.1, 0.0], [0.5, -0.2]]], dtype=torch.float64)  # (k, i, j)

    def drift(self, t, x):
        return x @ self.A.T

    def diffusion(self, t, x):
        return torch.einsum("kij,bj->bik", self.B, x)

    def linear(self, t):
        return 0.5 * torch.diagonal(self.A)


class RotationDecay(solvers.SDE):
    """The ODE ``x' = Ax``, ``A = [[-0.5, 2], [-2, -0.3]]``, exact flow ``expm(A t)``."""

    noise_type = None
    A = np.array([[-0.5, 2.0], [-2.0, -0.3]])

    def drift(self, t, x):
        return x @ torch.tensor(self.A.T)

    def diffusion(self, t, x):
        return None

    def linear(self, t):
        return torch.tensor(np.diag(self.A))


# ----------------------------------------------------------------------------- measured orders


def _strong_slope(sde, scheme, x0, path, reference, dts=DTS):
    errors = []
    for dt in dts:
        xT = solvers.sdeint(sde, x0, [0.0, T], scheme, dt=dt, brownian=path)[-1]
        errors.append(float((xT - reference).abs().mean()))
    return slope(dts, errors), errors


@pytest.fixture(scope="module")
def strong_problems():
    """Per noise type: (sde, x0, Brownian path, reference X_T on that path)."""
    out = {}
    x0 = torch.ones(PATHS, 2, dtype=torch.float64)
    for noise in ("diagonal", "scalar"):
        sde = LinearNoise(noise)
        shape = (PATHS, 2) if noise == "diagonal" else (PATHS,)
        path = solvers.BrownianPath(shape, 0.0, T, seed=11, dtype=torch.float64, levy_area=True)
        out[noise] = (sde, x0, path, sde.exact(x0, path.increment(0.0, T)))
    sde = NonlinearAdditive()
    xa = torch.full((PATHS, 2), 0.5, dtype=torch.float64)
    path = solvers.BrownianPath((PATHS, 2), 0.0, T, seed=5, dtype=torch.float64, levy_area=True)
    out["additive"] = (sde, xa, path, solvers.sdeint(sde, xa, [0.0, T], solvers.SRA1(), dt=2.0**-12,
                                                      brownian=path)[-1])
    sde = NonCommuting()
    path = solvers.BrownianPath((PATHS, 2), 0.0, T, seed=7, dtype=torch.float64)
    out["general"] = (sde, x0, path, solvers.sdeint(sde, x0, [0.0, T], solvers.EulerMaruyama(), dt=2.0**-13,
                                                     brownian=path)[-1])
    return out


def _linear_moments(scheme, noise, h, n_steps, lam, mus, sigma, x0=1.0):
    """Exact ``(E X_n, E X_n²)`` of ``scheme`` on ``dX = λX dt + Σ_k μ_k X dW_k + σ dW`` (scalar state).

    One step is ``X' = A X + B`` with ``(A, B)`` a function of the step's Gaussian increments (and of the
    space-time area for SRA1), independent of ``X``: Gauss–Hermite quadrature over those increments gives
    ``E A, E B, E A², E AB, E B²`` exactly, and the first two moments follow by recursion.
    """
    m = len(mus) if noise == "general" else 1
    levy = scheme.needs_levy_area
    nodes, weights = np.polynomial.hermite_e.hermegauss(5)
    weights = weights / weights.sum()
    dims = m * (2 if levy else 1)
    grid = list(itertools.product(range(len(nodes)), repeat=dims))
    xi = torch.tensor([[nodes[i] for i in g] for g in grid], dtype=torch.float64)
    w = torch.tensor([math.prod(weights[i] for i in g) for g in grid], dtype=torch.float64)
    mu = torch.tensor(mus, dtype=torch.float64)

    class Linear(solvers.SDE):
        noise_type = noise

        def drift(self, t, x):
            return lam * x

        def diffusion(self, t, x):
            if noise == "additive":
                return torch.full_like(x, sigma)
            return x.unsqueeze(-1) * mu if noise == "general" else mu[0] * x

        def linear(self, t):
            return 0.5 * lam

    sde = scheme.prepare(Linear())
    dW = math.sqrt(h) * xi[:, :m]
    if levy:  # U = h ΔW / 2 + sqrt(h³/12) ζ, ζ independent of ΔW
        dW = (dW, 0.5 * h * dW + math.sqrt(h**3 / 12) * xi[:, m:])
    view = (lambda v: v.view(-1, 1, m)) if noise == "general" else (lambda v: v.view(-1, 1))
    dW = tuple(view(v) for v in dW) if levy else view(dW)
    ctx = solvers.Context(noise, noise == "general", True)
    zero = torch.zeros(len(grid), 1, dtype=torch.float64)
    B = scheme.step(sde, 0.0, h, zero, dW, ctx).flatten()
    A = scheme.step(sde, 0.0, h, zero + 1, dW, ctx).flatten() - B
    EA, EB, EA2, EAB, EB2 = (float((w * v).sum()) for v in (A, B, A * A, A * B, B * B))
    m1, m2 = x0, x0 * x0
    for _ in range(n_steps):
        m1, m2 = EA * m1 + EB, EA2 * m2 + 2 * EAB * m1 + EB2
    return m1, m2


@pytest.fixture(scope="module")
def additive_weak_reference():
    sde = NonlinearAdditive()
    n = 2**13
    x0 = torch.full((n, 1), 0.5, dtype=torch.float64)
    path = solvers.BrownianPath((n, 1), 0.0, T, seed=3, dtype=torch.float64, levy_area=True)
    ref = solvers.sdeint(sde, x0, [0.0, T], solvers.SRA1(), dt=2.0**-9, brownian=path)[-1]
    return sde, x0, path, ref


def _weak_slope(scheme, noise, request):
    if noise == "additive" and scheme.weak_order_for(noise) < 2:
        # nonlinear drift, E[X_T] by coupled Monte Carlo (see the module docstring)
        sde, x0, path, ref = request.getfixturevalue("additive_weak_reference")
        dts = MC_DTS
        errors = [abs(float((solvers.sdeint(sde, x0, [0.0, T], scheme, dt=dt, brownian=path)[-1] - ref).mean()))
                  for dt in dts]
        return slope(dts, errors), errors
    if noise == "additive":  # weak order 2: exact second moment of Ornstein–Uhlenbeck
        lam, sigma = -1.0, 0.8
        exact = math.exp(2 * lam * T) + sigma**2 * (1 - math.exp(2 * lam * T)) / (-2 * lam)
        errors = [abs(_linear_moments(scheme, noise, h, round(T / h), lam, [], sigma)[1] - exact) for h in WEAK_DTS]
        return slope(WEAK_DTS, errors), errors
    lam, mus = 0.5, ([0.6, 0.5] if noise == "general" else [0.8])
    exact = math.exp((2 * lam + sum(m * m for m in mus)) * T)  # E X_T² of geometric Brownian motion
    errors = [abs(_linear_moments(scheme, noise, h, round(T / h), lam, mus, 0.0)[1] - exact) for h in WEAK_DTS]
    return slope(WEAK_DTS, errors), errors


# ----------------------------------------------------------------------------- the table

ROWS = []
for _s in all_schemes():
    if _s.ode_order is not None:
        ROWS.append(pytest.param(_s, None, "ode", id=f"{_s!r}-ode"))
    for _noise in NOISE_TYPES:
        if _noise in _s.noise_types:
            ROWS.append(pytest.param(_s, _noise, "strong", id=f"{_s!r}-{_noise}-strong"))
            ROWS.append(pytest.param(_s, _noise, "weak", id=f"{_s!r}-{_noise}-weak"))


@pytest.mark.parametrize("scheme,noise,kind", ROWS)
def test_declared_order_is_measured(scheme, noise, kind, strong_problems, request):
    if kind == "ode":
        sde = RotationDecay()
        x0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
        exact = torch.tensor(scipy.linalg.expm(sde.A * T) @ x0[0].numpy())
        dts = [2.0**-k for k in range(2, 7)]
        errors = [float((solvers.sdeint(sde, x0, [0.0, T], scheme, dt=dt)[-1, 0] - exact).norm()) for dt in dts]
        declared, measured, tol = scheme.ode_order, slope(dts, errors), 0.2
    elif kind == "strong":
        sde, x0, path, ref = strong_problems[noise]
        declared = scheme.order_for(noise)
        measured, errors = _strong_slope(sde, scheme, x0, path, ref)
        tol = 0.2 if declared > 1 else 0.15
    else:
        declared = scheme.weak_order_for(noise)
        measured, errors = _weak_slope(scheme, noise, request)
        tol = 0.15
    assert abs(measured - declared) <= tol, (f"{scheme!r} {noise} {kind}: measured {measured:.3f}, declared "
                                             f"{declared}; errors {errors}")


def test_every_declared_order_has_a_row():
    """No declared order goes unmeasured: each supported noise type has a strong and a weak row."""
    ids = {(type(p.values[0]).__name__, p.values[1], p.values[2]) for p in ROWS}
    for s in all_schemes():
        for noise in s.noise_types:
            assert (s.name, noise, "strong") in ids and (s.name, noise, "weak") in ids
        assert (s.ode_order is None) or (s.name, None, "ode") in ids
    assert set(NOISE_TYPES) == set(solvers.NOISE_TYPES)


def test_weak_quadrature_matches_monte_carlo_through_sdeint():
    """The exact-moment recursion agrees with sdeint on many paths (guards the quadrature itself)."""
    scheme, lam, mu, h = solvers.Milstein(), 0.5, 0.8, 0.25
    m1, m2 = _linear_moments(scheme, "diagonal", h, 4, lam, [mu], 0.0)
    n = 400_000
    sde = LinearNoise("diagonal", a=(lam,), b=(mu,))
    xT = solvers.sdeint(sde, torch.ones(n, 1, dtype=torch.float64), [0.0, T], scheme, dt=h, seed=0)[-1]
    se = float(xT.square().std()) / math.sqrt(n)
    assert abs(float(xT.square().mean()) - m2) <= 4 * se, (float(xT.square().mean()), m2, se)
    assert abs(float(xT.mean()) - m1) <= 4 * float(xT.std()) / math.sqrt(n)
