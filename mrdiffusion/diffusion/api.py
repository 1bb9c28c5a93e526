"""``mrdiffusion.load(RUN)``: a trained diffusion run as its denoiser, its noising and a sampler.

Example::

    import mrdiffusion
    run = mrdiffusion.load("runs/digits")            # a run folder or its checkpoint.pt
    D, noising = run.denoiser, run.noising           # D(x, t) on packed bands (B, C, n)
    images = run.sample(16, nfe=20)                  # integer grey levels (16, C, H, W)
    # or, for scalar/perband runs: mrdiffusion.sampling.sample(D, noising, x_T, nfe=20)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["Run", "load", "checkpoint_path", "checkpoint_kind"]


def checkpoint_path(run):
    """``RUN/checkpoint.pt`` for a run folder, ``RUN`` for a file; ``ValueError`` if there is none."""
    path = os.path.join(run, "checkpoint.pt") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint: {path} does not exist; expected a checkpoint.pt written by mrdiffusion train, "
                         f"or its run directory")
    return path


def checkpoint_kind(path):
    """``"diffusion"`` or ``"hvae"`` from a checkpoint's format string (``ValueError`` for anything else)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not torch's own message: it suggests weights_only=False, which would run code
        raise ValueError(f"checkpoint: {path!r} could not be read ({type(err).__name__}): not a file written by "
                         f"mrdiffusion train, truncated, or holding objects other than tensors and plain "
                         f"containers (such files are not loaded)") from None
    fmt = ckpt.get("format", "") if isinstance(ckpt, dict) else ""
    if fmt.startswith("mrdiffusion.diffusion/"):
        return "diffusion"
    if fmt.startswith("mrdiffusion.hvae/"):
        return "hvae"
    raise ValueError(f"checkpoint: {path!r} is not an mrdiffusion checkpoint")


@dataclass
class Run:
    """A trained diffusion model: ``denoiser`` ``D(x, t)``, ``noising`` (a BandNoising), activation times."""

    model: object
    checkpoint: dict
    device: str

    @property
    def noising(self):
        return self.model.noising()

    @property
    def denoiser(self):
        return self.model.denoiser(autocast=torch.device(self.device).type == "cuda")

    @property
    def activation_times(self):
        return self.model.family.activation_times

    @property
    def layout(self):
        return self.model.layout

    def prior(self, n, seed=0, dtype=torch.float32):
        """``x_T``: each live band ``N(α m, σ²)``-distributed with ``m = 0`` (the data mean is not stored)."""
        nz = self.noising
        g = torch.Generator().manual_seed(seed)
        _, s = nz.alpha_sigma(nz.T, like=torch.zeros(1, dtype=torch.float64))
        C = self.model.family.shape[0]
        xi = torch.randn((n, C, self.layout.n), generator=g, dtype=torch.float64)
        return (s * xi).to(dtype).to(self.device)

    def sample(self, n, *, nfe=20, solver=None, seed=0, ode=False, packed=False):
        """``n`` images (integer levels) in ``nfe`` model evaluations; see :func:`.cli.draw`."""
        from .cli import draw

        x, _ = draw(self, n, nfe=nfe, solver=solver, seed=seed, ode=ode)
        if packed:
            return x
        from .model import data_to_images

        return data_to_images(self.layout.unpack(x), self.model.config.grey_levels)


def load(run, *, ema=True, device="cpu"):
    """Load a diffusion run (folder or checkpoint); HVAE runs give the HVAE model (``model_from_checkpoint``)."""
    path = checkpoint_path(run)
    if checkpoint_kind(path) == "hvae":
        from ..hvae.checkpoint import model_from_checkpoint as hvae_model

        return hvae_model(path, ema=ema, device=device)[0]
    from .train import model_from_checkpoint

    model, ckpt = model_from_checkpoint(path, ema=ema, device=device)
    return Run(model, ckpt, device)
