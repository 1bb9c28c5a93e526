"""Brownian sources: one interface (``increment(s, t)``, and ``space_time(s, t) -> (dW, U)`` on request).

* :class:`BrownianPath`: a seeded path, a deterministic function of time
  (:mod:`._path`);
* :class:`GridNoise`: fresh ``√h ξ`` draws per step, no tree (:mod:`._grid`);
* :class:`TabulatedPath`, :class:`RecordedNoise`: a path known on a grid, and
  a recorder that turns any source's answers into one (:mod:`._table`);
* :func:`as_brownian`: wraps any callable ``(s, t) -> increment`` (torchsde's
  ``BrownianInterval``).

See :mod:`._source` for the interface and the one Lévy-area formula.
"""

from ._grid import GridNoise
from ._path import BrownianPath
from ._source import BrownianSource, as_brownian, grid_area, space_time_area
from ._table import RecordedNoise, TabulatedPath

__all__ = ["BrownianSource", "BrownianPath", "GridNoise", "TabulatedPath", "RecordedNoise", "as_brownian",
           "space_time_area", "grid_area"]
