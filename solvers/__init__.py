"""solvers: SDE and ODE schemes with declared orders, reproducible Brownian paths, one driver.

Four separate things (DESIGN.md §4): the problem (an object with ``drift``,
``diffusion`` and ``noise``), the noise (a seeded :class:`BrownianPath`, or
plain ``sqrt(h)·ξ`` draws on a fixed grid), the scheme (a stateless object with
``strong_order``/``weak_order``) and the driver :func:`sdeint`.

Example::

    import torch, solvers

    class GBM(solvers.SDE):
        noise = "diagonal"
        def drift(self, t, x):
            return 0.5 * x
        def diffusion(self, t, x):
            return 0.3 * x

    x0 = torch.ones(1000, 1, dtype=torch.float64)
    xs = solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.Milstein(), dt=2**-8)
"""

from ._base import Context, Scheme
from ._bridge import odeint_torchdiffeq
from ._brownian import BrownianPath, as_brownian
from ._compiled import Compiled
from ._integrate import DivergenceError, SolveInfo, sdeint
from ._schemes import (RK4, SRA1, ButcherTableau, DriftImplicitEuler, EulerMaruyama, ExplicitRK,
                       ExponentialEuler, ExponentialHeun, Heun, Milstein, SRATableau, StochasticRungeKuttaAdditive,
                       TwoStepEuler)
from ._sde import NOISE_TYPES, SDE, as_sde, sde_from_functions

SCHEMES = {
    "EulerMaruyama": EulerMaruyama,
    "TwoStepEuler": TwoStepEuler,
    "Heun": Heun,
    "Milstein": Milstein,
    "SRA1": SRA1,
    "ExponentialEuler": ExponentialEuler,
    "DriftImplicitEuler": DriftImplicitEuler,
    "RK4": RK4,
}
"""Name → class table for command-line tools and config files."""

__all__ = [
    "sdeint", "odeint_torchdiffeq", "SolveInfo", "DivergenceError",
    "SDE", "NOISE_TYPES", "as_sde", "sde_from_functions",
    "BrownianPath", "as_brownian",
    "Scheme", "Context",
    "EulerMaruyama", "TwoStepEuler", "Heun", "Milstein", "SRA1", "ExponentialEuler", "ExponentialHeun",
    "DriftImplicitEuler", "RK4", "ExplicitRK", "ButcherTableau", "SRATableau",
    "StochasticRungeKuttaAdditive", "Compiled", "SCHEMES",
]
