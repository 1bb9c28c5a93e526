"""Network pieces of the HVAE: the VDVAE bottleneck block, the bottom-up encoder,
the parameters of one top-down step and a time embedding.

Everything here is plain ``torch.nn``; the top-down *dynamics* (how these
networks become the drift and diffusion of an SDE) live in :mod:`.sde`.
Reference for the block layout and its initialisation: Child, *Very Deep VAEs
Generalize Autoregressive Models and Can Outperform Them on Images*, ICLR 2021
(github.com/openai/vdvae, ``vae.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import haar

__all__ = ["Block", "Encoder", "TopDownBlock", "TimeEmbedding"]


class Block(nn.Module):
    """VDVAE bottleneck ``c_in -> c_mid -> c_mid -> c_mid -> c_out``, GELU before each conv.

    The middle convolutions are 3×3 (``use_3x3``) or 1×1. ``zero_last`` zeroes
    the last convolution (the prior starts at ``N(0, 1)`` with no residual);
    otherwise its weight is scaled by ``last_scale`` (``sqrt(1 / depth)`` keeps
    the residual stream's variance bounded). There is no skip connection inside:
    the caller adds the residual.
    """

    def __init__(self, c_in, c_mid, c_out, *, use_3x3=True, zero_last=False, last_scale=1.0):
        super().__init__()
        k = 3 if use_3x3 else 1
        self.c1 = nn.Conv2d(c_in, c_mid, 1)
        self.c2 = nn.Conv2d(c_mid, c_mid, k, padding=k // 2)
        self.c3 = nn.Conv2d(c_mid, c_mid, k, padding=k // 2)
        self.c4 = nn.Conv2d(c_mid, c_out, 1)
        with torch.no_grad():
            if zero_last:
                self.c4.weight.zero_()
                self.c4.bias.zero_()
            else:
                self.c4.weight.mul_(last_scale)

    def forward(self, x):
        h = self.c1(F.gelu(x))
        h = self.c2(F.gelu(h))
        h = self.c3(F.gelu(h))
        return self.c4(F.gelu(h))


class Encoder(nn.Module):
    """Bottom-up pass: residual blocks, then ``haar.project`` (average pooling) down to 1×1.

    ``blocks_per_res[k]`` residual blocks run at resolution ``resolutions[k]``
    (coarsest first, as in the config); the activation at the end of every
    resolution is kept, ``acts[res]``. With ``shared=True`` the blocks of one
    resolution are one module applied repeatedly (a time-homogeneous Euler
    discretisation of the bottom-up ODE).
    """

    def __init__(self, channels, width, mid, resolutions, blocks_per_res, *, shared=False, all_3x3=False):
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.counts = tuple(blocks_per_res)
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        scale = math.sqrt(1.0 / max(1, sum(self.counts)))
        self.blocks = nn.ModuleDict()
        for res, n in zip(self.resolutions, self.counts):
            k = 1 if shared else n
            self.blocks[str(res)] = nn.ModuleList(
                Block(width, mid, width, use_3x3=all_3x3 or res > 2, last_scale=scale) for _ in range(min(k, n)))

    def forward(self, x):
        h = self.stem(x)
        acts = {}
        for res, n in reversed(list(zip(self.resolutions, self.counts))):
            if h.shape[-1] != res:
                h = haar.project(h)
            mods = self.blocks[str(res)]
            for i in range(n):
                h = h + mods[i % len(mods)](h)
            acts[res] = h
        return acts


class TimeEmbedding(nn.Module):
    """``τ ∈ [0, 1] -> R^width``: Fourier features ``cos(π k τ), sin(π k τ)``, then a linear map.

    The linear map starts at zero, so a freshly built shared model is
    time-homogeneous and learns how much to depend on time.
    """

    def __init__(self, width, n_freq=16):
        super().__init__()
        self.register_buffer("freqs", math.pi * torch.arange(n_freq, dtype=torch.float32), persistent=False)
        self.proj = nn.Linear(2 * n_freq, width)
        with torch.no_grad():
            self.proj.weight.zero_()
            self.proj.bias.zero_()

    def forward(self, tau: float, like: torch.Tensor):
        a = self.freqs.to(like) * tau
        e = self.proj(torch.cat([a.cos(), a.sin()]))
        return e.view(1, -1, *([1] * (like.ndim - 2)))


class TopDownBlock(nn.Module):
    """The parameters of one VDVAE top-down block.

    ``prior(x) -> (m, log s, μ₁)`` (one network, zero-initialised last layer),
    ``posterior(x, act) -> (m_q, log s_q)``, the latent projection
    ``W z + b`` (``z_proj``, a 1×1 convolution) and the residual block ``μ₂``.
    """

    def __init__(self, width, mid, zdim, *, depth, use_3x3=True):
        super().__init__()
        self.zdim = zdim
        scale = math.sqrt(1.0 / depth)
        self.prior_net = Block(width, mid, 2 * zdim + width, use_3x3=use_3x3, zero_last=True)
        self.posterior_net = Block(2 * width, mid, 2 * zdim, use_3x3=use_3x3)
        self.z_proj = nn.Conv2d(zdim, width, 1)
        self.resnet = Block(width, mid, width, use_3x3=use_3x3, last_scale=scale)
        with torch.no_grad():
            self.z_proj.weight.mul_(scale)

    def prior(self, x):
        out = self.prior_net(x)
        z = self.zdim
        return out[:, :z], out[:, z:2 * z], out[:, 2 * z:]

    def posterior(self, x, act):
        out = self.posterior_net(torch.cat([x, act], dim=1))
        return out[:, :self.zdim], out[:, self.zdim:]
