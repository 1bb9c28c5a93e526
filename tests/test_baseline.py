"""Numbers that a refactor must not move: the quick bench and the quick few-step benchmark, bit for bit.

``tests/baselines/bench_quick.json`` and ``tests/baselines/fewstep_quick.json`` hold every error,
divergence and amplification figure of

    python -m mrdiffusion bench --quick --no-progress --out DIR        (DIR/results.json)
    python -m benchmarks.fewstep --quick --out DIR                     (DIR/fewstep.json)

run on one CPU thread. This test runs both again in subprocesses (with a temporary ``--out``) and asserts
that every recorded figure comes back with *exact* float equality (NaN matches NaN). A change to the
engine's structure (how a problem is handed to the driver, how a scheme is looked up) must not change
one bit of any of them; when it does, the change did more than it says.

A deliberate change of the numbers (a new default, a corrected formula, a different random stream) must
re-record the baseline in the same commit that makes the change, with a before/after table of the
figures that moved and the reason in the commit message. Re-record with

    OMP_NUM_THREADS=1 PYTHONPATH=. python tests/test_baseline.py --record

Floating-point results depend on the torch build and the CPU's instruction set, so the figures are only
compared where the torch version and the machine are those the baseline was recorded with (stored in
the files); elsewhere the test is skipped with that reason rather than failing on a platform difference.
"""

import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "tests" / "baselines"

# Keys whose numbers are the figures a run reports (errors, noise floors, divergence fractions,
# amplification and instability ratios); timings, sizes and labels are left out.
_FIGURE_WORDS = ("error", "err", "floor", "diverged", "instability", "amplification", "ratio", "max_abs",
                 "exact")


def _is_figure(key):
    return any(word in key for word in _FIGURE_WORDS)


def _figures(obj):
    """The figure-valued leaves of one JSON record: numbers or (nested) lists of numbers under a figure key."""
    out = {}
    for key, value in obj.items():
        if _is_figure(key) and not isinstance(value, (str, bool, dict)):
            out[key] = value
        elif isinstance(value, dict) and _is_figure(key):
            out[key] = value
        elif key == "weak_detail":
            out[key] = value
    return out


def bench_figures(results):
    """Every error, divergence and amplification figure of a ``mrdiffusion bench`` results.json."""
    out = {}

    def put(key, value):  # one entry per record: a key that two records share would hide one of them
        assert key not in out, f"two records share the key {key!r}"
        out[key] = value

    for r in results["records"]:
        put(f"records/{r['problem']}/{r['solver']}/{r['dt_label']}/{r['view']}", _figures(r))
    for name, r in results["references"].items():
        put(f"references/{name}/{r['solver']}", _figures(r))
    for r in results["crosschecks"]:
        put(f"crosschecks/{r['check']}/{r['problem']}", _figures(r))
    for r in results["nfe_study"]:
        put(f"nfe_study/{r['problem']}/{r['solver']}/{r['grid']}/{r['steps']}", _figures(r))
    return out


def fewstep_figures(results):
    """Every error figure of a ``benchmarks.fewstep`` JSON file: the floors and each row's errors."""
    out = {}
    for res in results["results"]:
        out[f"{res['problem']}/floor"] = {k: res[k] for k in res if _is_figure(k) and k != "rows"}
        for row in res["rows"]:
            key = f"{res['problem']}/{row['family']}/{row['sampler']}/{row['grid']}/{row['budget']}"
            assert key not in out, f"two rows share the key {key!r}"
            out[key] = _figures(row)
    return out


RUNS = {
    "bench_quick": ([sys.executable, "-m", "mrdiffusion", "bench", "--quick", "--no-progress", "--out"],
                    "results.json", bench_figures),
    "fewstep_quick": ([sys.executable, "-m", "benchmarks.fewstep", "--quick", "--out"], "fewstep.json",
                      fewstep_figures),
}


PEERS = {"bench_quick": ("torchsde", "torchdiffeq"), "fewstep_quick": ("k_diffusion",)}


def _platform():
    return {"torch": torch.__version__, "machine": platform.machine(), "python": platform.python_version()}


def run_fresh(name, tmp):
    """Run one of the quick benchmarks on one thread into ``tmp`` and return its figures."""
    argv, filename, extract = RUNS[name]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = Path(tmp) / name
    proc = subprocess.run(argv + [str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / filename) as f:
        return extract(json.load(f))


def _same(a, b):
    """Exact equality of two JSON values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def differences(recorded, fresh):
    """Human-readable lines naming each figure that differs (or is missing on one side)."""
    lines = []
    for key in sorted(set(recorded) | set(fresh)):
        if key not in fresh:
            lines.append(f"{key}: missing from the fresh run")
        elif key not in recorded:
            lines.append(f"{key}: not in the baseline")
        else:
            for fig in sorted(set(recorded[key]) | set(fresh[key])):
                a, b = recorded[key].get(fig), fresh[key].get(fig)
                if not _same(a, b):
                    lines.append(f"{key} {fig}: baseline {a!r}, now {b!r}")
    return lines


@pytest.mark.parametrize("name", sorted(RUNS))
def test_quick_benchmark_figures_are_bit_identical(name, tmp_path):
    with open(BASELINES / f"{name}.json") as f:
        recorded = json.load(f)
    if recorded["platform"] != _platform():
        pytest.skip(f"baseline recorded on {recorded['platform']}, this is {_platform()}")
    for module in PEERS[name]:  # the recorded figures include the peer cross-checks and k-diffusion's rows
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the baseline includes its figures)")
    fresh = run_fresh(name, tmp_path)
    diff = differences(recorded["figures"], fresh)
    assert not diff, f"{len(diff)} figure(s) of {name} moved:\n" + "\n".join(diff[:40])


def test_comparison_can_fail():
    """The comparison sees a one-ulp change and a missing figure."""
    rec = {"a": {"error": [1.0, float("nan")]}}
    assert not differences(rec, {"a": {"error": [1.0, float("nan")]}})
    assert differences(rec, {"a": {"error": [math.nextafter(1.0, 2.0), float("nan")]}})
    assert differences(rec, {})


def record():
    BASELINES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(RUNS):
            figures = run_fresh(name, tmp)
            with open(BASELINES / f"{name}.json", "w") as f:
                json.dump({"platform": _platform(), "command": " ".join(RUNS[name][0][1:]) + " DIR",
                           "figures": figures}, f, indent=1, sort_keys=True)
                f.write("\n")
            print(f"recorded {len(figures)} entries of {name} in {BASELINES / (name + '.json')}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: OMP_NUM_THREADS=1 PYTHONPATH=. python tests/test_baseline.py --record")
    record()
