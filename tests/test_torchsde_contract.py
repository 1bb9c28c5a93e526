"""The torchsde module contract: every form of module, every noise type, Itô and Stratonovich, each
equal to ``torchsde.sdeint`` with the matching method on the same ``BrownianInterval`` (float64).

Grids are dyadic (dt = 2^-4 on [0, 1]) so that both drivers query the Brownian interval at bit-identical
times; the only differences left are rounding in the order of additions (≤ 1e-14 observed), so the
1e-10 tolerance of the issue is a fail-able bound, not a loose one.
"""

import pytest
import torch

import solvers
from sde_problems import FORMS, PROBLEMS, brownian_size

torchsde = pytest.importorskip("torchsde")

T1, DT, BATCH = 1.0, 2.0**-4, 4
TS = [0.0, 0.5, 1.0]


def _y0():
    return torch.linspace(-0.8, 0.9, BATCH * 3, dtype=torch.float64).reshape(BATCH, 3)


def _bm(problem, seed=0, levy=False):
    kw = {"levy_area_approximation": "space-time"} if levy else {}
    return torchsde.BrownianInterval(0.0, T1, size=(BATCH, brownian_size(problem)), dtype=torch.float64,
                                     entropy=seed, **kw)


def _peer(problem, method, bm, options=None):
    with torch.no_grad():
        return torchsde.sdeint(problem, _y0(), torch.tensor(TS, dtype=torch.float64), bm=bm, method=method,
                               dt=DT, options=options)


def _ours(module, solver, bm):
    with torch.no_grad():
        return solvers.sdeint(module, _y0(), TS, solver, dt=DT, brownian=bm)


# (our scheme, torchsde method, options, sde_type, noise kinds)
ALL = ("diagonal", "scalar", "additive", "general", "neural", "parameterised")
COMMUTATIVE = ("diagonal", "scalar", "additive", "neural", "parameterised")
PAIRS = [
    (solvers.EulerMaruyama(), "euler", None, "ito", ALL),
    (solvers.Milstein(), "milstein", None, "ito", COMMUTATIVE),
    (solvers.DerivativeFreeMilstein(), "milstein", {"grad_free": True}, "ito", COMMUTATIVE),
    (solvers.StratonovichHeun(), "heun", None, "stratonovich", ALL),
    (solvers.StratonovichMidpoint(), "midpoint", None, "stratonovich", ALL),
    # Itô Milstein on a Stratonovich SDE steps the converted drift f + ½ g ∂g: algebraically torchsde's
    # Stratonovich Milstein f h + g ΔW + ½ g ∂g ΔW², so this checks the drift conversion too.
    (solvers.Milstein(), "milstein", None, "stratonovich", COMMUTATIVE),
]
CASES = [pytest.param(s, meth, opt, st, kind, id=f"{s.name}-{meth}-{st}-{kind}")
         for s, meth, opt, st, kinds in PAIRS for kind in kinds]


@pytest.mark.parametrize("solver,method,options,sde_type,kind", CASES)
def test_matches_torchsde(solver, method, options, sde_type, kind):
    problem = PROBLEMS[kind](sde_type)
    bm = _bm(problem)
    ref = _peer(problem, method, bm, options)
    got = _ours(problem, solver, bm)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= 1e-10, float((got - ref).abs().max())


@pytest.mark.parametrize("form", [f for f in FORMS if f != "f_g"])
@pytest.mark.parametrize("kind", ["diagonal", "scalar", "additive", "general"])
@pytest.mark.parametrize("sde_type", ["ito", "stratonovich"])
def test_every_module_form_solves_the_same_sde(form, kind, sde_type):
    problem = PROBLEMS[kind](sde_type)
    solver = solvers.EulerMaruyama() if sde_type == "ito" else solvers.StratonovichHeun()
    bm = _bm(problem, seed=1)
    ref = _peer(problem, "euler" if sde_type == "ito" else "heun", bm)
    got = _ours(FORMS[form](problem), solver, bm)
    assert (got - ref).abs().max() <= 1e-10


def test_srk_additive_matches_sra1():
    problem = PROBLEMS["additive"]("ito")
    bm = _bm(problem, seed=2, levy=True)
    ref = _peer(problem, "srk", bm)
    got = _ours(problem, solvers.SRA1(), bm)
    assert (got - ref).abs().max() <= 1e-10, float((got - ref).abs().max())


def test_stratonovich_is_not_solved_as_ito():
    """The same module as Itô and as Stratonovich gives different solutions, and each matches its peer."""
    ito, strat = PROBLEMS["parameterised"]("ito"), PROBLEMS["parameterised"]("stratonovich")
    bm = _bm(ito, seed=3)
    a = _ours(ito, solvers.EulerMaruyama(), bm)
    b = _ours(strat, solvers.EulerMaruyama(), bm)
    assert (a - b).abs().max() > 1e-2


def test_forward_and_g_is_not_an_ode():
    problem = PROBLEMS["diagonal"]("ito")
    sde = solvers.as_sde(FORMS["forward_g"](problem))
    assert sde.noise_type == "diagonal" and sde.sde_type == "ito"


def test_bad_modules_are_refused_by_name():
    class NoDrift(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def g(self, t, y):
            return y

    class BadType(PROBLEMS["diagonal"]):
        pass

    with pytest.raises(ValueError, match="defines no drift"):
        solvers.as_sde(NoDrift())
    bad = BadType()
    bad.sde_type = "ito-ish"
    with pytest.raises(ValueError, match="sde_type='ito-ish'"):
        solvers.as_sde(bad)
    gp = FORMS["g_prod"](PROBLEMS["general"]())
    del gp.brownian_size
    with pytest.raises(ValueError, match="brownian_size"):
        solvers.as_sde(gp)


def test_a_plain_module_with_forward_only_is_still_an_ode():
    class Func(torch.nn.Module):  # torchdiffeq style: forward(t, y), no noise
        def forward(self, t, y):
            return -y

    sde = solvers.as_sde(Func())
    assert sde.noise_type is None
    y = solvers.sdeint(Func(), torch.ones(2, 1, dtype=torch.float64), [0.0, 1.0], solvers.RK4(), dt=0.01)[-1]
    assert abs(float(y[0, 0]) - torch.exp(torch.tensor(-1.0, dtype=torch.float64)).item()) < 1e-9
