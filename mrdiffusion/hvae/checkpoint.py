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

__all__ = ["FORMAT", "SCHEMA", "save_atomic", "load_checkpoint", "check_compatible", "check_weights",
           "model_from_checkpoint"]

FORMAT = "mrdiffusion.hvae/1"
"""The checkpoint format version, stored under ``"format"``: raise the number when a change makes older
checkpoints unreadable (a field a later version cannot default); fields added with a default (``HVAEConfig.start``,
``decay``, ``grid``) keep the number, and older checkpoints load with those defaults."""

_FAMILY = FORMAT.rsplit("/", 1)[0] + "/"

#: Training settings that change the trajectory: a resume must use the same values.
TRAJECTORY_FIELDS = ("batch_size", "lr", "warmup", "weight_decay", "beta1", "beta2", "grad_clip",
                     "skip_threshold", "ema_decay", "seed")


save_atomic = atomic_save  # kept for callers of the old name


#: What every checkpoint holds (``mrdiffusion train`` writes all of it): key -> expected type(s).
SCHEMA = {"format": str, "model_config": dict, "train_config": dict, "data": dict, "step": int, "skipped": int,
          "skipped_nonfinite": int, "elapsed": (int, float), "cpu_seconds": (int, float), "model": dict,
          "ema": dict, "optimizer": dict, "torch_rng": torch.Tensor}
DATA_SCHEMA = {"name": str, "fingerprint": str, "levels": int}


def _type_name(t):
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def validate(ckpt, path):
    """``ValueError`` naming ``path`` and the first missing or mistyped entry of :data:`SCHEMA`."""
    for key, typ in SCHEMA.items():
        if key not in ckpt:
            raise ValueError(f"checkpoint: {path} has no {key!r} entry; expected a complete checkpoint written by "
                             f"mrdiffusion train (entries {', '.join(SCHEMA)})")
        if not isinstance(ckpt[key], typ) or isinstance(ckpt[key], bool):
            raise ValueError(f"checkpoint: {path}: entry {key!r} is a {type(ckpt[key]).__name__}, expected "
                             f"{_type_name(typ)}")
    for key, typ in DATA_SCHEMA.items():
        if not isinstance(ckpt["data"].get(key), typ):
            raise ValueError(f"checkpoint: {path}: entry data.{key} is missing or not a {_type_name(typ)}")
    for part in ("model", "ema"):
        bad = [k for k, v in ckpt[part].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise ValueError(f"checkpoint: {path}: entry {part!r} holds {bad[0]!r}, which is not a named tensor")


def load_checkpoint(path, map_location="cpu"):
    """Read and validate a checkpoint (``ValueError`` naming the file and what is wrong with it).

    Read with ``weights_only=True``: a file holding anything but tensors and
    plain containers is refused, never unpickled.
    """
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint: {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file
        # not torch's own message: it suggests weights_only=False, which would run code from the file
        raise ValueError(f"checkpoint: {path!r} could not be read ({type(err).__name__}): not a file written by "
                         f"mrdiffusion train, truncated, or holding objects other than tensors and plain "
                         f"containers (such files are not loaded)") from None
    found = ckpt.get("format") if isinstance(ckpt, dict) else None
    if isinstance(found, str) and found.startswith(_FAMILY) and found != FORMAT:
        raise ValueError(f"checkpoint: {path!r} has format {found!r}, but this version of mrdiffusion reads "
                         f"{FORMAT!r}; load it with the mrdiffusion version that wrote it")
    if found != FORMAT:
        raise ValueError(f"checkpoint: {path!r} is not an mrdiffusion HVAE checkpoint (format {FORMAT})")
    validate(ckpt, path)
    return ckpt


def check_weights(model, state, path, part):
    """``ValueError`` naming ``path`` if ``state`` (entry ``part``) does not fit ``model``: keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        what = f"lacks {missing[0]!r}" if missing else f"has an unexpected {extra[0]!r}"
        raise ValueError(f"checkpoint: {path}: entry {part!r} {what} ({len(missing)} missing, {len(extra)} "
                         f"unexpected weights) for its model_config")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"checkpoint: {path}: entry {part!r} does not match its model_config: {k} has shape "
                             f"{tuple(state[k].shape)} in the file, {tuple(v.shape)} for the configuration")


def model_config_of(ckpt, path):
    """The checkpoint's :class:`HVAEConfig` (``ValueError`` naming the file if it is not a valid one)."""
    try:
        return HVAEConfig.from_dict(ckpt["model_config"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"checkpoint: {path}: entry 'model_config' is not a valid model configuration "
                         f"({err})") from None


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
    model = HVAE(model_config_of(ckpt, path), solver=solver).to(device)
    part = "ema" if ema else "model"
    check_weights(model, ckpt[part], path, part)
    model.load_state_dict(ckpt[part])
    model.eval()
    return model, ckpt
