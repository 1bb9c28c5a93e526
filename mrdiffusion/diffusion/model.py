"""The learned denoiser: a noising family, per-band EDM preconditioning and the Haar U-Net, as one module.

``DiffusionModel(x, t)`` takes packed band coefficients ``x`` ``(B, C, n)``
(:class:`~mrdiffusion.multires.BandLayout`) and times ``t`` ``(B,)`` and
returns the data prediction ``D ≈ E[x_0 | x_t]``; :meth:`DiffusionModel.denoiser`
is the ``D(x, t)`` (``t`` a float) that :func:`mrdiffusion.sampling.sample`
takes, with :meth:`DiffusionModel.noising` its noising.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..multires import BandLayout
from .families import Family
from .precond import Precond
from .unet import UNet, UNetConfig

__all__ = ["DiffusionConfig", "DiffusionModel", "images_to_data", "data_to_images"]


@dataclass(frozen=True)
class DiffusionConfig:
    """The whole model: image ``levels`` (grey levels), the U-Net, the noising family and ``sigma_data`` per band."""

    unet: UNetConfig
    family: Family
    sigma_data: tuple
    grey_levels: int

    def to_dict(self):
        return {"unet": self.unet.to_dict(), "family": self.family.to_dict(), "sigma_data": list(self.sigma_data),
                "grey_levels": self.grey_levels}

    @classmethod
    def from_dict(cls, d):
        return cls(UNetConfig.from_dict(d["unet"]), Family.from_dict(d["family"]), tuple(d["sigma_data"]),
                   int(d["grey_levels"]))


def images_to_data(x, grey_levels, u=None):
    """Integer levels ``0 … L-1`` to ``[-1, 1]``: ``2 (x + u)/L - 1``, ``u`` uniform dequantisation (0.5: midpoint)."""
    u = 0.5 if u is None else u
    return 2.0 * (x.to(torch.float32) + u) / grey_levels - 1.0


def data_to_images(x, grey_levels):
    """``[-1, 1]`` back to integer levels (rounded, clipped)."""
    return ((x + 1.0) * 0.5 * grey_levels - 0.5).round().clamp(0, grey_levels - 1).to(torch.int64)


class DiffusionModel(nn.Module):
    """``D(x, t)``: per-band preconditioned U-Net under ``config.family`` (see the module docstring)."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = config
        fam = config.family
        self.family = fam
        self.layout = BandLayout(fam.shape[1:], fam.levels, 2)
        self.precond = Precond(UNet(config.unet), self.layout, config.sigma_data)

    def forward(self, x, t):
        alpha, sigma = self.family.alpha_sigma(t.to(torch.float32))
        return self.precond(x, alpha, sigma)

    def noising(self):
        return self.family.noising()

    def denoiser(self, autocast=False):
        """``D(x, t)`` for :func:`mrdiffusion.sampling.sample` (``t`` a float; output in ``x``'s dtype).

        Differentiable in ``x`` (the likelihood needs ``∂D/∂x``): sample under ``torch.no_grad()``, as
        :func:`.cli.draw` does.
        """

        def D(x, t):
            tt = torch.full((x.shape[0],), float(t), dtype=torch.float32, device=x.device)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast and x.device.type == "cuda"):
                return self(x.to(torch.float32), tt).to(x.dtype)

        return D

    def describe(self):
        """Parameter count and shapes, as printed at the start of training."""
        fam, lay = self.family, self.layout
        n = sum(p.numel() for p in self.parameters())
        acts = f", activations {list(fam.activation_times)}" if fam.activation_times else ""
        return (f"diffusion model: {n:,} parameters; images {tuple(fam.shape)} -> {lay.n} band coefficients in "
                f"{fam.levels + 1} bands of sizes {list(lay.sizes)}; U-Net width {self.config.unet.width}, "
                f"mults {list(self.config.unet.mults)}, {self.config.unet.blocks} blocks per resolution; "
                f"noising {fam.name}{acts}; sigma_data per band "
                f"[{', '.join(f'{s:.3g}' for s in self.config.sigma_data)}]")

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())


def band_rms(x_packed, layout):
    """RMS of every band over a data set of packed coefficients ``(N, C, n)``: ``σ_{d,k}``."""
    out = []
    for k in range(len(layout.sizes)):
        v = x_packed[..., layout.dwt_level == k].double()
        out.append(max(float(v.pow(2).mean().sqrt()), 1e-3))
    return tuple(out)


