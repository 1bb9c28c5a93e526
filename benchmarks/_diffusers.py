"""Hugging Face diffusers' multistep schedulers as peers of the few-step benchmark, each fed its exact model.

Optional: ``pip install diffusers==0.42.1`` (schedulers need no download). :func:`load` returns the
module or ``None`` with the reason. Every scheduler gets the exact model *of the process it assumes*:

- VP schedulers (``DPMSolverMultistep``, ``UniPCMultistep``, ``DEISMultistep``, DDPM's linear β): at step
  ``i`` the scheduler's own ``σ̂_i = σ_i/α_i`` (``scheduler.sigmas[i]``), ``α = (1 + σ̂²)^{-1/2}``, and the
  ε-model ``ε = (x - αD)/σ = (x/α - D(x/α, σ̂))/σ̂``; the start is ``x_T = α_0 (x_0 + σ̂_0 ε)``, the end
  ``x/α`` of the last σ̂ (1 when it is 0).
- ``EDMDPMSolverMultistep`` (EDM's VE, ``σ_max = 80``, ``σ_data = 0.5``): the raw output ``F`` it
  un-preconditions, ``D = c_skip x + c_out F`` with its own ``c_skip``, ``c_out``
  (``precondition_outputs``), so ``F = (D - c_skip x)/c_out``; the model sees ``x``, not ``c_in x``.

Their ``sigmas`` are float32; they are cast to float64 after ``set_timesteps`` (the iterates then match
ours to ~1e-10 where the algorithms agree, ``tests/test_sampling_unipc.py``; in float32 the λ round-off
alone is ~1e-5). diffusers 0.42's UniPC with ``solver_type="bh1"`` and ``final_sigmas_type="zero"``
returns NaN (``B(h) = -h = -∞`` times a zero correction on the last step), so bh1 stops at its
``sigma_min`` instead.
"""

from __future__ import annotations

import math
import warnings

import torch

__all__ = ["load", "PEERS", "VERSION", "run_peer"]

VERSION = "0.42.1"

# name -> (scheduler class, kwargs, process)
PEERS = {
    "DPMSolverMultistep 2M": ("DPMSolverMultistepScheduler", {"solver_order": 2}, "vp"),
    "DPMSolverMultistep 3M": ("DPMSolverMultistepScheduler", {"solver_order": 3}, "vp"),
    "DPMSolverMultistep 2M karras": ("DPMSolverMultistepScheduler", {"solver_order": 2, "use_karras_sigmas": True},
                                     "vp"),
    "DPMSolverMultistep 3M karras": ("DPMSolverMultistepScheduler", {"solver_order": 3, "use_karras_sigmas": True},
                                     "vp"),
    "UniPCMultistep bh1 o3 (sigma_min end)": ("UniPCMultistepScheduler",
                                              {"solver_order": 3, "solver_type": "bh1",
                                               "final_sigmas_type": "sigma_min"}, "vp"),
    "UniPCMultistep bh2 o3": ("UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh2"}, "vp"),
    "UniPCMultistep bh1 o2 (sigma_min end)": ("UniPCMultistepScheduler",
                                              {"solver_order": 2, "solver_type": "bh1",
                                               "final_sigmas_type": "sigma_min"}, "vp"),
    "UniPCMultistep bh2 o2": ("UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh2"}, "vp"),
    "UniPCMultistep bh2 o3 karras": ("UniPCMultistepScheduler",
                                     {"solver_order": 3, "solver_type": "bh2", "use_karras_sigmas": True}, "vp"),
    "DEISMultistep 3": ("DEISMultistepScheduler", {"solver_order": 3}, "vp"),
    "DEISMultistep 2": ("DEISMultistepScheduler", {"solver_order": 2}, "vp"),
    "EDMDPMSolverMultistep 2M": ("EDMDPMSolverMultistepScheduler", {"solver_order": 2}, "edm"),
    "EDMDPMSolverMultistep 3M": ("EDMDPMSolverMultistepScheduler", {"solver_order": 3}, "edm"),
    "EDMDPMSolverMultistep 2M exponential": ("EDMDPMSolverMultistepScheduler",
                                             {"solver_order": 2, "sigma_schedule": "exponential"}, "edm"),
}


def load():
    """``(diffusers, None)`` or ``(None, reason)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import diffusers
    except ImportError as err:
        return None, f"diffusers is not installed (pip install diffusers=={VERSION}): {err}"
    return diffusers, None


def run_peer(diffusers, name, D, x0, eps, nfe):
    """Run peer ``name`` for ``nfe`` model evaluations from ``x_0 + σ̂_0 ε``: ``(y, nfe used, σ̂_0)``."""
    cls, kwargs, process = PEERS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = getattr(diffusers, cls)(**kwargs)
        sched.set_timesteps(nfe)
    sched.sigmas = sig = sched.sigmas.to(torch.float64)
    s0 = float(sig[0])
    calls = 0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if process == "vp":
            x = (x0 + s0 * eps) / math.sqrt(1 + s0 * s0)
            for i, t in enumerate(sched.timesteps):
                s = float(sig[i])
                a = 1 / math.sqrt(1 + s * s)
                e = (x / a - D(x / a, s)) / s
                calls += 1
                x = sched.step(e, t, x).prev_sample
            y = x * math.sqrt(1 + float(sig[len(sched.timesteps)]) ** 2)
        else:
            x = x0 + s0 * eps
            for i, t in enumerate(sched.timesteps):
                s = torch.tensor(float(sig[i]), dtype=torch.float64)
                skip = sched.precondition_outputs(x, torch.zeros_like(x), s)  # c_skip x
                out = sched.precondition_outputs(torch.zeros_like(x), torch.ones_like(x), s)  # c_out
                F = (D(x, float(s)) - skip) / out
                calls += 1
                x = sched.step(F, t, x).prev_sample
            y = x
    return y, calls, s0
