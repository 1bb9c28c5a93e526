"""The HVAE's top-down pass runs through the one driver (solvers.integrate) on the model's own time grid."""

import math

import torch

import solvers
from mrdiffusion.hvae import HVAE, HVAEConfig

SMALL = dict(width=8, mid_width=4, zdim=2, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 2, 3, 3))


class Recording(solvers.TwoStepEuler):
    """TwoStepEuler that records the (t, h) and state shape of every step the driver asks for."""

    def __init__(self):
        self.calls = []

    def step(self, sde, t, h, x, dW, ctx):
        self.calls.append((t, h, x.shape[-1]))
        return super().step(sde, t, h, x, dW, ctx)


def test_driver_steps_are_the_model_steps_on_a_graded_grid():
    # graded grid: step i of a resolution with n trained steps starts at t_k + n (i/m)^2; the driver's
    # (t, h) must be those floats exactly, with the stage (resolution) in force
    model = HVAE(HVAEConfig(**SMALL, grid="graded"))
    steps = (2, 3, 5, 4)
    rec = Recording()
    model.sample(3, solver=rec, steps=steps, generator=torch.Generator().manual_seed(0))
    want = [(st.t, st.h, st.res) for st in model.schedule(steps)]
    assert rec.calls == want
    assert len(want) == sum(steps)


def test_posterior_kl_collected_per_resolution_and_steps_seen_by_the_hook():
    torch.manual_seed(0)
    model = HVAE(HVAEConfig(**SMALL)).double()
    x = torch.randint(0, 17, (4, 1, 8, 8))
    seen = []
    model.step_callback = lambda i, st, state, kl: seen.append((i, st.res, tuple(state.shape), kl))
    _, _, kl = model.elbo(x, generator=torch.Generator().manual_seed(1))
    assert [s[0] for s in seen] == list(range(9))
    assert [s[1] for s in seen] == [1, 2, 2, 4, 4, 4, 8, 8, 8]
    assert all(s[2] == (4, 8, s[1], s[1]) for s in seen)
    for res in (1, 2, 4, 8):  # the KL of a resolution is the sum of its steps' KLs
        parts = [s[3] for s in seen if s[1] == res]
        torch.testing.assert_close(kl[res], sum(parts), rtol=0, atol=0)
        assert bool((kl[res] >= 0).all())


def test_a_non_finite_pass_is_reported_as_non_finite():
    # the driver freezes a sample that turns NaN at its last checked (finite) state, here the start of
    # the 4x4 stage; the model must still report it as non-finite. Block 4 is the 4x4 stage's second step.
    model = HVAE(HVAEConfig(**SMALL))
    with torch.no_grad():
        model.blocks[4].z_proj.weight.fill_(math.nan)
    _, info = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert info["nonfinite"].tolist() == [True, True, True]
