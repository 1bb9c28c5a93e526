"""The opt-in torch.compile fast path (solvers._compiled.Compiled) gives the plain path's numbers."""

import pytest
import torch

import solvers
from solvers._compiled import Compiled


class _Diagonal(solvers.SDE):
    noise_type = "diagonal"

    def drift(self, t, x):
        return -x + t

    def diffusion(self, t, x):
        return 0.5 * x


class _Additive(solvers.SDE):
    noise_type = "additive"

    def drift(self, t, x):
        return torch.sin(x)

    def diffusion(self, t, x):
        return torch.full_like(x, 0.3)


def _compile_unusable():
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as err:  # noqa: BLE001 - any failure means: no compiler here
        return f"torch.compile is unusable here: {type(err).__name__}: {err}"
    return None


needs_compile = pytest.mark.skipif(_compile_unusable() is not None, reason=str(_compile_unusable()))


@needs_compile
@pytest.mark.parametrize("sde, scheme", [(_Diagonal(), solvers.EulerMaruyama()), (_Additive(), solvers.SRA1())],
                         ids=["EulerMaruyama", "SRA1"])
def test_compiled_matches_plain(sde, scheme):
    x0 = torch.linspace(-1, 1, 12).reshape(4, 3)
    ts = [0.0, 0.05, 0.1]
    plain = solvers.sdeint(sde, x0, ts, scheme, dt=1e-3, seed=7)
    fast, info = solvers.sdeint(sde, x0, ts, Compiled(scheme), dt=1e-3, seed=7, return_info=True)
    assert fast.shape == plain.shape
    # same noise, same arithmetic: only the rounding of fused kernels may differ
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    assert info.n_steps == 100


def test_uniform_grid_compiles_once():
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()  # backend that counts compiled frames and runs them eagerly
    torch._dynamo.reset()
    # steps t_{k+1} - t_k of this grid differ by round-off: they must share one graph (two frames at
    # most: the first call specialises on t, the second makes it dynamic); unsnapped, every step would
    # recompile until dynamo's recompile limit
    solvers.sdeint(_Diagonal(), torch.ones(2, 3), [0.0, 0.7], Compiled(solvers.EulerMaruyama(), backend=counter),
                   dt=0.7 / 300, seed=0)
    assert counter.frame_count <= 2


def test_compiled_declares_the_wrapped_scheme():
    fast = Compiled(solvers.Heun())
    for name in ("strong_order", "strong_order_additive", "weak_order", "ode_order", "noise_types",
                 "needs_levy_area", "drift_evals", "diffusion_evals"):
        assert getattr(fast, name) == getattr(solvers.Heun(), name)
    assert fast.order_for("additive") == 1.0 and fast.name == "Compiled(Heun)"
    with pytest.raises(ValueError, match="class"):
        Compiled(solvers.Heun)
    with pytest.raises(ValueError, match="uncompiled"):
        Compiled(fast)
    with pytest.raises(ValueError, match="supports noise types"):
        solvers.sdeint(_Diagonal(), torch.ones(2, 1), [0.0, 1.0], Compiled(solvers.SRA1()), dt=0.1)
