"""Convergence orders measured as log–log slopes against exact solutions (float64, fixed seeds).

Each test reads the scheme's declared order, so metadata and behaviour cannot drift apart.
"""

import numpy as np
import pytest
import scipy.linalg
import torch

import solvers
from problems import GBM, OU, AdditiveNonlinear, slope

DTS = [2.0**-k for k in range(3, 9)]
PATHS = 500
DT_REF = 2.0**-14


def _strong_errors(sde, solver, x0, path, exact):
    errors = []
    for dt in DTS:
        xT = solvers.sdeint(sde, x0, [0.0, 1.0], solver, dt=dt, brownian=path)[-1]
        errors.append(float((xT - exact).abs().mean()))
    return errors


@pytest.mark.parametrize("solver", [solvers.EulerMaruyama(), solvers.Milstein()], ids=repr)
def test_strong_order_gbm(solver):
    sde = GBM()
    x0 = torch.ones(PATHS, 1, dtype=torch.float64)
    path = solvers.BrownianPath((PATHS, 1), 0.0, 1.0, seed=11, dtype=torch.float64)
    exact = sde.exact(x0, 1.0, path.increment(0.0, 1.0))
    errors = _strong_errors(sde, solver, x0, path, exact)
    assert abs(slope(DTS, errors) - solver.order_for("diagonal")) <= 0.15, errors


@pytest.fixture(scope="module")
def additive_reference():
    sde = AdditiveNonlinear()
    x0 = torch.full((PATHS, 1), 0.5, dtype=torch.float64)
    path = solvers.BrownianPath((PATHS, 1), 0.0, 1.0, seed=5, dtype=torch.float64, levy_area=True)
    ref = solvers.sdeint(sde, x0, [0.0, 1.0], solvers.SRA1(), dt=DT_REF, brownian=path)[-1]
    return sde, x0, path, ref


@pytest.mark.parametrize("solver,tol", [(solvers.SRA1(), 0.2), (solvers.EulerMaruyama(), 0.15),
                                        (solvers.Heun(), 0.15)], ids=repr)
def test_strong_order_additive(additive_reference, solver, tol):
    sde, x0, path, ref = additive_reference
    errors = _strong_errors(sde, solver, x0, path, ref)
    assert abs(slope(DTS, errors) - solver.order_for("additive")) <= tol, errors


def test_weak_order_euler_maruyama_ou():
    sde = OU(theta=2.0, sigma=1.0)
    n = 1_000_000
    gen = torch.Generator().manual_seed(3)
    x0 = torch.ones(n, 1, dtype=torch.float64)
    dts = [2.0**-k for k in range(2, 7)]
    errors = [abs(float((solvers.sdeint(sde, x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=dt,
                                        generator=gen)[-1] ** 2).mean()) - sde.second_moment(1.0, 1.0))
              for dt in dts]
    assert abs(slope(dts, errors) - solvers.EulerMaruyama.weak_order) <= 0.25, errors


def _rotation_decay():
    A = np.array([[-0.5, 2.0], [-2.0, -0.3]])
    return A, torch.tensor(A)


@pytest.mark.parametrize("solver", [solvers.EulerMaruyama(), solvers.Heun(), solvers.RK4(),
                                    solvers.TwoStepEuler(), solvers.SRA1()], ids=repr)
def test_ode_order(solver):
    A, At = _rotation_decay()
    x0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    exact = torch.tensor(scipy.linalg.expm(A) @ x0[0].numpy())
    dts = [2.0**-k for k in range(2, 7)]
    errors = [float((solvers.sdeint(lambda t, x: x @ At.T, x0, [0.0, 1.0], solver, dt=dt)[-1, 0]
                     - exact).norm()) for dt in dts]
    assert abs(slope(dts, errors) - solver.ode_order) <= 0.3, errors
