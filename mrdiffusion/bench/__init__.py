"""``mrdiffusion bench``: compare SDE schemes on multi-resolution processes that flow from a point mass.

From Python::

    from mrdiffusion import bench

    config = bench.load_config(quick=True)            # or a TOML path, or bench.parse_config({...})
    result = bench.run(config, out="results/my-bench")
    result["records"][0]["weak_error"]

Modules: :mod:`~mrdiffusion.bench.config` (defaults, TOML, validation),
:mod:`~mrdiffusion.bench.problems` (processes and the coupled exact sampler),
:mod:`~mrdiffusion.bench.measure` (what one cell measures),
:mod:`~mrdiffusion.bench.cells`, :mod:`~mrdiffusion.bench.study` (grid, resume,
sharding, outputs), :mod:`~mrdiffusion.bench.crosscheck` (torchsde,
torchdiffeq), :mod:`~mrdiffusion.bench.stability` (amplification factors),
:mod:`~mrdiffusion.bench.report`, :mod:`~mrdiffusion.bench.plots`,
:mod:`~mrdiffusion.bench.cli`.
"""

from .config import Config, ConfigError, ProblemSpec, default_config, load_config, parse_config
from .study import load_records, run

__all__ = ["run", "Config", "ConfigError", "ProblemSpec", "default_config", "load_config", "parse_config",
           "load_records"]
