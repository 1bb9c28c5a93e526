r"""The denoiser's network: a U-Net whose down path is the Haar projection and whose up path is the Haar embedding.

Down-sampling is :func:`mrdiffusion.haar.project` (average pooling, the
orthogonal L² projection ``V_J → V_{J-1}``) and up-sampling is
:func:`mrdiffusion.haar.embed` (nearest up-sampling, its adjoint ``ι``). So the
features sent down carry ``P h`` and the skip connection at each resolution
carries what the projection loses, the Haar detail ``h - ιPh`` (docs/design.md).

Conditioning: the network receives every band's noise level ``c_noise_k``
(``(B, K)``, :mod:`.precond`), turns each into Fourier features, concatenates
them and maps them by an MLP to one embedding that modulates every residual
block (scale and shift after the second group norm, as in ADM / EDM).

Residual block: ``GN → SiLU → conv3 → GN·(1+scale)+shift → SiLU → dropout →
conv3`` plus a 1×1 skip where the width changes (Dhariwal & Nichol 2021).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import haar

__all__ = ["UNetConfig", "UNet", "default_mults"]


def default_mults(size):
    """Channel multipliers per resolution, finest first: ``1, 2, 2, …`` down to 4×4 or 2×2 (at most 4)."""
    downs = max(1, min(3, int(math.log2(size)) - 1))
    return (1,) + (2,) * downs


@dataclass(frozen=True)
class UNetConfig:
    """``width`` channels at full resolution, times ``mults[i]`` after ``i`` projections; ``blocks`` per
    resolution on the way down (one more on the way up); ``bands`` noise levels in; ``fourier`` features each."""

    channels: int = 1
    size: int = 8
    bands: int = 4
    width: int = 64
    mults: tuple = (1, 2, 2)
    blocks: int = 2
    dropout: float = 0.0
    fourier: int = 16

    def __post_init__(self):
        if self.width % 8 or self.width < 8:
            raise ValueError(f"--width: expected a multiple of 8 (group norm in groups of 8), got {self.width}")
        if self.size % (2 ** (len(self.mults) - 1)):
            raise ValueError(f"mults: {len(self.mults) - 1} projections do not divide image size {self.size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout: expected a number in [0, 1), got {self.dropout}")

    def to_dict(self):
        d = asdict(self)
        d["mults"] = list(self.mults)
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**{**d, "mults": tuple(d["mults"])})


class _Block(nn.Module):
    def __init__(self, cin, cout, emb, dropout):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, h, emb):
        y = self.c1(F.silu(self.n1(h)))
        scale, shift = self.e(emb)[:, :, None, None].chunk(2, dim=1)
        y = self.c2(self.drop(F.silu(self.n2(y) * (1 + scale) + shift)))
        return self.skip(h) + y


class UNet(nn.Module):
    """``net(img (B, C, H, W), c_noise (B, K)) -> (B, C, H, W)``; see the module docstring."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        emb = 4 * cfg.width
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(100.0), cfg.fourier)) * 2 * math.pi,
                             persistent=False)
        self.embed = nn.Sequential(nn.Linear(2 * cfg.fourier * cfg.bands, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(cfg.channels, cfg.width, 3, padding=1)
        widths = [cfg.width * m for m in cfg.mults]
        self.down = nn.ModuleList()
        skips, c = [cfg.width], cfg.width
        for i, w in enumerate(widths):
            level = nn.ModuleList()
            for _ in range(cfg.blocks):
                level.append(_Block(c, w, emb, cfg.dropout))
                c = w
                skips.append(c)
            if i < len(widths) - 1:
                skips.append(c)  # the projected features
            self.down.append(level)
        self.mid = nn.ModuleList([_Block(c, c, emb, cfg.dropout), _Block(c, c, emb, cfg.dropout)])
        self.up = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            level = nn.ModuleList()
            for _ in range(cfg.blocks + 1):
                level.append(_Block(c + skips.pop(), w, emb, cfg.dropout))
                c = w
            self.up.append(level)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, cfg.channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def embedding(self, c_noise):
        """Fourier features of every band's ``c_noise``, concatenated and mapped by the MLP: ``(B, 4·width)``."""
        ang = c_noise.to(self.freqs.dtype)[..., None] * self.freqs  # (B, K, fourier)
        feats = torch.cat([ang.cos(), ang.sin()], dim=-1).flatten(1)
        return self.embed(feats)

    def forward(self, img, c_noise):
        emb = self.embedding(c_noise)
        h = self.inp(img)
        hs = [h]
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            for blk in level:
                h = blk(h, emb)
                hs.append(h)
            if i < last:  # the Haar projection P (average pooling); the skip keeps h - ιPh
                h = haar.project(h, 1, ndim=2)
                hs.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        for j, level in enumerate(self.up):
            for blk in level:
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
            if j < last:  # the Haar embedding ι (nearest up-sampling)
                h = haar.embed(h, 1, ndim=2)
        return self.out(h)

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())
