"""``mrdiffusion bench --hvae CHECKPOINT``: a trained HVAE as a bench problem.

The top-down pass of a trained :class:`~mrdiffusion.hvae.HVAE` is a learned
multi-resolution SDE flowing from point masses (docs/design.md §3). This study runs
every scheme of :data:`solvers.SCHEMES` that the model's top-down SDE supports
(:meth:`HVAE.check_solver`) with 0.5×, 1×, 2× and 4× the trained number of
steps per resolution, and records for each cell

- the negative ELBO on the test images in bits/dim (one posterior draw per
  image, seeded; the trained scheme at 1× is the model as trained);
- prior samples: the L² norm ``‖x_t‖`` of the state after every step (median,
  p99, max over samples) and the fraction of non-finite samples;
- NFE: network evaluations of one top-down pass (``drift_evals`` per step, as
  the scheme declares, plus any the scheme reports in ``ctx.extra_nfe``).

Outputs in ``--out`` (default ``results/bench-hvae-<timestamp>``), in the style
of the closed-form bench: ``results.json``, ``results.csv``, ``report.md``,
``elbo.png`` (test ELBO against steps — the error-against-steps plot of a
model with no exact solution) and ``instability.png`` (median ``‖x_t‖`` over
model time per scheme, activation times dashed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time

import numpy as np
import torch

import solvers

__all__ = ["FACTORS", "supported_schemes", "run_hvae", "main_hvae"]

FACTORS = (0.5, 1.0, 2.0, 4.0)
CSV_FIELDS = ["scheme", "factor", "steps", "n_steps", "nfe", "test_bpd", "nonfinite_fraction",
              "final_norm_median", "final_norm_p99", "max_norm", "seconds", "error"]


def supported_schemes(model, *, with_reasons=False):
    """Names of the schemes in :data:`solvers.SCHEMES` that can step ``model``'s top-down SDE.

    ``with_reasons``: also return ``{name: why}`` for the schemes left out. Besides the schemes
    :meth:`HVAE.check_solver` refuses, :class:`solvers.DriftImplicitEuler` is left out when the
    SDE has no linear part: it would then solve every step by Newton's method on a dense
    per-sample Jacobian of the whole state (``width·res²`` unknowns), minutes per pass here.
    The scheme's own ``check(sde, shape)`` (which :meth:`HVAE.check_solver` calls with the finest
    state's shape) refuses this only above ``max_newton_size`` = 1024 unknowns: it does for the
    default model (32·8·8 = 2048) but not for small ones (width 8: 512), so the rule stays.
    """
    out, why = [], {}
    has_linear = solvers.as_terms(model._sde(0)).linear is not None
    for name, cls in solvers.SCHEMES.items():
        try:
            model.check_solver(cls())
        except (ValueError, TypeError) as err:
            why[name] = str(err)
            continue
        if cls is solvers.DriftImplicitEuler and not has_linear:
            why[name] = ("needs Newton's method on a dense Jacobian of the state without a linear part "
                         "(train with decay=True to give the SDE one)")
            continue
        out.append(name)
    return (out, why) if with_reasons else out


def scaled_steps(dec_blocks, factor):
    """Steps per resolution at ``factor`` × the trained count (at least one where the model has blocks)."""
    return tuple(0 if n == 0 else max(1, int(round(n * factor))) for n in dec_blocks)


BUILTIN_DATA = ("digits", "synthetic")


def load_test_data(ckpt, checkpoint, data=None):
    """The data set a checkpoint was trained on: a built-in one by name, else only the path ``data`` given.

    A checkpoint is an input file like any other: a path stored in it is never opened (it could name
    any local file). Data given by path must be the training data (the same fingerprint of the training
    split); a built-in set is taken by name (a run may have trained on a subset of it).
    """
    from ..hvae.data import fingerprint, load_dataset

    name = ckpt["data"]["name"]
    given = data is not None
    if not given:
        if name not in BUILTIN_DATA:
            raise ValueError(f"--hvae: {checkpoint} was trained on data {name!r}, not a built-in set "
                             f"({', '.join(BUILTIN_DATA)}); pass --data PATH to the file or folder it was trained "
                             f"on (paths stored in a checkpoint are not read)")
        data = name
    try:
        loaded = load_dataset(data, levels=ckpt["data"]["levels"])
    except ValueError as err:
        raise ValueError(f"--data: {data!r} cannot be loaded ({err})") from None
    if given and fingerprint(loaded.train) != ckpt["data"]["fingerprint"]:
        raise ValueError(f"--data: {data!r} is not the data {checkpoint} was trained on (its training split's "
                         f"fingerprint differs from the checkpoint's {ckpt['data']['fingerprint']})")
    return loaded


def run_hvae(checkpoint, out, *, samples=256, test_images=None, seed=0, device="cpu", log=print, data=None):
    """Run the study; write the outputs to ``out``; return ``{"records": [...], "meta": {...}}``.

    ``data``: the training data's path when the checkpoint was not trained on a built-in set
    (:func:`load_test_data`)."""
    from ..hvae.checkpoint import model_from_checkpoint
    from ..hvae.train import evaluate

    model, ckpt = model_from_checkpoint(checkpoint, device=device)
    data_name = ckpt["data"]["name"]
    data = load_test_data(ckpt, checkpoint, data)
    x_test = data.test if test_images is None else data.test[:test_images]
    trained = model.config.solver
    schemes, left_out = supported_schemes(model, with_reasons=True)
    records = []
    for name in schemes:
        for factor in FACTORS:
            steps = scaled_steps(model.config.dec_blocks, factor)
            scheme = solvers.SCHEMES[name]()
            rec = {"scheme": name, "trained_scheme": trained, "factor": factor, "steps": list(steps),
                   "n_steps": sum(steps), "error": None}
            t0 = time.perf_counter()
            try:
                rec.update(_measure(model, scheme, steps, x_test, samples, seed, evaluate))
            except (RuntimeError, ValueError, FloatingPointError) as err:  # a scheme failing on this model
                rec["error"] = f"{type(err).__name__}: {err}"
            rec["seconds"] = time.perf_counter() - t0
            records.append(rec)
            if log:
                log(f"[bench --hvae] {name:18s} ×{factor:g} ({rec['n_steps']} steps): "
                    f"test {_f(rec.get('test_bpd'), '.4f')} bits/dim, "
                    f"non-finite {_f(rec.get('nonfinite_fraction'), '.3f')}, NFE {rec.get('nfe')}")
    meta = {"checkpoint": os.path.abspath(checkpoint), "data": data_name, "test_images": int(x_test.shape[0]),
            "samples": samples, "seed": seed, "trained_scheme": trained,
            "trained_steps": list(model.config.dec_blocks), "model_config": model.config.to_dict(),
            "activation_times": _activation_times(model), "factors": list(FACTORS), "schemes": schemes,
            "left_out": left_out,
            "torch": torch.__version__}
    _write(out, records, meta)
    return {"records": records, "meta": meta, "out": out}


def _measure(model, scheme, steps, x_test, samples, seed, evaluate):
    bpd = evaluate(model, x_test, seed=seed + 12345, solver=scheme, steps=steps)
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed + 1000)
    _, info = model.sample(samples, solver=scheme, steps=steps, generator=gen, record=True)
    norms = info["norms"].double()
    finite = norms[torch.isfinite(norms)]
    final = norms[-1][torch.isfinite(norms[-1])]
    sched = model.schedule(steps)
    times = [0.0] + [s.t + s.h for s in sched]
    extra = model.last_extra_nfe  # evaluations beyond the declared ones (Newton iterations), last pass
    q = lambda v, p: float(v.quantile(p)) if v.numel() else float("nan")  # noqa: E731
    return {"test_bpd": bpd, "nfe": int(scheme.drift_evals * len(sched) + extra),
            "nonfinite_fraction": float(info["nonfinite"].float().mean()),
            "final_norm_median": q(final, 0.5), "final_norm_p99": q(final, 0.99),
            "max_norm": float(finite.max()) if finite.numel() else float("nan"),
            "norm_curve": {"t": times,
                           "median": [_nan(v) for v in _nanquantile(norms, 0.5)],
                           "p99": [_nan(v) for v in _nanquantile(norms, 0.99)]}}


def _nanquantile(norms, p):
    x = torch.where(torch.isfinite(norms), norms, torch.full_like(norms, float("nan")))
    return torch.nanquantile(x, p, dim=1).tolist()


def _nan(v):
    return None if v is None or not math.isfinite(v) else v


def _activation_times(model):
    sched = model.schedule()
    return [s.t for i, s in enumerate(sched) if i > 0 and s.res != sched[i - 1].res]


def _f(v, fmt):
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def report_table(records, meta):
    lines = ["| scheme | × trained steps | steps per resolution | NFE | test bits/dim | non-finite samples "
             "| median final ‖x‖ | p99 final ‖x‖ | max ‖x_t‖ |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        mark = " (trained)" if r["scheme"] == meta["trained_scheme"] and r["factor"] == 1.0 else ""
        if r["error"]:
            lines.append(f"| {r['scheme']} | {r['factor']:g}{mark} | {','.join(map(str, r['steps']))} | — | "
                         f"failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['scheme']} | {r['factor']:g}{mark} | {','.join(map(str, r['steps']))} | {r['nfe']} | "
                     f"{_f(r['test_bpd'], '.4f')} | {r['nonfinite_fraction']:.3f} | "
                     f"{_f(r['final_norm_median'], '.3g')} | {_f(r['final_norm_p99'], '.3g')} | "
                     f"{_f(r['max_norm'], '.3g')} |")
    return "\n".join(lines)


def _write(out, records, meta):
    from .._io import atomic_write

    os.makedirs(out, exist_ok=True)
    atomic_write(os.path.join(out, "results.json"), _json({"records": records, "meta": meta}))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: ("" if r.get(k) is None else (",".join(map(str, r[k])) if k == "steps" else r[k]))
                         for k in CSV_FIELDS})
    atomic_write(os.path.join(out, "results.csv"), buf.getvalue().encode())
    md = (f"# bench --hvae: {meta['checkpoint']}\n\n"
          f"Model trained with {meta['trained_scheme']}, steps per resolution {tuple(meta['trained_steps'])} "
          f"(start: {meta['model_config']['start']}); data {meta['data']!r}, {meta['test_images']} test images "
          f"(one posterior draw each), {meta['samples']} prior samples per cell, seed {meta['seed']}. "
          f"Schemes: every one the top-down SDE supports ({', '.join(meta['schemes'])}). "
          f"‖x‖ is the L² norm of the state (cell mean, channels summed).\n\n"
          + report_table(records, meta) + "\n\nLeft out: "
          + "; ".join(f"{k} ({v})" for k, v in meta["left_out"].items()) + ".\n\nPlots: `elbo.png` (test bits/dim against steps), "
          "`instability.png` (median ‖x_t‖ over model time, activations dashed).\n")
    atomic_write(os.path.join(out, "report.md"), md.encode())
    _plots(out, records, meta)


def _json(obj):
    from .cells import _finite  # non-finite numbers as null, as the closed-form cells store them

    return json.dumps(_finite(obj), indent=1).encode()


def _plots(out, records, meta):
    from .plots import _save, _setup, solver_style

    plt = _setup()
    ok = [r for r in records if not r["error"]]
    schemes = list(dict.fromkeys(r["scheme"] for r in ok))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in schemes:
        rs = sorted((r for r in ok if r["scheme"] == name), key=lambda r: r["n_steps"])
        st = solver_style(name)
        ax.plot([r["n_steps"] for r in rs], [np.nan if r["test_bpd"] is None else r["test_bpd"] for r in rs],
                color=st["color"], marker=st["marker"], ls=st["ls"], label=name)
    ax.axvline(sum(meta["trained_steps"]), color="0.5", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("top-down steps (dotted: trained)")
    ax.set_ylabel("test negative ELBO (bits/dim)")
    ax.set_title("Trained HVAE: ELBO against steps per scheme", fontsize=10)
    ax.legend()
    _save(fig, out, "elbo.png")

    fig, axes = plt.subplots(1, len(FACTORS), figsize=(4.0 * len(FACTORS), 3.6), sharey=True, squeeze=False)
    for ax, factor in zip(axes[0], FACTORS):
        for name in schemes:
            r = next((r for r in ok if r["scheme"] == name and r["factor"] == factor), None)
            if r is None:
                continue
            st = solver_style(name)
            med = [np.nan if v is None else v for v in r["norm_curve"]["median"]]
            ax.plot(r["norm_curve"]["t"], med, color=st["color"], marker=st["marker"], ms=3, ls=st["ls"],
                    label=name)
        for t in meta["activation_times"]:
            ax.axvline(t, color="0.5", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("model time t (activations dashed)")
        ax.set_title(f"{factor:g}× trained steps", fontsize=10)
    axes[0, 0].set_ylabel("median ‖x_t‖ of prior samples")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out, "instability.png")


def main_hvae(args) -> int:
    """The ``--hvae`` branch of ``mrdiffusion bench``; returns the exit status."""
    from .. import _args as A
    from ..hvae.checkpoint import load_checkpoint, model_config_of

    rank0 = int(os.environ.get("RANK", "0")) == 0
    out = args.out if args.out is not None else os.path.join("results",
                                                             "bench-hvae-" + time.strftime("%Y%m%d-%H%M%S"))
    quick = bool(args.quick)
    try:
        A.check_out_dir(out)  # before the study, not after it
        ckpt = load_checkpoint(args.hvae)  # the checkpoint and its data, checked before any work
        model_config_of(ckpt, args.hvae)
        load_test_data(ckpt, args.hvae, getattr(args, "data", None))
        del ckpt
        result = run_hvae(args.hvae, out, samples=64 if quick else 256, test_images=64 if quick else None,
                          seed=args.seed or 0, device=args.device or "cpu",
                          log=(lambda m: print(m, file=sys.stderr)) if rank0 else None,
                          data=getattr(args, "data", None))
    except ValueError as err:
        print(f"mrdiffusion bench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if rank0:
        print(report_table(result["records"], result["meta"]))
        print(f"\nreport: {os.path.join(out, 'report.md')}")
    return 0
