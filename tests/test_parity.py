"""Parity with torchdiffeq (reverse time, 0-d states, gradients w.r.t. times) and bad input at the driver."""

import math

import pytest
import torch
import torchdiffeq

import solvers
from problems import GBM, OU

A = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64)


def _spiral(t, x):  # dx/dt = A x + sin(t): a damped rotation with a time-dependent forcing
    return x @ A.T + math.sin(float(t))


def test_reverse_time_ode_matches_torchdiffeq():
    x0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    ts = [1.0, 0.4, -0.5]
    ours = solvers.sdeint(_spiral, x0, ts, solvers.RK4(), dt=1e-3)
    peer = torchdiffeq.odeint(_spiral, x0, torch.tensor(ts, dtype=torch.float64), method="dopri5", rtol=1e-12,
                              atol=1e-12)
    assert torch.allclose(ours, peer, atol=1e-11, rtol=0)  # RK4 at h=1e-3: error ~1e-13
    back = solvers.sdeint(_spiral, ours[-1], ts[::-1], solvers.RK4(), dt=1e-3)  # forward again: back to x0
    assert torch.allclose(back[-1], x0, atol=1e-11, rtol=0)
    adaptive = solvers.sdeint(_spiral, x0, ts, solvers.RK4(), adaptive=True, rtol=1e-10, atol=1e-12)
    assert torch.allclose(adaptive, peer, atol=1e-8, rtol=0)


def test_reverse_time_sde_is_euler_on_the_decreasing_grid():
    """x_{k+1} = x_k + f(t_k, x_k)(t_{k+1} - t_k) + g(t_k, x_k)(W(t_{k+1}) - W(t_k)) with t_{k+1} < t_k."""
    sde = GBM(a=0.4, b=0.7)
    path = solvers.BrownianPath((5, 2), 0.0, 1.0, seed=9, dtype=torch.float64)
    x0 = torch.ones(5, 2, dtype=torch.float64)
    out = solvers.sdeint(sde, x0, [1.0, 0.0], solvers.EulerMaruyama(), dt=0.05, brownian=path)[-1]
    x, grid = x0, [1.0 - 0.05 * k for k in range(21)]
    grid[-1] = 0.0
    for t, u in zip(grid, grid[1:]):
        x = x + sde.drift(t, x) * (u - t) + sde.diffusion(t, x) * -path.increment(u, t)
    assert torch.allclose(out, x, atol=1e-13, rtol=0)


def test_reversed_path_space_time_area():
    """B(τ) = W(-τ): U_B over [s, t] against a Riemann sum of B on a fine grid."""
    from solvers._reverse import ReversedBrownian

    path = solvers.BrownianPath((200,), 0.0, 1.0, seed=3, dtype=torch.float64, levy_area=True)
    rev = ReversedBrownian(path)
    s, t, n = -0.75, -0.25, 2**12
    dB, U = rev.space_time(s, t)
    fine = [s + (t - s) * k / n for k in range(n + 1)]
    B = [rev.increment(s, u) if u > s else torch.zeros(200, dtype=torch.float64) for u in fine]
    riemann = sum(0.5 * (B[k] + B[k + 1]) for k in range(n)) * ((t - s) / n)
    assert torch.allclose(dB, B[-1], atol=1e-13)
    assert float((U - riemann).abs().max()) < 5e-4  # trapezoid error on a Brownian path, h = 2^-13


def test_zero_dimensional_states():
    y = solvers.sdeint(lambda t, x: -x, torch.tensor(1.0, dtype=torch.float64), [0.0, 1.0], solvers.RK4(), dt=0.01)
    assert y.shape == (2,) and abs(float(y[-1]) - math.exp(-1.0)) < 1e-9
    for sde in (GBM(), OU()):
        a = solvers.sdeint(sde, torch.tensor(1.0, dtype=torch.float64), [0.0, 0.5, 1.0], solvers.EulerMaruyama(),
                           dt=0.1, seed=3)
        b = solvers.sdeint(sde, torch.ones(1, dtype=torch.float64), [0.0, 0.5, 1.0], solvers.EulerMaruyama(),
                           dt=0.1, seed=3)
        assert a.shape == (3,) and torch.equal(a, b[:, 0])
    path = solvers.BrownianPath((), 0.0, 1.0, seed=1, dtype=torch.float64)
    y = solvers.sdeint(GBM(), torch.tensor(2.0, dtype=torch.float64), [0.0, 1.0], solvers.Milstein(), dt=1e-3,
                       brownian=path)[-1]
    assert abs(float(y - GBM().exact(2.0, 1.0, path.increment(0.0, 1.0)))) < 0.02


def test_gradients_with_respect_to_times():
    """x(t) = x0 exp(a (t - t0)): ∂x(t_i)/∂t_i = a x(t_i), ∂x(t_i)/∂t_0 = -a x(t_i); also against torchdiffeq."""
    a = -0.8
    x0 = torch.tensor([[1.5], [0.5]], dtype=torch.float64)
    ts = torch.tensor([0.2, 0.7, 1.3], dtype=torch.float64, requires_grad=True)
    out = solvers.sdeint(lambda t, x: a * x, x0, ts, solvers.RK4(), dt=1e-3)
    (grad,) = torch.autograd.grad(out[1:].sum(), ts)
    x = x0.sum() * torch.exp(a * (ts.detach()[1:] - 0.2))
    exact = torch.cat([-a * x.sum().view(1), a * x])
    assert torch.allclose(grad, exact, rtol=1e-10, atol=0)
    ts2 = ts.detach().clone().requires_grad_(True)
    peer = torchdiffeq.odeint_adjoint(_Linear(a), x0, ts2, method="dopri5", rtol=1e-12, atol=1e-12)
    (grad_peer,) = torch.autograd.grad(peer[1:].sum(), ts2)
    assert torch.allclose(grad, grad_peer, rtol=1e-8, atol=0)
    # reverse time: the same formula
    tr = torch.tensor([1.0, 0.25], dtype=torch.float64, requires_grad=True)
    out = solvers.sdeint(lambda t, x: a * x, x0, tr, solvers.RK4(), dt=1e-3)
    (g,) = torch.autograd.grad(out[-1].sum(), tr)
    xe = float(x0.sum()) * math.exp(a * -0.75)
    assert torch.allclose(g, torch.tensor([-a * xe, a * xe], dtype=torch.float64), rtol=1e-10)
    with pytest.raises(ValueError, match="ts: gradients with respect to the times are defined for ODEs only"):
        solvers.sdeint(GBM(), x0, ts, solvers.EulerMaruyama(), dt=0.1)


class _Linear(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, t, x):
        return self.a * x


def test_bad_brownian_and_times_raise_before_any_work():
    calls = []

    class Watched(GBM):
        def drift(self, t, x):
            calls.append(t)
            return super().drift(t, x)

    x0 = torch.ones(16, 3)
    em = solvers.EulerMaruyama()
    for shape in ((3, 16), (48,)):
        with pytest.raises(ValueError, match=rf"brownian: has shape {re_shape(shape)}.*\(16, 3\)"):
            solvers.sdeint(Watched(), x0, [0.0, 1.0], em, dt=0.1, brownian=solvers.BrownianPath(shape, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"brownian: covers \[0.0, 0.5\], but the solve needs \[0.0, 1.0\]"):
        solvers.sdeint(Watched(), x0, [0.0, 1.0], em, dt=0.1, brownian=solvers.BrownianPath((16, 3), 0.0, 0.5))
    with pytest.raises(ValueError, match="brownian: expected a Brownian source"):
        solvers.sdeint(Watched(), x0, [0.0, 1.0], em, dt=0.1, brownian=3)
    assert len(calls) == 4  # one probe each: no step
    with pytest.raises(ValueError, match="t0, t1: BrownianPath needs a finite interval"):
        solvers.BrownianPath((16, 3), 0.0, math.inf)
    with pytest.raises(ValueError, match="t0, t1: BrownianPath needs a finite interval"):
        solvers.BrownianPath((16, 3), math.nan, 1.0)
    for ts in ([0.0, math.nan, 1.0], torch.tensor([0.0, math.inf])):
        with pytest.raises(ValueError, match=r"ts: times must be finite \(no NaN or inf\)"):
            solvers.sdeint(Watched(), x0, ts, em, dt=0.1)
    with pytest.raises(ValueError, match="ts: times must be strictly monotone"):
        solvers.sdeint(Watched(), x0, [0.0, 1.0, 0.5], em)
    assert len(calls) == 4


def re_shape(shape):
    return "\\(" + ", ".join(map(str, shape)) + (",\\)" if len(shape) == 1 else "\\)")


@pytest.mark.parametrize("part", ["drift", "diffusion"])
def test_output_shape_change_mid_solve_names_the_time(part):
    class Changing(GBM):
        def drift(self, t, x):
            f = super().drift(t, x)
            return f[:1] if part == "drift" and t > 0.5 else f  # (1, 3) broadcasts silently against (16, 3)

        def diffusion(self, t, x):
            g = super().diffusion(t, x)
            return g[:1] if part == "diffusion" and t > 0.5 else g

    # checked on every call, whatever the divergence check's period: found at the step of the change
    for every in (16, 1, None):
        with pytest.raises(ValueError, match=rf"sde.{part}: returned shape \(1, 3\) at t=0\.51,"):
            solvers.sdeint(Changing(), torch.ones(16, 3), [0.0, 1.0], solvers.EulerMaruyama(), dt=0.01, seed=0,
                           check_every=every)
    # reverse time and step-size control too; the time named is the caller's
    with pytest.raises(ValueError, match=rf"sde.{part}: returned shape \(1, 3\) at t=0\.5"):
        solvers.sdeint(Changing(), torch.ones(16, 3), [0.0, 1.0], solvers.Heun(), dt=0.01, seed=0, adaptive=True)

    class Falling(Changing):  # the change happens below t = 0.5 when the solve runs from 1 down to 0
        def drift(self, t, x):
            return super().drift(1.0 - t, x)

        def diffusion(self, t, x):
            return super().diffusion(1.0 - t, x)

    with pytest.raises(ValueError, match=rf"sde.{part}: returned shape \(1, 3\) at t=0\.49,"):
        solvers.sdeint(Falling(), torch.ones(16, 3), [1.0, 0.0], solvers.EulerMaruyama(), dt=0.01, seed=0)


def test_state_shape_change_is_caught_every_step():
    class Growing(GBM):
        def drift(self, t, x):
            return super().drift(t, x) if t < 0.5 else super().drift(t, x).unsqueeze(0).expand(2, *x.shape)

    # the drift's output is refused first, at the step where it changes
    with pytest.raises(ValueError, match=r"sde.drift: returned shape \(2, 4, 3\) at t=0.5, expected the state's"):
        solvers.sdeint(Growing(), torch.ones(4, 3), [0.0, 1.0], solvers.EulerMaruyama(), dt=0.1, seed=0,
                       check_every=None)

    class GrowingStep(solvers.EulerMaruyama):  # a step that changes the state's shape by itself
        def step(self, sde, t, h, x, dW, ctx):
            y = super().step(sde, t, h, x, dW, ctx)
            return y if t < 0.5 else y.unsqueeze(0).expand(2, *y.shape)

    with pytest.raises(ValueError, match=r"sde: the step at t=0.5 changed the state's shape from \(4, 3\)"):
        solvers.sdeint(GBM(), torch.ones(4, 3), [0.0, 1.0], GrowingStep(), dt=0.1, seed=0, check_every=None)


def test_torchsde_flattened_brownian_layout_is_accepted():
    """torchsde's (batch, prod(event)) layout drives a (batch, C, n) state, element for element."""
    torchsde = pytest.importorskip("torchsde")
    x0 = torch.ones(4, 2, 3, dtype=torch.float64)
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(4, 6), dtype=torch.float64, entropy=1)
    out = solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.5, brownian=bm)[-1]
    path = solvers.TabulatedPath([0.0, 0.5, 1.0], torch.stack([torch.zeros(4, 2, 3, dtype=torch.float64),
                                                               bm(0.0, 0.5).view(4, 2, 3), bm(0.0, 1.0).view(4, 2, 3)]))
    assert torch.allclose(out, solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.5,
                                              brownian=path)[-1], atol=1e-14)
    with pytest.raises(ValueError, match=r"brownian: has shape \(2, 12\)"):
        solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.5,
                       brownian=torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(2, 12), dtype=torch.float64))
