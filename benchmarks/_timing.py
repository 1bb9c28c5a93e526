"""Side-by-side timing: every contender in the same process, alternating, after warm-up."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch


def sync(device) -> None:
    """Wait for queued kernels, so that a timer brackets the work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def compare(contenders: Dict[str, Callable[[], object]], *, repeats: int = 5, warmup: Optional[Dict] = None,
            device="cpu", collect: bool = True, warm_seconds: Optional[Dict] = None,
            max_inner: int = 4) -> Dict[str, List[float]]:
    """Wall-clock seconds of each contender, at least ``repeats`` times each.

    Contenders run alternately: round ``r`` runs them all, starting from
    contender ``r mod n``, so a slow spell of a shared machine is spread across
    all of them instead of landing on one. A contender that the first round
    found at least twice as cheap as the slowest one runs up to
    ``max_inner`` times per round (still interleaved with the others), so the
    cheap contenders, whose ratios carry the tight targets, get more samples
    at little cost. Before timing, each contender runs once (``warmup[name]``
    instead, if given: a cheaper call that exercises the same code, e.g. fewer
    steps), so imports, allocator growth and compilation are not timed.
    ``collect``: one full garbage collection before timing; ``warm_seconds``: a
    dict to receive each warm-up's duration.
    """
    names = list(contenders)
    for name in names:
        start = time.perf_counter()
        (warmup or {}).get(name, contenders[name])()
        sync(device)
        if warm_seconds is not None:
            warm_seconds[name] = time.perf_counter() - start
    if collect:
        gc.collect()  # a full collection costs ~0.3 s with torch loaded: once per comparison
    times = {name: [] for name in names}

    def timed(name):
        gc.collect(1)  # the young generations: garbage of the previous contender is not charged here
        sync(device)
        start = time.perf_counter()
        contenders[name]()
        sync(device)
        times[name].append(time.perf_counter() - start)

    inner = {name: 1 for name in names}
    for r in range(repeats):
        order = [names[(r + i) % len(names)] for i in range(len(names))]
        for j in range(max(inner.values())):
            for name in order:
                if j < inner[name]:
                    timed(name)
        if r == 0:
            slowest = max(times[name][0] for name in names)
            inner = {name: max(1, min(max_inner, int(slowest / (2 * times[name][0])))) for name in names}
    return times


@dataclass(frozen=True)
class Timer:
    """How a run times things: repeats, device, and whether to garbage-collect fully per comparison."""

    repeats: int = 5
    device: str = "cpu"
    collect: bool = True

    def compare(self, contenders, warmup=None, warm_seconds=None):
        return compare(contenders, repeats=self.repeats, warmup=warmup, device=self.device, collect=self.collect,
                       warm_seconds=warm_seconds)


@dataclass
class Row:
    """One contender of one comparison.

    ``value`` is a median time in seconds (``unit="s"``) or a size in bytes
    (``unit="B"``); ``ratio`` = its value / the reference's (>1: ours is faster, or smaller).
    """

    case: str
    size: str
    contender: str
    value: Optional[float]
    ratio: Optional[float] = None
    reference: bool = False
    target: Optional[str] = None
    threshold: Optional[float] = None
    passed: Optional[bool] = None
    note: str = ""
    device: str = "cpu"
    times: List[float] = field(default_factory=list)
    extra: Dict = field(default_factory=dict)
    unit: str = "s"


def rows_from_times(case: str, size: str, times: Dict[str, List[float]], reference: str, *, device="cpu",
                    targets: Optional[Dict[str, tuple]] = None, notes: Optional[Dict[str, str]] = None,
                    extra: Optional[Dict[str, dict]] = None) -> List[Row]:
    """Rows with medians and ratios to ``reference``; ``targets[name] = (text, min_ratio)``."""
    ref = statistics.median(times[reference])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        text, threshold = (targets or {}).get(name, (None, None))
        ratio = med / ref
        rows.append(Row(case, size, name, med, ratio, name == reference, text, threshold,
                        None if threshold is None else ratio >= threshold, (notes or {}).get(name, ""),
                        str(device), list(ts), dict((extra or {}).get(name, {}))))
    return rows


def skipped(case: str, size: str, contender: str, why: str, device="cpu", target: Optional[str] = None) -> Row:
    """A row for a contender that could not run here (says why; counts as neither pass nor fail)."""
    return Row(case, size, contender, None, note=why, device=str(device), target=target)
