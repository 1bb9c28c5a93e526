"""The bands module: layout, band index, masks, scalings, and the two views path by path for every noise type."""

import math

import pytest
import torch

import solvers
from mrdiffusion import MultiResolutionSDE, haar
from mrdiffusion.bands import BandLayout, BandStack, noise_scale
from mrdiffusion.processes import StiffPointMassProcess

ALL = [solvers.EulerMaruyama(), solvers.TwoStepEuler(), solvers.Heun(), solvers.Milstein(), solvers.SRA1(),
       solvers.ExponentialEuler(), solvers.DriftImplicitEuler(), solvers.DriftImplicitEuler(theta=0.5)]
TOL = 1e-10  # float64; the views differ only by the order of the Haar transforms' additions


def _supports(solver, noise):
    return noise in solver.noise_types


class LevelSDE(solvers.SDE):
    """Level ``k`` of a nonlinear test process: ``dZ = (-a_k Z + 0.3 sin Z) dt + σ_k(t, Z) dW``.

    ``noise="diagonal"``: level 0 (a 1×1 grid) is multiplicative, ``σ = 0.8 (1 + t) Z``; finer levels have
    ``σ_k(t)`` per channel, given as ``(1, C, 1, …, 1)``. ``noise="additive"``: ``σ_k(t)`` per channel.
    ``noise="scalar"``: a spatially varying ``σ = 0.5 (1 + Z²)^{1/2}`` driven by one motion per sample.
    Linear part ``-a_k`` for the exponential scheme, ``∂σ/∂Z`` for Milstein.
    """

    def __init__(self, k, noise, channels, ndim):
        self.k, self.noise_type, self.C, self.nd = k, noise, channels, ndim
        self.a = 1.0 + k

    def drift(self, t, z):
        return -self.a * z + 0.3 * torch.sin(z)

    def linear(self, t):
        return -self.a

    def _sigma(self, t, z):
        return torch.linspace(0.4, 0.8, self.C, dtype=z.dtype).view(1, self.C, *[1] * self.nd) * (1 + t + self.k)

    def diffusion(self, t, z):
        if self.noise_type == "scalar":
            return 0.5 * (1 + z * z).sqrt()
        if self.noise_type == "diagonal" and self.k == 0:
            return 0.8 * (1 + t) * z
        return self._sigma(t, z)

    def diffusion_derivative(self, t, z):
        if self.noise_type == "diagonal" and self.k == 0:
            return torch.full_like(z, 0.8 * (1 + t))
        return torch.zeros(1, self.C, *[1] * self.nd, dtype=z.dtype)


def _process(noise, ndim, channels=2):
    sdes = [LevelSDE(k, noise, channels, ndim) for k in range(3)]
    z0 = torch.linspace(0.5, 1.5, channels, dtype=torch.float64).view(channels, *[1] * ndim)
    return MultiResolutionSDE([0, 1, 2], [0.0, 0.25, 0.5], 1.0, sdes=sdes, channels=channels, ndim=ndim, z0=z0)


def _path(mr, noise, batch, solver, seed=4):
    if noise == "scalar":  # one motion per sample, shared as it is by every level of both views
        return solvers.BrownianPath((batch,), 0.0, mr.T, seed=seed, levy_area=solver.needs_levy_area)
    return mr.finest_path(batch, seed=seed, levy_area=solver.needs_levy_area)


@pytest.mark.parametrize("solver", ALL, ids=repr)
@pytest.mark.parametrize("noise", ["additive", "diagonal", "scalar"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_band_view_equals_grid_view_path_by_path(solver, noise, ndim):
    if not _supports(solver, noise):
        pytest.skip(f"{solver!r} does not support {noise} noise")
    mr = _process(noise, ndim)
    path = _path(mr, noise, 3, solver)
    ts = [0.0, 0.1, 0.25, 0.6, 1.0]
    grid = mr.sample(solver, 3, dt=1 / 32, ts=ts, brownian=path)
    bands = mr.sample_bands(solver, 3, dt=1 / 32, ts=ts, brownian=path)
    assert (grid.view, bands.view) == ("grid", "bands")
    assert torch.isfinite(grid.finest).all() and float(grid.bands.abs().max()) > 0.1
    assert float((grid.bands - bands.bands).abs().max()) <= TOL
    assert float((grid.finest - bands.finest).abs().max()) <= TOL


@pytest.mark.parametrize("solver", ALL, ids=repr)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_band_defined_process_both_views_path_by_path(solver, ndim):
    proc = StiffPointMassProcess([0, 1, 2], [0.0, 0.25, 0.5], 1.0, kappa=2.0, eps=0.05, channels=2, ndim=ndim,
                                 z0=torch.randn(2, *[1] * ndim, dtype=torch.float64,
                                                generator=torch.Generator().manual_seed(0)))
    path = proc.finest_path(3, seed=4, levy_area=solver.needs_levy_area)
    grid = proc.sample(solver, 3, dt=1 / 32, brownian=path)
    bands = proc.sample_bands(solver, 3, dt=1 / 32, brownian=path)
    assert float((grid.bands - bands.bands).abs().max()) <= TOL


def test_band_view_keeps_ito_multiplicative_noise():
    # a 1×1 level with diffusion 0.8·x; the band view used to declare "additive" noise, so Heun solved
    # the Stratonovich equation (E Z_0.5 ≈ 1.507) instead of the Itô one (E Z_0.5 = e^{0.25} ≈ 1.284)
    mr = MultiResolutionSDE([0], [0.0], 0.5, drift=lambda t, x, lev: 0.5 * x,
                            diffusion=lambda t, x, lev: 0.8 * x, noise_type="diagonal",
                            z0=torch.ones(1, 1, 1, dtype=torch.float64))
    assert mr.band_sde(0).noise == "diagonal"
    n = 40_000
    path = mr.finest_path(n, seed=0)
    grid = mr.sample(solvers.Heun(), n, dt=0.05, brownian=path).bands[-1]
    bands = mr.sample_bands(solvers.Heun(), n, dt=0.05, brownian=path).bands[-1]
    assert float((grid - bands).abs().max()) <= 1e-12
    ito, std = math.exp(0.25), math.exp(0.25) * math.sqrt(math.exp(0.64 * 0.5) - 1)
    assert abs(float(bands.mean()) - ito) <= 4 * std / math.sqrt(n) + 0.01  # Heun's weak error at h = 0.05: < 0.01
    # Milstein's correction survives in the band view: its strong error against the exact GBM path is O(h)
    em = mr.sample_bands(solvers.EulerMaruyama(), 64, dt=1 / 64, brownian=mr.finest_path(64, seed=1)).bands[-1]
    mil = mr.sample_bands(solvers.Milstein(), 64, dt=1 / 64, brownian=mr.finest_path(64, seed=1)).bands[-1]
    W = mr.finest_path(64, seed=1).increment(0.0, 0.5).reshape(64, 1, 1)
    exact = torch.exp((0.5 - 0.32) * 0.5 + 0.8 * W)
    assert float((mil - exact).abs().mean()) < 0.3 * float((em - exact).abs().mean())


@pytest.mark.parametrize("noise", ["additive", "diagonal", "scalar"])
def test_broadcastable_diffusion_accepted_in_both_views(noise):
    shapes = {}
    for shape in ("per_channel", "scalar_float", "full"):
        def diffusion(t, x, level, shape=shape):
            if shape == "per_channel":
                return torch.full((1, x.shape[1], 1, 1), 0.5, dtype=x.dtype)
            if shape == "scalar_float":
                return 0.5
            return torch.full_like(x, 0.5)

        mr = MultiResolutionSDE([0, 1], [0.0, 0.5], 1.0, drift=lambda t, x, lev: -x, diffusion=diffusion,
                                noise_type=noise, channels=2)
        path = (solvers.BrownianPath((2,), 0.0, 1.0, seed=0) if noise == "scalar" else mr.finest_path(2, seed=0))
        if noise == "diagonal" and shape == "scalar_float":
            continue  # a float is not a diagonal diffusion for the driver either
        grid = mr.sample(solvers.EulerMaruyama(), 2, dt=1 / 8, brownian=path)
        if shape == "full" and noise != "scalar":
            # a full-shape diffusion may vary in space: the band view refuses it by shape, naming the grid view
            with pytest.raises(ValueError, match=r"band view: the diffusion of level 1 has spatial shape \(2, 2\)"):
                mr.sample_bands(solvers.EulerMaruyama(), 2, dt=1 / 8, brownian=path)
            shapes[shape] = grid.bands
            continue
        bands = mr.sample_bands(solvers.EulerMaruyama(), 2, dt=1 / 8, brownian=path)
        assert float((grid.bands - bands.bands).abs().max()) <= TOL
        shapes[shape] = grid.bands
    # the same process whatever the shape the diffusion is given in
    assert torch.allclose(shapes["per_channel"], shapes["full"], rtol=0, atol=TOL)


def test_layout_band_index_masks_and_scaling():
    stack = BandStack((8, 8), [0, 1, 3], ndim=2)  # levels 1×1, 2×2, 8×8
    assert stack.layout.n == 64 and stack.delta(0) == 3 and stack.delta(2) == 0
    # band k holds the coefficients level k adds: 1, then 2×2 − 1 = 3, then 64 − 4 = 60
    assert [int((stack.index == k).sum()) for k in range(3)] == [1, 3, 60]
    assert stack.active(1).tolist() == (stack.index <= 1).double().tolist()
    assert noise_scale(2, 3) == 8.0 and stack.scale(0) == 8.0 and noise_scale(3, 1) == 2 ** 1.5
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    y = stack.to_bands(x, 1)
    assert torch.equal(y[..., stack.index > 1], torch.zeros_like(y[..., stack.index > 1]))
    assert torch.allclose(stack.to_level(y, 1), x, atol=1e-14)
    # ι^Δ multiplies ℓ² norms by 2^{dΔ/2}: the band coordinates of an embedded field
    assert torch.allclose(y.norm(dim=-1), stack.scale(1) * x.flatten(2).norm(dim=-1), atol=1e-12)
    layout = BandLayout((8, 8), 3, 2)
    z = torch.randn(2, 8, 8, dtype=torch.float64)
    assert torch.allclose(layout.unpack(layout.pack(z)), z, atol=1e-14)
    coarse, details = haar.dwt(z, 3, 2)
    assert torch.allclose(layout.pack(z)[..., :1], coarse.reshape(2, 1), atol=1e-14)


def test_both_views_return_an_mrsolution_with_both_coordinates():
    mr = _process("additive", 2)
    sol = mr.sample_bands(solvers.Heun(), 4, dt=1 / 16, seed=0)
    assert sol.bands.shape == (4, 4, 2, 16) and sol.finest.shape == (4, 4, 2, 4, 4)
    assert torch.allclose(mr.layout.pack(sol.finest), sol.bands, atol=1e-13)
    assert sol.info.stage_steps == [4, 4, 8] and sol.nfe > 0 and sol.diverged.shape == (4,)
    grid = mr.sample(solvers.Heun(), 4, dt=1 / 16, seed=0)
    assert type(grid) is type(sol) and [out.shape[-2:] for _, out in grid.levels] == [(1, 1), (2, 2), (4, 4)]


def test_band_view_refuses_init_band_and_spatially_varying_diagonal_noise():
    mr = MultiResolutionSDE([0, 1], [0.0, 0.5], 1.0, drift=lambda t, x, lev: -x,
                            diffusion=lambda t, x, lev: 0.5 * x, noise_type="diagonal", init_band=lambda lev, x: x)
    with pytest.raises(ValueError, match="init_band: the band view starts every band at zero"):
        mr.sample_bands(solvers.EulerMaruyama(), 2, dt=0.25)
    mr.init_band = None
    with pytest.raises(ValueError, match="use the grid view"):
        mr.sample_bands(solvers.EulerMaruyama(), 2, dt=0.25)
    assert mr.sample(solvers.EulerMaruyama(), 2, dt=0.25).finest.shape == (3, 2, 1, 2, 2)


def test_save_times_are_right_continuous_and_may_stop_early():
    mr = _process("additive", 2)
    path = mr.finest_path(2, seed=3)
    full = mr.sample(solvers.Heun(), 2, dt=1 / 16, ts=[0.0, 0.25, 0.5, 1.0], brownian=path)
    # stopping at an activation time returns the embedded state there (the new band a point mass at zero),
    # and the paths up to it are those of the full run
    early = mr.sample(solvers.Heun(), 2, dt=1 / 16, ts=[0.25, 0.5], brownian=path)
    assert torch.equal(early.finest, full.finest[1:3])
    assert [times for times, _ in early.levels] == [[0.0, 0.25], [0.25, 0.5], [0.5]]
    assert early.levels[2][1].shape[-2:] == (4, 4)
    bands = mr.sample_bands(solvers.Heun(), 2, dt=1 / 16, ts=[0.25, 0.5], brownian=path)
    assert float((bands.bands - early.bands).abs().max()) <= TOL
    with pytest.raises(ValueError, match=r"ts: expected increasing times in \[0, T=1.0\]"):
        mr.sample(solvers.Heun(), 2, dt=1 / 16, ts=[0.5, 0.25])


def test_docs_multires_examples_run():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "multires.md").read_text()
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        exec(compile(block, "docs/multires.md", "exec"), namespace)
    assert namespace["sol"].info.stage_steps == [4, 4, 8] and namespace["seen"] == [0] * 4 + [1] * 4 + [2] * 8
