"""One module per scheme; the public names are re-exported by :mod:`solvers`."""

from .derivative_free_milstein import DerivativeFreeMilstein
from .euler import EulerMaruyama
from .exponential import ExponentialEuler
from .exponential_heun import ExponentialHeun
from .heun import Heun
from .implicit import DriftImplicitEuler
from .midpoint import StratonovichMidpoint
from .milstein import Milstein
from .rk import RK4, ButcherTableau, ExplicitRK
from .sra import SRA1, SRATableau, StochasticRungeKuttaAdditive
from .stratonovich_heun import StratonovichHeun
from .two_step import TwoStepEuler

__all__ = [
    "EulerMaruyama", "TwoStepEuler", "Heun", "Milstein", "SRA1", "SRATableau",
    "StochasticRungeKuttaAdditive", "ExponentialEuler", "ExponentialHeun", "DriftImplicitEuler", "RK4", "ExplicitRK",
    "ButcherTableau", "DerivativeFreeMilstein", "StratonovichHeun", "StratonovichMidpoint",
]
