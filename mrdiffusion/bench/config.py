"""The study's configuration: defaults, ``--quick``, a TOML file, and validation.

Everything is checked here, before any output directory exists: a bad key, an
unknown solver or problem, a non-positive step or one that does not divide a
problem's activation times raises :class:`ConfigError` with one line that names
the key and the allowed values (the CLI prints it and exits with code 2).

TOML layout (every key optional)::

    seed = 0
    problems = ["linear", "stiff", "gaussian"]     # built-ins, or names of [problem.NAME] tables
    solvers = ["EulerMaruyama", { name = "DriftImplicitEuler", theta = 0.5 }]   # names or tables of
                               # constructor arguments; default: DEFAULT_SOLVERS (any SDE scheme in
                               # solvers.SCHEMES may be named)
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

The problem kinds, their parameters, defaults and meanings are
:data:`mrdiffusion.bench.problems.KINDS`; a configuration holds scheme
instances (:attr:`Config.schemes`), labelled by :func:`scheme_label`.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction

import solvers

from ._parse import ConfigError, boolean as _bool, check_label, check_name
from ._parse import fmt_allowed as _fmt_allowed, fmt_dt as _fmt_dt
from ._parse import fraction as _fraction, integer as _int, number as _number
from .problems import KINDS

__all__ = ["ConfigError", "ProblemSpec", "Config", "KINDS", "BUILTIN_PROBLEMS", "SDE_SOLVERS", "DEFAULT_SOLVERS", "default_config",
           "load_config", "parse_config", "as_config", "scheme_label", "scheme_spec", "make_scheme"]

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.9/3.10
    import tomli as _toml

SDE_SOLVERS = tuple(name for name, cls in solvers.SCHEMES.items() if cls().noise_types)
"""Every registered scheme that solves SDEs, by name (RK4 is ODE-only: it runs in the ODE cross-check instead)."""

DEFAULT_SOLVERS = ("EulerMaruyama", "TwoStepEuler", "Heun", "Milstein", "SRA1", "ExponentialEuler",
                   "DriftImplicitEuler", "ExponentialHeun")
"""The schemes a run compares when the configuration names none: the Itô schemes with a strong-order story
on these problems. The Stratonovich schemes and the derivative-free Milstein, nameable in a config, are left
out so that the default run (and its recorded figures, ``tests/baselines``) stays what it was."""

BUILTIN_PROBLEMS = ("linear", "stiff", "gaussian")

_TOP_KEYS = ("seed", "problems", "solvers", "dt", "paths", "strong_paths", "threads", "device", "crosscheck",
             "plots", "reference", "stability", "problem")
_REF_KEYS = ("solver", "dt")
_STAB_KEYS = ("divergence_factor", "stable_ratio", "plot_dt")


# ----------------------------------------------------------------------------- schemes as objects


def _init_params(cls):
    """The keyword parameters of a scheme's constructor and their defaults."""
    sig = inspect.signature(cls.__init__)
    return {n: p.default for n, p in sig.parameters.items()
            if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is not inspect.Parameter.empty}


def scheme_spec(scheme):
    """A scheme instance as configuration: its name, or ``{"name": ..., **arguments that differ from defaults}``."""
    cls = type(scheme)
    # probe: a scheme's constructor arguments, read back under their own names (a scheme that keeps one
    # elsewhere counts as default)
    changed = {n: getattr(scheme, n) for n, d in _init_params(cls).items() if getattr(scheme, n, d) != d}
    return {"name": cls.__name__, **changed} if changed else cls.__name__


def scheme_label(scheme):
    """The name a scheme instance has in records and tables: ``EulerMaruyama``, ``DriftImplicitEuler(theta=0.5)``."""
    spec = scheme_spec(scheme)
    if isinstance(spec, str):
        return spec
    args = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "name")
    return f"{spec['name']}({args})"


def make_scheme(key, entry, *, sde_only=True):
    """A scheme instance from a config entry: a name, a ``{name = ..., **arguments}`` table, or an instance."""
    if isinstance(entry, solvers.Scheme):
        scheme = entry
    else:
        args = {}
        if isinstance(entry, dict):
            args = dict(entry)
            name = args.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(f"{key}: a scheme table needs name = one of {_fmt_allowed(SDE_SOLVERS)}, got "
                                  f"{entry!r}")
        elif isinstance(entry, str):
            name = entry
        else:
            raise ConfigError(f"{key}: expected a scheme name or a table {{ name = ..., argument = value }}, got "
                              f"{entry!r}")
        if name not in solvers.SCHEMES:
            raise ConfigError(f"{key}: unknown solver {name!r}; allowed: {_fmt_allowed(SDE_SOLVERS)}")
        allowed = _init_params(solvers.SCHEMES[name])
        for arg in args:
            if arg not in allowed:
                raise ConfigError(f"{key}: {name} has no argument {arg!r}; allowed: "
                                  f"{_fmt_allowed(allowed) or '(none)'}")
        try:
            scheme = solvers.SCHEMES[name](**args)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}: {name}({', '.join(f'{k}={v!r}' for k, v in args.items())}): {err}") from None
    if sde_only and not scheme.noise_types:
        raise ConfigError(f"{key}: {scheme.name} solves ODEs only (it runs in the ODE cross-check); allowed: "
                          f"{_fmt_allowed(SDE_SOLVERS)}")
    return scheme


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
    solvers: tuple  # labels (scheme_label) of the schemes, in order
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
    schemes: tuple = field(default=(), compare=False)  # the scheme instances, one per label in ``solvers``

    def __post_init__(self):
        if not self.schemes:  # built from names only (defaults, or an old config.json)
            object.__setattr__(self, "schemes", tuple(make_scheme("solvers", s) for s in self.solvers))
        object.__setattr__(self, "solvers", tuple(scheme_label(s) for s in self.schemes))

    def scheme(self, label):
        """The scheme instance of a label (a cell's ``solver``); the reference solver included."""
        for s in self.schemes:
            if scheme_label(s) == label:
                return s
        return make_scheme("solver", label)

    def as_dict(self):
        d = {k: v for k, v in asdict(self).items() if k != "schemes"}
        d["problems"] = [p.as_dict() for p in self.problems]
        d["solvers"], d["dt"] = [scheme_spec(s) for s in self.schemes], list(self.dt)
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
        for p in d["problems"]:
            check_name("problems", p["name"])
        probs = tuple(ProblemSpec(p["name"], p["kind"], tuple(sorted(
            (k, tuple(v) if isinstance(v, list) else v) for k, v in p.items() if k not in ("name", "kind"))))
            for p in d.pop("problems"))
        schemes = tuple(make_scheme("solvers", s) for s in d.pop("solvers"))
        for sch in schemes:
            check_label("solvers", scheme_label(sch))
        return cls(problems=probs, solvers=(), schemes=schemes, dt=tuple(d.pop("dt")), **d)


# ----------------------------------------------------------------------------- parsing


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


# ----------------------------------------------------------------------------- problems


def _problem_params(name, kind, overrides):
    """Fill defaults and check every parameter of one problem (:data:`KINDS`); return sorted (key, value) pairs."""
    spec = KINDS[kind]
    allowed = ("kind",) + tuple(q.name for q in spec.params)
    for key in overrides:
        if key not in allowed:
            raise ConfigError(f"problem.{name}.{key}: unknown parameter for kind {kind!r}; allowed: "
                              f"{_fmt_allowed(allowed)}")
    where = f"problem.{name}"
    levels = spec.param("levels").parse(f"{where}.levels", overrides.get("levels", spec.param("levels").default(6)),
                                        None)
    K = len(levels)
    out = {"levels": levels}
    for q in spec.params:
        if q.name != "levels":
            out[q.name] = q.parse(f"{where}.{q.name}", overrides.get(q.name, q.default(K)), K)
    spec.check(where, out)
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
    return Config(problems=probs, solvers=(), schemes=tuple(solvers.SCHEMES[s]() for s in DEFAULT_SOLVERS), dt=ladder,
                  paths=128,
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
    for name in list(names) + [n for n in tables if n not in names]:
        check_name("problems" if name in names else f"problem.{name!r}", name)
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

    # solvers: names, {name = ..., argument = value} tables, or scheme instances
    chosen = data.get("solvers", list(DEFAULT_SOLVERS))
    if not isinstance(chosen, (list, tuple)) or not chosen:
        raise ConfigError(f"solvers: expected a non-empty list of scheme names or tables, got {chosen!r}")
    schemes = tuple(make_scheme("solvers", s) for s in chosen)
    labels = [check_label("solvers", scheme_label(s)) for s in schemes]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"solvers: duplicate schemes in {labels!r}")
    kw["solvers"], kw["schemes"] = (), schemes

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
    if isinstance(ref_solver, str) and ref_solver not in SDE_SOLVERS:
        raise ConfigError(f"reference.solver: unknown SDE solver {ref_solver!r}; allowed: {_fmt_allowed(SDE_SOLVERS)}")
    kw["reference_solver"] = scheme_label(make_scheme("reference.solver", ref_solver))
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
        except UnicodeDecodeError as err:
            raise ConfigError(f"--config: {path} is not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} "
                              f"at offset {err.start}); expected a TOML file") from None
        except OSError as err:
            raise ConfigError(f"--config: {path} cannot be read ({err.strerror})") from None
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
