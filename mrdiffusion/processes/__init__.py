"""A library of processes with closed-form marginals, for tests, benchmarks and examples.

- :class:`LinearBandProcess` — per-band linear SDEs ``dY_i = a_i Y_i dt + c_k dB`` on a
  multi-resolution stack, each band starting from a point mass at its activation.
- :class:`StiffPointMassProcess` — the stiff family ``a(t) = -κ/(t - t_k + ε)`` of docs/design.md §2.3.
- :class:`GaussianReverseProcess` — coarse-to-fine generation of Gaussian data, every band
  starting from a point mass, with the exact law at every time.
- :class:`BandNoising` — forward noising of data per Haar band (VP / VE schedules per band),
  its reverse-time SDE and probability-flow ODE, and the exact score of Gaussian data.
- :class:`LinearTestEquation` — ``dX = λX dt + μX dW``, the test equation of stability analysis.
"""

from ._band import BandProcess
from .gaussian import GaussianReverseProcess
from .linear import LinearBandProcess, StiffPointMassProcess
from .noising import (BandNoising, EDMSchedule, VESchedule, VPSchedule, gaussian_denoiser, gaussian_mixture_denoiser,
                      gaussian_score)
from .scalar import LinearTestEquation

__all__ = ["BandProcess", "LinearBandProcess", "StiffPointMassProcess", "GaussianReverseProcess", "BandNoising",
           "VPSchedule", "VESchedule", "EDMSchedule", "gaussian_score", "gaussian_denoiser", "gaussian_mixture_denoiser",
           "LinearTestEquation"]
