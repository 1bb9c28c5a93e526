"""Tests of solvers._brownian: reproducibility, refinement, batch independence, laws."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import solvers
from solvers._brownian import BrownianPath, as_brownian
from solvers._brownian._path import (_bridge_coefficients, _counter_base, _hash, _mix64_int, _normal, _node_key,
                                     _signed)


def _w(path, times):
    return torch.stack([path.increment(path.t0, t) for t in times])


# -- construction, API -------------------------------------------------------------------

def test_attributes_shape_dtype_and_zero_increment():
    p = BrownianPath((4, 2, 3), 0.5, 2.0, seed=3, dtype=torch.float64)
    assert (p.t0, p.t1, p.seed, p.dtype) == (0.5, 2.0, 3, torch.float64)
    assert p.shape == torch.Size((4, 2, 3)) and p.device == torch.device("cpu")
    dw = p.increment(0.7, 1.3)
    assert dw.shape == (4, 2, 3) and dw.dtype == torch.float64
    assert torch.equal(p(0.7, 1.3), dw)
    assert torch.equal(p.increment(1.1, 1.1), torch.zeros(4, 2, 3, dtype=torch.float64))
    assert BrownianPath((5,), 0, 1).increment(0, 1).dtype == torch.float32
    assert not p.has_levy_area
    with pytest.raises(ValueError):
        p.space_time(0.5, 1.0)


def test_invalid_construction():
    with pytest.raises(ValueError):
        BrownianPath((2,), 1.0, 1.0)
    with pytest.raises(ValueError):
        BrownianPath((2,), 0, 1, sample_ids=[1, 2, 3])


# -- reproducibility -------------------------------------------------------------------

@pytest.mark.parametrize("levy_area", [False, True])
def test_query_order_independence(levy_area):
    times = [0.0, 1 / 3, 0.5, 0.1, 0.9999, 0.25, 0.7, 1.0, 0.123456789]
    a = BrownianPath((6, 2), 0, 1, seed=11, dtype=torch.float64, levy_area=levy_area)
    b = BrownianPath((6, 2), 0, 1, seed=11, dtype=torch.float64, levy_area=levy_area, cache_size=0)
    wa = _w(a, times)
    wb = _w(b, times[::-1]).flip(0)
    assert torch.equal(wa, wb)
    # A fresh path queried pairwise in a shuffled order gives the same W(t) values too.
    c = BrownianPath((6, 2), 0, 1, seed=11, dtype=torch.float64, levy_area=levy_area, cache_size=3)
    for i in np.random.default_rng(0).permutation(len(times)):
        assert torch.equal(c.increment(0, times[i]), wa[i])
    other = BrownianPath((6, 2), 0, 1, seed=12, dtype=torch.float64, levy_area=levy_area)
    assert not torch.allclose(_w(other, times[1:]), wa[1:])


def test_dyadic_times_are_exact_and_independent_of_depth():
    times = [k / 1024 for k in range(0, 1025, 37)]
    w40 = _w(BrownianPath((3,), 0, 1, dtype=torch.float64), times)
    w12 = _w(BrownianPath((3,), 0, 1, dtype=torch.float64, depth=12), times)
    assert torch.equal(w40, w12)
    # Non-dyadic times are rounded to the depth grid: nearest dyadic point at depth 12.
    p = BrownianPath((3,), 0, 1, dtype=torch.float64, depth=12)
    assert torch.equal(p.increment(0, 0.3), p.increment(0, round(0.3 * 4096) / 4096))


# -- refinement --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 3e-6)])
def test_refinement_consistency(dtype, tol):
    p = BrownianPath((10, 4), -1.0, 2.0, seed=5, dtype=dtype)
    grid = np.sort(np.random.default_rng(1).uniform(-1.0, 2.0, 40))
    for s, u in [(-1.0, 2.0), (grid[3], grid[30])]:
        fine = [s] + [g for g in grid if s < g < u] + [u]
        total = sum(p.increment(a, b).double() for a, b in zip(fine[:-1], fine[1:]))
        assert torch.allclose(total, p.increment(s, u).double(), atol=tol, rtol=0)
        m = 0.5 * (s + u)
        assert torch.allclose(p.increment(s, m).double() + p.increment(m, u).double(),
                              p.increment(s, u).double(), atol=tol, rtol=0)


def test_levy_refinement_consistency():
    p = BrownianPath((10, 4), 0, 1, seed=9, dtype=torch.float64, levy_area=True)
    for s, m, u in [(0.0, 0.5, 1.0), (1 / 8, 3 / 8, 7 / 8), (0.1, 0.35, 0.8)]:
        w_su, u_su = p.space_time(s, u)
        w_sm, u_sm = p.space_time(s, m)
        w_mu, u_mu = p.space_time(m, u)
        assert torch.allclose(w_su, w_sm + w_mu, atol=1e-13, rtol=0)
        assert torch.allclose(u_su, u_sm + u_mu + (u - m) * w_sm, atol=1e-11, rtol=0)
    # Same W queried by increment and space_time.
    assert torch.equal(p.space_time(0.2, 0.6)[0], p.increment(0.2, 0.6))


# -- batch independence --------------------------------------------------------------------

@pytest.mark.parametrize("levy_area", [False, True])
def test_per_sample_independence_of_batch(levy_area):
    big = BrownianPath((8, 3), 0, 1, seed=2, levy_area=levy_area)
    small = BrownianPath((3, 3), 0, 1, seed=2, levy_area=levy_area)
    sub = BrownianPath((2, 3), 0, 1, seed=2, levy_area=levy_area, sample_ids=[5, 6])
    for s, t in [(0.0, 1.0), (0.25, 0.3), (0.1, 0.77)]:
        full = big.increment(s, t)
        assert torch.equal(small.increment(s, t), full[:3])
        assert torch.equal(sub.increment(s, t), full[5:7])
        if levy_area:
            assert torch.equal(sub.space_time(s, t)[1], big.space_time(s, t)[1][5:7])


# -- interval checks ---------------------------------------------------------------------

def test_clamping_and_errors():
    p = BrownianPath((2,), 0.0, 1.0, dtype=torch.float64)
    assert torch.equal(p.increment(-1e-12, 1.0 + 1e-12), p.increment(0.0, 1.0))
    with pytest.raises(ValueError, match=r"s=-0.001.*\[0.0, 1.0\]"):
        p.increment(-1e-3, 0.5)
    with pytest.raises(ValueError, match=r"t=1.1.*\[0.0, 1.0\]"):
        p.increment(0.5, 1.1)
    with pytest.raises(ValueError, match=r"s=0.6.*t=0.5"):
        p.increment(0.6, 0.5)
    big = BrownianPath((2,), 0.0, 1000.0)  # tolerance scales with the interval length
    big.increment(0.0, 1000.0 + 1e-7)


# -- laws --------------------------------------------------------------------------------

@pytest.mark.parametrize("levy_area", [False, True])
def test_increments_are_independent_gaussians(levy_area):
    n = 4000
    p = BrownianPath((n,), 0.0, 2.0, seed=7, dtype=torch.float64, levy_area=levy_area)
    edges = [0.0, 0.1, 0.37, 0.5, 1.0, 1.3, 2.0]
    incs = torch.stack([p.increment(a, b) / math.sqrt(b - a) for a, b in zip(edges[:-1], edges[1:])])
    assert stats.kstest(incs.flatten().numpy(), "norm").pvalue > 1e-3
    corr = np.corrcoef(incs.numpy())
    assert np.abs(corr - np.eye(len(corr))).max() < 4 / math.sqrt(n)
    w1 = p.increment(0.0, 2.0)
    assert abs(w1.var().item() / 2.0 - 1) < 5 * math.sqrt(2 / n)
    assert abs(p.increment(0.0, 0.5).var().item() / 0.5 - 1) < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("s,t", [(0.0, 1.0), (0.25, 0.5), (0.1, 0.43)])
def test_space_time_levy_area_moments(s, t):
    n = 40000
    p = BrownianPath((200, 200), 0.0, 1.0, seed=4, dtype=torch.float64, levy_area=True)
    dw, u = (x.flatten().numpy() for x in p.space_time(s, t))
    h = t - s
    se = 5 * math.sqrt(2 / n)
    assert abs(dw.var() / h - 1) < se
    assert abs(u.var() / (h**3 / 3) - 1) < se
    assert abs(np.mean(dw * u) / (h**2 / 2) - 1) < se
    # H = U/h - dW/2 (Foster's space-time Lévy area) is N(0, h/12), independent of dW.
    hh = u / h - dw / 2
    assert stats.kstest(hh / math.sqrt(h / 12), "norm").pvalue > 1e-3
    assert abs(np.corrcoef(hh, dw)[0, 1]) < 4 / math.sqrt(n)


def test_space_time_disjoint_intervals_independent():
    n = 20000
    p = BrownianPath((n,), 0.0, 1.0, seed=8, dtype=torch.float64, levy_area=True)
    a = p.space_time(0.0, 0.3)
    b = p.space_time(0.3, 0.75)
    corr = np.corrcoef(torch.stack([*a, *b]).numpy())
    assert np.abs(corr[:2, 2:]).max() < 4 / math.sqrt(n)


@pytest.mark.parametrize("h1,h2", [(0.5, 0.5), (0.2, 0.7), (3e-9, 1e-9)])
def test_bridge_coefficients_match_precision_form(h1, h2):
    def q(x):
        return np.array([[x, x * x / 2], [x * x / 2, x**3 / 3]])

    def a(x):
        return np.array([[1.0, 0.0], [x, 1.0]])

    k, chol = (np.array(m) for m in _bridge_coefficients(h1, h2))
    prec = np.linalg.inv(q(h1)) + a(h2).T @ np.linalg.inv(q(h2)) @ a(h2)
    cov = np.linalg.inv(prec)
    scale = np.array([h1**0.5, h1**1.5])  # compare at unit scale: entries span 1e-27..1e-9
    assert np.allclose((chol @ chol.T) / np.outer(scale, scale), cov / np.outer(scale, scale), atol=1e-9)
    x_s, x_u = np.array([0.3, -0.2]) * scale, np.array([1.1, 0.4]) * scale
    mean = cov @ (np.linalg.inv(q(h1)) @ a(h1) @ x_s + a(h2).T @ np.linalg.inv(q(h2)) @ x_u)
    ours = a(h1) @ x_s + k @ (x_u - a(h1 + h2) @ x_s)
    assert np.allclose(ours / scale, mean / scale, atol=1e-9)


# -- the counter-based generator ---------------------------------------------------------

def test_hash_matches_python_reference():
    counters = torch.tensor([0, 1, 2, 12345, 2**40 + 17, 2**62 - 1])
    key = _node_key(123, 7, 45)
    bits = _hash(key, _counter_base(counters))
    for c, b in zip(counters.tolist(), bits.tolist()):
        assert _signed(_mix64_int(key + c * 0x9E3779B97F4A7C15)) == b


def test_normal_generator_law_and_independence():
    n = 100000
    base = _counter_base(torch.arange(n))
    z0, z1 = _normal(_node_key(0, 3, 5), base, pair=True)
    other = _normal(_node_key(0, 3, 7), base)
    assert torch.equal(z0, _normal(_node_key(0, 3, 5), base))
    for z in (z0, z1, other):
        assert z.dtype == torch.float64 and torch.isfinite(z).all()
        assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    corr = np.corrcoef(torch.stack([z0, z1, other]).numpy())
    assert np.abs(corr - np.eye(3)).max() < 4 / math.sqrt(n)


# -- cache -------------------------------------------------------------------------------

def test_cache_is_bounded_and_sweep_is_amortised_constant():
    p = BrownianPath((5,), 0.0, 1.0, cache_size=64)
    grid = [k / 1024 for k in range(1025)]
    for a, b in zip(grid[:-1], grid[1:]):
        p.increment(a, b)
    assert len(p._cache) <= 64
    assert p._nodes_made == 1023  # every interior dyadic node of level <= 10, once
    q = BrownianPath((5,), 0.0, 1.0, cache_size=16)
    for t in np.random.default_rng(0).uniform(0, 1, 50):
        q.increment(0.0, t)
    assert len(q._cache) <= 16


# -- as_brownian -------------------------------------------------------------------------

def test_as_brownian_passes_paths_and_callables():
    p = BrownianPath((3,), 0, 1, levy_area=True)
    assert as_brownian(p) is p and as_brownian(p).has_levy_area
    f = as_brownian(lambda s, t: torch.full((2,), t - s))
    assert not f.has_levy_area and torch.equal(f.increment(0.25, 1.0), torch.full((2,), 0.75))
    with pytest.raises(ValueError):
        f.space_time(0, 1)
    with pytest.raises(TypeError):
        as_brownian(3.0)


@pytest.mark.parametrize("approx", ["none", "space-time"])
def test_as_brownian_wraps_torchsde(approx):
    torchsde = pytest.importorskip("torchsde")
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(4, 2), entropy=3, levy_area_approximation=approx)
    b = as_brownian(bm)
    assert b.has_levy_area == (approx == "space-time")
    assert torch.equal(b.increment(0.2, 0.6), bm(0.2, 0.6))
    assert torch.equal(b(0.6, 0.9), bm(0.6, 0.9))
    if b.has_levy_area:
        dw, u = b.space_time(0.1, 0.4)
        dw2, u2 = bm(0.1, 0.4, return_U=True)
        assert torch.equal(dw, dw2) and torch.equal(u, u2)


# -- deep (non-dyadic) points: the vectorised sum -----------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deep_points_are_the_node_by_node_path(dtype, monkeypatch):
    """Non-dyadic times summed in one pass equal the node-by-node bridge descent (same normals)."""
    import solvers._brownian._path as path_module

    times = [k * 1e-3 for k in range(0, 1001, 37)] + [math.pi / 4, 1 / 3]
    fast = BrownianPath((4, 3), 0.0, 1.0, seed=5, dtype=dtype)
    w_fast = torch.stack([fast.increment(0.0, t) for t in times]).double()
    monkeypatch.setattr(path_module, "_TREE_LEVEL", 99)
    slow = BrownianPath((4, 3), 0.0, 1.0, seed=5, dtype=dtype)
    w_slow = torch.stack([slow.increment(0.0, t) for t in times]).double()
    assert torch.allclose(w_fast, w_slow, atol=1e-14 if dtype == torch.float64 else 1e-6, rtol=0)


def test_deep_points_do_not_depend_on_sweeps_order_or_batch():
    """A sweep (which draws several future points per pass) gives the bits of single, shuffled queries."""
    grid = [k * 1e-3 for k in range(1001)]
    sweep = BrownianPath((6, 2), 0.0, 1.0, seed=2, dtype=torch.float64)
    inc = torch.stack([sweep.increment(s, t) for s, t in zip(grid, grid[1:])])
    order = np.random.default_rng(1).permutation(1000)
    single = BrownianPath((6, 2), 0.0, 1.0, seed=2, dtype=torch.float64, cache_size=0)
    w = {int(k): single.increment(0.0, grid[k + 1]) for k in order}
    assert torch.equal(torch.stack([w[k] for k in range(1000)]), sweep_w := _w(sweep, grid[1:]))
    assert torch.allclose(inc.cumsum(0), sweep_w, atol=1e-13, rtol=0)
    sub = BrownianPath((2, 2), 0.0, 1.0, seed=2, dtype=torch.float64, sample_ids=[4, 1])
    assert torch.equal(_w(sub, grid[1:]), sweep_w[:, [4, 1]])


# -- the other sources ----------------------------------------------------------------------

def test_grid_noise_draws_and_levy_area_law():
    from solvers import GridNoise

    gen = torch.Generator().manual_seed(0)
    noise = GridNoise((20000,), generator=gen, dtype=torch.float64, levy_area=True)
    h = 0.04
    dW, U = noise.space_time(0.3, 0.3 + h)
    assert stats.kstest((dW / math.sqrt(h)).numpy(), "norm").pvalue > 1e-3
    H = (U - 0.5 * h * dW) / math.sqrt(h**3 / 12)  # independent of dW, standard normal
    assert stats.kstest(H.numpy(), "norm").pvalue > 1e-3 and abs(float(torch.corrcoef(torch.stack([dW, H]))[0, 1])) < 0.03
    again = GridNoise((20000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64, levy_area=True)
    assert torch.equal(again.space_time(0.3, 0.3 + h)[0], dW)


def test_recorded_noise_replays_as_a_tabulated_path():
    from solvers import GridNoise, RecordedNoise, TabulatedPath

    rec = RecordedNoise(GridNoise((5, 2), generator=torch.Generator().manual_seed(4), dtype=torch.float64,
                                  levy_area=True))
    sde = solvers.sde_from_functions(lambda t, x: -x, lambda t, x: 0.5 + 0 * x, noise_type="additive")
    x0 = torch.ones(5, 2, dtype=torch.float64)
    first = solvers.sdeint(sde, x0, [0.0, 1.0], solvers.SRA1(), dt=1 / 16, brownian=rec)
    table = rec.path()
    assert isinstance(table, TabulatedPath) and table.has_levy_area and len(table.times) == 17
    again = solvers.sdeint(sde, x0, [0.0, 1.0], solvers.SRA1(), dt=1 / 16, brownian=table)
    assert torch.allclose(first, again, atol=1e-14, rtol=0)
    # a coarser step on the table: dW adds up, U by the one area formula (U_su = U_sm + U_mu + h_mu dW_sm)
    dW, U = table.space_time(0.0, 0.125)
    (w1, u1), (w2, u2) = table.space_time(0.0, 0.0625), table.space_time(0.0625, 0.125)
    assert torch.allclose(dW, w1 + w2, atol=1e-15) and torch.allclose(U, u1 + u2 + 0.0625 * w1, atol=1e-15)
    with pytest.raises(ValueError, match="s=0.01 is not a time of this tabulated path"):
        table.increment(0.01, 0.5)


# -- the step hint dt: the tree spans [t0, t0 + 2^m dt] --------------------------------------

def _grid(a, b, n):
    return [a + (b - a) * k / n for k in range(n + 1)]  # the driver's grid (solvers._checks.grid)


@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (1000.0, 1001.0), (-0.3, 0.7)])
def test_hint_grid_times_are_nodes_of_level_m(t0, t1):
    p = BrownianPath((5,), t0, t1, seed=3, dt=1e-3, dtype=torch.float64)
    assert p._level == 10 and p._length == 1024e-3 and "dt=0.001" in repr(p)
    for k, t in enumerate(_grid(t0, t1, 1000)):
        assert p._index(t, "t") == k << (p.depth - 10)
        assert p._index(t0 + k * 1e-3, "t") == k << (p.depth - 10)
    made = p._nodes_made
    grid = _grid(t0, t1, 1000)
    for s, t in zip(grid, grid[1:]):
        p.increment(s, t)
    assert p._nodes_made - made <= 1023  # one fresh node per step: at most the level-10 tree's interior nodes


def test_hint_snaps_rounded_grid_times_exactly():
    """Far from 0 the float error of t0 + k dt exceeds a depth-60 cell: rounding alone would miss node k."""
    p = BrownianPath((2,), 1e6, 1e6 + 1, dt=1e-3, dtype=torch.float64, depth=60)
    for k, t in enumerate(_grid(1e6, 1e6 + 1, 1000)):
        assert p._index(t, "t") == k << 50
    n = p._index(1e6 + 0.0004373, "t")  # off the grid: rounded (to the float's error), not snapped
    assert n % (1 << 50) and abs(n / 2**50 - 0.4373) < 1e-6


def test_hint_is_the_path_of_its_tree_span():
    """With the hint, W on [t0, t1] is the unhinted path on the tree's span [t0, t0 + 2^m dt]: same seed, same bits."""
    grid, off = _grid(0.0, 1.0, 1000)[1:], [0.4373, 1 / 3]
    hinted = BrownianPath((4, 2), 0.0, 1.0, seed=9, dt=1e-3, dtype=torch.float64)
    for other in (BrownianPath((4, 2), 0.0, 1.024, seed=9, dtype=torch.float64),
                  BrownianPath((4, 2), 0.0, 1.0, seed=9, dt=5e-4, dtype=torch.float64)):
        assert torch.equal(_w(hinted, grid), _w(other, grid))  # tree nodes: the same bits
        # off the grid: summed from another bracket level (8, 10 or 11), the same path to round-off
        assert torch.allclose(_w(hinted, off), _w(other, off), atol=1e-14, rtol=0)
    hinted = _w(hinted, grid + off)
    dyadic = [k / 1024 for k in range(1, 1025, 7)]
    assert torch.equal(_w(BrownianPath((3,), 0, 1, seed=2, dt=2.0**-10), dyadic),
                       _w(BrownianPath((3,), 0, 1, seed=2), dyadic))  # span 1: the unhinted path
    assert not torch.allclose(hinted, _w(BrownianPath((4, 2), 0.0, 1.0, seed=9, dtype=torch.float64), grid + off))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 3e-6)])
def test_hint_refinement_consistency(dtype, tol):
    p = BrownianPath((10, 4), 0.0, 1.0, seed=5, dt=1e-3, dtype=dtype)
    fine = _grid(0.0, 1.0, 1000)
    for s, u in [(0.0, 1.0), (0.1, 0.437), (0.4373, 0.9), (0.25, 0.4373)]:
        pts = [s] + [g for g in fine if s < g < u] + [0.2222, 0.4372, 0.6789] + [u]
        pts = sorted(x for x in set(pts) if s <= x <= u)
        total = sum(p.increment(a, b).double() for a, b in zip(pts[:-1], pts[1:]))
        assert torch.allclose(total, p.increment(s, u).double(), atol=tol, rtol=0)


@pytest.mark.parametrize("levy_area", [False, True])
def test_hint_order_batch_and_sub_batch_independence(levy_area):
    grid = _grid(0.0, 1.0, 1000)
    times = grid[1:] + [0.4373]
    sweep = BrownianPath((6, 2), 0.0, 1.0, seed=2, dt=1e-3, dtype=torch.float64, levy_area=levy_area)
    for s, t in zip(grid, grid[1:]):
        sweep.increment(s, t)
    w = _w(sweep, times)
    single = BrownianPath((6, 2), 0.0, 1.0, seed=2, dt=1e-3, dtype=torch.float64, levy_area=levy_area,
                          cache_size=0)
    for i in np.random.default_rng(1).permutation(len(times))[:300]:
        assert torch.equal(single.increment(0.0, times[i]), w[i])
    sub = BrownianPath((2, 2), 0.0, 1.0, seed=2, dt=1e-3, dtype=torch.float64, levy_area=levy_area,
                       sample_ids=[4, 1])
    assert torch.equal(_w(sub, times), w[:, [4, 1]])
    small = BrownianPath((3, 2), 0.0, 1.0, seed=2, dt=1e-3, dtype=torch.float64, levy_area=levy_area)
    assert torch.equal(_w(small, times[::-1]).flip(0), w[:, :3])


def test_hint_non_grid_query_is_the_node_by_node_path(monkeypatch):
    """0.4373 is no node of level m: it is summed from its bracket, and equals the bridge descent."""
    import solvers._brownian._path as path_module

    times = [0.437, 0.4373, 0.438, 0.99999, 1 / 3]
    fast = _w(BrownianPath((4, 3), 0.0, 1.0, seed=5, dt=1e-3, dtype=torch.float64), times)
    monkeypatch.setattr(path_module, "_TREE_LEVEL", 99)
    slow = _w(BrownianPath((4, 3), 0.0, 1.0, seed=5, dt=1e-3, dtype=torch.float64), times)
    assert torch.allclose(fast, slow, atol=1e-14, rtol=0)


def test_hint_increments_law_at_h_1e_3():
    n, h = 2000, 1e-3
    p = BrownianPath((n,), 0.0, 1.0, seed=7, dt=h, dtype=torch.float64)
    grid = _grid(0.0, 1.0, 1000)
    incs = torch.stack([p.increment(s, t) for s, t in zip(grid, grid[1:])]) / math.sqrt(h)  # (1000, n)
    z = incs[::5].flatten().numpy()  # 4e5 standardised increments
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    lag = float((incs[1:] * incs[:-1]).mean())  # consecutive steps uncorrelated
    assert abs(lag) < 5 / math.sqrt(incs[1:].numel())
    w1 = incs.sum(0) * math.sqrt(h)  # W(1) ~ N(0, 1)
    assert abs(float(w1.var()) - 1) < 5 * math.sqrt(2 / n)
    off = (p.increment(0.437, 0.4373) / math.sqrt(0.4373 - 0.437)).numpy()  # a non-grid increment
    assert stats.kstest(off, "norm").pvalue > 1e-3


def test_hint_in_sdeint_snaps_the_driver_grid():
    sde = solvers.sde_from_functions(lambda t, x: -x, lambda t, x: 0.5 * x, noise_type="diagonal")
    x0 = torch.ones(3, 2, dtype=torch.float64)
    em = solvers.EulerMaruyama()
    hinted = BrownianPath((3, 2), 0.0, 1.0, seed=1, dt=1e-3, dtype=torch.float64)
    spanned = BrownianPath((3, 2), 0.0, 1.024, seed=1, dtype=torch.float64)
    a = solvers.sdeint(sde, x0, [0.0, 0.5, 1.0], em, dt=1e-3, brownian=hinted)
    assert torch.equal(a, solvers.sdeint(sde, x0, [0.0, 0.5, 1.0], em, dt=1e-3, brownian=spanned))
    assert hinted._nodes_made <= 1023


@pytest.mark.parametrize("dt", [0.0, -1e-3, float("nan"), float("inf"), "fine", 1e-300])
def test_hint_is_validated(dt):
    with pytest.raises(ValueError, match="dt"):
        BrownianPath((2,), 0.0, 1.0, dt=dt)


def test_hint_depth_must_reach_its_level():
    with pytest.raises(ValueError, match="depth"):
        BrownianPath((2,), 0.0, 1.0, dt=1e-3, depth=8)
    p = BrownianPath((2,), 0.0, 1.0, dt=1e-7)  # level 24: the default depth grows to level + 8
    assert p._level == 24 and p.depth == 32
    assert p._index(0.5, "t") == 5_000_000 << 8


@pytest.mark.parametrize("shape", [(1, 1), (3,), (5, 3)])
def test_hint_blocks_are_the_one_by_one_descent_bitwise(shape):
    """Grid nodes drawn in blocks (one pass per level) carry the bits of single descents (no blocks)."""
    grid = _grid(0.0, 1.0, 1000)
    block = BrownianPath(shape, 0.0, 1.0, seed=4, dt=1e-3, dtype=torch.float64)
    assert block._block_levels == 5
    single = BrownianPath(shape, 0.0, 1.0, seed=4, dt=1e-3, dtype=torch.float64, cache_size=0)
    assert single._block_levels == 0
    times = grid[1::7] + grid[-5:]
    assert torch.equal(_w(block, times), _w(single, times))
    one = BrownianPath((1, *shape[1:]), 0.0, 1.0, seed=4, dt=1e-3, dtype=torch.float64, sample_ids=[shape[0] - 1])
    assert torch.equal(_w(one, times), _w(block, times)[:, -1:])


def test_engine_doc_hint_example_runs():
    import os
    import re

    text = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "engine.md")).read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "dt=1e-3, dtype" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/engine.md", "exec"), {})


@pytest.mark.parametrize("shape", [(1, 1), (3,), (5, 3)])
def test_dyadic_sweep_blocks_are_the_one_by_one_descent_bitwise(shape, monkeypatch):
    """Without a hint, a sweep of a dyadic grid is drawn in blocks too: the bits of single descents."""
    grid = [k / 1024 for k in range(1025)]
    sweep = BrownianPath(shape, 0.0, 1.0, seed=6, dtype=torch.float64)
    inc = torch.stack([sweep.increment(s, t) for s, t in zip(grid, grid[1:])])
    assert sweep._nodes_made == 1023
    single = BrownianPath(shape, 0.0, 1.0, seed=6, dtype=torch.float64, cache_size=0)
    assert single._block_room == 0
    w = _w(single, grid[1:])
    assert torch.equal(_w(sweep, grid[1:]), w)
    assert torch.equal(inc[0], w[0]) and torch.equal(inc[1:], w[1:] - w[:-1])
    called = []
    monkeypatch.setattr(BrownianPath, "_block", lambda self, *a: called.append(a))
    again = BrownianPath(shape, 0.0, 1.0, seed=6, dtype=torch.float64)
    for s, t in zip(grid[:40], grid[1:40]):
        again.increment(s, t)
    assert called and called[0][1:] == (10, 5)  # blocks of 2^5 steps of level 10
