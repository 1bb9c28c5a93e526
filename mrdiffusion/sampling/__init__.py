"""Few-step sampling of diffusions: model conventions, noise schedules, time grids and samplers.

Forward noising per coordinate, ``x_t = α(t) x_0 + σ(t) ε`` with
``λ = log(α/σ)``; ``α`` and ``σ`` may differ per Haar band
(:class:`~mrdiffusion.processes.BandNoising`). The samplers integrate the
reverse-time ODE or SDE from ``T`` down to 0 through :func:`solvers.sdeint`,
taking the linear part exactly and interpolating the data prediction ``D`` as
a function of ``λ`` — per coordinate, so per-band schedules need no special
case. See ``docs/sampling.md``.

Example::

    import torch
    from mrdiffusion.processes import EDMSchedule
    from mrdiffusion.sampling import sample

    denoiser = lambda x, sigma: x / (1 + sigma**2)      # exact D for N(0, 1) data
    x_T = 80.0 * torch.randn(1000, 4, dtype=torch.float64)
    x0, info = sample(denoiser, EDMSchedule(80.0), x_T, nfe=10)
"""

from ._api import DEFAULT_GRID, DEFAULT_SOLVER, SampleInfo, sample
from ._grids import ActivationRefined, BandwiseEDMRho, EDMRho, Grid, UniformLogSNR, UniformTime
from ._model import PREDICTIONS, as_denoiser, from_data, to_data
from ._noising import ScalarNoising, as_noising, sigma_hat, time_of_sigma_hat
from ._problem import DenoisingProblem, StepNoise
from ._schemes import (Ancestral, DPMSolverPP2M, DPMSolverPP2S, DPMSolverPP3S, EDMEuler, EDMHeun, ExponentialAdams,
                       SamplerScheme, StepEnds, UniPC)

SAMPLERS = {
    "ExponentialAdams": ExponentialAdams,
    "DPMSolverPP2M": DPMSolverPP2M,
    "DPMSolverPP2S": DPMSolverPP2S,
    "DPMSolverPP3S": DPMSolverPP3S,
    "EDMEuler": EDMEuler,
    "EDMHeun": EDMHeun,
    "Ancestral": Ancestral,
    "UniPC": UniPC,
}
"""Name → class table for command-line tools."""

__all__ = ["sample", "SampleInfo", "DEFAULT_SOLVER", "DEFAULT_GRID", "Grid", "UniformTime", "UniformLogSNR",
           "EDMRho", "BandwiseEDMRho", "ActivationRefined",
           "PREDICTIONS", "to_data", "from_data", "as_denoiser", "ScalarNoising",
           "as_noising", "sigma_hat", "time_of_sigma_hat", "DenoisingProblem", "StepNoise", "SamplerScheme",
           "StepEnds", "ExponentialAdams", "DPMSolverPP2M", "DPMSolverPP2S", "DPMSolverPP3S", "EDMEuler", "EDMHeun",
           "Ancestral", "UniPC",
           "SAMPLERS"]
