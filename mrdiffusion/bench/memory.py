"""How much memory a bench configuration needs, estimated before anything runs.

A cell's state lives on the finest grid in band coordinates: ``n = channels ·
4^J`` numbers per path for the finest level ``J`` (2-D grids). The large
buffers are, per problem (problems run one after another):

- the weak runs' shared noise tape: ``paths · n`` float32 normals for every
  step at the smallest step size (``T / min(dt)`` steps), plus the float64
  increments the coupled exact sampler replays (the same count again, 8 bytes);
- the strong-error path tabulated on the smallest step: ``W`` and ``∫W`` in
  float64 for ``strong_paths`` paths at ``T / min(dt) + 1`` grid points;
- working states of the scheme and the exact sampler: about 16 float64 copies
  of ``paths · n``.

This is a lower bound of the peak (it leaves out torch's own allocations and
the small per-monitor-time statistics), meant to refuse a configuration that
cannot fit up front, with the estimate, instead of running out of memory.
"""

from __future__ import annotations

import os

from ._parse import ConfigError

__all__ = ["finest_size", "estimate_bytes", "available_bytes", "check_grid", "check_memory", "fmt_bytes",
           "check_bytes", "hvae_parameters", "hvae_bytes"]

_WORKING_COPIES = 16


def finest_size(spec) -> int:
    """Numbers per path on the finest grid of a problem: ``channels · 4^max(levels)``."""
    return int(spec.get("channels")) * 4 ** int(max(spec.get("levels")))


def estimate_bytes(config) -> dict:
    """Estimated peak bytes per problem name (see the module docstring)."""
    out = {}
    for spec in config.problems:
        n = finest_size(spec)
        steps = round(float(spec.get("T")) / min(config.dt))
        tape = config.paths * n * steps * (4 + 8)
        strong = 2 * config.strong_paths * n * (steps + 1) * 8
        working = _WORKING_COPIES * max(config.paths, config.strong_paths) * n * 8
        out[spec.name] = tape + strong + working
    return out


def available_bytes(device="cpu"):
    """Memory a new allocation can use now: ``MemAvailable`` on Linux, free GPU memory on CUDA; None if unknown."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except Exception:  # pragma: no cover - no CUDA here
            return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


def fmt_bytes(b) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if b < 1024 or unit == "PiB":
            return f"{b:.3g} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1024
    return f"{b:.3g} PiB"  # pragma: no cover


def check_grid(spec, available=None):
    """``ConfigError`` if one path on the finest grid of ``spec`` alone cannot fit (checked before building it)."""
    available = available_bytes() if available is None else available
    need = _WORKING_COPIES * finest_size(spec) * 8
    if available is not None and need > available:
        J = max(spec.get("levels"))
        raise ConfigError(f"problem.{spec.name}.levels: the finest level {J} is a {2**J}×{2**J} grid; one path "
                          f"alone needs about {fmt_bytes(need)}, more than the {fmt_bytes(available)} available; "
                          f"use levels up to about 10")


def check_memory(config, available=None):
    """``ConfigError`` naming the estimate if the configuration cannot fit in the memory available now."""
    available = available_bytes(config.device) if available is None else available
    per = estimate_bytes(config)
    name = max(per, key=per.get)
    if available is not None and per[name] > available:
        raise ConfigError(f"memory: problem {name!r} needs about {fmt_bytes(per[name])} (paths={config.paths}, "
                          f"strong_paths={config.strong_paths}, a {finest_size(config.problem(name))}-number finest "
                          f"grid, {round(float(config.problem(name).get('T')) / min(config.dt))} steps at the "
                          f"smallest dt), more than the {fmt_bytes(available)} available on {config.device}; lower "
                          f"paths, strong_paths, the finest level or the number of steps")
    return per


# --------------------------------------------------------------------------- the same check for other runs

def check_bytes(need, what, hint, device="cpu", available=None, error=ValueError):
    """``error`` (one line) if ``need`` bytes exceed the memory available on ``device`` now; returns ``need``.

    ``what`` names the run and its size (``"train: the model and a batch"``), ``hint`` what to lower.
    Used by ``train``, ``sample`` and :meth:`MultiResolutionSDE.sample`, as :func:`check_memory` is by ``bench``.
    """
    available = available_bytes(device) if available is None else available
    if available is not None and need > available:
        raise error(f"memory: {what} needs about {fmt_bytes(need)}, more than the {fmt_bytes(available)} "
                    f"available on {device}; {hint}")
    return need


def hvae_parameters(model_config) -> int:
    """The number of parameters of an HVAE of ``model_config``, counted without allocating them."""
    import torch

    from ..hvae.model import HVAE

    try:
        with torch.device("meta"):
            model = HVAE(model_config)
    except (NotImplementedError, RuntimeError):  # a part that cannot be built without data: count none
        return 0
    return sum(p.numel() for p in model.parameters())


def hvae_bytes(model_config, batch, *, steps=None, train=False) -> int:
    """A lower bound of the peak bytes of an HVAE training step or of sampling ``batch`` images.

    Parameters in float32: ×5 in training (weights, gradients, two AdamW moments, the EMA copy), ×1 in
    sampling. Per image: the top-down state at every step (kept for the backward pass in training; a few
    live copies in sampling) with a block's inner and latent channels, the encoder's activations
    (training), and the final categorical logits (``channels · levels`` per pixel, three copies: logits,
    log-softmax, gradient or draw).
    """
    c = model_config
    steps = c.dec_blocks if steps is None else steps
    params = hvae_parameters(c) * 4 * (5 if train else 1)
    pix = c.image_size ** 2
    per_step = 2 * c.width + 4 * c.mid_width + 3 * c.zdim
    logits = 3 * c.channels * c.levels * pix
    if train:
        state = sum(m * r * r * per_step for r, m in zip(c.resolutions, steps))
        state += sum(m * r * r * (2 * c.width + 4 * c.mid_width) for r, m in zip(c.resolutions, c.enc_blocks))
    else:
        state = 4 * per_step * pix
    return params + 4 * batch * (state + logits)
