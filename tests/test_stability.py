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


# ----------------------------------------------------------------------------- facts stated on the schemes

def _every_scheme():
    return [solvers.EulerMaruyama(), solvers.TwoStepEuler(), solvers.Heun(), solvers.Milstein(), solvers.SRA1(),
            solvers.ExponentialEuler(), solvers.DriftImplicitEuler(), solvers.DriftImplicitEuler(theta=0.5),
            solvers.DriftImplicitEuler(theta=0.25), solvers.RK4(), solvers.StratonovichHeun(),
            solvers.StratonovichMidpoint(), solvers.DerivativeFreeMilstein()]


@pytest.mark.parametrize("scheme", _every_scheme(), ids=repr)
def test_stated_stability_function_is_the_step(scheme):
    from mrdiffusion.bench.stability import amplification

    re, im = torch.meshgrid(torch.linspace(-5, 2, 36, dtype=torch.float64),
                            torch.linspace(-3, 3, 31, dtype=torch.float64), indexing="ij")
    z = torch.complex(re, im).reshape(-1)
    assert torch.allclose(amplification(scheme, z), scheme.stability_function(z), rtol=1e-12, atol=1e-12)
    assert isinstance(scheme.stability_formula, str) and "z" in scheme.stability_formula


@pytest.mark.parametrize("scheme", [s for s in _every_scheme() if "diagonal" in s.noise_types], ids=repr)
def test_stated_mean_square_factor_is_the_step(scheme):
    """E|X_1|² from the scheme's step (exact 3-point Gauss–Hermite) equals the stated closed form."""
    from mrdiffusion.bench.stability import ms_factor

    a = torch.linspace(-4, 0.5, 19, dtype=torch.float64).repeat(9)
    b = torch.linspace(0.01, 4, 9, dtype=torch.float64).repeat_interleave(19)
    a = torch.where(a.abs() < 1e-9, torch.full_like(a, 1e-3), a)  # φ₁(0) is a removable singularity
    stated = scheme.ms_stability_factor(a, b)
    assert stated is not None and scheme.ms_stability_formula
    assert torch.allclose(ms_factor(scheme, a, b), stated, rtol=1e-11)


def test_drift_implicit_theta_facts():
    half = solvers.DriftImplicitEuler(theta=0.5)
    assert half.stability_formula == "(1 + 0.5z) / (1 − 0.5z)  (A-stable)"
    assert solvers.DriftImplicitEuler().stability_formula == "1 / (1 − z)  (A-stable)"
    assert abs(half.stability_function(-1e6)) < 1  # A-stable: bounded by 1 on the left half-plane
    assert "not A-stable" in solvers.DriftImplicitEuler(theta=0.25).stability_formula


def test_supports_catches_the_dense_newton_limit_before_any_work():
    calls = []

    class Big(solvers.SDE):
        noise_type = "additive"

        def drift(self, t, x):
            calls.append(t)
            return -x

        def diffusion(self, t, x):
            return torch.ones_like(x)

    scheme = solvers.DriftImplicitEuler(max_newton_size=64)
    assert scheme.supports(Big(), (2, 64)) and not scheme.supports(Big(), (2, 8, 9))
    assert "dense 72x72 Jacobian" in scheme.incompatibility(Big(), (2, 8, 9))
    with pytest.raises(ValueError, match="dense 72x72 Jacobian"):
        solvers.sdeint(Big(), torch.zeros(2, 8, 9), [0.0, 1.0], scheme, dt=0.1)
    assert calls == []  # refused before the first drift evaluation
    assert solvers.DriftImplicitEuler(theta=0.0, max_newton_size=64).supports(Big(), (2, 8, 9))  # explicit


def test_supports_reads_noise_type_needs_and_calculus():
    gbm = LinearMultiplicative(-1.0, 0.5)
    assert not solvers.SRA1().supports(gbm) and solvers.Milstein().supports(gbm)
    assert "needs the linear part" in solvers.ExponentialEuler().incompatibility(
        solvers.sde_from_functions(lambda t, x: -x, lambda t, x: x))
    assert not solvers.RK4().supports(gbm) and solvers.RK4().supports(LinearMultiplicative(-1.0))
    assert isinstance(solvers.Heun(), solvers.ItoScheme) and isinstance(solvers.StratonovichHeun(),
                                                                        solvers.StratonovichScheme)
    assert solvers.Milstein().noise_types == {"diagonal", "scalar", "additive"}
    assert solvers.RK4().sde_type is None and solvers.RK4().noise_types == frozenset()


def test_stratonovich_conversion_of_linear_noise():
    """Stratonovich dX = λX dt + μX∘dW is Itô dX = (λ + μ²/2)X dt + μX dW: the converted drift says so."""
    sde = solvers.sde_from_functions(lambda t, x: -1.0 * x, lambda t, x: 0.5 * x, "diagonal", sde_type="stratonovich")
    ito = solvers.with_sde_type(sde, "ito")
    x = torch.tensor([[0.3, -2.0]], dtype=torch.float64)
    assert torch.allclose(ito.drift(0.0, x), (-1.0 + 0.125) * x, rtol=1e-15)
    assert solvers.with_sde_type(ito, "stratonovich") is sde
    strat = solvers.StratonovichHeun().prepare(sde)  # the typed terms, unconverted
    assert solvers.Milstein().prepare(sde).sde_type == "ito" and strat.sde_type == "stratonovich" and strat.drift == sde.drift
    assert solvers.StratonovichHeun().prepare(strat) is strat


def test_noise_type_and_noise_are_one_attribute():
    class Old(solvers.SDE):
        noise = "additive"

    class New(solvers.SDE):
        noise_type = "scalar"

    assert Old().noise_type == "additive" and New().noise == "scalar"
    inst = New()
    inst.noise = "general"
    assert inst.noise_type == "general"
    assert solvers.noise_type_of(type("Duck", (), {"noise_type": "diagonal"})()) == "diagonal"
    assert solvers.sde_from_functions(lambda t, x: x, lambda t, x: x, noise="scalar").noise_type == "scalar"
