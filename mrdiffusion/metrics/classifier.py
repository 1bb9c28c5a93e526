r"""A small convolutional classifier per data set, whose penultimate features the Fréchet distance reads.

Trained once per data set and configuration — seeded, on the training split —
and cached on disk: ``$MRDIFFUSION_CACHE`` or ``~/.cache/mrdiffusion``, folder
``classifiers/``, one file per key, written atomically. The key (reported as
``classifier_hash``) is a SHA-256 of the training images and labels, the
grey levels and the configuration, so a different data set or a changed
configuration never reuses a stale network. Test accuracy is measured again
whenever the classifier is loaded.

Inputs are grey levels mapped to ``[-1, 1]`` by ``x = -1 + 2k/(L-1)`` (the
level centres the likelihood's dequantisation uses). The network:
``n_stages`` stages of two 3×3 convolutions and a 2×2 max-pool (the width
doubling per stage) until the grid is 4×4 or smaller, flattened,
then ``Linear → ReLU`` to the ``features``-dimensional penultimate layer and a
linear head.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

__all__ = ["ClassifierConfig", "SmallClassifier", "TrainedClassifier", "cache_dir", "classifier_key",
           "default_config", "dataset_labels", "levels_to_unit", "load_or_train_classifier", "train_classifier"]

ARCH_VERSION = "small-cnn-1"


@dataclass(frozen=True)
class ClassifierConfig:
    """Training configuration (part of the cache key)."""

    width: int = 32
    features: int = 64
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift: int = 1  # random translation by up to ``shift`` pixels (zero-level padding) as augmentation
    seed: int = 0

    def __post_init__(self):
        for name in ("width", "features", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.shift >= 0):
            raise ValueError(f"lr, weight_decay, shift: expected lr > 0, weight_decay >= 0, shift >= 0, got "
                             f"{self.lr}, {self.weight_decay}, {self.shift}")


def default_config(image_size: int) -> ClassifierConfig:
    """Width 32 and 40 epochs for small images (digits' 8×8: ~1.4k training images); width 16 and 3 epochs
    for larger ones (MNIST's 60k 28×28 images: a few CPU minutes per epoch)."""
    if image_size <= 16:
        return ClassifierConfig()
    return ClassifierConfig(width=16, epochs=3, batch_size=128)


class SmallClassifier(nn.Module):
    def __init__(self, channels: int, image_size: int, classes: int, width: int = 32, features: int = 64):
        super().__init__()
        layers, c, size, w = [], channels, image_size, width
        while True:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c, size = w, size // 2
            if size <= 4:
                break
            w *= 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * size * size, features), nn.ReLU())
        self.head = nn.Linear(features, classes)

    def features(self, x):
        """The penultimate activations ``(N, features)`` of images ``x`` in ``[-1, 1]``."""
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


@dataclass
class TrainedClassifier:
    """A trained classifier, its key (``hash``), test accuracy and training time (0 when loaded from the cache)."""

    model: SmallClassifier
    levels: int
    hash: str
    accuracy: float
    train_seconds: float
    cached: bool
    config: ClassifierConfig

    @torch.no_grad()
    def features(self, x, batch_size: int = 512):
        """Penultimate features (float64) of integer levels, or of floats already in ``[-1, 1]``."""
        self.model.eval()
        x = levels_to_unit(x, self.levels) if not x.is_floating_point() else x.float()
        out = [self.model.features(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        return torch.cat(out).double()

    @torch.no_grad()
    def accuracy_on(self, x, y, batch_size: int = 512):
        self.model.eval()
        u = levels_to_unit(x, self.levels)
        pred = torch.cat([self.model(u[i:i + batch_size]).argmax(1) for i in range(0, u.shape[0], batch_size)])
        return float((pred == y.long()).double().mean())


def levels_to_unit(x, levels):
    """Grey levels ``0 … L−1`` to ``[-1, 1]``: ``-1 + 2k/(L−1)`` (float32)."""
    return x.float() * (2.0 / (levels - 1)) - 1.0


def cache_dir() -> str:
    """``$MRDIFFUSION_CACHE`` or ``~/.cache/mrdiffusion``."""
    return os.environ.get("MRDIFFUSION_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mrdiffusion")


def classifier_key(train_x, train_y, levels: int, config: ClassifierConfig) -> str:
    """SHA-256 (16 hex digits) of the architecture version, configuration, levels, training images and labels."""
    h = hashlib.sha256(json.dumps({"arch": ARCH_VERSION, "levels": int(levels), **asdict(config)},
                                  sort_keys=True).encode())
    for t in (train_x, train_y):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def dataset_labels(dataset):
    """``(train_labels, test_labels)`` of a data set, or ``(None, reason)`` when it has none.

    Reads ``dataset.train_labels`` / ``dataset.test_labels``. scikit-learn's
    digits as :func:`mrdiffusion.hvae.data.digits` splits them carry no labels
    yet: they are recovered by the same seeded split and accepted only if the
    images match the data set's exactly.
    """
    tr, te = getattr(dataset, "train_labels", None), getattr(dataset, "test_labels", None)
    if tr is not None and te is not None:
        return torch.as_tensor(tr).long(), torch.as_tensor(te).long()
    if getattr(dataset, "name", None) == "digits":
        from sklearn.datasets import load_digits

        from ..hvae import data as hdata

        raw = load_digits()
        x = torch.as_tensor(raw.images, dtype=torch.int64).unsqueeze(1)
        y = torch.as_tensor(raw.target, dtype=torch.int64)
        frac = dataset.test.shape[0] / x.shape[0]
        for seed in range(4):  # the loader's seed is not stored; the split is checked image by image
            x_tr, x_te = hdata._split(x, frac, seed)
            if (x_tr.shape == dataset.train.shape and torch.equal(x_tr, dataset.train.long())
                    and torch.equal(x_te, dataset.test.long())):
                return hdata._split(y, frac, seed)
        return None, "the digits split does not match scikit-learn's digits under seeds 0-3; no labels"
    return None, f"data set {getattr(dataset, 'name', '?')!r} has no labels (train_labels/test_labels)"


def _check_data(x, y, name):
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[-1] != x.shape[-2] or x.shape[0] < 2:
        raise ValueError(f"{name}: expected images (N >= 2, C, H, H), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"{name} labels: expected one integer label per image ({x.shape[0]},), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")


def _shift(x, s, gen):
    """Translate each image by up to ``s`` pixels (zero-level padding, i.e. -1 in [-1, 1])."""
    if s == 0:
        return x
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (s, s, s, s), value=-1.0)
    dy = torch.randint(0, 2 * s + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * s + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).reshape(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * s)
    tmp = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None]).reshape(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return tmp.gather(3, cols)


def train_classifier(train_x, train_y, test_x, test_y, levels: int, config: Optional[ClassifierConfig] = None,
                     *, log=None) -> TrainedClassifier:
    """Train a :class:`SmallClassifier` (Adam, cosine learning rate, seeded) and measure its test accuracy."""
    _check_data(train_x, train_y, "train")
    _check_data(test_x, test_y, "test")
    config = config or default_config(train_x.shape[-1])
    classes = int(max(train_y.max(), test_y.max())) + 1
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SmallClassifier(train_x.shape[1], train_x.shape[-1], classes, config.width, config.features)
    gen = torch.Generator().manual_seed(config.seed + 1)
    u, y = levels_to_unit(train_x, levels), train_y.long()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(u.shape[0] / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    model.train()
    for epoch in range(config.epochs):
        perm = torch.randperm(u.shape[0], generator=gen)
        for i in range(0, u.shape[0], config.batch_size):
            idx = perm[i:i + config.batch_size]
            loss = nn.functional.cross_entropy(model(_shift(u[idx], config.shift, gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log is not None:
            log(f"classifier epoch {epoch + 1}/{config.epochs}: loss {float(loss.detach()):.4f}")
    seconds = time.perf_counter() - start
    key = classifier_key(train_x, train_y, levels, config)
    out = TrainedClassifier(model, int(levels), key, 0.0, seconds, False, config)
    out.accuracy = out.accuracy_on(test_x, test_y)
    return out


def load_or_train_classifier(train_x, train_y, test_x, test_y, levels: int,
                             config: Optional[ClassifierConfig] = None, *, name: str = "data",
                             folder: Optional[str] = None, log=None) -> TrainedClassifier:
    """The cached classifier for these training data and ``config``, trained and cached first if absent."""
    from .._io import atomic_save

    _check_data(train_x, train_y, "train")
    _check_data(test_x, test_y, "test")
    config = config or default_config(train_x.shape[-1])
    key = classifier_key(train_x, train_y, levels, config)
    folder = os.path.join(folder or cache_dir(), "classifiers")
    path = os.path.join(folder, f"{''.join(c if c.isalnum() else '_' for c in name)}-{key}.pt")
    if os.path.exists(path):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("hash") == key:
                model = SmallClassifier(*blob["shape"], config.width, config.features)
                model.load_state_dict(blob["state_dict"])
                out = TrainedClassifier(model, int(levels), key, 0.0, float(blob["train_seconds"]), True, config)
                out.accuracy = out.accuracy_on(test_x, test_y)
                return out
        except Exception as err:  # noqa: BLE001 - a torn or foreign file (any unpickling error): retrain
            if log is not None:
                log(f"classifier cache {path} unreadable ({type(err).__name__}); retraining")
    out = train_classifier(train_x, train_y, test_x, test_y, levels, config, log=log)
    os.makedirs(folder, exist_ok=True)
    classes = out.model.head.out_features
    atomic_save({"hash": key, "shape": [train_x.shape[1], train_x.shape[-1], classes],
                 "state_dict": out.model.state_dict(), "config": asdict(config), "levels": int(levels),
                 "train_seconds": out.train_seconds, "accuracy": out.accuracy}, path)
    return out
