"""Diffusion samplers, one scheme per module; re-exported by :mod:`mrdiffusion.sampling`."""

from ._base import SamplerScheme, StepEnds
from .ancestral import Ancestral
from .dpmpp_2m import DPMSolverPP2M
from .dpmpp_2s import DPMSolverPP2S
from .dpmpp_3s import DPMSolverPP3S
from .edm_euler import EDMEuler
from .edm_heun import EDMHeun
from .exponential_adams import ExponentialAdams
from .unipc import UniPC

__all__ = ["SamplerScheme", "StepEnds", "ExponentialAdams", "DPMSolverPP2M", "DPMSolverPP2S", "DPMSolverPP3S",
           "EDMEuler", "EDMHeun", "Ancestral", "UniPC"]
