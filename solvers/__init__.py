"""solvers: SDE and ODE schemes with declared orders, reproducible Brownian paths, one driver.

Four separate things (docs/design.md §4): the problem (an object with ``drift``,
``diffusion`` and ``noise_type``, turned once into typed :class:`Terms` by
:func:`as_terms`), the noise (a seeded :class:`BrownianPath`, or
plain ``sqrt(h)·ξ`` draws on a fixed grid), the scheme (a stateless object with
``strong_order``/``weak_order``) and the driver :func:`sdeint`.

Example::

    import torch, solvers

    class GBM(solvers.SDE):
        noise_type = "diagonal"
        def drift(self, t, x):
            return 0.5 * x
        def diffusion(self, t, x):
            return 0.3 * x

    x0 = torch.ones(1000, 1, dtype=torch.float64)
    xs = solvers.sdeint(GBM(), x0, [0.0, 1.0], solvers.Milstein(), dt=2**-8)
"""

from ._base import SCHEMES, Context, ItoScheme, Scheme, StratonovichScheme, register
from ._bridge import odeint_torchdiffeq
from ._brownian import BrownianPath, BrownianSource, GridNoise, RecordedNoise, TabulatedPath, as_brownian
from ._compiled import Compiled
from ._integrate import DivergenceError, Solution, SolveInfo, Stage, Step, integrate, sdeint
from ._schemes import (RK4, SRA1, ButcherTableau, DerivativeFreeMilstein, DriftImplicitEuler, EulerMaruyama,
                       ExplicitRK, ExponentialEuler, ExponentialHeun, Heun, Milstein, SRATableau, StochasticRungeKuttaAdditive,
                       StratonovichHeun, StratonovichMidpoint, TwoStepEuler)
from ._convert import as_sde, as_terms, diffusion_and_correction, with_sde_type
from ._sde import NOISE_TYPES, SDE, SDE_TYPES, noise_type_of, sde_from_functions
from ._terms import Terms

__all__ = [
    "sdeint", "integrate", "Stage", "Solution", "Step", "odeint_torchdiffeq", "SolveInfo", "DivergenceError",
    "SDE", "NOISE_TYPES", "SDE_TYPES", "as_sde", "as_terms", "Terms", "sde_from_functions", "noise_type_of", "with_sde_type",
    "diffusion_and_correction",
    "BrownianSource", "BrownianPath", "GridNoise", "TabulatedPath", "RecordedNoise", "as_brownian",
    "Scheme", "ItoScheme", "StratonovichScheme", "Context",
    "EulerMaruyama", "TwoStepEuler", "Heun", "Milstein", "SRA1", "ExponentialEuler", "ExponentialHeun",
    "DriftImplicitEuler", "RK4", "ExplicitRK", "ButcherTableau", "SRATableau",
    "StochasticRungeKuttaAdditive", "DerivativeFreeMilstein", "StratonovichHeun", "StratonovichMidpoint",
    "Compiled", "SCHEMES", "register",
]
