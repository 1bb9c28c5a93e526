"""The probability-flow ODE likelihood against Gaussian data laws whose log-density is known in closed form.

For Gaussian data ``N(m, Σ)`` the exact denoiser is closed form, so the flow,
its divergence and the marginal at every time are exact: the PF-ODE NLL must
equal ``−log N(x; m, Σ)`` up to the ODE tolerance (``rtol = atol = 1e-5`` gives
~1e-5 bits/dim; the issue's bar is 1e-3) with the exact trace, and within
three standard errors with Hutchinson's estimate.
"""

import math
from dataclasses import dataclass

import pytest
import torch

from mrdiffusion.metrics import band_stop_times, dequantize, dequantized_nll, pf_ode_nll
from mrdiffusion.processes import BandNoising, VPSchedule, gaussian_denoiser
from mrdiffusion.sampling import ScalarNoising

LN2 = math.log(2.0)


def _diag_law(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    v = 0.05 + torch.rand(n, generator=g, dtype=torch.float64)
    return m, v


def _full_law(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    L = torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    return m, L @ L.T + 0.1 * torch.eye(n, dtype=torch.float64)


def _bpd_diag(x, m, v):
    lp = -0.5 * ((x - m) ** 2 / v + torch.log(2 * math.pi * v))
    return -lp.reshape(x.shape[0], -1).sum(1) / (m.numel() * LN2)


def _bpd_full(x, m, S):
    law = torch.distributions.MultivariateNormal(m, covariance_matrix=S)
    return -law.log_prob(x.reshape(x.shape[0], -1)) / (m.numel() * LN2)


def _exact_prior(noising, m, v):
    def prior(t, like):
        a, s = noising.alpha_sigma(t, like=like)
        return a * m, a * a * v + s * s

    return prior


def _full_denoiser(noising, m, S):
    """``E[x_0 | x_t] = m + Σ A (AΣA + S²)^{-1} (x_t − A m)``, per-coordinate ``α``, ``σ`` (events flattened)."""

    def denoise(x, t):
        a, s = noising.alpha_sigma(t, like=x)
        a = torch.broadcast_to(a, x.shape[1:]).reshape(-1)
        s = torch.broadcast_to(s, x.shape[1:]).reshape(-1)
        C = a[:, None] * S * a[None, :] + torch.diag(s * s)
        w = torch.linalg.solve(C, (x.reshape(x.shape[0], -1) - a * m).T)
        return (m[:, None] + S @ (a[:, None] * w)).T.reshape(x.shape)

    return denoise


def _samples(m, v_or_S, count, seed=2):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, m.numel(), generator=g, dtype=torch.float64)
    if v_or_S.ndim == 1:
        return m + v_or_S.sqrt() * z
    return m + z @ torch.linalg.cholesky(v_or_S).T


PER_BAND = [VPSchedule(0.1, 10.0), VPSchedule(0.1, 20.0), VPSchedule(0.5, 30.0)]


def test_scalar_vp_exact_trace_matches_closed_form():
    m, v = _diag_law(16)
    x = _samples(m, v, 12)
    noise = ScalarNoising(VPSchedule())
    res = pf_ode_nll(gaussian_denoiser(noise, m, v), noise, x, prior=_exact_prior(noise, m, v))
    err = (res.bits_per_dim - _bpd_diag(x, m, v)).abs().max()
    assert err < 1e-3, err
    assert res.trace == "exact" and res.rtol == 1e-5 and res.nfe > 0 and res.trace_se is None
    assert res.se == pytest.approx(float(res.bits_per_dim.std() / math.sqrt(12)))


def test_per_band_full_covariance_exact_trace_matches_closed_form():
    """Per-band schedules and correlated coordinates: the Jacobian of the flow is dense."""
    bn = BandNoising((4, 4), 2, schedules=PER_BAND)
    m, S = _full_law(16)
    x = _samples(m, S, 8).reshape(8, 1, 16)
    # The exact marginal at T is N(α m, AΣA + S²), not diagonal; with these schedules α_T² ≤ 4.3e-5 and its
    # off-diagonal part is charged approximately: the diagonal prior below is within ~1e-5 bits/dim of it.
    res = pf_ode_nll(_full_denoiser(bn, m, S), bn, x, prior=_exact_prior(bn, m, torch.diagonal(S)))
    err = (res.bits_per_dim - _bpd_full(x, m, S)).abs().max()
    assert err < 1e-3, err


def test_a_wrong_denoiser_fails_the_bar():
    """The check above can fail: a denoiser for a law 20 % wider misses by far more than 1e-3 bits/dim."""
    m, v = _diag_law(16)
    x = _samples(m, v, 12)
    noise = ScalarNoising(VPSchedule())
    res = pf_ode_nll(gaussian_denoiser(noise, m, 1.2 * v), noise, x, prior=_exact_prior(noise, m, 1.2 * v))
    assert (res.bits_per_dim - _bpd_diag(x, m, v)).abs().max() > 1e-2


def test_hutchinson_within_three_standard_errors():
    bn = BandNoising((4, 4), 2, schedules=PER_BAND)
    m, S = _full_law(16)
    n = 64
    x = _samples(m, S, n, seed=3).reshape(n, 1, 16)
    ref = _bpd_full(x, m, S)
    res = pf_ode_nll(_full_denoiser(bn, m, S), bn, x, prior=_exact_prior(bn, m, torch.diagonal(S)),
                     trace="hutchinson", n_probes=2, generator=torch.Generator().manual_seed(0))
    assert res.trace == "hutchinson" and res.trace_se is not None and res.trace_se > 0
    # trace_se is the probe noise alone (the data spread cancels against the closed form on the same x).
    assert abs(res.mean - float(ref.mean())) < 3 * res.trace_se, (res.mean - float(ref.mean()), res.trace_se)
    assert abs(res.mean - float(ref.mean())) < 3 * res.se
    # Per sample, the estimate is unbiased but noisy: it does not equal the exact value.
    assert (res.bits_per_dim - ref).abs().max() > 1e-4


def test_per_band_stop_times_charge_each_band_its_own_prior():
    """Bands stopped early (fine first) and charged their own Gaussian law there: the total is still exact."""
    bn = BandNoising((4, 4), 2, schedules=PER_BAND)
    m, v = _diag_law(16, seed=4)
    x = _samples(m, v, 12).reshape(12, 1, 16)
    stops = band_stop_times(bn, [1.0, 0.5, 0.2])
    for frozen in ("zero", "hold"):
        res = pf_ode_nll(gaussian_denoiser(bn, m, v), bn, x, prior=_exact_prior(bn, m, v), stop_times=stops,
                         frozen=frozen)
        assert (res.bits_per_dim - _bpd_diag(x, m, v)).abs().max() < 1e-3
    hut = pf_ode_nll(gaussian_denoiser(bn, m, v), bn, x, prior=_exact_prior(bn, m, v), stop_times=stops,
                     trace="hutchinson", probe="gaussian", n_probes=4, generator=torch.Generator().manual_seed(1))
    ref = float(_bpd_diag(x, m, v).mean())
    assert abs(hut.mean - ref) < 3 * hut.trace_se
    # Charging the stopped bands at T instead (stop_times ignored) is wrong by far more than 1e-3.
    wrong = _exact_prior(bn, m, v)
    bad = pf_ode_nll(gaussian_denoiser(bn, m, v), bn, x, prior=lambda t, like: wrong(1.0, like), stop_times=stops)
    assert (bad.bits_per_dim - _bpd_diag(x, m, v)).abs().max() > 1e-2


@dataclass(frozen=True)
class _CutVP:
    """A VP schedule times a cut-off ``c(t) = 1 − t/t_cut`` (0 after ``t_cut``): a point-mass band.

    ``α = c α_VP``, ``σ = c σ_VP``: ``f = f_VP + c'/c``, ``g² = c² g²_VP``; both 0 once cut.
    """

    t_cut: float
    base: VPSchedule = VPSchedule()

    def c(self, t):
        return max(0.0, 1.0 - t / self.t_cut)

    def f(self, t):
        return self.base.f(t) - 1.0 / (self.t_cut - t) if t < self.t_cut else 0.0

    def g2(self, t):
        return self.c(t) ** 2 * self.base.g2(t)

    def alpha(self, t):
        return self.c(t) * self.base.alpha(t)

    def var(self, t):
        return self.c(t) ** 2 * self.base.var(t)


def test_point_mass_bands_stopped_before_their_cut():
    """Fine bands collapse to exactly zero at their cut; stopped at c = 0.1 they give the exact total, no NaN."""
    bn = BandNoising((4, 4), 2, schedules=[VPSchedule(), _CutVP(0.8), _CutVP(0.5)])
    m, v = _diag_law(16, seed=5)
    x = _samples(m, v, 12).reshape(12, 1, 16)
    stops = band_stop_times(bn, [1.0, 0.72, 0.45])
    assert float(bn.alpha_sigma(1.0, like=x)[1][-1]) == 0.0  # the finest band is a point mass at T
    for trace in ("exact", "hutchinson"):
        res = pf_ode_nll(gaussian_denoiser(bn, m, v), bn, x, prior=_exact_prior(bn, m, v), stop_times=stops,
                         trace=trace, n_probes=2, probe="gaussian", generator=torch.Generator().manual_seed(2))
        assert torch.isfinite(res.bits_per_dim).all()
        ref = _bpd_diag(x, m, v)
        if trace == "exact":
            assert (res.bits_per_dim - ref).abs().max() < 1e-3
        else:
            assert abs(res.mean - float(ref.mean())) < 3 * res.trace_se


def test_dequantized_bound_of_gaussian_data():
    """The offset is ``−D log Δ`` on the seeded dequantised values, and the result bounds the discrete NLL."""
    levels, n, var = 17, 4, 0.3
    m, v = torch.zeros(n, dtype=torch.float64), torch.full((n,), var, dtype=torch.float64)
    noise = ScalarNoising(VPSchedule())
    images = torch.randint(3, 14, (200, n), generator=torch.Generator().manual_seed(0))
    res = dequantized_nll(gaussian_denoiser(noise, m, v), noise, images, levels, prior=_exact_prior(noise, m, v),
                          seed=7, batch_size=128)
    x, log_delta = dequantize(images, levels, generator=torch.Generator().manual_seed(7))
    expect = _bpd_diag(x, m, v) - log_delta / LN2
    assert (res.bits_per_dim - expect).abs().max() < 1e-3
    # P(k) = Π_i ∫_cell N(x; 0, v): the bound is above the exact discrete NLL on average (Jensen), and close.
    delta = math.exp(log_delta)
    c = -1 + delta * (images.double() + 0.5)  # the centre of level k's cell [-1 + Δk, -1 + Δ(k + 1))
    cdf = lambda z: 0.5 * (1 + torch.erf(z / math.sqrt(2 * var)))  # noqa: E731
    discrete = -torch.log(cdf(c + delta / 2) - cdf(c - delta / 2)).sum(1) / (n * LN2)
    # E_u[-log N(x; 0, v)] = ½ log(2πv) + (c² + Δ²/12)/(2v) per coordinate: the bound's expectation per image.
    bound = ((0.5 * math.log(2 * math.pi * var) + (c * c + delta ** 2 / 12) / (2 * var)).sum(1)
             - n * log_delta) / (n * LN2)
    assert (bound >= discrete).all() and float((bound - discrete).max()) < 0.01
    d = res.bits_per_dim - bound  # the one-draw estimate is unbiased for the bound
    assert abs(float(d.mean())) < 3 * float(d.std()) / math.sqrt(d.numel())


def test_dequantize_map_and_padding_denominator():
    images = torch.tensor([[0, 16, 8]])
    x, log_delta = dequantize(images, 17, generator=torch.Generator().manual_seed(0))
    centres = -1 + (images + 0.5) * (2 / 17)  # the training map: cells of width 2/L tiling [-1, 1)
    assert ((x - centres).abs() <= 1 / 17 + 1e-12).all() and log_delta == pytest.approx(math.log(2 / 17))
    from mrdiffusion.data import quantize

    assert torch.equal(quantize(x, 17), images)  # the inverse map gives the levels back
    m, v = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    noise = ScalarNoising(VPSchedule())
    imgs = torch.randint(0, 17, (3, 4), generator=torch.Generator().manual_seed(1))
    full = dequantized_nll(gaussian_denoiser(noise, m, v), noise, imgs, 17)
    real = dequantized_nll(gaussian_denoiser(noise, m, v), noise, imgs, 17, n_real_dims=3)
    assert torch.allclose(real.nll_nats, full.nll_nats) and real.n_dims == 3
    assert torch.allclose(real.bits_per_dim, full.bits_per_dim * 4 / 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(trace="sum"), "trace"), (dict(n_probes=0), "n_probes"), (dict(rtol=0), "rtol"), (dict(eps=2.0), "eps"),
    (dict(stop_times=torch.ones(5)), "stop_times"), (dict(stop_times=torch.zeros(4)), "stop_times"),
    (dict(frozen="drop"), "frozen"), (dict(probe="sphere"), "probe")])
def test_bad_arguments_are_named(kwargs, match):
    noise = VPSchedule()
    with pytest.raises(ValueError, match=match):
        pf_ode_nll(lambda x, t: x, noise, torch.zeros(2, 4, dtype=torch.float64), **kwargs)


def test_bad_images_are_named():
    with pytest.raises(ValueError, match="images"):
        dequantize(torch.tensor([[0, 17]]), 17)
    with pytest.raises(ValueError, match="levels"):
        dequantize(torch.tensor([[0, 1]]), 1)
    with pytest.raises(ValueError, match="n_real_dims"):
        dequantized_nll(lambda x, t: x, VPSchedule(), torch.zeros(2, 4, dtype=torch.long), 17, n_real_dims=5)


@pytest.mark.parametrize("batched", [True, False])
def test_divergence_of_a_nonlinear_denoiser_matches_the_jacobian_trace(batched):
    """Exact trace = tr(∂v/∂x) from torch's Jacobian; Hutchinson's mean over many probes converges to it."""
    from mrdiffusion.metrics.likelihood import _Flow

    g = torch.Generator().manual_seed(0)
    W1 = torch.randn(6, 32, generator=g, dtype=torch.float64)
    W2 = torch.randn(32, 6, generator=g, dtype=torch.float64) / 6
    noise = ScalarNoising(VPSchedule())
    den = lambda x, t: torch.tanh(x.reshape(x.shape[0], -1) @ W1) @ W2 * (1 + t)  # noqa: E731
    x = torch.randn(3, 6, generator=g, dtype=torch.float64)
    active = torch.ones(6, dtype=torch.bool)
    t = 0.3
    flow = _Flow(lambda y, s: den(y, s).reshape(y.shape), noise, active, None, "zero", batched=batched)
    tt = torch.tensor(t, dtype=torch.float64)
    v, div = flow(tt, (x, None))
    assert flow.batched == batched  # the vmapped path ran, or the loop was asked for
    for i in range(3):
        J = torch.autograd.functional.jacobian(lambda y: flow.velocity(y.unsqueeze(0), t)[0], x[i])
        assert float(div[i, 0]) == pytest.approx(float(torch.trace(J)), rel=1e-10)
    z = torch.randint(0, 2, (4000, 3, 6), generator=g).double() * 2 - 1
    _, est = _Flow(lambda y, s: den(y, s).reshape(y.shape), noise, active, z, "zero")(tt, (x, None))
    se = est.std(1) / math.sqrt(est.shape[1])
    assert ((est.mean(1) - div[:, 0]).abs() < 4 * se).all()


def test_point_mass_stop_times_are_found_before_each_cut():
    from mrdiffusion.metrics import point_mass_stop_times

    bn = BandNoising((4, 4), 2, schedules=[VPSchedule(), _CutVP(0.8), _CutVP(0.5)])
    stops = point_mass_stop_times(bn, sigma_stop=0.05)
    per_level = [float(stops[bn.layout.dwt_level == k][0]) for k in range(3)]
    assert per_level[0] == 1.0 and 0.7 < per_level[1] < 0.8 and 0.4 < per_level[2] < 0.5
    for k in (1, 2):
        assert math.sqrt(bn.schedules[k].var(per_level[k])) == pytest.approx(0.05, rel=1e-9)
    assert point_mass_stop_times(BandNoising((4, 4), 2, schedules=PER_BAND)) is None
    m, v = _diag_law(16, seed=6)
    x = _samples(m, v, 8).reshape(8, 1, 16)
    res = pf_ode_nll(gaussian_denoiser(bn, m, v), bn, x, prior=_exact_prior(bn, m, v), stop_times=stops)
    assert (res.bits_per_dim - _bpd_diag(x, m, v)).abs().max() < 1e-3


def test_evaluate_stops_point_mass_bands_by_itself():
    """``evaluate``'s default ``stop_times="auto"`` handles bands cut before ``T`` (no NaN, same as by hand)."""
    from mrdiffusion.hvae.data import Dataset
    from mrdiffusion.metrics import dequantized_nll, evaluate, point_mass_stop_times

    bn = BandNoising((4, 4), 2, schedules=[VPSchedule(), _CutVP(0.8), _CutVP(0.5)])
    m, v = torch.zeros(16, dtype=torch.float64), torch.full((16,), 0.3, dtype=torch.float64)
    imgs = torch.randint(0, 17, (5, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    ds = Dataset("toy", imgs, imgs, 17)
    out = evaluate(gaussian_denoiser(bn, m, v), bn, ds, n_samples=0)
    by_hand = dequantized_nll(gaussian_denoiser(bn, m, v), bn, imgs, 17, to_state=bn.layout.pack,
                              stop_times=point_mass_stop_times(bn))
    assert out["bits_per_dim"] == pytest.approx(by_hand.mean, rel=1e-12) and math.isfinite(out["bits_per_dim"])
    assert out["fd"] is None and out["fd_skipped"] == "n_samples is 0"


def test_exact_trace_of_a_conv_network_batched_and_looped_agree():
    from mrdiffusion.metrics.likelihood import _Flow

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.GroupNorm(2, 8), torch.nn.SiLU(),
                              torch.nn.Conv2d(8, 1, 3, padding=1)).double()
    noise = ScalarNoising(VPSchedule())
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    active = torch.ones(1, 4, 4, dtype=torch.bool)
    tt = torch.tensor(0.4, dtype=torch.float64)
    fast = _Flow(lambda y, s: net(y), noise, active, None, "zero")
    slow = _Flow(lambda y, s: net(y), noise, active, None, "zero", batched=False)
    d1, d2 = fast(tt, (x, None))[1], slow(tt, (x, None))[1]
    assert fast.batched and torch.allclose(d1, d2, rtol=1e-12, atol=1e-12)


def test_a_denoiser_that_detaches_its_output_is_refused():
    """Under torch.no_grad() inside the denoiser the divergence would come out as if ∂D/∂x = 0: refused."""
    noise = ScalarNoising(VPSchedule())

    def detached(x, t):
        with torch.no_grad():
            return 0.5 * x

    with pytest.raises(ValueError, match="denoiser: its output does not depend on its input"):
        pf_ode_nll(detached, noise, torch.zeros(2, 4, dtype=torch.float64))
