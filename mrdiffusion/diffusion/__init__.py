"""The learned multi-resolution diffusion model: noising families, Haar U-Net, per-band EDM preconditioning,
denoising score matching, training and sampling across point-mass activations. See ``docs/diffusion.md``."""

from .families import FAMILIES, CutCosineSchedule, Family, ScaledEDMSchedule, make_family
from .loss import P_MEAN, P_STD, dsm_loss, sample_times
from .model import DiffusionConfig, DiffusionModel, data_to_images, images_to_data
from .precond import Precond, edm_coefficients
from .sample import activation_grid, check_nfe, sample_bands
from .unet import UNet, UNetConfig

__all__ = ["FAMILIES", "Family", "make_family", "ScaledEDMSchedule", "CutCosineSchedule", "P_MEAN", "P_STD",
           "dsm_loss", "sample_times", "DiffusionConfig", "DiffusionModel", "images_to_data", "data_to_images",
           "Precond", "edm_coefficients", "activation_grid", "check_nfe", "sample_bands", "UNet", "UNetConfig"]
