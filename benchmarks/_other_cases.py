"""Speed cases 3-7: ODEs against torchdiffeq, Haar transforms against PyWavelets and ptwt,
multi-resolution sampling against a single resolution, peak memory of a saved trajectory, and the
solver-step HVAE against a plain VDVAE-style top-down loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

import solvers
from mrdiffusion import haar
from mrdiffusion.multires import MultiResolutionSDE

from ._memory import CONTENDERS as MEMORY_CONTENDERS
from ._memory import GRAD_CONTENDERS
from ._memory import measure
from ._sde_cases import Additive
from ._timing import Row, rows_from_times, skipped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CountedField:
    """A torchdiffeq-style vector field ``func(t, y)``: a small MLP, counting its evaluations."""

    def __init__(self, net):
        self.net, self.calls = net, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.net(y)


def ode_rows(batch, dim, steps, timer):
    """Case 3: RK4 and the dopri5 bridge against torchdiffeq on an MLP vector field (no grad)."""
    import torchdiffeq

    device = timer.device
    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(dim, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, dim)).to(device)
    x0 = torch.randn(batch, dim, generator=gen).to(device)
    h, rtol, atol = 1.0 / steps, 1e-6, 1e-8
    t01 = torch.tensor([0.0, 1.0], device=device)
    f = {name: CountedField(net) for name in ("ours rk4", "td rk4", "ours dopri5", "td dopri5")}
    fixed = {
        "solvers RK4 (sdeint)": lambda: solvers.sdeint(f["ours rk4"], x0, [0.0, 1.0], solvers.RK4(), dt=h),
        "torchdiffeq rk4": lambda: torchdiffeq.odeint(f["td rk4"], x0, t01, method="rk4",
                                                      options={"step_size": h}),
    }
    adaptive = {
        "solvers.odeint_torchdiffeq dopri5": lambda: solvers.odeint_torchdiffeq(
            f["ours dopri5"], x0, [0.0, 1.0], method="dopri5", rtol=rtol, atol=atol),
        "torchdiffeq dopri5": lambda: torchdiffeq.odeint(f["td dopri5"], x0, t01, method="dopri5", rtol=rtol,
                                                         atol=atol),
    }
    keys = dict(zip(list(fixed) + list(adaptive), f))
    rows = []
    with torch.no_grad():
        for case, fns, ref, size in (
                ("ODE fixed step", fixed, "solvers RK4 (sdeint)",
                 f"MLP {dim}-64-64-{dim}, batch {batch}, {steps} steps"),
                ("ODE dopri5", adaptive, "solvers.odeint_torchdiffeq dopri5",
                 f"MLP {dim}-64-64-{dim}, batch {batch}, rtol {rtol:g}, atol {atol:g}")):
            times = timer.compare(fns)
            extra = {}
            for name, fn in fns.items():  # one more, counted, run for the evaluation count
                f[keys[name]].calls = 0
                fn()
                extra[name] = {"nfe": f[keys[name]].calls}
            notes = {name: f"{e['nfe']} evaluations" for name, e in extra.items()}
            targets = {"torchdiffeq rk4": ("≥ 1×", 1.0)} if case == "ODE fixed step" else {}
            if case == "ODE fixed step":
                notes["torchdiffeq rk4"] += " (its 3/8-rule rk4)"
            rows += rows_from_times(case, size, times, ref, device=device, targets=targets, notes=notes,
                                    extra=extra)
    return rows


def _optional(module):
    """``module`` imported, or ``None`` when it is not installed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        return None


def haar_rows(batch, size, timer):
    """Case 4: 5-level 2-D Haar dwt/idwt against PyWavelets and ptwt; project against avg_pool2d."""
    levels, device = 5, timer.device
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    on_cpu = torch.device(device).type == "cpu"
    xn = x.cpu().numpy()
    label = f"({batch}, 3, {size}, {size}), {levels} levels"
    ours_c = haar.dwt(x, levels)
    dwt = {"mrdiffusion haar.dwt": lambda: haar.dwt(x, levels)}
    idwt = {"mrdiffusion haar.idwt": lambda: haar.idwt(*ours_c)}
    ptwt, pywt = _optional("ptwt"), _optional("pywt")
    missing = {}  # contender -> why it has no timing here
    if ptwt is not None:
        pt_c = ptwt.wavedec2(x, "haar", level=levels)
        dwt["ptwt wavedec2"] = lambda: ptwt.wavedec2(x, "haar", level=levels)
        idwt["ptwt waverec2"] = lambda: ptwt.waverec2(pt_c, "haar")
    else:
        missing["ptwt"] = "ptwt is not installed (pip install ptwt)"
    if not on_cpu:
        missing["PyWavelets"] = "CPU only (numpy)"
    elif pywt is None:
        missing["PyWavelets"] = "PyWavelets is not installed (pip install PyWavelets)"
    else:
        pw_c = pywt.wavedec2(xn, "haar", level=levels, axes=(-2, -1))
        dwt["PyWavelets wavedec2"] = lambda: pywt.wavedec2(xn, "haar", level=levels, axes=(-2, -1))
        idwt["PyWavelets waverec2"] = lambda: pywt.waverec2(pw_c, "haar", axes=(-2, -1))
    one = ("≥ 1×", 1.0)
    rows = []
    for case, fns, ref in (("Haar dwt", dwt, "mrdiffusion haar.dwt"), ("Haar idwt", idwt, "mrdiffusion haar.idwt")):
        times = timer.compare(fns)
        rows += rows_from_times(case, label, times, ref, device=device,
                                targets={k: one for k in fns if k != ref},
                                notes={k: "numpy array in, numpy out" for k in fns if k.startswith("PyWavelets")})
        rows += [skipped(case, label, name, why, device, "≥ 1×") for name, why in missing.items()]
    for lv in (1, levels):
        k = 2**lv
        fns = {f"mrdiffusion haar.project(levels={lv})": lambda lv=lv: haar.project(x, lv),
               f"torch avg_pool2d(kernel={k})": lambda k=k: torch.nn.functional.avg_pool2d(x, k)}
        times = timer.compare(fns)
        rows += rows_from_times("Haar project", f"({batch}, 3, {size}, {size})", times,
                                f"mrdiffusion haar.project(levels={lv})", device=device)
    return rows


def multires_rows(batch, steps_per_level, timer):
    """Case 5: a 1x1 -> 32x32 multi-resolution OU process vs the same steps at 32x32 only."""
    n_levels, channels, T, device = 6, 3, 1.0, timer.device
    times_k = [k * T / n_levels for k in range(n_levels)]
    dt = T / (n_levels * steps_per_level)
    save = times_k + [T]
    em = solvers.EulerMaruyama()
    shapes = [(batch, channels, 2**j, 2**j) for j in range(n_levels)]
    sdes = [Additive(torch.ones(s, device=device)) for s in shapes]
    mr = MultiResolutionSDE(list(range(n_levels)), times_k, T, sdes=sdes, channels=channels)

    def multi():
        return mr.sample(em, batch, dt=dt, ts=save, dtype=torch.float32, device=device)
    how = "MultiResolutionSDE.sample"

    x_fine = torch.zeros(shapes[-1], device=device)
    fns = {f"multi-resolution 1x1→32x32 ({how})": multi,
           "single resolution 32x32 (sdeint)": lambda: solvers.sdeint(sdes[-1], x_fine, save, em, dt=dt)}
    ref = next(iter(fns))
    times = timer.compare(fns)
    size = f"batch {batch}, 3 channels, {n_levels} levels × {steps_per_level} steps"
    return rows_from_times("Multi-resolution sampling", size, times, ref, device=device,
                           notes={ref: "Euler–Maruyama, OU, equal time per level"})


def _measure_all(names, shape, n, device, fresh_process, env=None):
    """``{name: measure(name, shape, n, device)}``, each in a fresh process unless ``fresh_process=False``."""
    results = {}
    env = dict(os.environ, **(env or {}),
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    for name in names:
        if not fresh_process:
            results[name] = measure(name, tuple(shape), n, device)
            results[name]["method"] += " (in-process)"
            continue
        proc = subprocess.run([sys.executable, "-m", "benchmarks._memory", name, json.dumps(list(shape)),
                               str(n), str(device)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker for {name!r} failed:\n{proc.stderr[-2000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def grad_memory_rows(shape, steps, device, fresh_process=True):
    """Case 6b: peak memory of one gradient through ``steps`` Euler–Maruyama steps, plain backprop against
    ``checkpoint=True`` (√steps segments, each recomputed in the backward pass).

    The workers run with ``MALLOC_MMAP_THRESHOLD_=4096``: every tensor of a page or more is its own
    mapping, returned to the system when freed, so the peak resident set follows the live tensors.
    Without it, glibc keeps the heap that a long run of short-lived tensors fragmented (interleaved
    with the autograd graph's small allocations), and the peak RSS grows with the steps for both.
    """
    names = GRAD_CONTENDERS
    results = _measure_all(names, shape, steps, device, fresh_process, env={"MALLOC_MMAP_THRESHOLD_": "4096"})
    ours = results[names[1]]["peak_growth_bytes"]
    size = f"{tuple(shape)}, {steps} steps, gradient w.r.t. x0"
    return [Row("Peak memory, gradient through a solve", size, name, res["peak_growth_bytes"],
                res["peak_growth_bytes"] / ours if ours else None, name == names[1],
                note=f"{res['method']}, MALLOC_MMAP_THRESHOLD_=4096; {res['seconds']:.2f} s forward + backward, "
                     f"one fresh process",
                device=str(device), extra=res, unit="B") for name, res in results.items()]


def memory_rows(shape, saves, device, fresh_process=True):
    """Case 6: peak memory of a solve that saves ``saves`` states, each contender in a fresh process
    (``fresh_process=False``: in this one, a smoke test of the code only)."""
    numel = 1
    for n in shape:
        numel *= n
    size = f"{tuple(shape)}, {saves} saved states"
    minimum = saves * numel * 4
    results = _measure_all(MEMORY_CONTENDERS, shape, saves, device, fresh_process)
    ours = results[MEMORY_CONTENDERS[0]]["peak_growth_bytes"]
    rows = []
    for name, res in results.items():
        rows.append(Row("Peak memory, saved trajectory", size, name, res["peak_growth_bytes"],
                        res["peak_growth_bytes"] / ours if ours else None, name == MEMORY_CONTENDERS[0],
                        note=f"{res['method']}; output {res['output_bytes'] / 2**20:.1f} MiB, "
                             f"{res['seconds']:.2f} s, one fresh process",
                        device=str(device), extra=res, unit="B"))
    rows.append(Row("Peak memory, saved trajectory", size, "minimum: the saved states themselves", minimum,
                    minimum / ours if ours else None, note=f"{saves} × numel × 4 bytes", device=str(device),
                    unit="B"))
    return rows


def hvae_rows(batch, timer):
    """Case 7: one training step of the solver-step HVAE (its top-down pass run by solvers.integrate) against a
    plain VDVAE-style loop over the same modules, same weights, data and noise (benchmarks.hvae_speed)."""
    from .hvae_speed import contenders

    fns, difference, model = contenders(batch=batch)
    names = {"ours": "solver-step HVAE (TwoStepEuler through solvers.integrate)",
             "plain": "plain VDVAE-style top-down loop"}
    times = timer.compare({names[k]: fn for k, fn in fns.items()})
    size = f"default model ({model.num_parameters():,} parameters), batch {batch}, forward + backward"
    return rows_from_times("HVAE training step", size, times, names["ours"], device=timer.device,
                           targets={names["plain"]: ("≥ 0.91× (ours within 1.1×)", 1 / 1.1)},
                           notes={names["ours"]: f"losses agree to {difference:.1e}"})
