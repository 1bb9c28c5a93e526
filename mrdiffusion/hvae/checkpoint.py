"""Atomic checkpoints of an HVAE training run, and loading them back with checks.

A checkpoint holds everything a bit-exact resume needs: model and EMA weights,
optimizer state, step, skip counts, elapsed time, RNG states, the data-order
state and the configurations. The data order and the per-step noise are pure
functions of ``(seed, step, rank)`` (see :mod:`.train`), so restoring ``step``
restores them; they are stored as well for inspection.
"""

from __future__ import annotations

import os

import torch

from .._io import atomic_save
from .model import HVAE, HVAEConfig

__all__ = ["FORMAT", "save_atomic", "load_checkpoint", "check_compatible", "model_from_checkpoint"]

FORMAT = "mrdiffusion.hvae/1"
"""The checkpoint format version, stored under ``"format"``: raise the number when a change makes older
checkpoints unreadable (a field a later version cannot default); fields added with a default (``HVAEConfig.start``,
``decay``, ``grid``) keep the number, and older checkpoints load with those defaults."""

_FAMILY = FORMAT.rsplit("/", 1)[0] + "/"

#: Training settings that change the trajectory: a resume must use the same values.
TRAJECTORY_FIELDS = ("batch_size", "lr", "warmup", "weight_decay", "beta1", "beta2", "grad_clip",
                     "skip_threshold", "ema_decay", "seed")


save_atomic = atomic_save  # kept for callers of the old name


def load_checkpoint(path, map_location="cpu"):
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint: {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"checkpoint: {path!r} could not be read ({type(err).__name__}: {err})") from err
    found = ckpt.get("format") if isinstance(ckpt, dict) else None
    if isinstance(found, str) and found.startswith(_FAMILY) and found != FORMAT:
        raise ValueError(f"checkpoint: {path!r} has format {found!r}, but this version of mrdiffusion reads "
                         f"{FORMAT!r}; load it with the mrdiffusion version that wrote it")
    if found != FORMAT:
        raise ValueError(f"checkpoint: {path!r} is not an mrdiffusion HVAE checkpoint (format {FORMAT})")
    return ckpt


def _diff(a: dict, b: dict, keys=None):
    keys = sorted(set(a) | set(b)) if keys is None else keys
    return [f"{k}: checkpoint {a.get(k)!r} vs now {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def check_compatible(ckpt, model_config: HVAEConfig, train_config=None, data_fingerprint=None):
    """``ValueError`` listing every difference between a checkpoint and the current run."""
    problems = _diff(ckpt["model_config"], model_config.to_dict())
    if train_config is not None:
        problems += _diff(ckpt["train_config"], train_config.to_dict(), TRAJECTORY_FIELDS)
    if data_fingerprint is not None and ckpt["data"]["fingerprint"] != data_fingerprint:
        problems.append(f"training data: checkpoint {ckpt['data']['name']!r} "
                        f"(fingerprint {ckpt['data']['fingerprint']}) differs from the data given now")
    if problems:
        raise ValueError("checkpoint was written by another configuration:\n  " + "\n  ".join(problems))


def model_from_checkpoint(path, *, ema=True, solver=None, device="cpu"):
    """Rebuild the model of a checkpoint (EMA weights by default); returns ``(model, ckpt)``."""
    ckpt = load_checkpoint(path, map_location=device)
    model = HVAE(HVAEConfig.from_dict(ckpt["model_config"]), solver=solver).to(device)
    model.load_state_dict(ckpt["ema" if ema else "model"])
    model.eval()
    return model, ckpt
