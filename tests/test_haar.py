"""Tests for mrdiffusion.haar: the Haar multi-resolution analysis."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mrdiffusion import haar

pywt = pytest.importorskip("pywt")

SETTINGS = settings(max_examples=25, deadline=None)


def _inner(a, b):
    """Cell-mean L² inner product over all elements."""
    return (a * b).mean()


@st.composite
def shapes(draw, max_levels=3):
    ndim = draw(st.sampled_from([1, 2, 3]))
    levels = draw(st.integers(0, max_levels if ndim < 3 else 2))
    n_lead = draw(st.integers(0, 2))
    lead = tuple(draw(st.integers(1, 3)) for _ in range(n_lead))
    mmax = {1: 3, 2: 3, 3: 2}[ndim]
    spatial = tuple(draw(st.integers(1, mmax)) * 2**levels for _ in range(ndim))
    seed = draw(st.integers(0, 2**31 - 1))
    return ndim, levels, lead + spatial, seed


def _randn(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


# ---------------------------------------------------------------- reconstruction


@SETTINGS
@given(shapes(), st.sampled_from([torch.float64, torch.float32]))
def test_perfect_reconstruction(case, dtype):
    ndim, levels, shape, seed = case
    x = _randn(shape, seed, dtype)
    coarse, details = haar.dwt(x, levels, ndim)
    y = haar.idwt(coarse, details, ndim)
    assert y.shape == x.shape and y.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert _rel(y, x) <= tol


@SETTINGS
@given(shapes())
def test_shapes_and_parseval(case):
    ndim, levels, shape, seed = case
    x = _randn(shape, seed)
    coarse, details = haar.dwt(x, levels, ndim)
    lead, spatial = shape[: len(shape) - ndim], shape[len(shape) - ndim :]
    f = 2**levels
    assert coarse.shape == lead + tuple(n // f for n in spatial)
    assert len(details) == levels
    for i, d in enumerate(details):
        k = 2 ** (levels - i)
        assert d.shape == lead + (2**ndim - 1,) + tuple(n // k for n in spatial)
    energy = coarse.square().sum() + sum(d.square().sum() for d in details)
    assert abs(energy.item() - x.square().sum().item()) <= 1e-12 * x.square().sum().item()


@SETTINGS
@given(shapes())
def test_coarse_is_scaled_projection(case):
    ndim, levels, shape, seed = case
    x = _randn(shape, seed)
    coarse, _ = haar.dwt(x, levels, ndim)
    expected = 2 ** (ndim * levels / 2) * haar.project(x, levels, ndim)
    torch.testing.assert_close(coarse, expected, rtol=1e-12, atol=1e-12)


def test_documented_example_shapes():
    x = torch.randn(2, 5, 8, 8)
    coarse, details = haar.dwt(x, 3)
    assert coarse.shape == (2, 5, 1, 1)
    assert [tuple(d.shape) for d in details] == [
        (2, 5, 3, 1, 1),
        (2, 5, 3, 2, 2),
        (2, 5, 3, 4, 4),
    ]


def test_levels_zero_is_identity():
    x = torch.randn(3, 4, 6)
    coarse, details = haar.dwt(x, 0)
    assert coarse is x and details == []
    assert haar.idwt(x, []) is x
    assert haar.project(x, 0) is x and haar.embed(x, 0) is x


def test_explicit_2x2_block():
    a, b, c, d = 1.0, 5.0, -2.0, 7.0
    x = torch.tensor([[a, b], [c, d]], dtype=torch.float64)
    coarse, (det,) = haar.dwt(x, 1)
    assert coarse.item() == pytest.approx((a + b + c + d) / 2)
    # band index 0 = channel 1 (bits 01): high-pass along the last axis
    # band index 1 = channel 2 (bits 10): high-pass along the first axis
    # band index 2 = channel 3 (bits 11): high-pass along both
    assert det[0].item() == pytest.approx((a - b + c - d) / 2)
    assert det[1].item() == pytest.approx((a + b - c - d) / 2)
    assert det[2].item() == pytest.approx((a - b - c + d) / 2)


def test_explicit_1d_and_3d_basis():
    x = torch.tensor([3.0, 1.0], dtype=torch.float64)
    coarse, (det,) = haar.dwt(x, 1, ndim=1)
    assert coarse.item() == pytest.approx(4 / math.sqrt(2))
    assert det.item() == pytest.approx(2 / math.sqrt(2))  # (x_even - x_odd)/sqrt2
    # 3-D: each band is the tensor product given by its bits
    bits = haar.band_bits(3)
    for i, bb in enumerate(bits):
        coeff = torch.zeros(7, 1, 1, 1, dtype=torch.float64)
        coeff[i] = 1.0
        y = haar.idwt(torch.zeros(1, 1, 1, dtype=torch.float64), [coeff], ndim=3)
        for idx in np.ndindex(2, 2, 2):
            sign = (-1) ** sum(b * a for b, a in zip(bb, idx))
            assert y[idx].item() == pytest.approx(sign * 2**-1.5)


def test_noncontiguous_input():
    base = torch.randn(2, 8, 4, 3, dtype=torch.float64)
    x = base.permute(0, 3, 2, 1)  # (2, 3, 4, 8), non-contiguous
    c1, d1 = haar.dwt(x, 2)
    c2, d2 = haar.dwt(x.contiguous(), 2)
    torch.testing.assert_close(c1, c2, rtol=0, atol=0)
    for a, b in zip(d1, d2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # details with a non-standard memory layout (column-major spatial)
    d_cm = [d.transpose(-1, -2).contiguous().transpose(-1, -2) for d in d1]
    torch.testing.assert_close(haar.idwt(c1, d_cm), x)


# ---------------------------------------------------------------- project / embed


@SETTINGS
@given(shapes(), st.integers(0, 2**31 - 1))
def test_orthogonal_projection(case, seed2):
    ndim, levels, shape, seed = case
    x = _randn(shape, seed)
    p = haar.project(x, levels, ndim)
    v = _randn(p.shape, seed2)
    # residual orthogonal to the coarse space
    r = x - haar.embed(p, levels, ndim)
    assert abs(_inner(r, haar.embed(v, levels, ndim)).item()) < 1e-12 * (
        1 + x.abs().max().item() * v.abs().max().item()
    )
    # project o embed = id
    pe = haar.project(haar.embed(v, levels, ndim), levels, ndim)
    torch.testing.assert_close(pe, v, rtol=1e-13, atol=1e-13)
    # adjointness with the cell-mean inner product
    lhs = _inner(p, v).item()
    rhs = _inner(x, haar.embed(v, levels, ndim)).item()
    assert abs(lhs - rhs) <= 1e-12 * (1 + abs(lhs))
    # embed o project is idempotent
    e = haar.embed(p, levels, ndim)
    ee = haar.embed(haar.project(e, levels, ndim), levels, ndim)
    torch.testing.assert_close(ee, e, rtol=1e-13, atol=1e-13)


def test_projection_is_closest_point():
    g = torch.Generator().manual_seed(1)
    for ndim, shape in [(1, (3, 16)), (2, (2, 8, 8)), (3, (4, 4, 4))]:
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        p = haar.project(x, 2, ndim)
        best = (x - haar.embed(p, 2, ndim)).square().mean()
        for _ in range(200):
            scale = 10.0 ** torch.empty(()).uniform_(-3, 0, generator=g)
            q = p + scale * torch.randn(p.shape, generator=g, dtype=torch.float64)
            dist = (x - haar.embed(q, 2, ndim)).square().mean()
            assert dist > best
            # Pythagoras: the excess is exactly the squared distance in V_{J-2}
            torch.testing.assert_close(dist - best, (q - p).square().mean(), rtol=1e-8, atol=1e-15)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("levels", [1, 2])
def test_project_matches_avg_pool(ndim, levels):
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[ndim]
    x = torch.randn(2, 3, *([8] * ndim), dtype=torch.float64)
    k = 2**levels
    torch.testing.assert_close(haar.project(x, levels, ndim), pool(x, k))
    y = x
    for _ in range(levels):
        y = pool(y, 2)
    torch.testing.assert_close(haar.project(x, levels, ndim), y)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("levels", [1, 2])
def test_embed_matches_nearest_interpolation(ndim, levels):
    y = torch.randn(2, 3, *([3] * ndim), dtype=torch.float64)
    k = 2**levels
    ref = F.interpolate(y, scale_factor=k, mode="nearest")
    torch.testing.assert_close(haar.embed(y, levels, ndim), ref, rtol=0, atol=0)
    rep = y
    for ax in range(-ndim, 0):
        rep = rep.repeat_interleave(k, dim=ax)
    torch.testing.assert_close(haar.embed(y, levels, ndim), rep, rtol=0, atol=0)


def test_project_embed_no_lead_dims():
    x = torch.arange(16.0).reshape(4, 4)
    torch.testing.assert_close(haar.project(x, 1), torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    torch.testing.assert_close(haar.embed(torch.tensor([[1.0]]), 2), torch.ones(4, 4))


# ---------------------------------------------------------------- PyWavelets


def _pywt_dec(x, levels, ndim, mode):
    a = x.numpy()
    if ndim == 1:
        return pywt.wavedec(a, "haar", mode=mode, level=levels, axis=-1)
    if ndim == 2:
        return pywt.wavedec2(a, "haar", mode=mode, level=levels, axes=(-2, -1))
    return pywt.wavedecn(a, "haar", mode=mode, level=levels, axes=(-3, -2, -1))


def _assert_same_pywt(ours, ref, ndim):
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours[0], ref[0], rtol=0, atol=1e-12)
    for a, b in zip(ours[1:], ref[1:]):
        if ndim == 1:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        elif ndim == 2:
            assert len(a) == len(b) == 3
            for p, q in zip(a, b):
                np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
        else:
            assert set(a) == set(b)
            for key in b:
                np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["periodization", "zero", "symmetric"])
@pytest.mark.parametrize(
    "ndim,shape,levels",
    [(1, (2, 3, 24), 3), (2, (2, 3, 16, 8), 3), (2, (12, 20), 2), (3, (2, 8, 4, 8), 2)],
)
def test_matches_pywavelets(mode, ndim, shape, levels):
    x = torch.randn(shape, dtype=torch.float64)
    coarse, details = haar.dwt(x, levels, ndim)
    ref = _pywt_dec(x, levels, ndim, mode)
    _assert_same_pywt(haar.to_pywt(coarse, details, ndim), ref, ndim)
    # and back: PyWavelets' coefficients through our idwt
    c2, d2 = haar.from_pywt(ref, ndim)
    torch.testing.assert_close(haar.idwt(c2, d2, ndim), x, rtol=1e-12, atol=1e-12)


def test_pywt_key_table():
    assert haar.PYWT_DETAIL_ORDER[1] == ("d",)
    assert haar.PYWT_DETAIL_ORDER[2] == ("ad", "da", "dd")
    assert haar.PYWT_DETAIL_ORDER[3] == ("aad", "ada", "add", "daa", "dad", "dda", "ddd")
    x = torch.randn(8, 8, dtype=torch.float64)
    _, (det,) = haar.dwt(x, 1)
    ref = pywt.wavedecn(x.numpy(), "haar", level=1)[1]
    for i, key in enumerate(haar.PYWT_DETAIL_ORDER[2]):
        np.testing.assert_allclose(det[i].numpy(), ref[key], atol=1e-12)
    cH, cV, cD = pywt.wavedec2(x.numpy(), "haar", level=1)[1]
    for arr, idx in zip((cH, cV, cD), haar.PYWT_WAVEDEC2_ORDER):
        np.testing.assert_allclose(det[idx].numpy(), arr, atol=1e-12)


def test_band_count_and_bits():
    assert [haar.band_count(d) for d in (1, 2, 3)] == [1, 3, 7]
    assert haar.band_bits(2) == ((0, 1), (1, 0), (1, 1))
    with pytest.raises(ValueError, match="ndim"):
        haar.band_count(4)


# ---------------------------------------------------------------- autograd


@pytest.mark.parametrize(
    "ndim,shape,levels", [(1, (2, 8), 3), (2, (1, 4, 4), 2), (3, (4, 2, 4), 1)]
)
def test_gradcheck(ndim, shape, levels):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)

    def fwd(t):
        c, d = haar.dwt(t, levels, ndim)
        return (c, *d)

    assert torch.autograd.gradcheck(fwd, (x,))
    c, d = haar.dwt(x.detach(), levels, ndim)
    inputs = tuple(t.clone().requires_grad_(True) for t in (c, *d))

    def inv(c, *d):
        return haar.idwt(c, list(d), ndim)

    assert torch.autograd.gradcheck(inv, inputs)
    assert torch.autograd.gradcheck(lambda t: haar.project(t, levels, ndim), (x,))
    y = c.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: haar.embed(t, levels, ndim), (y,))


# ---------------------------------------------------------------- validation


def test_errors_ndim():
    x = torch.randn(4, 4)
    for bad in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match="ndim"):
            haar.dwt(x, 1, ndim=bad)
        with pytest.raises(ValueError, match="ndim"):
            haar.project(x, 1, ndim=bad)
        with pytest.raises(ValueError, match="ndim"):
            haar.embed(x, 1, ndim=bad)
        with pytest.raises(ValueError, match="ndim"):
            haar.idwt(x, [], ndim=bad)


def test_errors_too_few_dims():
    x = torch.randn(4, 4)
    for fn in (
        lambda: haar.dwt(x, 1, ndim=3),
        lambda: haar.project(x, 1, ndim=3),
        lambda: haar.embed(x, 1, ndim=3),
    ):
        with pytest.raises(ValueError, match=r"x must have at least ndim=3 .*\(4, 4\)"):
            fn()
    with pytest.raises(ValueError, match=r"coarse must have at least ndim=3"):
        haar.idwt(x, [], ndim=3)


def test_errors_levels():
    x = torch.randn(4, 4)
    for bad in (-1, 1.0, "2", None, True):
        with pytest.raises(ValueError, match="levels"):
            haar.dwt(x, bad)
        with pytest.raises(ValueError, match="levels"):
            haar.project(x, bad)
        with pytest.raises(ValueError, match="levels"):
            haar.embed(x, bad)
    haar.dwt(x, np.int64(2))  # integer-like is fine


def test_errors_divisibility():
    x = torch.randn(3, 6, 8)
    with pytest.raises(ValueError, match=r"spatial shape \(6, 8\).*2\*\*levels = 4 along axis -2"):
        haar.dwt(x, 2)
    with pytest.raises(ValueError, match=r"spatial shape \(6, 8\).*2\*\*levels = 4 along axis -2"):
        haar.project(x, 2)
    with pytest.raises(ValueError, match=r"2\*\*levels = 16 along axis -2"):
        haar.dwt(torch.randn(8, 16), 4)  # too many levels
    with pytest.raises(ValueError, match=r"spatial shape \(3, 6, 8\).*along axis -3"):
        haar.dwt(x, 1, ndim=3)
    haar.embed(x, 2)  # embed has no divisibility requirement


def test_errors_idwt_details():
    c, d = haar.dwt(torch.randn(2, 3, 8, 8), 2)
    with pytest.raises(ValueError, match="details must be a list"):
        haar.idwt(c, d[0])
    msg = r"details\[0\] has shape \(2, 3, 3, 4, 4\).*\(2, 3, 3, 2, 2\)"
    with pytest.raises(ValueError, match=msg):
        haar.idwt(c, [d[1], d[0]])  # wrong order
    with pytest.raises(ValueError, match=r"details\[1\] has shape \(2, 3, 2, 4, 4\)"):
        haar.idwt(c, [d[0], d[1][:, :, :2]])  # wrong band count
    with pytest.raises(ValueError, match=r"details\[0\].*leading dims do not match"):
        haar.idwt(c, [d[0][:1], d[1]])
    msg = r"details\[0\] has shape \(2, 3, 3, 2, 2\).*\(2, 7, 3, 2, 2\)"
    with pytest.raises(ValueError, match=msg):
        haar.idwt(c, [d[0], d[1]], ndim=3)
    with pytest.raises(ValueError, match=r"details\[0\] must be a torch.Tensor"):
        haar.idwt(c, [d[0].numpy(), d[1]])
    with pytest.raises(ValueError, match=r"details\[1\] has dtype torch.float64"):
        haar.idwt(c, [d[0], d[1].double()])
    # extra level: shape of details[2] would have to be (..., 8, 8)
    with pytest.raises(ValueError, match=r"details\[2\]"):
        haar.idwt(c, [d[0], d[1], d[1]])


def test_errors_dtype_and_type():
    with pytest.raises(ValueError, match="floating"):
        haar.dwt(torch.ones(4, 4, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        haar.dwt(np.ones((4, 4)), 1)


# ---------------------------------------------------------------- dtypes, devices, Pyramid


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_float32_stays_float32(ndim):
    x = torch.randn(2, *([8] * ndim), dtype=torch.float32)
    c, d = haar.dwt(x, 2, ndim)
    assert c.dtype == torch.float32 and all(t.dtype == torch.float32 for t in d)
    assert haar.idwt(c, d, ndim).dtype == torch.float32
    assert haar.project(x, 1, ndim).dtype == torch.float32
    assert haar.embed(x, 1, ndim).dtype == torch.float32
    ref = haar.dwt(x.double(), 2, ndim)
    torch.testing.assert_close(c.double(), ref[0], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_cuda_matches_cpu(ndim, dtype):
    x = torch.randn(2, 3, *([16] * ndim), dtype=dtype)
    c, d = haar.dwt(x, 3, ndim)
    cg, dg = haar.dwt(x.cuda(), 3, ndim)
    assert cg.is_cuda and all(t.is_cuda for t in dg)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cg.cpu(), c, **tol)
    for a, b in zip(dg, d):
        torch.testing.assert_close(a.cpu(), b, **tol)
    y = haar.idwt(cg, dg, ndim)
    assert y.is_cuda
    torch.testing.assert_close(y.cpu(), x, **tol)
    pg = haar.project(x.cuda(), 2, ndim).cpu()
    torch.testing.assert_close(pg, haar.project(x, 2, ndim), **tol)
    torch.testing.assert_close(haar.embed(x.cuda(), 1, ndim).cpu(), haar.embed(x, 1, ndim), **tol)


def test_pyramid():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    px, py = haar.Pyramid.from_tensor(x, 3), haar.Pyramid.from_tensor(y, 3)
    assert px.levels == 3 and px.ndim == 2
    torch.testing.assert_close(px.to_tensor(), x)
    torch.testing.assert_close((px + py).to_tensor(), x + y)
    torch.testing.assert_close((px - py).to_tensor(), x - y)
    torch.testing.assert_close((2.5 * px).to_tensor(), 2.5 * x)
    torch.testing.assert_close((px * -1.0).to_tensor(), -x)
    torch.testing.assert_close((-px).to_tensor(), -x)
    torch.testing.assert_close(px.norm_squared(), x.square().sum())
    with pytest.raises(ValueError, match="levels"):
        px + haar.Pyramid.from_tensor(x, 2)
    with pytest.raises(ValueError, match=r"details\[0\]"):
        haar.Pyramid(px.coarse, px.details[::-1])
