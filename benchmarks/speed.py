"""Speed against peers: side-by-side ratios.

    python -m benchmarks.speed [--quick] [--json FILE] [--device D] [--threads N]

Each case runs every contender in this process, alternating, after a warm-up,
and reports the median of ``repeats`` (≥ 5) timings and its ratio to ours
(contender / ours: above 1, ours is faster). Writes ``FILE`` (JSON), a markdown
table next to it (``.md``, also printed) and a bar plot of the ratios (``.png``).

Cases: (1) fixed-grid SDE sampling — Euler–Maruyama against a hand-written
loop and torchsde, Heun and SRA1 against torchsde; (2) reproducible Brownian
path queries, and Euler–Maruyama on such a path at h = 1e-3 (``BrownianPath(dt=h)``
against ``BrownianInterval(dt=h)``, and the unhinted path); (3) ODEs against
torchdiffeq; (4) Haar transforms against PyWavelets and ptwt; (5)
multi-resolution against single-resolution sampling; (6) peak memory of a
saved trajectory, and of one gradient through 10^4 steps with and without
``checkpoint=True``; (7) an HVAE training step against a plain loop; (8)
few-step sampler overhead against k-diffusion at 10 NFE; (9) Euler–Maruyama
against its memory-bandwidth floor. A contender whose optional package
(ptwt, PyWavelets, k-diffusion) is missing gets a row that says so instead of
a timing. The two largest SDE states run fewer
steps (same step size) so that the suite fits in ten minutes; ratios are per
solve of the listed length, so per step.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import torch

CASES = ("sde", "brownian", "ode", "haar", "multires", "memory", "hvae", "sampler", "bandwidth")


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run mode."""

    sde_shapes: tuple  # ((shape, steps), ...)
    brownian_shapes: tuple
    brownian_steps: int
    ode: tuple  # (batch, dim, steps)
    haar: tuple  # (batch, size)
    multires: tuple  # (batch, steps per level)
    memory: tuple  # (shape, saves)
    grad_memory: tuple = ((16, 1024), 10_000)  # (shape, steps): one gradient, plain vs checkpointed
    hvae_batch: int = 64  # one HVAE training step at the default model size
    sampler_shapes: tuple = ((4096, 3, 32, 32), (256, 3, 32, 32))  # whole 10-NFE sampling runs
    bandwidth: tuple = (((4096, 3, 32, 32),), 100)  # (shapes, steps): Euler–Maruyama vs its bandwidth floor
    repeats: int = 5
    compile: bool = True  # time the opt-in torch.compile fast path (compiles take seconds)
    collect: bool = True  # a full garbage collection before each comparison (~0.3 s each)
    fresh_process: bool = True  # measure memory in a fresh process per contender


FULL = Sizes(sde_shapes=(((1, 1), 1000), ((100, 10), 1000), ((1000, 10), 1000), ((1000, 1000), 20),
                         ((64, 3, 32, 32), 100)),
             brownian_shapes=((1, 1), (100, 10)), brownian_steps=1000,
             ode=(256, 16, 100), haar=(64, 256), multires=(64, 160), memory=((64, 3, 32, 32), 100))
QUICK = Sizes(sde_shapes=(((1, 1), 200), ((100, 10), 200), ((1000, 10), 100), ((1000, 1000), 3),
                          ((64, 3, 32, 32), 10)),
              brownian_shapes=((1, 1), (100, 10)), brownian_steps=100,
              ode=(256, 16, 50), haar=(8, 256), multires=(64, 16), memory=((64, 3, 32, 32), 100),
              grad_memory=((16, 1024), 2500), hvae_batch=16, compile=False,
              bandwidth=(((4096, 3, 32, 32),), 20))
SMOKE = Sizes(sde_shapes=(((1, 1), 5), ((4, 3), 5), ((2, 3, 4, 4), 5)), brownian_shapes=((2, 3),),
              brownian_steps=5, ode=(4, 3, 5), haar=(1, 32), multires=(2, 1), memory=((2, 3, 4, 4), 5),
              grad_memory=((2, 3), 16), hvae_batch=2, sampler_shapes=((4, 3, 8, 8),),
              bandwidth=(((4, 3, 8, 8),), 5),
              repeats=5, compile=False, collect=False, fresh_process=False)
MODES = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


def _devices(spec):
    if spec in (None, "all"):
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if torch.device(spec).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {spec}: no CUDA device is available")
    return [spec]


def run(mode="full", device=None, out=None, threads=1, cases=CASES, sizes=None, log=None):
    """Run the suite; return ``{"meta": ..., "rows": [...]}`` and, with ``out`` (a JSON path),
    write the JSON, the markdown table (``.md``) and the plot (``.png``) there.

    ``sizes`` (a :class:`Sizes`) overrides the sizes of ``mode``; ``log(message)`` reports
    progress (default: to stderr).
    """
    from . import _other_cases as other
    from . import _sampler_cases as sampler
    from . import _sde_cases as sde
    from ._timing import Timer

    sz = sizes or MODES[mode]
    log = log or (lambda msg: print(msg, file=sys.stderr))
    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"cases: unknown {sorted(unknown)}; expected a subset of {CASES}")
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    rows = []
    for dev in _devices(device):
        timer = Timer(sz.repeats, dev, sz.collect)
        steps = {
            "sde": lambda: sde.sde_rows(sz.sde_shapes, timer, sz.compile),
            "brownian": lambda: sde.brownian_rows(sz.brownian_shapes, sz.brownian_steps, timer),
            "ode": lambda: other.ode_rows(*sz.ode, timer),
            "haar": lambda: other.haar_rows(*sz.haar, timer),
            "multires": lambda: other.multires_rows(*sz.multires, timer),
            "memory": lambda: (other.memory_rows(*sz.memory, dev, sz.fresh_process)
                               + other.grad_memory_rows(*sz.grad_memory, dev, sz.fresh_process)),
            "hvae": lambda: other.hvae_rows(sz.hvae_batch, timer),
            "sampler": lambda: sampler.sampler_rows(sz.sampler_shapes, timer),
            "bandwidth": lambda: sampler.bandwidth_rows(*sz.bandwidth, timer),
        }
        for name in cases:
            t0 = time.perf_counter()
            new = steps[name]()
            rows += new
            log(f"[speed] {dev} {name}: {len(new)} rows in {time.perf_counter() - t0:.1f} s")
    meta = {"mode": mode if sizes is None else "custom", "devices": _devices(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "float32",
            "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - start, 1), "sizes": asdict(sz),
            "command": "python -m benchmarks.speed" + {"full": "", "quick": " --quick"}.get(mode, f" --{mode}")}
    for lib in ("torchsde", "torchdiffeq", "pywt", "ptwt"):
        try:
            from importlib.metadata import version

            meta[lib] = version({"pywt": "PyWavelets"}.get(lib, lib))
        except Exception:  # noqa: BLE001 - a version is a nicety
            meta[lib] = "?"
    result = {"meta": meta, "rows": [asdict(r) for r in rows]}
    if out is not None:
        write(result, out)
    return result


# ----------------------------------------------------------------------------- reporting


def _fmt_value(value, unit):
    if value is None:
        return "—"
    if unit == "B":
        return f"{value / 2**20:.1f} MiB"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def _fmt_ratio(row):
    if row["ratio"] is None:
        return "—"
    if row["reference"]:
        return "**1**"
    r = row["ratio"]
    return f"{r:.3g}×" if r < 100 else f"{r:.0f}×"


def _result(row):
    if row["target"] is None:
        return ""
    if row["passed"] is None:
        return "n/a"
    return "pass" if row["passed"] else "**fall short**"


def markdown(result):
    """The results as a markdown table, with a header line and a summary of the targets."""
    m = result["meta"]
    lines = [f"Measured with `{m['command']}` on {m['date'][:10]}: torch {m['torch']} "
             f"({m['threads']} CPU thread{'s' if m['threads'] != 1 else ''}), torchsde {m['torchsde']}, "
             f"torchdiffeq {m['torchdiffeq']}, PyWavelets {m['pywt']}, ptwt {m['ptwt']}; float32; "
             f"median of ≥ {m['sizes']['repeats']} alternating runs after warm-up (up to 4 per round for contenders "
             f"at least 2× cheaper than a round's slowest); suite took {m['seconds']:.0f} s. "
             "*time / ours* above 1 means ours is faster (for memory: smaller).", "",
             "| device | case | size | contender | median | time / ours | target | result | notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    last = None
    for r in result["rows"]:
        key = (r["device"], r["case"], r["size"])
        dev, case, size = (r["device"], r["case"], r["size"]) if key != last else ("", "", "")
        last = key
        name = f"**{r['contender']}**" if r["reference"] else r["contender"]
        lines.append(f"| {dev} | {case} | {size} | {name} | {_fmt_value(r['value'], r['unit'])} | "
                     f"{_fmt_ratio(r)} | {r['target'] or ''} | {_result(r)} | {r['note']} |")
    checked = [r for r in result["rows"] if r["target"] is not None and r["passed"] is not None]
    short = [r for r in checked if not r["passed"]]
    lines += ["", f"Targets: {len(checked) - len(short)} of {len(checked)} pass."]
    for r in short:
        lines.append(f"- falls short: {r['device']} {r['case']}, {r['size']}: vs {r['contender']} "
                     f"{r['ratio']:.2f}× (target {r['target']})")
    return "\n".join(lines) + "\n"


def plot(result, path):
    """Bar plot of every ratio (log scale, a line at 1), coloured by target outcome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # every ratio but the bandwidth one (time / floor: above 1 is slower, the opposite sense)
    rows = [r for r in result["rows"] if not r["reference"] and r["ratio"] and "floor_seconds" not in r["extra"]]
    labels = [f"{r['case']} | {r['size']} | {r['contender']}" + (f" [{r['device']}]" if r["device"] != "cpu"
                                                                   else "") for r in rows]
    colours = ["tab:gray" if r["passed"] is None else ("tab:green" if r["passed"] else "tab:red") for r in rows]
    fig, ax = plt.subplots(figsize=(12, 1.5 + 0.24 * len(rows)))
    ax.barh(range(len(rows)), [r["ratio"] for r in rows], color=colours)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("contender / ours (time, or peak memory), log scale: > 1 means ours is faster or smaller")
    ax.set_ylabel("case | size | contender")
    ax.set_title(f"mrdiffusion: speed against peers ({result['meta']['command']})\n"
                 "green: target met, red: falls short, grey: no target")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result, json_path):
    """Write ``json_path``, and the markdown table and plot beside it (same stem, ``.md`` / ``.png``)."""
    folder = os.path.dirname(os.path.abspath(json_path))
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(json_path)[0]
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(result))
    plot(result, stem + ".png")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps, a smaller Haar batch, no torch.compile rows (under 2 minutes)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny sizes, for the tests
    parser.add_argument("--json", default=os.path.join("results", "speed", "speed.json"),
                        help="JSON output; the .md table and .png plot go next to it (default: %(default)s)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N or all (default: cpu, and cuda when a GPU is present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for every contender (default: %(default)s; 0 keeps torch's)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="run only these cases")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    result = run(mode, args.device, args.json, args.threads, tuple(args.cases))
    sys.stdout.write(markdown(result))
    print(f"\nwrote {args.json} and its .md and .png", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
