"""mrdiffusion: multi-resolution diffusion processes on Haar wavelet stacks.

Subpackages and modules:

- :mod:`mrdiffusion.haar` -- the Haar multi-resolution analysis (``project``,
  ``embed``, ``dwt``, ``idwt``).
- :mod:`solvers` (a sibling top-level package) -- SDE/ODE schemes and the
  ``sdeint`` driver.
"""

__version__ = "0.1.0"

from . import haar  # noqa: E402,F401
from .multires import BandLayout, Level, MRSolution, MultiResolutionSDE  # noqa: E402,F401
from . import processes  # noqa: E402,F401

__all__ = ["haar", "processes", "MultiResolutionSDE", "Level", "BandLayout", "MRSolution", "load", "__version__"]


def load(run, *, ema=True, device="cpu"):
    """A trained run (folder or ``checkpoint.pt``): for diffusion runs a :class:`mrdiffusion.diffusion.api.Run`
    with ``denoiser`` ``D(x, t)``, ``noising`` and ``sample``; for HVAE runs the HVAE model."""
    from .diffusion.api import load as _load

    return _load(run, ema=ema, device=device)
