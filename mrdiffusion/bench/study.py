"""The study driver: the cell grid, resume, sharding across ``torchrun`` ranks, and the outputs.

``run(config, out)`` measures every (problem, solver, step size) cell and
writes, in ``out``:

- ``config.json`` — the resolved configuration (``--resume`` checks it);
- ``cells/*.json`` — one record per finished cell, each written atomically
  (temporary file + ``os.replace``) as soon as the cell finishes;
- ``results.json`` / ``results.csv`` — all records so far, rewritten
  atomically after every cell; final versions add the references and
  cross-checks;
- ``report.md`` and the PNG plots (rank 0, at the end);
- in ``results.json``, ``nfe_study``: the exact weak error at ``T`` against
  NFE per scheme and time grid (:mod:`~mrdiffusion.bench.nfe`; rank 0, at the
  end, no Monte-Carlo error), plotted as ``error_vs_nfe.png``.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the process group
is initialised here (gloo on CPU, nccl on CUDA), the pending cells are split
across ranks by estimated cost, and rank 0 gathers and merges the records.
The numbers do not depend on the sharding: every cell's noise comes from a
seed derived from (seed, problem, step size).
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import time

import torch

from .._dist import Distributed
from .._io import atomic_write, remove_stale_temporaries
from .cells import Cell, Workspace, grid
from .config import Config, ConfigError, as_config

__all__ = ["run", "atomic_write", "latest_run", "load_records"]

REFERENCE_DIR = "cache"


def _json(obj):
    return json.dumps(obj, indent=1, allow_nan=False)


def latest_run(root="results"):
    """The most recent ``results/bench-*`` folder holding a ``config.json`` (for ``--resume`` without ``--out``)."""
    runs = sorted(d for d in glob.glob(os.path.join(root, "bench-*")) if os.path.isfile(os.path.join(d, "config.json")))
    return runs[-1] if runs else None


def load_records(out):
    """The records of the finished cells in ``out/cells``, keyed by cell key."""
    records = {}
    for path in sorted(glob.glob(os.path.join(out, "cells", "*.json"))):
        with open(path) as fh:
            rec = json.load(fh)
        records[Cell(rec["problem"], rec["solver"], rec["dt"]).key] = rec
    return records


# ----------------------------------------------------------------------------- distributed

_Dist = Distributed  # rank, world size and collectives, shared with HVAE training (mrdiffusion/_dist.py)


def _shard(cells, world, config):
    """Deterministic, cost-balanced shards (longest first) of whole (problem, step size) groups.

    The cells of one group share their noise and exact-sampler states (a
    :class:`~mrdiffusion.bench.measure.Tape`), so a group stays on one rank.
    """
    groups = {}
    for cell in cells:
        groups.setdefault((cell.problem, cell.dt), []).append(cell)
    loads = [0.0] * world
    shards = [[] for _ in range(world)]
    for key in sorted(groups, key=lambda k: (-sum(c.cost(config) for c in groups[k]), repr(k))):
        r = min(range(world), key=lambda i: (loads[i], i))
        shards[r].extend(groups[key])
        loads[r] += sum(c.cost(config) for c in groups[key])
    order = {c.key: i for i, c in enumerate(cells)}
    return [sorted(s, key=lambda c: order[c.key]) for s in shards]


# ----------------------------------------------------------------------------- output folder


def _first_difference(a, b, prefix=""):
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"{prefix}{key}"
    return None


def _prepare_out(config, out, resume):
    """Check (nothing written yet) and return the output folder; raise ConfigError on a conflict."""
    if out is None:
        if resume:
            out = latest_run()
            if out is None:
                raise ConfigError("--resume: no previous run in results/bench-*; pass --out DIR of the run to resume")
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            out = os.path.join("results", f"bench-{stamp}")
            n = 1
            while os.path.exists(out):
                n += 1
                out = os.path.join("results", f"bench-{stamp}-{n}")
    cfg_path = os.path.join(out, "config.json")
    if resume:
        if not os.path.isfile(cfg_path):
            raise ConfigError(f"--resume: {out} holds no config.json (not a bench run); drop --resume to start it")
        with open(cfg_path) as fh:
            stored = json.load(fh)
        if stored.get("fingerprint") != config.fingerprint():
            diff = _first_difference(json.loads(stored.get("fingerprint", "{}")), json.loads(config.fingerprint()))
            raise ConfigError(f"--resume: the configuration differs from {cfg_path} (key {diff!r}); resume with "
                              f"the same --config/--quick/--seed, or drop --resume and use a new --out")
        remove_stale_temporaries(out)  # left by a hard kill in the middle of an atomic write
    elif os.path.isdir(out) and (os.path.exists(cfg_path) or glob.glob(os.path.join(out, "cells", "*.json"))):
        raise ConfigError(f"--out: {out} already holds a bench run; pass --resume to continue it or choose a new --out")
    return out


# ----------------------------------------------------------------------------- the study


def run(config=None, out=None, *, resume=False, progress=True, log=print) -> dict:
    """Run the study; return ``{"out": folder, "records": [...], "references": {...}, "crosschecks": [...]}``.

    ``config``: a :class:`~mrdiffusion.bench.config.Config`, a TOML-layout dict,
    a TOML path or ``None`` (defaults). ``out``: the output folder (default
    ``results/bench-<timestamp>``). ``resume``: skip the cells already in
    ``out/cells`` (the configuration must match). Under ``torchrun`` every rank
    calls this; only rank 0 returns the merged records (other ranks return
    their own).
    """
    config = as_config(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    dist = _Dist(config.device)
    try:
        return _run(config, out, resume, progress, log, dist)
    finally:
        dist.close()
        torch.set_num_threads(threads)


def _run(config: Config, out, resume, progress, log, dist):
    t_start = time.perf_counter()
    # 1. the output folder: checked by rank 0 before anything is written, the verdict shared
    verdict = None
    if dist.rank == 0:
        try:
            verdict = ("ok", _prepare_out(config, out, resume))
        except ConfigError as err:
            verdict = ("error", str(err))
    verdict = dist.broadcast(verdict)
    if verdict[0] == "error":
        raise ConfigError(verdict[1])
    out = verdict[1]
    if dist.rank == 0:
        os.makedirs(os.path.join(out, "cells"), exist_ok=True)
        os.makedirs(os.path.join(out, REFERENCE_DIR), exist_ok=True)
        if not resume:
            atomic_write(os.path.join(out, "config.json"),
                         _json({"config": config.as_dict(), "fingerprint": config.fingerprint()}))
    dist.barrier()

    ws = Workspace(config, dist.device)
    # 2. strong-error references: one per problem, spread over the ranks, cached on disk for --resume
    mine = {}
    for i, spec in enumerate(config.problems):
        if i % dist.world != dist.rank:
            continue
        path = os.path.join(out, REFERENCE_DIR, f"reference-{spec.name}.pt")
        if resume and os.path.isfile(path):
            mine[spec.name] = torch.load(path, weights_only=True)
        else:
            mine[spec.name] = ws.compute_reference(spec.name)
            buf = _tensor_bytes(mine[spec.name])
            atomic_write(path, buf, root=out)
    for part in dist.all_gather(mine):
        ws.references.update(part)

    # 3. the cells: rank 0 lists what is done, every rank runs its shard of the rest
    cells = grid(config)
    done = load_records(out) if (resume and dist.rank == 0) else {}
    pending = dist.broadcast([c for c in cells if c.key not in done])
    shard = _shard(pending, dist.world, config)[dist.rank]
    if dist.rank == 0 and log:
        log(f"mrdiffusion bench: {len(cells)} cells ({len(done)} already done), {dist.world} process(es), "
            f"output in {out}")
    bar = None
    if progress and dist.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(shard), desc="bench" + (f" (rank 0 of {dist.world})" if dist.world > 1 else ""),
                   unit="cell")
    new = {}
    for cell in shard:
        if bar is not None:
            bar.set_postfix_str(f"{cell.problem} {cell.solver} dt={cell.dt:g}")
        rec = ws.measure(cell)
        new[cell.key] = rec
        atomic_write(os.path.join(out, "cells", cell.filename), _json(rec), root=out)
        if dist.rank == 0:  # (other ranks' finished cells are on disk when the folder is shared)
            _write_results(out, config, {**done, **(load_records(out) if dist.world > 1 else {}), **new}, cells)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    # 4. rank 0 merges, checks against the peers, writes the report and the plots
    gathered = dist.all_gather(new)
    if dist.rank != 0:
        return {"out": out, "records": list(new.values())}
    merged = dict(done)
    for part in gathered:
        merged.update(part)
    records = [merged[c.key] for c in cells]
    references = {name: {k: v for k, v in ref.items() if k != "ys"} for name, ref in ws.references.items()}
    crosschecks = []
    phases = _Phases(progress, ["cross-checks"] * config.crosscheck + ["error vs NFE", "report"]
                     + ["plots"] * config.plots)
    if config.crosscheck:
        from .crosscheck import run_crosschecks

        phases.start("cross-checks")
        crosschecks = run_crosschecks(config, log=log)
    from .nfe import nfe_study

    phases.start("error vs NFE")
    nfe_rows = nfe_study(config, ws)
    meta = _meta(config, dist.world, time.perf_counter() - t_start)
    _write_results(out, config, merged, cells, references=references, crosschecks=crosschecks, meta=meta,
                   nfe_rows=nfe_rows)
    from .report import write_report

    phases.start("report")
    write_report(out, config, records, references, crosschecks, meta, ws, nfe_rows=nfe_rows)
    if config.plots:
        from .plots import write_plots

        phases.start("plots")
        write_plots(out, config, records, ws, nfe_rows=nfe_rows)
    phases.close()
    meta["wall_s"] = time.perf_counter() - t_start
    _write_results(out, config, merged, cells, references=references, crosschecks=crosschecks, meta=meta,
                   nfe_rows=nfe_rows)
    if log:
        log(f"mrdiffusion bench: done in {meta['wall_s']:.1f} s; report: {os.path.join(out, 'report.md')}")
    return {"out": out, "records": records, "references": references, "crosschecks": crosschecks, "meta": meta}


class _Phases:
    """A progress bar over the phases after the cells (cross-checks, report, plots); silent without progress."""

    def __init__(self, progress, names):
        self.bar = None
        if progress and names:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(names), desc="bench: finishing", unit="phase")
        self.current = None

    def start(self, name):
        if self.bar is not None:
            if self.current is not None:
                self.bar.update(1)
            self.bar.set_postfix_str(name)
        self.current = name

    def close(self):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.close()


def _tensor_bytes(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _meta(config, world, wall):
    import platform

    import mrdiffusion

    return {"mrdiffusion": mrdiffusion.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "device": config.device, "world_size": world, "threads": config.threads, "quick": config.quick,
            "config_source": config.source, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "wall_s": wall}


CSV_FIELDS = ("problem", "solver", "dt", "dt_label", "view", "paths", "strong_paths", "seed", "n_steps",
              "weak_error", "weak_mean_error", "weak_var_error", "weak_floor", "strong_error", "strong_floor",
              "strong_diverged_fraction", "diverged_fraction", "instability_ratio", "first_step_amplification",
              "stable", "nfe", "wall_s", "wall_total_s", "declared_strong_order", "declared_weak_order")


def _write_results(out, config, by_key, cells, *, references=None, crosschecks=None, meta=None, nfe_rows=None):
    import csv
    import io

    records = [by_key[c.key] for c in cells if c.key in by_key]
    doc = {"records": records, "references": references or {}, "crosschecks": crosschecks or [],
           "meta": meta or {"partial": True}, "config": config.as_dict()}
    if nfe_rows is not None:
        doc["nfe_study"] = nfe_rows
    atomic_write(os.path.join(out, "results.json"), _json(doc))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in CSV_FIELDS})
    atomic_write(os.path.join(out, "results.csv"), buf.getvalue())
