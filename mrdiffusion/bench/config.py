"""The study's configuration: defaults, ``--quick``, a TOML file, and validation.

Everything is checked here, before any output directory exists: a bad key, an
unknown solver or problem, a non-positive step or one that does not divide a
problem's activation times raises :class:`ConfigError` with one line that names
the key and the allowed values (the CLI prints it and exits with code 2).

TOML layout (every key optional)::

    seed = 0
    problems = ["linear", "stiff", "gaussian"]     # built-ins, or names of [problem.NAME] tables
    solvers = ["EulerMaruyama", "SRA1"]            # default: every SDE scheme in solvers.SCHEMES
    dt = ["1/8", "1/16", "1/32", "1/64", "1/128", "1/256"]   # numbers or "p/q" strings
    paths = 128                # paths per cell for the weak error and stability statistics
    strong_paths = 8           # paths on one Brownian path for the strong error
    threads = 1                # torch CPU threads (results are reproducible for a fixed value)
    device = "cpu"
    crosscheck = true          # torchsde / torchdiffeq peer checks
    plots = true

    [reference]                # strong-error reference: same Brownian path, much finer step
    solver = "SRA1"
    dt = "1/1024"              # default: min(dt) / 4

    [stability]
    divergence_factor = 100.0  # a path diverges beyond this many times the largest exact RMS
    stable_ratio = 2.0         # "stable": no diverged path and max_t RMS/exact RMS below this
    plot_dt = "1/16"           # the coarse step of the instability plot (one of dt)

    [problem.stiff]            # override a built-in's parameters ...
    kappa = 10.0
    [problem.sharp]            # ... or define a new problem from a kind
    kind = "stiff"
    eps = 0.001
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction

import solvers

__all__ = ["ConfigError", "ProblemSpec", "Config", "KINDS", "BUILTIN_PROBLEMS", "SDE_SOLVERS", "default_config",
           "load_config", "parse_config", "as_config"]

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.9/3.10
    import tomli as _toml


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the key and the allowed values."""


SDE_SOLVERS = tuple(name for name, cls in solvers.SCHEMES.items() if cls().noise_types)
"""Every scheme that solves SDEs (RK4 is ODE-only: it runs in the ODE cross-check instead)."""

# Parameters of each problem kind and their defaults for a K-level stack (callables of K).
_COMMON = {
    "levels": lambda K: list(range(K)),
    "times": lambda K: [0.0] + [0.25 + 0.125 * (k - 1) for k in range(1, K)],
    "T": lambda K: 1.0,
    "channels": lambda K: 1,
}
KINDS = {
    # per-band OU rates doubling with the band, the finest bands stiff: dY = a_k Y dt + c dB
    "linear": {**_COMMON, "rates": lambda K: [-2.0 * 2**k for k in range(K)], "noise": lambda K: 1.0,
               "z0": lambda K: 1.0},
    # DESIGN.md §2: dY = -κ/(t - t_k + ε) Y dt + β dB, the clock restarting at every activation
    "stiff": {**_COMMON, "kappa": lambda K: 5.0, "eps": lambda K: 0.01, "beta": lambda K: 1.0},
    # reverse process of Gaussian data N(μ, 2^{-decay·level}) from a point mass at every activation
    "gaussian": {**_COMMON, "decay": lambda K: 1.5, "noise": lambda K: 1.0, "data_seed": lambda K: 0},
}
BUILTIN_PROBLEMS = ("linear", "stiff", "gaussian")

_TOP_KEYS = ("seed", "problems", "solvers", "dt", "paths", "strong_paths", "threads", "device", "crosscheck",
             "plots", "reference", "stability", "problem")
_REF_KEYS = ("solver", "dt")
_STAB_KEYS = ("divergence_factor", "stable_ratio", "plot_dt")


@dataclass(frozen=True)
class ProblemSpec:
    """A named problem: its ``kind`` (a key of :data:`KINDS`) and every parameter, defaults filled in."""

    name: str
    kind: str
    params: tuple  # sorted (key, value) pairs; values are JSON-able (lists as tuples)

    def get(self, key):
        return dict(self.params)[key]

    def as_dict(self):
        return {"name": self.name, "kind": self.kind,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in self.params}}


@dataclass(frozen=True)
class Config:
    """A validated study configuration (see the module docstring for the meaning of each field)."""

    problems: tuple
    solvers: tuple
    dt: tuple
    seed: int = 0
    paths: int = 128
    strong_paths: int = 8
    reference_solver: str = "SRA1"
    reference_dt: float = 0.0
    divergence_factor: float = 100.0
    stable_ratio: float = 2.0
    plot_dt: float = 0.0
    threads: int = 1
    device: str = "cpu"
    crosscheck: bool = True
    plots: bool = True
    quick: bool = False
    source: str = field(default="defaults", compare=False)

    def as_dict(self):
        d = asdict(self)
        d["problems"] = [p.as_dict() for p in self.problems]
        d["solvers"], d["dt"] = list(self.solvers), list(self.dt)
        return d

    def fingerprint(self):
        """What the numbers depend on: resume refuses to mix cells from a different configuration."""
        d = self.as_dict()
        for key in ("source", "plots", "crosscheck", "quick"):
            d.pop(key, None)
        return json.dumps(d, sort_keys=True)

    def problem(self, name):
        return next(p for p in self.problems if p.name == name)

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`as_dict` (for ``--resume`` from a stored ``config.json``)."""
        d = dict(d)
        probs = tuple(ProblemSpec(p["name"], p["kind"], tuple(sorted(
            (k, tuple(v) if isinstance(v, list) else v) for k, v in p.items() if k not in ("name", "kind"))))
            for p in d.pop("problems"))
        return cls(problems=probs, solvers=tuple(d.pop("solvers")), dt=tuple(d.pop("dt")), **d)


# ----------------------------------------------------------------------------- scalar parsing


def _fmt_allowed(values):
    return ", ".join(str(v) for v in values)


def _number(key, value, *, positive=True, allow_zero=False):
    if isinstance(value, str) and "/" in value:
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{key}: expected a number or a fraction like \"1/8\", got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"{key}: expected a positive number, got {value!r}")
    return float(value)


def _int(key, value, *, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _bool(key, value):
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _keys(where, table, allowed):
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {_fmt_allowed(allowed)}")


def _device(value):
    import torch

    allowed = "cpu" + (", cuda, cuda:N" if torch.cuda.is_available() else " (no CUDA device is available)")
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: {value!r} is not a torch device; allowed: {allowed}") from None
    if dev.type not in ("cpu", "cuda") or (dev.type == "cuda" and not torch.cuda.is_available()):
        raise ConfigError(f"device: {value!r} is not available here; allowed: {allowed}")
    return str(value)


def _fraction(x):
    return Fraction(x).limit_denominator(1 << 40)


def _fmt_dt(x):
    f = _fraction(x)
    return f"{f.numerator}/{f.denominator}" if f.denominator != 1 else str(f.numerator)


# ----------------------------------------------------------------------------- problems


def _problem_params(name, kind, overrides):
    """Fill defaults and check every parameter of one problem; return sorted (key, value) pairs."""
    spec = KINDS[kind]
    allowed = ("kind",) + tuple(spec)
    for key in overrides:
        if key not in allowed:
            raise ConfigError(f"problem.{name}.{key}: unknown parameter for kind {kind!r}; allowed: "
                              f"{_fmt_allowed(allowed)}")
    levels = overrides.get("levels", spec["levels"](6))
    if (not isinstance(levels, list) or not levels or any(isinstance(j, bool) or not isinstance(j, int) or j < 0
                                                          for j in levels)
            or any(b <= a for a, b in zip(levels, levels[1:]))):
        raise ConfigError(f"problem.{name}.levels: expected strictly increasing non-negative integers, got {levels!r}")
    K = len(levels)
    out = {"levels": tuple(int(j) for j in levels)}
    times = overrides.get("times", spec["times"](K))
    if not isinstance(times, list) or len(times) != K:
        raise ConfigError(f"problem.{name}.times: expected {K} activation times (one per level), got {times!r}")
    out["times"] = tuple(_number(f"problem.{name}.times", t, allow_zero=True) for t in times)
    out["T"] = _number(f"problem.{name}.T", overrides.get("T", spec["T"](K)))
    out["channels"] = _int(f"problem.{name}.channels", overrides.get("channels", spec["channels"](K)))
    for key in spec:
        if key in out:
            continue
        value = overrides.get(key, spec[key](K))
        where = f"problem.{name}.{key}"
        if key in ("rates", "noise") and isinstance(value, list):
            if len(value) != K:
                raise ConfigError(f"{where}: expected one value per level ({K}), got {len(value)}")
            value = tuple(_number(where, v, positive=(key == "noise")) for v in value)
        elif key == "rates":
            value = _number(where, value, positive=False)
        elif key == "data_seed":
            value = _int(where, value, minimum=0)
        elif key == "z0":
            value = _number(where, value, positive=False)
        else:
            value = _number(where, value)
        out[key] = value
    if kind == "linear" and any(r > 0 for r in (out["rates"] if isinstance(out["rates"], tuple)
                                                else (out["rates"],))):
        raise ConfigError(f"problem.{name}.rates: expected rates <= 0 (a stable linear process), "
                          f"got {out['rates']!r}")
    return tuple(sorted(out.items()))


def _check_problem_builds(spec):
    from .problems import build_process

    try:
        build_process(spec)
    except ValueError as err:
        raise ConfigError(f"problem.{spec.name}: {err}") from None


def _spans(spec):
    times = [_fraction(t) for t in spec.get("times")] + [_fraction(spec.get("T"))]
    return [b - a for a, b in zip(times, times[1:])]


def _check_divides(key, dt, problems):
    for spec in problems:
        spans = _spans(spec)
        for span in spans:
            n = float(span) / dt
            if abs(n - round(n)) > 1e-9 * max(1.0, n) or round(n) < 1:
                g = spans[0]
                for s in spans[1:]:
                    g = Fraction(math.gcd(g.numerator * s.denominator, s.numerator * g.denominator),
                                 g.denominator * s.denominator)
                examples = ", ".join(_fmt_dt(g / m) for m in (1, 2, 4, 8))
                raise ConfigError(f"{key}: {dt!r} does not divide the activation times "
                                  f"{[float(t) for t in spec.get('times')]} and T={spec.get('T')} of problem "
                                  f"{spec.name!r}; allowed: steps that divide every level span, e.g. {examples}, ...")


# ----------------------------------------------------------------------------- the whole config


def default_config(quick=False) -> Config:
    """The built-in study: three problems on a 32×32 stack, every SDE scheme, steps 1/8 … 1/256.

    ``quick``: an 8×8 stack and steps 1/8 … 1/128 (under a minute on two CPU cores).
    """
    K = 4 if quick else 6
    probs = tuple(ProblemSpec(name, name, _problem_params(name, name, {"levels": list(range(K))}))
                  for name in BUILTIN_PROBLEMS)
    ladder = tuple(2.0**-k for k in range(3, 8 if quick else 9))  # 1/8 ... 1/256: five halvings (quick: four)
    return Config(problems=probs, solvers=SDE_SOLVERS, dt=ladder, paths=128,
                  strong_paths=8, reference_dt=min(ladder) / 4, plot_dt=2.0**-4, quick=quick)


def parse_config(data, *, quick=False, source="<dict>") -> Config:
    """Build a :class:`Config` from a TOML-like ``dict`` on top of the defaults; raise :class:`ConfigError`."""
    _keys("config", data, _TOP_KEYS)
    base = default_config(quick)
    K_default = len(base.problems[0].get("levels"))
    kw = {}
    if "seed" in data:
        kw["seed"] = _int("seed", data["seed"], minimum=0)
    for key in ("paths", "strong_paths", "threads"):
        if key in data:
            kw[key] = _int(key, data[key], minimum=2 if key != "threads" else 1)
    if "device" in data:
        kw["device"] = _device(data["device"])
    for key in ("crosscheck", "plots"):
        if key in data:
            kw[key] = _bool(key, data[key])

    # problems
    tables = data.get("problem", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"problem: expected tables [problem.NAME], got {tables!r}")
    names = data.get("problems", list(BUILTIN_PROBLEMS))
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"problems: expected a non-empty list of names, got {names!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"problems: duplicate names in {names!r}")
    allowed_names = list(BUILTIN_PROBLEMS) + [n for n in tables if n not in BUILTIN_PROBLEMS]
    for name in tables:
        if name not in names:
            raise ConfigError(f"problem.{name}: defined but not selected; add it to problems = [...] "
                              f"(selected: {_fmt_allowed(names)})")
    specs = []
    for name in names:
        table = dict(tables.get(name, {}))
        if not isinstance(tables.get(name, {}), dict):
            raise ConfigError(f"problem.{name}: expected a table of parameters")
        kind = table.pop("kind", name if name in BUILTIN_PROBLEMS else None)
        if kind is None:
            raise ConfigError(f"problems: unknown problem {name!r}; allowed: {_fmt_allowed(allowed_names)} "
                              f"(or define [problem.{name}] with kind = one of {_fmt_allowed(KINDS)})")
        if kind not in KINDS:
            raise ConfigError(f"problem.{name}.kind: unknown kind {kind!r}; allowed: {_fmt_allowed(KINDS)}")
        if "levels" not in table:
            table["levels"] = list(range(K_default))
        specs.append(ProblemSpec(name, kind, _problem_params(name, kind, table)))
    from .memory import check_grid

    for spec in specs:
        check_grid(spec)  # before building it: a too-fine level would exhaust memory right here
        _check_problem_builds(spec)
    kw["problems"] = tuple(specs)

    # solvers
    chosen = data.get("solvers", list(SDE_SOLVERS))
    if not isinstance(chosen, list) or not chosen or not all(isinstance(s, str) for s in chosen):
        raise ConfigError(f"solvers: expected a non-empty list of names, got {chosen!r}")
    for s in chosen:
        if s not in solvers.SCHEMES:
            raise ConfigError(f"solvers: unknown solver {s!r}; allowed: {_fmt_allowed(SDE_SOLVERS)}")
        if s not in SDE_SOLVERS:
            raise ConfigError(f"solvers: {s} solves ODEs only (it runs in the ODE cross-check); allowed: "
                              f"{_fmt_allowed(SDE_SOLVERS)}")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"solvers: duplicate names in {chosen!r}")
    kw["solvers"] = tuple(chosen)

    # step sizes
    dts = data.get("dt", list(base.dt))
    if not isinstance(dts, list) or not dts:
        raise ConfigError(f"dt: expected a non-empty list of step sizes, got {dts!r}")
    dts = sorted({_number("dt", d) for d in dts}, reverse=True)
    for d in dts:
        _check_divides("dt", d, specs)
    kw["dt"] = tuple(dts)

    ref = data.get("reference", {})
    _keys("reference", ref, _REF_KEYS)
    ref_solver = ref.get("solver", base.reference_solver)
    if ref_solver not in SDE_SOLVERS:
        raise ConfigError(f"reference.solver: unknown SDE solver {ref_solver!r}; allowed: {_fmt_allowed(SDE_SOLVERS)}")
    kw["reference_solver"] = ref_solver
    ref_dt = _number("reference.dt", ref["dt"]) if "dt" in ref else min(dts) / 4
    _check_divides("reference.dt", ref_dt, specs)
    if ref_dt > min(dts):
        raise ConfigError(f"reference.dt: {ref_dt!r} must not exceed the smallest step {min(dts)!r}")
    kw["reference_dt"] = ref_dt

    stab = data.get("stability", {})
    _keys("stability", stab, _STAB_KEYS)
    kw["divergence_factor"] = _number("stability.divergence_factor",
                                      stab.get("divergence_factor", base.divergence_factor))
    kw["stable_ratio"] = _number("stability.stable_ratio", stab.get("stable_ratio", base.stable_ratio))
    if kw["stable_ratio"] <= 1:
        raise ConfigError(f"stability.stable_ratio: expected a number > 1, got {kw['stable_ratio']!r}")
    if "plot_dt" in stab:
        plot_dt = _number("stability.plot_dt", stab["plot_dt"])
        if not any(math.isclose(plot_dt, d, rel_tol=1e-12) for d in dts):
            raise ConfigError(f"stability.plot_dt: {plot_dt!r} is not one of the step sizes; allowed: "
                              f"{_fmt_allowed(_fmt_dt(d) for d in dts)}")
    else:
        plot_dt = base.plot_dt if any(math.isclose(base.plot_dt, d) for d in dts) else dts[min(1, len(dts) - 1)]
    kw["plot_dt"] = plot_dt
    config = replace(base, source=source, quick=quick, **kw)
    from .memory import check_memory

    check_memory(config)  # before any output exists: refuse with the estimate rather than run out of memory
    return config


def load_config(path=None, *, quick=False, seed=None, device=None) -> Config:
    """Read a TOML file (``None``: the defaults), then apply the ``seed`` and ``device`` overrides."""
    data = {}
    source = "defaults (--quick)" if quick else "defaults"
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"--config: file not found: {path}")
        try:
            with open(path, "rb") as fh:
                data = _toml.load(fh)
        except _toml.TOMLDecodeError as err:
            raise ConfigError(f"--config: {path} is not valid TOML: {err}") from None
        source = os.path.abspath(path)
    if seed is not None:
        data["seed"] = seed
    if device is not None:
        data["device"] = device
    return parse_config(data, quick=quick, source=source)


def as_config(config) -> Config:
    """Accept a :class:`Config`, a dict (TOML layout), a path to a TOML file, or ``None`` (defaults)."""
    if isinstance(config, Config):
        return config
    if config is None:
        return default_config()
    if isinstance(config, dict):
        return parse_config(dict(config))
    if isinstance(config, (str, os.PathLike)):
        return load_config(os.fspath(config))
    raise ConfigError(f"config: expected a Config, a dict, a TOML path or None, got {type(config).__name__}")
