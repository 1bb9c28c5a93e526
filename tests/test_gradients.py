"""The gradient seam: autograd through ``solvers.sdeint`` on one fixed Brownian path equals central finite
differences, for every scheme on every noise type it supports, with respect to the drift's parameters, the
diffusion's parameters and ``x0`` (float64).

Tolerance: relative 1e-5 in the 2-norm of the gradient. With step ε = 1e-6 the central difference has
truncation error ~ε²·|L'''| ≈ 1e-12 and rounding error ~1e-16/ε ≈ 1e-10 relative, so agreement to 1e-5
leaves a margin of 10⁵ while a missing term (a detached diffusion, say, which gives 6–87 % errors) fails.
"""

import pytest
import torch

import solvers
from sde_problems import DIFFUSION_PARAMS, DRIFT_PARAMS, PROBLEMS, brownian_size

EPS, RTOL = 1e-6, 1e-5
TS = [0.0, 0.5, 1.0]
DT = 2.0**-3
KINDS = ("diagonal", "scalar", "additive", "general")


class WithLinear(solvers.SDE):
    """A problem given a linear part ``A = -1`` (for the exponential scheme); the rest is nonlinear."""

    def __init__(self, module):
        self.module = module
        self.inner = solvers.as_sde(module)
        self.noise_type = self.inner.noise_type

    def drift(self, t, x):
        return self.inner.drift(t, x)

    def diffusion(self, t, x):
        return self.inner.diffusion(t, x)

    def linear(self, t):
        return -1.0


def _schemes():
    return [solvers.EulerMaruyama(), solvers.TwoStepEuler(), solvers.Heun(), solvers.Milstein(), solvers.SRA1(),
            solvers.ExponentialEuler(), solvers.DriftImplicitEuler(), solvers.DriftImplicitEuler(theta=0.5),
            solvers.StratonovichHeun(), solvers.StratonovichMidpoint(), solvers.DerivativeFreeMilstein()]


CASES = [pytest.param(s, kind, id=f"{s!r}-{kind}") for s in _schemes() for kind in KINDS if kind in s.noise_types]


def _setup(solver, kind):
    module = PROBLEMS[kind]()
    sde = WithLinear(module) if solver.needs_linear else module
    shape = (2,) if kind == "scalar" else (2, brownian_size(module))
    path = solvers.BrownianPath(shape, 0.0, 1.0, seed=5, dtype=torch.float64, levy_area=solver.needs_levy_area)
    x0 = torch.tensor([[0.3, -0.5, 0.8], [-0.2, 0.6, 0.1]], dtype=torch.float64)
    return module, sde, path, x0


def _loss(sde, x0, solver, path):
    xs = solvers.sdeint(sde, x0, TS, solver, dt=DT, brownian=path)
    weights = torch.tensor([0.0, 0.7, 1.0], dtype=torch.float64).view(-1, 1, 1)
    return (weights * (xs + 0.5 * xs.square())).sum()


def _central_difference(fn, tensor):
    grad = torch.zeros_like(tensor)
    flat = grad.view(-1)
    with torch.no_grad():
        for i in range(tensor.numel()):
            old = tensor.view(-1)[i].item()
            tensor.view(-1)[i] = old + EPS
            up = fn()
            tensor.view(-1)[i] = old - EPS
            down = fn()
            tensor.view(-1)[i] = old
            flat[i] = (up - down) / (2 * EPS)
    return grad


def _assert_close(ad, fd, what):
    ad = torch.zeros_like(fd) if ad is None else ad
    err = float((ad - fd).norm() / fd.norm().clamp(min=1e-12))
    assert err <= RTOL, f"{what}: relative error {err:.3g} (autograd {ad.flatten()[:4]}, fd {fd.flatten()[:4]})"


@pytest.mark.parametrize("solver,kind", CASES)
def test_autograd_equals_central_differences(solver, kind):
    module, sde, path, x0 = _setup(solver, kind)
    params = dict(module.named_parameters())
    names = DRIFT_PARAMS[kind] + DIFFUSION_PARAMS[kind]
    x0 = x0.clone().requires_grad_(True)
    loss = _loss(sde, x0, solver, path)
    grads = torch.autograd.grad(loss, [x0] + [params[n] for n in names], allow_unused=True)
    with torch.no_grad():
        fd_x0 = _central_difference(lambda: float(_loss(sde, x0, solver, path)), x0.detach())
    _assert_close(grads[0], fd_x0, "x0")
    for name, g in zip(names, grads[1:]):
        fd = _central_difference(lambda: float(_loss(sde, x0.detach(), solver, path)), params[name].data)
        _assert_close(g, fd, f"{name} ({'drift' if name in DRIFT_PARAMS[kind] else 'diffusion'})")


@pytest.mark.parametrize("kind", ["neural", "parameterised"])
@pytest.mark.parametrize("solver", [solvers.Milstein(), solvers.StratonovichHeun()], ids=repr)
def test_gradients_on_neural_and_parameterised_problems(solver, kind):
    module = PROBLEMS[kind]()
    path = solvers.BrownianPath((2, 3), 0.0, 1.0, seed=6, dtype=torch.float64)
    x0 = torch.tensor([[0.3, -0.5, 0.8], [-0.2, 0.6, 0.1]], dtype=torch.float64)
    params = dict(module.named_parameters())
    names = DRIFT_PARAMS[kind] + DIFFUSION_PARAMS[kind]
    grads = torch.autograd.grad(_loss(module, x0, solver, path), [params[n] for n in names])
    for name, g in zip(names, grads):
        fd = _central_difference(lambda: float(_loss(module, x0, solver, path)), params[name].data)
        _assert_close(g, fd, name)


def test_milstein_state_independent_diagonal_noise():
    """Diagonal noise that does not depend on x: the correction is 0, and gradients still flow (this crashed)."""
    sigma = torch.tensor([0.4, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
    sde = solvers.sde_from_functions(lambda t, x: -x, lambda t, x: sigma.expand_as(x), "diagonal")
    path = solvers.BrownianPath((2, 3), 0.0, 1.0, seed=1, dtype=torch.float64)
    x0 = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    loss = _loss(sde, x0, solvers.Milstein(), path)
    g_sigma, g_x0 = torch.autograd.grad(loss, [sigma, x0])
    _assert_close(g_sigma, _central_difference(lambda: float(_loss(sde, x0, solvers.Milstein(), path)),
                                               sigma.data), "sigma")
    em = _loss(sde, x0, solvers.EulerMaruyama(), path)
    assert abs(float(loss) - float(em)) <= 1e-12  # additive in effect: Milstein is Euler–Maruyama
