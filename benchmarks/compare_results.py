"""Compare two ``mrdiffusion bench`` runs field by field (timings aside).

    python -m benchmarks.compare_results OLD/results.json NEW/results.json [--json FILE]

For every record (matched by problem, solver and step) and every numeric field,
nested lists included, it reports the largest absolute and relative difference
over the records, and the cells where a field differs by more than round-off.
Where the noise construction changed between the runs, the weak-error numbers
should agree within their Monte Carlo standard error (``weak_floor``, the
standard error of the control-variate estimate): ``--mc`` prints, per field,
the largest difference in units of that floor.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

TIMING = {"wall_s", "wall_total_s", "solve_s"}
ROUND_OFF = 1e-9  # relative: differences below this are float round-off


def _flatten(x, prefix=""):
    """``{path: number}`` of every number in a nested record (bools and strings kept as exact values)."""
    out = {}
    if isinstance(x, dict):
        for k, v in x.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            out.update(_flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = x
    return out


def _field(path):
    """The field a flattened path belongs to: ``weak_detail[2].mean_err[3]`` -> ``weak_detail.mean_err``."""
    return re.sub(r"\[\d+\]", "", path)


def _key(rec):
    return rec["problem"], rec["solver"], rec["dt"]


def compare(old, new):
    """Per field: max abs and rel difference, the number of values, and the mismatches (non-numeric, missing)."""
    old_recs = {_key(r): r for r in old["records"]}
    new_recs = {_key(r): r for r in new["records"]}
    fields, problems = {}, []
    for key in sorted(set(old_recs) | set(new_recs), key=repr):
        if key not in old_recs or key not in new_recs:
            problems.append(f"cell {key} only in {'new' if key in new_recs else 'old'}")
            continue
        a, b = _flatten(old_recs[key]), _flatten(new_recs[key])
        for path in sorted(set(a) | set(b)):
            f = _field(path)
            if f.split(".")[0] in TIMING:
                continue
            st = fields.setdefault(f, {"n": 0, "max_abs": 0.0, "max_rel": 0.0, "worst": None, "mismatch": 0})
            x, y = a.get(path), b.get(path)
            st["n"] += 1
            if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, (int, float)) or \
                    not isinstance(y, (int, float)):
                if x != y:
                    st["mismatch"] += 1
                    st["worst"] = st["worst"] or (key, path, x, y)
                continue
            d = abs(x - y)
            if math.isnan(d):
                continue
            rel = d / max(abs(x), abs(y)) if d else 0.0
            if d > st["max_abs"]:
                st["max_abs"] = d
            if rel > st["max_rel"]:
                st["max_rel"], st["worst"] = rel, (key, path, x, y)
    return fields, problems


def mc_units(old, new, fields=("weak_error", "weak_mean_error", "weak_var_error")):
    """Largest ``|new − old| / weak_floor`` per field over cells with a positive floor."""
    old_recs = {_key(r): r for r in old["records"]}
    out = {}
    for rec in new["records"]:
        ref = old_recs.get(_key(rec))
        if ref is None:
            continue
        floor = max(ref.get("weak_floor") or 0.0, rec.get("weak_floor") or 0.0)
        for f in fields:
            x, y = ref.get(f), rec.get(f)
            if floor > 0 and isinstance(x, (int, float)) and isinstance(y, (int, float)):
                out[f] = max(out.get(f, 0.0), abs(x - y) / floor)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--json", default=None, help="write the per-field table here")
    p.add_argument("--mc", action="store_true", help="also differences in units of the Monte Carlo floor")
    args = p.parse_args(argv)
    with open(args.old) as fh:
        old = json.load(fh)
    with open(args.new) as fh:
        new = json.load(fh)
    fields, problems = compare(old, new)
    print(f"{'field':44s} {'values':>7s} {'max |Δ|':>10s} {'max rel':>10s}  mismatches")
    for f, st in sorted(fields.items()):
        print(f"{f:44s} {st['n']:7d} {st['max_abs']:10.3g} {st['max_rel']:10.3g}  {st['mismatch']}")
    bad = {f: st for f, st in fields.items() if st["max_rel"] > ROUND_OFF or st["mismatch"]}
    for f, st in sorted(bad.items()):
        print(f"  above round-off: {f}: worst {st['worst']}")
    for line in problems:
        print("  " + line)
    cross = [(a["check"], a["problem"], a["max_abs_diff"], b["max_abs_diff"])
             for a, b in zip(old.get("crosschecks", []), new.get("crosschecks", []))]
    for c in cross:
        print(f"cross-check {c[0]} ({c[1]}): old {c[2]:.3g}, new {c[3]:.3g}")
    if args.mc:
        for f, u in mc_units(old, new).items():
            print(f"{f}: largest |new - old| = {u:.3g} × weak_floor (Monte Carlo standard error)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"fields": fields, "problems": problems}, fh, indent=1, default=str)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
