"""What the study measures for one (problem, solver, step size) cell.

**Weak run** (``paths`` samples, band view). The band-view SDE of each level
(:meth:`~mrdiffusion.MultiResolutionSDE.band_sde`) is integrated by
:func:`solvers.sdeint` between monitor times with fixed-grid Gaussian
increments (:class:`CoupledNoise`). The same increments drive the coupled exact
sampler (:meth:`Problem.exact_step`), which is exact in law, so for any
statistic ``f``

    E f(Y_scheme) − E f(Y_exact law)  ≈  mean_p [f(Y_scheme) − f(Y_coupled)]

without the Monte Carlo noise of ``f`` itself (a control variate: unbiased, and
its noise shrinks with the scheme's pathwise error). Recorded per monitor time
and band: the standardised mean bias, the relative variance error (with their
standard errors), the RMS ratio ``‖Y‖ / ‖exact‖`` and, right after each
activation, the new band's std ratio (first-step amplification).

**Strong run** (``strong_paths`` samples): :meth:`sample_bands` on one
finest-grid :class:`solvers.BrownianPath` (with Lévy area, so every scheme,
SRA1 included, sees the same path), compared with the reference solver at the
reference step on the same path, standardised by the exact std.
"""

from __future__ import annotations

import math
import time
import zlib

import torch

import solvers

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


class CoupledNoise:
    """Fixed-grid increments ``√h ξ`` for the weak runs, recorded for the coupled exact sampler.

    Normals are drawn in float32 and cast to the state's dtype (on CPU five
    times cheaper than float64 normals; the statistics do not notice). With
    Lévy area requested (SRA1), ``U = h ΔW/2 + √(h³/12) ξ'`` with ``ξ'`` from a
    second stream, so every scheme sees the same ``ΔW`` sequence for a seed.
    Each query must be a new step (the driver's fixed-grid loop asks once per step).
    """

    has_levy_area = True

    def __init__(self, shape, seed, *, dtype=torch.float64, device="cpu", tape=None):
        self.shape, self.dtype, self.device = tuple(shape), dtype, torch.device(device)
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed))
        self.gen_levy = torch.Generator(device=self.device).manual_seed(int(seed) ^ 0x2545F491)
        self.tape = tape
        self.count = 0
        self.steps = []
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
        dW = z.to(self.dtype).mul_(math.sqrt(t - s))
        self.steps.append((s, t, dW))
        return dW

    __call__ = increment

    def space_time(self, s, t):
        t0 = time.perf_counter()
        h = t - s
        dW = self._increment(s, t)
        U = self._draw(self.gen_levy).to(self.dtype).mul_(math.sqrt(h**3 / 12)).add_(dW, alpha=0.5 * h)
        self.draw_s += time.perf_counter() - t0
        return dW, U

    def take(self):
        steps, self.steps = self.steps, []
        return steps


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
    ``diverged_fraction``, ``solve_s`` (seconds inside :func:`solvers.sdeint`, less the time spent
    drawing increments, which the first run at a step size pays for all),
    ``n_steps``. ``tape``: a :class:`Tape` shared by the runs at this step size and seed.
    """
    y = problem.start(paths)
    y_ex = y.clone()
    noise = CoupledNoise(y.shape, seed, dtype=problem.dtype, device=problem.device, tape=tape)
    bands = _Bands(problem)
    diverged = torch.zeros(paths, dtype=torch.bool, device=problem.device)
    full_at = set(problem.check_times) | {lev.t_start + dt for lev in problem.proc.levels}
    records, nfe, n_steps, solve_s = [], 0, 0, 0.0
    for lev, stops in zip(problem.proc.levels, monitor_times(problem, dt)):
        sde = problem.proc.band_sde(lev.index)
        a = lev.t_start
        for b in stops:
            t0 = time.perf_counter()
            out, info = solvers.sdeint(sde, y, [a, b], solver, dt=dt, brownian=noise, return_info=True,
                                       max_abs=max_abs)
            solve_s += time.perf_counter() - t0
            y_new = out[-1]
            if bool(diverged.any()):  # paths that diverged earlier stay frozen
                y_new = torch.where(diverged.view(-1, 1, 1), y, y_new)
            diverged = diverged | info.diverged.to(diverged.device)
            nfe += info.nfe
            n_steps += info.n_steps
            steps = noise.take()
            if tape is not None and b in tape.exact:
                y_ex = tape.exact[b]
            else:
                for s, t, dW in steps:
                    y_ex = problem.exact_step(y_ex, s, t, lev.index, dW)
                if tape is not None:
                    tape.exact[b] = y_ex
            y = y_new
            records.append(_measure(problem, bands, b, y, y_ex, full=any(math.isclose(b, f) for f in full_at)))
            a = b
    return records, {"nfe": nfe, "n_steps": n_steps, "solve_s": solve_s - noise.draw_s,
                     "diverged_fraction": float(diverged.float().mean())}


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


class BandPath:
    """The finest-grid Brownian path of ``seed`` in band coordinates, on a grid of step ``g``.

    ``B = pack(dwt(W_fine))`` (as :meth:`MultiResolutionSDE.band_path`), with
    the Haar transforms of ``chunk`` grid steps batched into one call (the
    per-step transform is mostly Python overhead). ``table=True`` tabulates
    ``W`` and ``I = ∫W`` at every grid point, so any step that is a multiple
    of ``g`` reads ``ΔW = W_t − W_s`` and ``U = I_t − I_s − (t − s) W_s`` from
    the table (one path for every step size of the ladder, all solvers);
    otherwise chunks are computed as a solve sweeps forward and only the
    latest are kept (the fine reference step).
    """

    has_levy_area = True

    def __init__(self, problem, paths, seed, g, *, table=False, chunk=32):
        self.fine = problem.proc.finest_path(paths, seed=seed, levy_area=True, dtype=problem.dtype,
                                             device=problem.device)
        self.pack = problem.proc.layout.pack
        self.g, self.n, self.chunk = g, round(problem.T / g), chunk
        self._chunks = {}
        self.W = self.I = None
        if table:
            y = problem.start(paths)
            W = torch.zeros((self.n + 1, *y.shape), dtype=problem.dtype, device=problem.device)
            I = torch.zeros_like(W)
            for j in range(self.n):
                dW, U = self._step(j)
                W[j + 1] = W[j] + dW
                I[j + 1] = I[j] + U + g * W[j]
            self.W, self.I, self._chunks = W, I, {}

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

    def _index(self, t):
        j = round(t / self.g)
        if abs(t / self.g - j) > 1e-9:
            raise ValueError(f"BandPath: time {t} is not on the grid of step {self.g}")
        return j

    def space_time(self, s, t):
        a, b = self._index(s), self._index(t)
        if self.W is not None:
            return self.W[b] - self.W[a], self.I[b] - self.I[a] - (t - s) * self.W[a]
        dW, U = self._step(a)
        for j in range(a + 1, b):  # several grid steps: U adds the elapsed time times the increment so far
            dWj, Uj = self._step(j)
            U = U + Uj + self.g * dW
            dW = dW + dWj
        return dW, U

    def increment(self, s, t):
        if self.W is not None:
            return self.W[self._index(t)] - self.W[self._index(s)]
        return self.space_time(s, t)[0]

    __call__ = increment


def strong_run(problem, solver, dt, paths, seed, *, band_path=None, max_abs=1e20):
    """Band states ``(len(check_times), paths, C, n)`` on the Brownian path of ``seed``, and the diverged mask.

    The level loop of :meth:`sample_bands` with the band-coordinate path
    handed to :func:`solvers.sdeint` directly (``band_path``: a tabulated
    :class:`BandPath`; default: the Haar transform of the finest-grid path per step).
    """
    proc = problem.proc
    if band_path is None:
        band_path = proc.band_path(proc.finest_path(paths, seed=seed, levy_area=True, dtype=problem.dtype,
                                                    device=problem.device))
    checks = problem.check_times
    y = problem.start(paths)
    out = torch.empty((len(checks), *y.shape), dtype=problem.dtype, device=problem.device)
    diverged = torch.zeros(paths, dtype=torch.bool, device=problem.device)
    for lev in proc.levels:
        seg = [lev.t_start] + [t for t in checks if lev.t_start < t < lev.t_end] + [lev.t_end]
        ys, info = solvers.sdeint(proc.band_sde(lev.index), y, seg, solver, dt=dt, brownian=band_path,
                                  return_info=True, max_abs=max_abs)
        if bool(diverged.any()):
            ys = torch.where(diverged.view(1, -1, 1, 1), y.unsqueeze(0), ys)
        diverged = diverged | info.diverged.to(diverged.device)
        for i, t in enumerate(seg):
            if t in checks and (t < lev.t_end or lev.index == len(proc.levels) - 1):
                out[checks.index(t)] = ys[i]
        y = ys[-1]
    return out, diverged


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
