"""One cell of the study grid (problem × solver × step size) and the strong-error references."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch

import solvers

from .config import _fmt_dt
from .measure import BandPath, Tape, cell_seed, strong_distance, strong_run, summarize_weak, weak_run
from .problems import Problem

__all__ = ["Cell", "grid", "Workspace", "CELL_SCHEMA", "REFERENCE_SCHEMA", "check_record"]

#: What a finished cell's JSON file must hold (the keys the reports read): key -> expected type(s).
#: A measured number may be null (stored for NaN or infinity).
_NUM = (int, float, type(None))
CELL_SCHEMA = {"problem": str, "solver": str, "dt": (int, float), "dt_label": str, "paths": int,
               "strong_paths": int, "n_steps": int, "weak_error": _NUM, "strong_error": _NUM,
               "strong_floor": _NUM, "diverged_fraction": _NUM, "instability_ratio": _NUM, "stable": bool,
               "nfe": _NUM, "wall_s": _NUM, "weak_detail": (dict, list, type(None)),
               "first_step_amplification": _NUM, "ratio_curve": (dict, list, type(None)),
               "check_times": (list, type(None)), "strong_error_per_check_time": (list, type(None))}
#: What a cached strong-error reference (``cache/reference-NAME.pt``) must hold.
REFERENCE_SCHEMA = {"problem": str, "solver": str, "dt": float, "error_at_2dt": float, "ys": torch.Tensor}


def check_record(doc, schema):
    """The first entry of ``schema`` that ``doc`` lacks or holds with another type, as text; None if it fits."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {type(doc).__name__}"
    for key, typ in schema.items():
        if key not in doc:
            return f"no {key!r} entry"
        if not isinstance(doc[key], typ) or (isinstance(doc[key], bool) and typ is not bool):
            return f"entry {key!r} is {type(doc[key]).__name__}, expected {typ}"
    return None


@dataclass(frozen=True)
class Cell:
    problem: str
    solver: str
    dt: float

    @property
    def key(self):
        return f"{self.problem}|{self.solver}|{self.dt!r}"

    @property
    def filename(self):
        return f"{self.problem}__{self.solver}__dt{_fmt_dt(self.dt).replace('/', '-')}.json"

    def cost(self, config):
        """A rough relative cost (steps × evaluations) for balancing shards."""
        s = config.scheme(self.solver)
        return (s.drift_evals + s.diffusion_evals + 2 * s.needs_levy_area + 4) / self.dt


def grid(config):
    """Every cell, in a fixed order: problems, then step sizes coarse to fine, then solvers."""
    return [Cell(p.name, s, dt) for p in config.problems for dt in config.dt for s in config.solvers]


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


class Workspace:
    """Built problems and strong-error references, shared by the cells a process runs."""

    def __init__(self, config, device):
        self.config, self.device = config, torch.device(device)
        self._problems = {}
        self.references = {}  # problem -> dict(ys=tensor, error=float, ...)
        self._path = (None, None)  # (problem, BandPath) of the problem being measured
        self._tape = None  # the Tape of the (problem, step size) being measured

    def tape(self, name, dt, seed):
        key = (name, dt, seed, self.config.paths)
        if self._tape is None or self._tape.key != key:
            self._tape = None  # free the previous one first
            self._tape = Tape(key)
        return self._tape

    def band_path(self, name, dt):
        """The tabulated strong-error path of ``name`` (grid: the smallest step), if ``dt`` is on its grid."""
        g = min(self.config.dt)
        if abs(dt / g - round(dt / g)) > 1e-9:
            return None
        if self._path[0] != name:
            self._path = (None, None)  # free the previous table first
            self._path = (name, BandPath(self.problem(name), self.config.strong_paths, self.strong_seed(name),
                                         g).table())
        return self._path[1]

    def problem(self, name):
        if name not in self._problems:
            self._problems[name] = Problem(self.config.problem(name), device=self.device)
        return self._problems[name]

    def max_abs(self, name):
        return self.config.divergence_factor * self.problem(name).scale()

    def strong_seed(self, name):
        return cell_seed(self.config.seed, name, "strong")

    def compute_reference(self, name):
        """The reference solver at the reference step (and at twice that step, for its own error)."""
        cfg, prob = self.config, self.problem(name)
        solver = cfg.scheme(cfg.reference_solver)
        t0 = time.perf_counter()
        seed, paths = self.strong_seed(name), cfg.strong_paths
        ys, _ = strong_run(prob, solver, cfg.reference_dt, paths, seed,
                           band_path=BandPath(prob, paths, seed, cfg.reference_dt))
        ys2, _ = strong_run(prob, solver, 2 * cfg.reference_dt, paths, seed,
                            band_path=BandPath(prob, paths, seed, 2 * cfg.reference_dt))
        error, _ = strong_distance(prob, ys2, ys)
        return {"problem": name, "solver": cfg.reference_solver, "dt": cfg.reference_dt,
                "error_at_2dt": error, "paths": cfg.strong_paths, "seed": self.strong_seed(name),
                "wall_s": time.perf_counter() - t0, "ys": ys.cpu()}

    def measure(self, cell):
        """Measure one cell; returns its JSON-able record."""
        with warnings.catch_warnings():
            # DriftImplicitEuler's fixed-point path calls tensor.new_tensor(tensor) (harmless, reported upstream)
            warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
            return self._measure(cell)

    def _measure(self, cell):
        cfg, prob = self.config, self.problem(cell.problem)
        solver = cfg.scheme(cell.solver)
        t0 = time.perf_counter()
        seed = cell_seed(cfg.seed, cell.problem, cell.dt, "weak")
        records, info = weak_run(prob, solver, cell.dt, cfg.paths, seed, max_abs=self.max_abs(cell.problem),
                                 tape=self.tape(cell.problem, cell.dt, seed))
        summary = summarize_weak(prob, cell.dt, records)
        ys, sdiv = strong_run(prob, solver, cell.dt, cfg.strong_paths, self.strong_seed(cell.problem),
                              band_path=self.band_path(cell.problem, cell.dt), max_abs=self.max_abs(cell.problem))
        ref = self.references[cell.problem]
        strong, strong_per_time = strong_distance(prob, ys, ref["ys"].to(self.device))
        inst = summary["instability_ratio"]
        stable = info["diverged_fraction"] == 0 and inst is not None and inst <= cfg.stable_ratio
        rec = {
            "problem": cell.problem, "solver": cell.solver, "dt": cell.dt, "dt_label": _fmt_dt(cell.dt),
            "view": "band", "paths": cfg.paths, "strong_paths": cfg.strong_paths, "seed": cfg.seed,
            "n_steps": info["n_steps"],
            "weak_error": summary["weak_error"], "weak_mean_error": summary["weak_mean_error"],
            "weak_var_error": summary["weak_var_error"], "weak_floor": summary["weak_floor"],
            "strong_error": strong, "strong_floor": ref["error_at_2dt"],
            "strong_diverged_fraction": float(sdiv.float().mean()),
            "diverged_fraction": info["diverged_fraction"],
            "instability_ratio": inst,
            "first_step_amplification": summary["first_step_amplification"],
            "stable": bool(stable),
            "nfe": info["nfe"], "wall_s": info["solve_s"], "wall_total_s": time.perf_counter() - t0,
            "declared_strong_order": solver.order_for("additive"), "declared_weak_order": solver.weak_order,
            "first_step_amplification_per_band": summary["first_step_amplification_per_band"],
            "strong_error_per_check_time": strong_per_time, "check_times": prob.check_times,
            "ratio_curve": summary["ratio_curve"], "weak_detail": summary["weak_detail"],
        }
        return _finite(rec)
