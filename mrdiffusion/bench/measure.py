"""What the study measures for one (problem, solver, step size) cell.

**Weak run** (``paths`` samples, band view). The band-view level schedule
(:meth:`~mrdiffusion.MultiResolutionSDE.schedule`) is run by one call of
:func:`solvers.integrate` with fixed-grid Gaussian increments
(:class:`CoupledNoise`), saving a measurement at every monitor time
(``save=``). A step callback hands each increment the scheme used to the
coupled exact sampler (:meth:`Problem.exact_step`), which is exact in law, so
for any statistic ``f``

    E f(Y_scheme) − E f(Y_exact law)  ≈  mean_p [f(Y_scheme) − f(Y_coupled)]

without the Monte Carlo noise of ``f`` itself (a control variate: unbiased, and
its noise shrinks with the scheme's pathwise error). Recorded per monitor time
and band: the standardised mean bias, the relative variance error (with their
standard errors), the RMS ratio ``‖Y‖ / ‖exact‖`` and, right after each
activation, the new band's std ratio (first-step amplification).

**Strong run** (``strong_paths`` samples): the same schedule on one
finest-grid :class:`solvers.BrownianPath` in band coordinates (with Lévy area,
so every scheme, SRA1 included, sees the same path), compared with the
reference solver at the reference step on the same path, standardised by the
exact std.
"""

from __future__ import annotations

import math
import time
import zlib

import torch

import solvers
from solvers._brownian import grid_area

__all__ = ["Tape", "CoupledNoise", "BandPath", "cell_seed", "monitor_times", "weak_run", "strong_run",
           "strong_distance",
           "summarize_weak"]


def cell_seed(*parts) -> int:
    """A stable 31-bit seed from any parts (independent of Python's hash randomisation and of sharding)."""
    return zlib.crc32("/".join(map(repr, parts)).encode()) & 0x7FFFFFFF


class Tape:
    """The randomness and exact-sampler states that every solver's weak run at one step size shares.

    All schemes at a given (problem, step size) see the same ``ΔW`` sequence
    (common random numbers). The first run records the float32 normals and the
    coupled exact sampler's states at the monitor times; later runs read them
    instead of drawing and replaying again. Results are identical with or
    without a tape.
    """

    def __init__(self, key):
        self.key = key
        self.normals = []
        self.exact = {}


class CoupledNoise(solvers.BrownianSource):
    """Fixed-grid increments ``√h ξ`` for the weak runs, shared by every scheme at one step size (a :class:`Tape`).

    Normals are drawn in float32 and cast to the state's dtype (on CPU five
    times cheaper than float64 normals; the statistics do not notice). With
    Lévy area requested (SRA1), ``U = h ΔW/2 + √(h³/12) ξ'``
    (:func:`solvers._brownian.grid_area`) with ``ξ'`` from a second stream, so
    every scheme sees the same ``ΔW`` sequence for a seed. Each query must be a
    new step (the driver's fixed-grid loop asks once per step).
    """

    has_levy_area = True

    def __init__(self, shape, seed, *, dtype=torch.float64, device="cpu", tape=None):
        self.shape, self.dtype, self.device = tuple(shape), dtype, torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed))
        self.gen_levy = torch.Generator(device=self.device).manual_seed(int(seed) ^ 0x2545F491)
        self.tape = tape
        self.count = 0
        self.draw_s = 0.0  # seconds spent producing increments (excluded from the solver's wall time)

    def _draw(self, gen):
        return torch.randn(self.shape, generator=gen, dtype=torch.float32, device=self.device)

    def increment(self, s, t):
        t0 = time.perf_counter()
        dW = self._increment(s, t)
        self.draw_s += time.perf_counter() - t0
        return dW

    def _increment(self, s, t):
        tape = self.tape
        if tape is not None and self.count < len(tape.normals):
            z = tape.normals[self.count]
        else:
            z = self._draw(self.gen)
            if tape is not None:
                tape.normals.append(z)
        self.count += 1
        return z.to(self.dtype).mul_(math.sqrt(t - s))

    __call__ = increment

    def space_time(self, s, t):
        t0 = time.perf_counter()
        dW = self._increment(s, t)
        U = grid_area(dW, self._draw(self.gen_levy).to(self.dtype), t - s)
        self.draw_s += time.perf_counter() - t0
        return dW, U


def _grid(a, b, dt):
    n = round((b - a) / dt)
    return [a + (b - a) * j / n for j in range(n + 1)]


def monitor_times(problem, dt, *, every=1 / 32, first=3):
    """Per level, the times (after its start) at which the weak run stops to measure.

    Every step when the whole run has at most 64 steps; otherwise the multiples
    of ``every·T`` on the grid, the first ``first`` steps after each activation,
    and the level's end. Returns a list of lists (one per level).
    """
    levels = problem.proc.levels
    total = sum(round((lev.t_end - lev.t_start) / dt) for lev in levels)
    out = []
    for lev in levels:
        grid = _grid(lev.t_start, lev.t_end, dt)[1:]
        if total > 64:
            step = every * problem.T
            keep = [t for j, t in enumerate(grid, start=1)
                    if j <= first or t == lev.t_end or abs(t / step - round(t / step)) < 1e-9]
            grid = keep
        out.append(grid)
    return out


class _Bands:
    """Per-band sums of per-coefficient tensors ``(C, n)`` (channels pooled)."""

    def __init__(self, problem):
        self.onehot = torch.nn.functional.one_hot(problem.band, problem.K).to(problem.dtype)  # (n, K)
        self.K = problem.K

    def sum(self, x):
        return x.sum(0) @ self.onehot

    def per_path(self, x):  # (P, C, n) -> (P, K)
        return x.sum(1) @ self.onehot


def _ratio(num, den):
    """``sqrt(num/den)`` per band; None where the band has no exact variance yet (a point mass)."""
    return [math.sqrt(max(float(a), 0.0) / float(b)) if float(b) > 0 else None for a, b in zip(num, den)]


def _measure(problem, bands, t, y, y_ex, full):
    m, v = problem.moments(t)
    exact_sq = m * m + v
    sq_s, sq_ex = y.square().mean(0), y_ex.square().mean(0)
    rec = {"t": t, "rms_ratio": _ratio(bands.sum(sq_s - sq_ex + exact_sq), bands.sum(exact_sq))}
    if not full:
        return rec
    P = y.shape[0]
    valid = v > 0
    inv_v = torch.where(valid, 1.0 / torch.where(valid, v, torch.ones_like(v)), torch.zeros_like(v))
    count = bands.sum(valid.to(v.dtype))
    D = y - y_ex
    mean_D = D.mean(0)
    ys_c, ye_c = y - y.mean(0), y_ex - y_ex.mean(0)
    q = bands.per_path((ys_c.square() - ye_c.square()) * inv_v)  # (P, K): per-path variance-error terms
    var_s_minus_ex = (ys_c.square().sum(0) - ye_c.square().sum(0)) / (P - 1)

    def per_band(x, fn):
        return [fn(float(a), float(c)) if float(c) > 0 else None for a, c in zip(x, count)]

    rec["mean_err"] = per_band(bands.sum(mean_D.square() * inv_v), lambda a, c: math.sqrt(a / c))
    rec["mean_floor"] = per_band(bands.sum(D.var(0) / P * inv_v), lambda a, c: math.sqrt(a / c))
    rec["var_err"] = per_band(bands.sum(var_s_minus_ex * inv_v), lambda a, c: a / c)
    q_se = q.std(0) / math.sqrt(P)
    rec["var_floor"] = [float(s) / float(c) if float(c) > 0 else None for s, c in zip(q_se, count)]
    rec["std_ratio"] = _ratio(bands.sum((var_s_minus_ex + v) * valid), bands.sum(v * valid))
    return rec


def weak_run(problem, solver, dt, paths, seed, *, max_abs, tape=None):
    """Integrate ``paths`` samples and measure at every monitor time; see the module docstring.

    Returns ``(records, info)``: one dict per monitor time, and ``nfe``,
    ``diverged_fraction``, ``solve_s`` (seconds inside :func:`solvers.integrate`, less the time spent
    drawing increments, which the first run at a step size pays for all, and measuring),
    ``n_steps``. ``tape``: a :class:`Tape` shared by the runs at this step size and seed.
    """
    y0 = problem.start(paths)
    noise = CoupledNoise(y0.shape, seed, dtype=problem.dtype, device=problem.device, tape=tape)
    bands = _Bands(problem)
    full_at = set(problem.check_times) | {lev.t_start + dt for lev in problem.proc.levels}
    ts = [0.0] + [t for stops in monitor_times(problem, dt) for t in stops]
    exact = tape.exact if tape is not None else {}
    replay = all(t in exact for t in ts[1:])  # the exact states are on the tape already
    y_ex = [y0.clone()]
    own_s = [0.0]  # seconds spent in the exact sampler and the measurements

    def advance(step):  # the coupled exact sampler, driven by the increment the scheme used
        t0 = time.perf_counter()
        dW = step.dW[0] if isinstance(step.dW, tuple) else step.dW
        y_ex[0] = problem.exact_step(y_ex[0], step.t, step.t_next, step.stage, dW)
        own_s[0] += time.perf_counter() - t0

    def measure(t, y):
        if t == 0.0:
            return None
        t0 = time.perf_counter()
        ex = exact.setdefault(t, y_ex[0])
        rec = _measure(problem, bands, t, y, ex, full=any(math.isclose(t, f) for f in full_at))
        own_s[0] += time.perf_counter() - t0
        return rec

    t0 = time.perf_counter()
    sol = solvers.integrate(problem.proc.schedule("bands", band_brownian=noise), y0, ts, solver, dt=dt,
                            save=measure, callback=None if replay else advance, max_abs=max_abs)
    solve_s = time.perf_counter() - t0 - own_s[0] - noise.draw_s
    return sol.ys[1:], {"nfe": sol.info.nfe, "n_steps": sol.info.n_steps, "solve_s": solve_s,
                        "diverged_fraction": sol.info.diverged_fraction}


def _max(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if any(v is not None and not math.isfinite(v) for v in values):
        return math.inf
    return max(vals) if vals else None


def summarize_weak(problem, dt, records):
    """Scalar summaries of a weak run: errors at the check times, instability ratio, first-step amplification."""
    checks = [r for r in records if "mean_err" in r and any(math.isclose(r["t"], c) for c in problem.check_times)]
    mean_err = _max([e for r in checks for e in r["mean_err"]])
    var_err = _max([abs(e) if e is not None else None for r in checks for e in r["var_err"]])
    floor = _max([f for r in checks for f in r["mean_floor"] + r["var_floor"]])
    weak = _max([mean_err, var_err])
    amps = []
    for lev in problem.proc.levels:
        rec = next((r for r in records if math.isclose(r["t"], lev.t_start + dt) and "std_ratio" in r), None)
        amps.append(None if rec is None else rec["std_ratio"][lev.index])
    curve_t = [r["t"] for r in records]
    curve = [_max(r["rms_ratio"]) for r in records]
    return {
        "weak_error": weak, "weak_mean_error": mean_err, "weak_var_error": var_err, "weak_floor": floor,
        "instability_ratio": _max(curve),
        "first_step_amplification": _max(amps), "first_step_amplification_per_band": amps,
        "ratio_curve": {"t": curve_t, "ratio": curve},
        "weak_detail": [{"t": r["t"], "mean_err": r["mean_err"], "var_err": r["var_err"]} for r in checks],
    }


class BandPath(solvers.BrownianSource):
    """The finest-grid Brownian path of ``seed`` in band coordinates, one grid step ``g`` at a time.

    ``B = pack(dwt(W_fine))`` (as :meth:`MultiResolutionSDE.band_path`), with
    the Haar transforms of ``chunk`` grid steps batched into one call (the
    per-step transform is mostly Python overhead); only the latest chunks are
    kept, so a solve must sweep forward one grid step at a time. :meth:`table`
    records one sweep as a :class:`solvers.TabulatedPath`, which answers any
    step that is a multiple of ``g`` (one path for every step size of the
    ladder, all solvers).
    """

    has_levy_area = True

    def __init__(self, problem, paths, seed, g, *, chunk=32):
        self.fine = problem.proc.finest_path(paths, seed=seed, levy_area=True, dtype=problem.dtype,
                                             device=problem.device)
        self.pack = problem.proc.layout.pack
        self.g, self.n, self.chunk = g, round(problem.T / g), chunk
        self.shape = (paths, problem.channels, problem.n)
        self.t0, self.t1 = 0.0, problem.T
        self._chunks = {}

    def _step(self, j):
        """``(ΔW, U)`` of grid step ``j`` in band coordinates."""
        c = j // self.chunk
        if c not in self._chunks:
            if len(self._chunks) >= 2:
                self._chunks.pop(min(self._chunks))
            steps = range(c * self.chunk, min((c + 1) * self.chunk, self.n))
            pairs = [self.fine.space_time(i * self.g, (i + 1) * self.g) for i in steps]
            m = len(pairs)
            packed = self.pack(torch.cat([torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])]))
            self._chunks[c] = (packed[:m], packed[m:])
        dW, U = self._chunks[c]
        return dW[j - c * self.chunk], U[j - c * self.chunk]

    def space_time(self, s, t):
        j = round(s / self.g)
        if abs(s / self.g - j) > 1e-9 or abs(t / self.g - (j + 1)) > 1e-9:
            raise ValueError(f"BandPath: [{s}, {t}] is not one step of the grid of step {self.g}")
        return self._step(j)

    def increment(self, s, t):
        return self.space_time(s, t)[0]

    __call__ = increment

    def table(self):
        """One sweep of the grid recorded as a :class:`solvers.TabulatedPath` (``W`` and ``∫W`` at every grid time)."""
        rec = solvers.RecordedNoise(self)
        for j in range(self.n):  # a sweep of the noise source, not of a state
            rec.space_time(j * self.g, (j + 1) * self.g)
        return rec.path()


def strong_run(problem, solver, dt, paths, seed, *, band_path=None, max_abs=1e20):
    """Band states ``(len(check_times), paths, C, n)`` on the Brownian path of ``seed``, and the diverged mask.

    The band-view schedule run by :func:`solvers.integrate` with the
    band-coordinate path ``band_path`` (a :class:`BandPath` or its table;
    default: the Haar transform of the finest-grid path per step).
    """
    proc = problem.proc
    if band_path is None:
        band_path = proc.band_path(proc.finest_path(paths, seed=seed, levy_area=True, dtype=problem.dtype,
                                                    device=problem.device))
    sol = solvers.integrate(proc.schedule("bands", band_brownian=band_path), problem.start(paths),
                            [0.0] + problem.check_times, solver, dt=dt, max_abs=max_abs)
    return sol.ys[1:], sol.info.diverged


def strong_distance(problem, ys, ref):
    """Max over check times and bands of the RMS difference, standardised by the exact std per coefficient."""
    bands = _Bands(problem)
    worst, per_time = 0.0, []
    for j, t in enumerate(problem.check_times):
        v = problem.moments(t)[1]
        valid = v > 0
        inv_v = torch.where(valid, 1.0 / torch.where(valid, v, torch.ones_like(v)), torch.zeros_like(v))
        num = bands.sum(((ys[j] - ref[j]).square() * inv_v).mean(0))
        count = bands.sum(valid.to(v.dtype))
        errs = [math.sqrt(float(a) / float(c)) if float(c) > 0 else None for a, c in zip(num, count)]
        per_time.append(_max(errs))
        worst = _max([worst, per_time[-1]])
    return worst, per_time
