"""One module per scheme; the public names are re-exported by :mod:`solvers`.

Each scheme registers itself where it is defined (``@register``), which makes it
nameable in :data:`solvers.SCHEMES`. The tableau engines :class:`ExplicitRK` and
:class:`StochasticRungeKuttaAdditive` are not registered: they need a tableau;
their named instances (:class:`RK4`, :class:`SRA1`) are.
"""

# The order of first import (a module's own imports included: sra imports rk) is the order of
# solvers.SCHEMES, the order of the bench's tables and of --list.
from .euler import EulerMaruyama  # noqa: I001
from .two_step import TwoStepEuler
from .heun import Heun
from .milstein import Milstein
from .sra import SRA1, SRATableau, StochasticRungeKuttaAdditive
from .exponential import ExponentialEuler
from .implicit import DriftImplicitEuler
from .exponential_heun import ExponentialHeun
from .rk import RK4, ButcherTableau, ExplicitRK
from .stratonovich_heun import StratonovichHeun
from .midpoint import StratonovichMidpoint
from .derivative_free_milstein import DerivativeFreeMilstein

__all__ = [
    "EulerMaruyama", "TwoStepEuler", "Heun", "Milstein", "SRA1", "SRATableau",
    "StochasticRungeKuttaAdditive", "ExponentialEuler", "ExponentialHeun", "DriftImplicitEuler", "RK4", "ExplicitRK",
    "ButcherTableau", "DerivativeFreeMilstein", "StratonovichHeun", "StratonovichMidpoint",
]
