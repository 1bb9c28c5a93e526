"""Speed cases 1-2: fixed-grid SDE sampling and reproducible Brownian paths, against torchsde.

Every contender evaluates the same Python drift and diffusion. torchsde needs
2-D states, so image-shaped states are flattened to ``(batch, -1)`` for it
only. Each timed call includes everything a user pays for one solve: building
the Brownian object (torchsde) or generator, the loop, and the output tensor.
"""

from __future__ import annotations

import math

import torch

import solvers
from solvers._compiled import Compiled

from ._timing import rows_from_times, skipped

H = 1e-3  # the step size of every fixed-grid case
SRK_MAX_NUMEL = 20_000_000  # torchsde's additive noise needs a (batch, d, d) diffusion; skip beyond this


class Diagonal(solvers.SDE):
    """``dX = -X dt + 0.5 X dW``, diagonal noise."""

    noise_type = "diagonal"

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return 0.5 * x


class Additive(solvers.SDE):
    """``dX = -X dt + σ dW`` with a constant tensor ``σ`` of the state's shape (additive noise)."""

    noise_type = "additive"

    def __init__(self, sigma):
        self.sigma = sigma

    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return self.sigma


class TorchsdeDiagonal(torch.nn.Module):
    """:class:`Diagonal` as a torchsde module."""

    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return 0.5 * y


class TorchsdeAdditive(torch.nn.Module):
    """:class:`Additive` for torchsde. ``heun`` is Stratonovich-only (the same SDE here: ``g`` does
    not depend on ``x``), and takes it as diagonal noise with a constant ``g``; ``srk`` (SRA1) needs
    ``noise_type="additive"``, whose ``g`` is ``(batch, d, m)``: ``diag(σ)`` with ``m = d``."""

    def __init__(self, sigma2d, sde_type, noise_type):
        super().__init__()
        self.sde_type, self.noise_type = sde_type, noise_type
        self.sigma = sigma2d if noise_type == "diagonal" else torch.diag_embed(sigma2d)

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return self.sigma


def hand_loop(sde, x, n, h):
    """The limit every fixed-grid driver is measured against: Euler–Maruyama written out by hand."""
    sq, t = math.sqrt(h), 0.0
    for _ in range(n):
        x = x + sde.drift(t, x) * h + sde.diffusion(t, x) * torch.randn_like(x) * sq
        t += h
    return x


def _torchsde_solve(module, y0, n, method, bm_dt, levy):
    """One torchsde solve of ``n`` steps; ``bm_dt``: None for its default Brownian motion, else
    a ``BrownianInterval`` with that step hint is built and passed in."""
    import torchsde

    ts = torch.tensor([0.0, n * H], dtype=y0.dtype, device=y0.device)
    bm = None
    if bm_dt is not None:  # t1 as rounded in ts, or torchsde warns that the last query overshoots it
        bm = torchsde.BrownianInterval(t0=0.0, t1=float(ts[-1]), size=tuple(y0.shape), dtype=y0.dtype,
                                       device=y0.device, dt=bm_dt,
                                       levy_area_approximation="space-time" if levy else "none")
    return torchsde.sdeint(module, y0, ts, bm=bm, method=method, dt=H)


def _timed_rows(case, size, make, steps, reference, timer, **kw):
    """Time ``make(steps)`` with warm-up ``make(min(steps, 10))``; ``make(n) -> {name: fn}``."""
    warm = {}
    times = timer.compare(make(steps), warmup=make(min(steps, 10)), warm_seconds=warm)
    rows = rows_from_times(case, size, times, reference, device=timer.device, **kw)
    for row in rows:
        row.extra["warmup_seconds"] = warm[row.contender]
        if "Compiled" in row.contender:
            row.note += f"; compile + warm-up {warm[row.contender]:.1f} s"
    return rows


def sde_rows(shapes, timer, use_compile):
    """Case 1: Euler–Maruyama, Heun and SRA1 against the hand loop and torchsde on a fixed grid."""
    rows, device = [], timer.device
    on_cpu = torch.device(device).type == "cpu"
    diag = Diagonal()
    em = solvers.EulerMaruyama()
    em_fast = Compiled(em) if use_compile else None
    heun, sra1 = solvers.Heun(), solvers.SRA1()
    ts_diag = TorchsdeDiagonal()
    for shape, steps in shapes:
        shape = tuple(shape)
        size = f"{shape}, {steps} steps"
        x0 = torch.ones(shape, device=device)
        flat = x0.reshape(shape[0], -1)
        small = shape in ((1, 1), (100, 10))

        def make_em(n, x0=x0, flat=flat):
            fns = {
                "solvers EulerMaruyama": lambda: solvers.sdeint(diag, x0, [0.0, n * H], em, dt=H),
                "hand-written loop": lambda: hand_loop(diag, x0, n, H),
                "torchsde euler (default BM)": lambda: _torchsde_solve(ts_diag, flat, n, "euler", None, False),
                "torchsde euler + BrownianInterval(dt)": lambda: _torchsde_solve(ts_diag, flat, n, "euler", H,
                                                                                 False),
            }
            if em_fast is not None:
                fns["solvers EulerMaruyama, Compiled (opt-in)"] = (
                    lambda: solvers.sdeint(diag, x0, [0.0, n * H], em_fast, dt=H))
            return fns

        targets = {
            "torchsde euler (default BM)": ("≥ 10×", 10.0) if small else ("≥ 1×", 1.0),
            "torchsde euler + BrownianInterval(dt)": ("≥ 1×", 1.0),
        }
        if on_cpu:
            targets["hand-written loop"] = ("≥ 0.77× (ours within 1.3×)", 1 / 1.3)
        notes = {"solvers EulerMaruyama, Compiled (opt-in)": "torch.compile of the step; same noise"}
        rows += _timed_rows("SDE Euler–Maruyama", size, make_em, steps, "solvers EulerMaruyama", timer,
                            targets=targets, notes=notes)

        sigma = torch.full(shape, 0.5, device=device)
        add = Additive(sigma)
        ts_heun = TorchsdeAdditive(sigma.reshape(flat.shape), "stratonovich", "diagonal")

        # Heun and SRA1 meet torchsde at its fastest: with a BrownianInterval given its step (its default
        # Brownian motion costs as much again; the Euler–Maruyama rows show both).
        def make_heun(n, x0=x0, flat=flat, add=add, ts_heun=ts_heun):
            return {
                "solvers Heun": lambda: solvers.sdeint(add, x0, [0.0, n * H], heun, dt=H),
                "torchsde heun + BrownianInterval(dt)": lambda: _torchsde_solve(ts_heun, flat, n, "heun", H,
                                                                                False),
            }

        one = ("≥ 1×", 1.0)
        rows += _timed_rows("SDE Heun, additive noise", size, make_heun, steps, "solvers Heun", timer,
                            targets={"torchsde heun + BrownianInterval(dt)": one},
                            notes={"torchsde heun + BrownianInterval(dt)": "Stratonovich (= Itô: additive noise)"})

        big = flat.shape[0] * flat.shape[1] ** 2 > SRK_MAX_NUMEL
        ts_srk = None if big else TorchsdeAdditive(sigma.reshape(flat.shape), "ito", "additive")

        def make_sra(n, x0=x0, flat=flat, add=add, ts_srk=ts_srk):
            fns = {"solvers SRA1": lambda: solvers.sdeint(add, x0, [0.0, n * H], sra1, dt=H)}
            if ts_srk is not None:
                fns["torchsde srk + BrownianInterval(dt)"] = lambda: _torchsde_solve(ts_srk, flat, n, "srk", H,
                                                                                     True)
            return fns

        rows += _timed_rows("SDE SRA1, additive noise", size, make_sra, steps, "solvers SRA1", timer,
                            targets={"torchsde srk + BrownianInterval(dt)": one},
                            notes={"torchsde srk + BrownianInterval(dt)": "g as (batch, d, d) diag: its additive API"})
        if big:
            b, d = flat.shape
            why = (f"not run: torchsde's additive noise needs g of shape (batch, d, d) = {(b, d, d)}, "
                   f"{b * d * d * 4 / 2**30:.1f} GiB")
            rows.append(skipped("SDE SRA1, additive noise", size, "torchsde srk", why, device))
    return rows


def brownian_rows(shapes, steps, timer):
    """Case 2: sequential increments of a reproducible path: BrownianPath vs torchsde's BrownianInterval.

    On the non-dyadic grid h = 1e-3 both get the step as a hint (``BrownianPath(dt=h)`` against
    ``BrownianInterval(dt=h)``, like for like); the unhinted path is a row of its own."""
    import torchsde

    rows, device = [], timer.device
    for shape in shapes:
        shape = tuple(shape)
        flat = (shape[0], math.prod(shape[1:]))
        for grid, h in (("dyadic h=2^-10", 2.0**-10), ("h=1e-3", 1e-3)):
            size = f"{shape}, {steps} steps, {grid}"
            hinted = h == 1e-3

            def make(n, h=h, shape=shape, flat=flat, hinted=hinted):
                times = [k * h for k in range(n + 1)]
                pairs = list(zip(times, times[1:]))

                def ours(dt=None):
                    path = solvers.BrownianPath(shape, 0.0, 1.0, seed=0, dtype=torch.float32, device=device, dt=dt)
                    for s, t in pairs:
                        path.increment(s, t)

                def interval(dt):
                    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=flat, dtype=torch.float32,
                                                   device=device, dt=dt)
                    for s, t in pairs:
                        bm(s, t)

                fns = {"solvers BrownianPath(dt=h)": lambda: ours(h)} if hinted else {}
                fns.update({"solvers BrownianPath" + (" (no hint)" if hinted else ""): ours,
                            "torchsde BrownianInterval (default)": lambda: interval(None),
                            "torchsde BrownianInterval(dt)": lambda: interval(h)})
                return fns

            one = ("≥ 1×", 1.0)
            reference = "solvers BrownianPath(dt=h)" if hinted else "solvers BrownianPath"
            rows += _timed_rows("Brownian path queries", size, make, steps, reference, timer,
                                targets={"torchsde BrownianInterval (default)": one,
                                         "torchsde BrownianInterval(dt)": one},
                                notes={reference: "counter-based, float64 inside" + (
                                           "; tree spans [0, 2^m h]" if hinted else ""),
                                       "solvers BrownianPath (no hint)": "tree spans [t0, t1]: ~18 fresh levels "
                                                                         "per non-dyadic query"})
        rows += path_em_rows(shape, steps, timer)
    return rows


def path_em_rows(shape, steps, timer):
    """Euler–Maruyama through ``solvers.sdeint`` on a reproducible path, h = 1e-3 (a non-dyadic grid):
    our BrownianPath(dt=h) against torchsde's BrownianInterval(dt=h) in the same driver, torchsde itself,
    and our path without the hint."""
    import torchsde

    device, diag, em = timer.device, Diagonal(), solvers.EulerMaruyama()
    flat = (shape[0], math.prod(shape[1:]))
    x0 = torch.ones(shape, device=device)

    def make(n):
        t1 = n * H

        def ours(dt=None):
            path = solvers.BrownianPath(shape, 0.0, t1, seed=0, dtype=torch.float32, device=device, dt=dt)
            return solvers.sdeint(diag, x0, [0.0, t1], em, dt=H, brownian=path)

        def interval():
            bm = torchsde.BrownianInterval(t0=0.0, t1=t1, size=shape, dtype=torch.float32, device=device, dt=H)
            return solvers.sdeint(diag, x0, [0.0, t1], em, dt=H, brownian=bm)

        return {"sdeint EM + solvers BrownianPath(dt=h)": lambda: ours(H),
                "sdeint EM + solvers BrownianPath (no hint)": ours,
                "sdeint EM + torchsde BrownianInterval(dt)": interval,
                "torchsde euler + BrownianInterval(dt)": lambda: _torchsde_solve(TorchsdeDiagonal(),
                                                                                 x0.reshape(flat), n, "euler", H,
                                                                                 False)}

    one = ("≥ 1×", 1.0)
    return _timed_rows("SDE Euler–Maruyama on a path, h=1e-3", f"{shape}, {steps} steps", make, steps,
                       "sdeint EM + solvers BrownianPath(dt=h)", timer,
                       targets={"sdeint EM + torchsde BrownianInterval(dt)": one,
                                "torchsde euler + BrownianInterval(dt)": one},
                       notes={"sdeint EM + solvers BrownianPath(dt=h)": "W(t) a function of (seed, dt, t, sample, "
                                                                        "element)",
                              "sdeint EM + solvers BrownianPath (no hint)": "tree spans [t0, t1]",
                              "sdeint EM + torchsde BrownianInterval(dt)": "same driver, torchsde's path"})
