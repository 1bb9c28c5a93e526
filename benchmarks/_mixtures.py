"""Gaussian-mixture problems with exact denoisers, and metrics against the true law, for ``benchmarks.fewstep_peers``.

Every mixture lives in ``d`` dimensions: component ``k`` (weight ``w_k``) is ``μ_k + Q diag(s_k) z``,
``z ~ N(0, I)``, with one rotation ``Q`` for all (axis-aligned components would make the diagonal
denoiser's job too easy). Noising is EDM's ``y = x_0 + σ̂ ε`` (``α = 1``); any VP state is
``x = α y`` with ``σ̂ = σ/α``, so one denoiser ``D(y, σ̂)`` is the exact model of every process:
``D(y, σ̂) = Q D_diag(Qᵀ y, σ̂)``, ``D_diag`` :func:`~mrdiffusion.processes.gaussian_mixture_denoiser`.

Metrics of a sample ``X`` (``n × d``), each reported minus the same metric for the exact data draws the
starts were made from (the *floor*: what ``n`` exact samples score):

- ``sw2``: sliced W2 to ``n`` fresh exact samples, ``(mean over L directions of W2²)^{1/2}``, the 1-D W2
  of sorted projections;
- ``mean_err`` / ``std_err``: assign each point to the nearest component mean; per component, the RMS
  over axes (``Q``'s) of ``(m̂ - μ)/s`` and of ``ŝ/s - 1``, weighted by ``w_k``;
- ``weight_tv``: ``½ Σ_k |n_k/n - w_k|`` of the same assignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrdiffusion.processes import gaussian_mixture_denoiser

__all__ = ["Mixture", "MIXTURES", "DESIGN", "HELD_OUT", "Metrics"]

METRICS = ("sw2", "mean_err", "std_err", "weight_tv")


class _VE:
    """``α = 1``, ``σ = t``: the noising under which ``t`` is ``σ̂``."""

    def alpha_sigma(self, t, like=None):
        dt = like.dtype if like is not None else torch.float64
        return torch.tensor(1.0, dtype=dt), torch.tensor(float(t), dtype=dt)


@dataclass(frozen=True)
class Mixture:
    name: str
    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, d)
    stds: torch.Tensor  # (K, d), along Q's axes
    rotation: torch.Tensor  # (d, d) orthogonal
    about: str

    @property
    def dim(self):
        return self.means.shape[1]

    def sample(self, n, gen):
        """``n`` exact draws and their components."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        z = torch.randn(n, self.dim, generator=gen, dtype=torch.float64)
        return self.means[k] + (self.stds[k] * z) @ self.rotation.T, k

    def denoiser(self):
        """The exact ``D(y, σ̂) = E[x_0 | x_0 + σ̂ ε = y]``."""
        Q = self.rotation
        diag = gaussian_mixture_denoiser(_VE(), self.weights, self.means @ Q, self.stds.square())

        def D(y, sigma):
            return diag(y @ Q, float(sigma)) @ Q.T

        return D


def _rotation(d, gen):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def ring2d():
    """8 equal Gaussians (std 0.25) on a circle of radius 2 in 2-D: multi-modal, modes well apart."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 2.0 * torch.stack([ang.cos(), ang.sin()], 1)
    return Mixture("ring2d", torch.full((8,), 1 / 8, dtype=torch.float64), means,
                   torch.full((8, 2), 0.25, dtype=torch.float64), torch.eye(2, dtype=torch.float64),
                   "8 equal Gaussians, std 0.25, on a circle of radius 2 (2-D)")


def aniso6d():
    """5 rotated anisotropic Gaussians in 6-D, weights 0.4 … 0.06, axis stds 0.03 … 1 (condition up to ~30)."""
    gen = torch.Generator().manual_seed(6)
    w = torch.tensor([0.40, 0.25, 0.16, 0.13, 0.06], dtype=torch.float64)
    means = 1.5 * torch.randn(5, 6, generator=gen, dtype=torch.float64)
    stds = torch.exp(torch.empty(5, 6, dtype=torch.float64).uniform_(math.log(0.03), 0.0, generator=gen))
    return Mixture("aniso6d", w, means, stds, _rotation(6, gen),
                   "5 rotated anisotropic Gaussians in 6-D, weights 0.40/0.25/0.16/0.13/0.06, axis stds in "
                   "[0.03, 1]")


def heldout4d():
    """Held out (not used to choose defaults): 12 overlapping Gaussians in 4-D, skewed weights, stds 0.05 … 0.5."""
    gen = torch.Generator().manual_seed(44)
    w = (-torch.log(torch.rand(12, generator=gen, dtype=torch.float64))) ** 1.5 + 0.02  # skewed, ≥ 0.02
    means = 2.5 * torch.rand(12, 4, generator=gen, dtype=torch.float64) - 1.25
    stds = torch.exp(torch.empty(12, 4, dtype=torch.float64).uniform_(math.log(0.05), math.log(0.5), generator=gen))
    return Mixture("heldout4d", w / w.sum(), 2.0 * means, stds, _rotation(4, gen),
                   "12 rotated Gaussians in 4-D (overlapping), skewed weights, axis stds in [0.05, 0.5]")


MIXTURES = {"ring2d": ring2d, "aniso6d": aniso6d, "heldout4d": heldout4d}
DESIGN = ("ring2d", "aniso6d")
HELD_OUT = ("heldout4d",)


class Metrics:
    """The metrics of one problem: fresh exact samples, projection directions and the floor.

    A sample is reduced once to its projections (``n × L``), its nearest-mean components and its points
    standardized along their component's axes; metrics (and bootstrap resamples of them) read those."""

    def __init__(self, mix, x0, seed, directions=64):
        self.mix = mix
        gen = torch.Generator().manual_seed(seed + 7919)
        ref, _ = mix.sample(x0.shape[0], gen)
        dirs = torch.randn(mix.dim, directions, generator=gen, dtype=torch.float64)
        self.dirs = dirs / dirs.norm(dim=0, keepdim=True)
        self.ref_proj = ref @ self.dirs
        self.ref_sorted = torch.sort(self.ref_proj, 0).values
        self.x0 = self.reduce(x0)
        self.floor = self.raw(self.x0)

    def reduce(self, X):
        if not torch.isfinite(X).all():
            return None
        mix = self.mix
        k = torch.cdist(X, mix.means).argmin(1)
        z = (X - mix.means[k]) @ mix.rotation / mix.stds[k]
        return X @ self.dirs, k, z

    def raw(self, red, idx=None, ref_sorted=None):
        if red is None:
            return {m: float("inf") for m in METRICS}
        proj, k, z = red if idx is None else (red[0][idx], red[1][idx], red[2][idx])
        ref_sorted = self.ref_sorted if ref_sorted is None else ref_sorted
        out = {"sw2": float((torch.sort(proj, 0).values - ref_sorted).square().mean().sqrt())}
        K, n = self.mix.weights.numel(), k.numel()
        cnt = torch.bincount(k, minlength=K).to(z.dtype)
        s1 = torch.zeros(K, z.shape[1], dtype=z.dtype).index_add_(0, k, z)
        s2 = torch.zeros(K, z.shape[1], dtype=z.dtype).index_add_(0, k, z * z)
        c = cnt.clamp_min(2).unsqueeze(1)
        mean = s1 / c
        std = ((s2 - c * mean * mean) / (c - 1)).clamp_min(0).sqrt()
        w = self.mix.weights
        ok = cnt >= 2  # a component with fewer than 2 points counts as a mean error of 10 and a std error of 1
        mean_err = torch.where(ok, mean.square().mean(1).sqrt(), torch.full_like(w, 10.0))
        std_err = torch.where(ok, (std - 1).square().mean(1).sqrt(), torch.ones_like(w))
        out.update(mean_err=float((w * mean_err).sum()), std_err=float((w * std_err).sum()),
                   weight_tv=float(0.5 * (cnt / n - w).abs().sum()))
        return out

    def excess(self, X):
        r = self.raw(self.reduce(X))
        return {m: r[m] - self.floor[m] for m in METRICS}

    def bootstrap(self, X, reps=100, seed=0, level=0.95):
        """Percentile intervals of each metric's excess over the floor: the sample and the data draws resampled
        together (paired: sample ``i`` came from draw ``i``), the fresh samples independently."""
        red = self.reduce(X)
        if red is None:
            return {m: (float("inf"), float("inf")) for m in METRICS}
        gen = torch.Generator().manual_seed(seed)
        n = X.shape[0]
        vals = {m: [] for m in METRICS}
        for _ in range(reps):
            idx = torch.randint(n, (n,), generator=gen)
            ref_sorted = torch.sort(self.ref_proj[torch.randint(n, (n,), generator=gen)], 0).values
            a, b = self.raw(red, idx, ref_sorted), self.raw(self.x0, idx, ref_sorted)
            for m in METRICS:
                vals[m].append(a[m] - b[m])
        lo, hi = (1 - level) / 2, (1 + level) / 2
        out = {}
        for m in METRICS:
            v = torch.tensor(vals[m], dtype=torch.float64)
            out[m] = (float(torch.quantile(v, lo)), float(torch.quantile(v, hi)))
        return out

    def floor_sd(self, reps=30, seed=1):
        """The bootstrap sd of each floor metric: the scale below which two excesses cannot be told apart."""
        gen = torch.Generator().manual_seed(seed)
        n = self.x0[0].shape[0]
        vals = {m: [] for m in METRICS}
        for _ in range(reps):
            ref_sorted = torch.sort(self.ref_proj[torch.randint(n, (n,), generator=gen)], 0).values
            r = self.raw(self.x0, torch.randint(n, (n,), generator=gen), ref_sorted)
            for m in METRICS:
                vals[m].append(r[m])
        return {m: float(torch.tensor(v).std()) for m, v in vals.items()}
