"""Data for the HVAE: the project's shared data module :mod:`mrdiffusion.data`, under its older name."""

from ..data import *  # noqa: F401,F403
from ..data import __all__  # noqa: F401
