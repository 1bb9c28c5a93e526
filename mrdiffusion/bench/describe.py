"""What the bench can run, in words: the defaults as a commented TOML file, the problem kinds and schemes.

``mrdiffusion bench --print-config`` prints :func:`config_toml` of the
defaults; the text is a valid ``--config`` file that gives the same
configuration back. ``mrdiffusion bench --list`` prints :func:`catalogue`.
"""

from __future__ import annotations

import json

import solvers

from .config import BUILTIN_PROBLEMS, DEFAULT_SOLVERS, KINDS, SDE_SOLVERS, Config, _fmt_dt

__all__ = ["config_toml", "catalogue", "kind_summary", "kind_parameters"]

#: One line on each problem kind and each parameter (the study's maths lives in mrdiffusion.processes).
KIND_DOC = {
    "linear": "per-band Ornstein–Uhlenbeck dY = a_k Y dt + c dB, band k started at z0 (LinearBandProcess)",
    "stiff": "score-like pull dY = -κ/(t - t_k + ε) Y dt + β dB from a point mass at every activation "
             "(StiffPointMassProcess)",
    "gaussian": "coarse-to-fine generation of Gaussian data N(μ, 2^(-decay·level)) from a point mass, exact law "
                "at every time (GaussianReverseProcess)",
}
PARAM_DOC = {
    "levels": "Haar levels of the stack, coarse first (level j is a 2^j × 2^j grid)",
    "times": "activation time of each level (the first is 0)",
    "T": "final time",
    "channels": "channels per grid cell",
    "rates": "drift rate a_k of band k (a list, one per level, or one number), <= 0",
    "noise": "diffusion coefficient (one number, or one per level)",
    "z0": "starting value of the coarsest level",
    "kappa": "κ, strength of the pull",
    "eps": "ε, clock offset: the drift at activation is -κ/ε",
    "beta": "β, diffusion coefficient",
    "decay": "variance decay of the data per level",
    "data_seed": "seed of the data mean μ",
}
TOP_DOC = {
    "seed": "base seed of every random number of the study",
    "problems": f"problems to run: built-ins ({', '.join(BUILTIN_PROBLEMS)}) or names of [problem.NAME] tables",
    "solvers": "SDE schemes (mrdiffusion bench --list)",
    "dt": "step sizes, numbers or \"p/q\" strings; each divides every level's time span",
    "paths": "paths per cell for the weak error and the stability statistics",
    "strong_paths": "paths on one Brownian path for the strong error",
    "threads": "torch CPU threads (results are reproducible for a fixed value)",
    "device": "torch device: cpu, cuda or cuda:N",
    "crosscheck": "check against torchsde and torchdiffeq",
    "plots": "write the PNG figures",
}


def kind_summary(kind) -> str:
    """One line on a problem kind (from its registry entry where it has one)."""
    entry = KINDS[kind]
    return entry.summary or KIND_DOC.get(kind, kind)


def kind_parameters(kind, levels=6):
    """``[(name, default for a levels-level stack, meaning), ...]`` of a problem kind."""
    entry = KINDS[kind]
    return [(q.name, q.default(levels), q.description or PARAM_DOC.get(q.name, "")) for q in entry.params]


def _toml_value(v):
    if isinstance(v, dict):  # an inline table, e.g. a scheme with arguments
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _line(key, value, comment):
    text = f"{key} = {_toml_value(value)}"
    return f"{text:<48} # {comment}" if comment else text


def config_toml(config: Config) -> str:
    """A complete, commented TOML text of ``config`` that :func:`~mrdiffusion.bench.config.load_config` reads back."""
    lines = ["# mrdiffusion bench configuration (mrdiffusion bench --print-config). Every key is optional;",
             "# edit and run with: mrdiffusion bench --config FILE", ""]
    top = {"seed": config.seed, "problems": [p.name for p in config.problems],
           "solvers": list(config.as_dict()["solvers"]),
           "dt": [_fmt_dt(d) for d in config.dt], "paths": config.paths, "strong_paths": config.strong_paths,
           "threads": config.threads, "device": config.device, "crosscheck": config.crosscheck,
           "plots": config.plots}
    lines += [_line(k, v, TOP_DOC[k]) for k, v in top.items()]
    lines += ["", "[reference]  # strong-error reference: the same Brownian path, a much finer step",
              _line("solver", config.reference_solver, "an SDE scheme"),
              _line("dt", _fmt_dt(config.reference_dt), "at most the smallest dt"),
              "", "[stability]",
              _line("divergence_factor", config.divergence_factor,
                    "a path diverges beyond this many times the largest exact RMS"),
              _line("stable_ratio", config.stable_ratio,
                    "stable: no diverged path and max RMS / exact RMS below this"),
              _line("plot_dt", _fmt_dt(config.plot_dt), "the step of the instability plot (one of dt)")]
    for spec in config.problems:
        lines += ["", f"[problem.{spec.name}]  # {kind_summary(spec.kind)}",
                  _line("kind", spec.kind, "one of " + ", ".join(KINDS))]
        meaning = {name: doc for name, _, doc in kind_parameters(spec.kind)}
        for key, value in spec.params:
            lines.append(_line(key, list(value) if isinstance(value, tuple) else value, meaning.get(key, "")))
    return "\n".join(lines) + "\n"


def catalogue(levels=6) -> str:
    """Problem kinds with their parameters and defaults (for a ``levels``-level stack), and the SDE schemes."""
    out = [f"problem kinds (defaults for a {levels}-level stack; set them in [problem.NAME] tables):"]
    for kind in KINDS:
        out.append(f"  {kind}: {kind_summary(kind)}")
        for key, value, meaning in kind_parameters(kind, levels):
            out.append(f"      {key + ' = ' + _toml_value(value):<52} {meaning}")
    out.append("")
    out.append("schemes (solvers = [...]; strong order / weak order, noise types it accepts; * = run by default):")
    for name in SDE_SOLVERS:
        s = solvers.SCHEMES[name]()
        doc = (type(s).__doc__ or "").strip().splitlines()[0] if type(s).__doc__ else ""
        mark = "*" if name in DEFAULT_SOLVERS else " "
        out.append(f" {mark}{name:22s} {s.strong_order!s:>4} / {s.weak_order!s:<4} "
                   f"noise: {', '.join(sorted(s.noise_types)):32s} {doc}")
    odes = [name for name, cls in solvers.SCHEMES.items() if name not in SDE_SOLVERS]
    out.append(f"ODE-only schemes (the probability-flow cross-check): {', '.join(odes)}")
    return "\n".join(out) + "\n"
