"""The driver's level schedules, save functions, per-step callbacks and checkpointed gradients."""

import math

import pytest
import torch

import solvers
from mrdiffusion import haar
from problems import GBM, OU


class _Params(solvers.SDE):
    """dX = a sin(X) dt + b X dW with trainable a, b (diagonal noise)."""

    noise_type = "diagonal"

    def __init__(self):
        self.a = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        self.b = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)

    def drift(self, t, x):
        return self.a * torch.sin(x) + 0.1 * t

    def diffusion(self, t, x):
        return self.b * x


def _three_levels(path):
    """A 1 -> 2 -> 4 grid schedule on (B, 1, n, n); each level's noise projected from a 4x4 path."""
    def projected(delta):
        class P(solvers.BrownianSource):
            shape = None
            has_levy_area = False

            def increment(self, s, t):
                return 2.0**delta * haar.project(path.increment(s, t), delta, 2)
        return P()

    embed = lambda x: haar.embed(x, 1, 2)  # noqa: E731
    return [solvers.Stage(0.0, OU(), None, projected(2)), solvers.Stage(0.25, GBM(0.1, 0.5), embed, projected(1)),
            solvers.Stage(0.5, OU(theta=1.0), embed, path)]


def test_schedule_equals_a_hand_written_level_loop():
    path = solvers.BrownianPath((3, 1, 4, 4), 0.0, 1.0, seed=4, dtype=torch.float64)
    stages = _three_levels(path)
    x0 = torch.randn(3, 1, 1, 1, dtype=torch.float64)
    ts = [0.0, 0.125, 0.25, 0.5, 0.75, 1.0]
    sol = solvers.integrate(stages, x0, ts, solvers.Heun(), dt=1 / 16)
    assert sol.stages == [0, 0, 1, 2, 2, 2]
    # by hand: one sdeint per stage, embedding in between
    x, ref = x0, {}
    for k, (a, b) in enumerate([(0.0, 0.25), (0.25, 0.5), (0.5, 1.0)]):
        if k:
            x = stages[k].embed(x)
        seg = [a] + [t for t in ts if a < t < b] + [b]
        out = solvers.sdeint(stages[k].sde, x, seg, solvers.Heun(), dt=1 / 16, brownian=stages[k].brownian)
        ref.update({t: out[i] for i, t in enumerate(seg) if t not in ref or t == a})
        x = out[-1]
    for t, y in zip(ts, sol.ys):
        assert y.shape == ref[t].shape and torch.equal(y, ref[t])


def test_callback_sees_every_step_and_save_reduces():
    path = solvers.BrownianPath((3, 1, 4, 4), 0.0, 1.0, seed=4, dtype=torch.float64)
    x0 = torch.zeros(3, 1, 1, 1, dtype=torch.float64)
    steps = []
    sol = solvers.integrate(_three_levels(path), x0, [0.0, 0.5, 1.0], solvers.EulerMaruyama(), dt=1 / 16,
                            callback=steps.append, save=lambda t, x: x.square().mean())
    assert len(steps) == 16 == sol.info.n_steps and sol.info.stage_steps == [4, 4, 8]
    assert [s.stage for s in steps] == [0] * 4 + [1] * 4 + [2] * 8
    assert all(math.isclose(s.t_next - s.t, 1 / 16) for s in steps)
    # the callback's increments are the ones the scheme used: on the last stage they sum to the path's
    total = sum(s.dW for s in steps if s.stage == 2)
    assert torch.allclose(total, path.increment(0.5, 1.0), atol=1e-13)
    assert torch.equal(steps[-1].x_next.square().mean(), sol.ys[-1]) and sol.ys[0] == 0


def test_schedule_validation_before_any_work():
    calls = []

    class Counting(OU):
        def drift(self, t, x):
            calls.append(t)
            return super().drift(t, x)

    x0 = torch.zeros(2, 1, 1, 1)
    embed = lambda x: haar.embed(x, 1, 2)  # noqa: E731
    with pytest.raises(ValueError, match=r"dt=0.1 does not divide the span \[0.0, 0.25\] of stage 0"):
        solvers.integrate([solvers.Stage(0.0, OU()), solvers.Stage(0.25, OU(), embed)], x0, [0.0, 1.0],
                          solvers.EulerMaruyama(), dt=0.1)
    with pytest.raises(ValueError, match="schedule: the first stage must start at ts"):
        solvers.integrate([solvers.Stage(0.1, OU())], x0, [0.0, 1.0], solvers.EulerMaruyama())
    with pytest.raises(ValueError, match="schedule: stage starts must be"):
        solvers.integrate([solvers.Stage(0.0, OU()), solvers.Stage(0.5, OU()), solvers.Stage(0.25, OU())], x0,
                          [0.0, 1.0], solvers.EulerMaruyama())
    bad = solvers.BrownianPath((2, 1, 1, 1), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"brownian \(stage 1\): has shape \(2, 1, 1, 1\).*\(2, 1, 2, 2\)"):
        solvers.integrate([solvers.Stage(0.0, Counting()), solvers.Stage(0.5, Counting(), embed, bad)], x0,
                          [0.0, 1.0], solvers.EulerMaruyama(), dt=0.25)
    assert calls == [0.0, 0.5]  # the probes only: no step was taken
    with pytest.raises(ValueError, match="stage 1 changes the state's shape.*use solvers.integrate"):
        solvers.sdeint([solvers.Stage(0.0, OU()), solvers.Stage(0.5, OU(), embed)], x0, [0.0, 1.0],
                       solvers.EulerMaruyama(), dt=0.25)


def test_divergence_is_frozen_across_stages():
    blow = solvers.sde_from_functions(lambda t, x: x * x)  # dx/dt = x² blows up for x0 = 5 before t = 0.2
    x0 = torch.tensor([5.0, 0.1], dtype=torch.float64).view(2, 1, 1, 1)
    embed = lambda x: haar.embed(x, 1, 2)  # noqa: E731
    sol = solvers.integrate([solvers.Stage(0.0, blow), solvers.Stage(0.5, blow, embed)], x0, [0.0, 0.5, 1.0],
                            solvers.EulerMaruyama(), dt=0.01, check_every=1)
    assert sol.info.diverged.tolist() == [True, False]
    assert 0 < float(sol.info.diverged_time[0]) < 0.5
    assert sol.ys[1].shape == sol.ys[-1].shape == (2, 1, 2, 2) and torch.isfinite(sol.ys[-1]).all()
    assert sol.stages == [0, 1, 1]  # t = 0.5 belongs to the new stage: saved after the embedding
    assert torch.equal(sol.ys[-1][0], sol.ys[1][0])  # frozen, and carried through the embedding
    assert not torch.equal(sol.ys[-1][1], sol.ys[1][1])


@pytest.mark.parametrize("solver", [solvers.EulerMaruyama(), solvers.Heun(), solvers.TwoStepEuler()], ids=repr)
@pytest.mark.parametrize("noise", ["grid", "path"])
def test_checkpointed_gradients_equal_plain_backprop(solver, noise):
    sde = _Params()
    x0 = torch.linspace(0.5, 1.5, 6, dtype=torch.float64).view(3, 2).requires_grad_(True)
    ts = [0.0, 0.31, 1.0]

    def grads(checkpoint):
        brownian = solvers.BrownianPath((3, 2), 0.0, 1.0, seed=2, dtype=torch.float64) if noise == "path" else None
        out = solvers.sdeint(sde, x0, ts, solver, dt=1 / 50, seed=5, brownian=brownian, checkpoint=checkpoint)
        loss = (out[1].sin().sum() + out[-1].square().sum())
        return out.detach(), torch.autograd.grad(loss, (sde.a, sde.b, x0))

    out, plain = grads(None)
    for checkpoint in (True, 7):
        out_c, ckpt = grads(checkpoint)
        assert torch.equal(out, out_c)
        for g, gc in zip(plain, ckpt):
            assert torch.allclose(g, gc, rtol=1e-12, atol=1e-12), (g, gc)


def test_checkpointed_grid_noise_leaves_the_generator_as_a_plain_solve():
    x0 = torch.ones(4, 2, dtype=torch.float64, requires_grad=True)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.01, generator=gen_a)
    b = solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.EulerMaruyama(), dt=0.01, generator=gen_b, checkpoint=True)
    b.sum().backward()
    assert torch.equal(a, b) and torch.equal(gen_a.get_state(), gen_b.get_state())


def test_reverse_time_schedule_matches_stage_by_stage_solves():
    """A schedule run from t = 1 down to 0 (stage starts decreasing) equals reverse-time sdeint per stage."""
    path = solvers.BrownianPath((3, 1, 2, 2), 0.0, 1.0, seed=8, dtype=torch.float64)
    up = lambda x: haar.embed(x, 1, 2)  # noqa: E731
    stages = [solvers.Stage(1.0, OU()), solvers.Stage(0.5, GBM(0.2, 0.4), up, path)]
    x0 = torch.ones(3, 1, 1, 1, dtype=torch.float64)
    sol = solvers.integrate(stages, x0, [1.0, 0.75, 0.5, 0.0], solvers.EulerMaruyama(), dt=1 / 32, seed=1)
    assert sol.stages == [0, 0, 1, 1] and sol.ys[-1].shape == (3, 1, 2, 2)
    first = solvers.sdeint(OU(), x0, [1.0, 0.75, 0.5], solvers.EulerMaruyama(), dt=1 / 32, seed=1)
    second = solvers.sdeint(GBM(0.2, 0.4), up(first[-1]), [0.5, 0.0], solvers.EulerMaruyama(), dt=1 / 32,
                            brownian=path)
    assert torch.equal(sol.ys[1], first[1]) and torch.equal(sol.ys[2], up(first[-1]))
    assert torch.equal(sol.ys[3], second[-1])
