"""Mean-square stability and exactness of the exponential scheme, against closed forms."""

import math

import pytest
import torch

import solvers
from problems import LinearMultiplicative, StiffPointMass


def _second_moment(solver, lam, mu, h, steps, n=2_000_000, seed=0):
    sde = LinearMultiplicative(lam, mu)
    x0 = torch.ones(n, 1, dtype=torch.float64)
    xT = solvers.sdeint(sde, x0, [0.0, steps * h], solver, dt=h, seed=seed)[-1]
    sq = xT.square().flatten()
    return float(sq.mean()), float(sq.std() / math.sqrt(n))


@pytest.mark.parametrize("h,stable", [(0.1, True), (0.5, False)])
def test_euler_maruyama_mean_square_growth_factor(h, stable):
    lam, mu, steps = -3.0, math.sqrt(3.0), 4
    factor = (1 + h * lam) ** 2 + h * mu**2  # 0.79 (stable) and 1.75 (unstable)
    assert (factor < 1) == stable
    m, se = _second_moment(solvers.EulerMaruyama(), lam, mu, h, steps)
    assert abs(m - factor**steps) <= 4 * se, (m, factor**steps, se)


def test_drift_implicit_stable_where_euler_maruyama_is_not():
    lam, mu, h, steps = -3.0, math.sqrt(3.0), 0.5, 4
    m_ei, se_ei = _second_moment(solvers.DriftImplicitEuler(), lam, mu, h, steps)
    factor = (1 + h * mu**2) / (1 - h * lam) ** 2  # 0.4
    assert abs(m_ei - factor**steps) <= 4 * se_ei
    m_em, _ = _second_moment(solvers.EulerMaruyama(), lam, mu, h, steps)
    assert m_ei < 1 < m_em


@pytest.mark.parametrize("h", [0.25, 0.05, 2.0**-10])
def test_exponential_euler_exact_law_of_stiff_point_mass_family(h):
    sde = StiffPointMass(kappa=5.0, eps=0.01, beta=1.0)
    n = 20_000
    T = 1.0
    ts = [0.0, 0.5, 1.0]
    z0 = torch.full((n, 1), 2.0, dtype=torch.float64)
    xs = solvers.sdeint(sde, z0, ts, solvers.ExponentialEuler(), dt=h, seed=1)
    for k, t in enumerate(ts[1:], start=1):
        var = sde.variance(t)
        emp_var = float(xs[k].var())
        assert abs(emp_var - var) <= 4 * var * math.sqrt(2 / (n - 1)), (t, emp_var, var)
        se_mean = math.sqrt(var / n)
        assert abs(float(xs[k].mean()) - sde.mean(2.0, t)) <= 4 * se_mean
    # Euler–Maruyama at the coarse step is off by orders of magnitude (first-step factor 1 - hκ/ε).
    if h == 0.25:
        em = solvers.sdeint(sde, z0, [0.0, T], solvers.EulerMaruyama(), dt=h, seed=1)[-1]
        exact_second_moment = sde.variance(T) + sde.mean(2.0, T) ** 2
        assert float(em.square().mean()) > 1e3 * exact_second_moment


def test_drift_implicit_exact_linear_solve_matches_formula():
    sde = LinearMultiplicative(-50.0, 0.0)  # an ODE in disguise: no noise (mu = 0)
    x0 = torch.ones(3, 1, dtype=torch.float64)
    out = solvers.sdeint(sde, x0, [0.0, 1.0], solvers.DriftImplicitEuler(), dt=0.25)[-1]
    assert torch.allclose(out, x0 / (1 + 0.25 * 50.0) ** 4, rtol=1e-14)


def test_drift_implicit_newton_on_nonlinear_drift():
    class Cubic(solvers.SDE):
        noise = "additive"

        def drift(self, t, x):
            return -20.0 * x**3 - x

        def diffusion(self, t, x):
            return torch.zeros_like(x)

    x0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=torch.float64)
    h = 0.1
    y = solvers.sdeint(Cubic(), x0, [0.0, h], solvers.DriftImplicitEuler(tol=1e-14), dt=h)[-1]
    residual = y - h * Cubic().drift(h, y) - x0
    assert residual.abs().max() < 1e-12
