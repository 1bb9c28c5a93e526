"""Data for the HVAE, all without downloads, as integer grey levels ``(N, C, H, W)``.

- ``digits``: scikit-learn's 8×8 handwritten digits, 17 grey levels (0..16),
  split into train/test with a fixed seed;
- ``synthetic``: a multi-resolution data set — images drawn from Haar
  coefficients with a decaying variance per level, squashed and quantised;
- a path: a ``.npz`` file (array ``x`` or ``images``, or its only array;
  optional ``levels``) or a folder of images (read with Pillow, converted to
  grey, 256 levels).

:func:`check_images` validates shape and range against a model configuration
and raises ``ValueError`` with the reason — before any training step.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from .. import haar

__all__ = ["Dataset", "load_dataset", "digits", "synthetic", "load_path", "check_images", "fingerprint"]

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class Dataset:
    """``train`` / ``test``: uint8/int64 tensors ``(N, C, H, W)`` of levels ``0 … levels−1``."""

    name: str
    train: torch.Tensor
    test: torch.Tensor
    levels: int

    @property
    def shape(self):
        return tuple(self.train.shape[1:])


def _split(x, test_fraction, seed):
    n = x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return x[perm[n_test:]], x[perm[:n_test]]


def digits(test_fraction=0.2, seed=0) -> Dataset:
    """scikit-learn's 1,797 8×8 digits, values 0..16 (17 levels); a fixed random split."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images, dtype=torch.int64).unsqueeze(1)
    train, test = _split(x, test_fraction, seed)
    return Dataset("digits", train, test, 17)


def synthetic(n=2000, size=8, levels=17, test_fraction=0.2, seed=0, decay=0.6) -> Dataset:
    """Images from random Haar coefficients with standard deviation ``decay**k`` at detail level ``k``.

    ``x = tanh(idwt(c, d))`` quantised to ``levels`` levels: structure at every
    scale, coarse scales dominant — a stand-in for natural images with a known
    multi-resolution law.
    """
    if size < 1 or size & (size - 1):
        raise ValueError(f"size: expected a power of two, got {size}")
    g = torch.Generator().manual_seed(seed)
    J = size.bit_length() - 1
    coarse = torch.randn(n, 1, 1, 1, generator=g, dtype=torch.float64) * 0.5
    details = [torch.randn(n, 1, 3, 2**k, 2**k, generator=g, dtype=torch.float64) * decay**k * 2.0**(-k)
               for k in range(J)]
    x = haar.idwt(coarse, details) * size
    x = torch.tanh(x)
    q = torch.round((x + 1) / 2 * (levels - 1)).clamp(0, levels - 1).to(torch.int64)
    train, test = _split(q, test_fraction, seed)
    return Dataset("synthetic", train, test, levels)


def load_path(path, levels=None, test_fraction=0.2, seed=0) -> Dataset:
    """A user's ``.npz`` (integer levels, ``(N, H, W)`` or ``(N, C, H, W)``) or image folder."""
    if os.path.isdir(path):
        x, lv = _read_folder(path), 256
    elif str(path).endswith(".npz"):
        x, lv = _read_npz(path)
    else:
        raise ValueError(f"data: {path!r} is neither a folder of images nor a .npz file (nor 'digits'/'synthetic')")
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{path}: expected images of shape (N, H, W) or (N, C, H, W), got {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
            raise ValueError(f"{path}: expected integer grey levels, got non-integer values of dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{path}: holds no images (shape {x.shape}); expected at least one image")
    xt = torch.as_tensor(x.astype(np.int64))
    levels = levels or lv or int(xt.max()) + 1
    train, test = _split(xt, test_fraction, seed)
    return Dataset(os.path.basename(os.path.normpath(str(path))), train, test, int(levels))


def _read_npz(path):
    """The image array and optional ``levels`` of a ``.npz``; ``ValueError`` naming the file otherwise."""
    import zipfile

    expected = ("expected a numpy .npz archive (numpy.savez) with an integer array 'x' or 'images' of shape "
                "(N, H, W) or (N, C, H, W)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"data: {path} is not a .npz archive (not a zip file; truncated or another format); "
                         f"{expected}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = [k for k in ("x", "images") if k in f.files]
            arrays = [k for k in f.files if k != "levels"]
            if not keys and len(arrays) != 1:
                raise ValueError(f"data: {path}: no array named 'x' or 'images' (and not a single array) among "
                                 f"{f.files}; {expected}")
            x = np.asarray(f[keys[0] if keys else arrays[0]])
            lv = int(f["levels"]) if "levels" in f.files else None
    except ValueError as err:
        if str(err).startswith("data: "):
            raise
        raise ValueError(f"data: {path} could not be read as numeric arrays ({_first_line(err)}); "
                         f"{expected}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"data: {path} is damaged or truncated ({type(err).__name__}: {_first_line(err)}); "
                         f"{expected}") from None
    return x, lv


def _first_line(err):
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    return text.split(" Use allow_pickle")[0].split(" when allow_pickle")[0]


def _read_folder(path):
    from PIL import Image

    files = sorted(f for f in os.listdir(path) if f.lower().endswith(_IMAGE_EXT))
    if not files:
        raise ValueError(f"{path}: no image files ({', '.join(_IMAGE_EXT)}) found")
    ims = []
    for f in files:
        try:
            with Image.open(os.path.join(path, f)) as im:
                ims.append(np.asarray(im.convert("L")))
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"data: {os.path.join(path, f)} is not a readable image ({type(err).__name__}); "
                             f"remove it or replace it with a valid PNG/JPEG") from None
    shapes = {im.shape for im in ims}
    if len(shapes) != 1:
        raise ValueError(f"{path}: images have different sizes {sorted(shapes)}; resize them to one square "
                         f"power-of-two size")
    return np.stack(ims)


def load_dataset(spec, *, levels=None, seed=0) -> Dataset:
    """``'digits'``, ``'synthetic'`` or a path (see :func:`load_path`)."""
    if spec == "digits":
        return digits(seed=seed)
    if spec == "synthetic":
        return synthetic(seed=seed, levels=levels or 17)
    if not os.path.exists(spec):
        raise ValueError(f"data: {spec!r} is not 'digits', 'synthetic' or an existing .npz file / image folder")
    return load_path(spec, levels=levels, seed=seed)


def check_images(x, config, name="data"):
    """``ValueError`` unless ``x`` is ``(N, channels, image_size, image_size)`` integer levels in range."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, got {type(x).__name__}")
    want = (config.channels, config.image_size, config.image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        hint = ""
        if x.ndim == 4 and x.shape[-1] != config.image_size:
            s = x.shape[-1]
            hint = (f"; the model's resolution stack {config.resolutions} does not fit images of size "
                    f"{tuple(x.shape[-2:])}" + ("" if s & (s - 1) == 0 else " (not a power of two: pad or crop)"))
        raise ValueError(f"{name}: expected images of shape (N, {', '.join(map(str, want))}), "
                         f"got {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no images")
    if x.is_floating_point() and not bool(torch.all(x == torch.round(x))):
        raise ValueError(f"{name}: expected integer grey levels 0..{config.levels - 1}, got non-integer values")
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > config.levels - 1:
        raise ValueError(f"{name}: values span {lo}..{hi}, outside the model's grey levels 0..{config.levels - 1}")
    return x.to(torch.int64)


def fingerprint(x: torch.Tensor) -> str:
    """A short hash of a data tensor (stored in checkpoints to refuse resuming on other data)."""
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
