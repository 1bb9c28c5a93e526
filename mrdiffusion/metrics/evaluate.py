"""Everything an ``eval`` command reports about a diffusion model, in one call: :func:`evaluate`."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Optional

import torch

from .classifier import ClassifierConfig, dataset_labels, load_or_train_classifier
from .frechet import frechet_distance
from .likelihood import dequantized_nll, point_mass_stop_times

__all__ = ["evaluate", "EVAL_KEYS", "EXACT_TRACE_MAX_DIM"]

EVAL_KEYS = ("bits_per_dim", "bits_per_dim_se", "n_test", "ode_rtol", "fd", "fd_floor", "n_samples", "sampler",
             "nfe", "classifier_acc", "classifier_hash", "sample_seconds_per_image", "fd_skipped")
"""The keys of :func:`evaluate`'s dict, in order."""

EXACT_TRACE_MAX_DIM = 64
"""``trace="auto"`` takes the exact divergence up to this many coordinates (digits' 8×8), Hutchinson above."""


def _count(name, v, lo, allow_none=False):
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}{' or None' if allow_none else ''}, got {v!r}")


def _state_maps(noising, to_state, from_state):
    layout = getattr(noising, "layout", None)
    if to_state is None:
        to_state = layout.pack if layout is not None else (lambda x: x)
    if from_state is None:
        from_state = layout.unpack if layout is not None else (lambda x: x)
    return to_state, from_state


def evaluate(denoiser: Callable, noising, dataset, *, n_test: Optional[int] = None, n_samples: int = 1000,
             solver=None, nfe: int = 10, sampler: Optional[str] = None, prediction: str = "data",
             trace: str = "auto", rtol: float = 1e-5, atol: float = 1e-5, n_probes: int = 1, eps: float = 1e-5,
             stop_times="auto", prior_data_var: float = 0.0, to_state: Optional[Callable] = None,
             from_state: Optional[Callable] = None, pad: int = 0, batch_size: int = 256, seed: int = 0,
             classifier_config: Optional[ClassifierConfig] = None, cache: Optional[str] = None,
             dtype=None, device=None, draw: Optional[Callable] = None, log=None) -> dict:
    """Test bits/dim by the probability-flow ODE, and the Fréchet distance of samples in a classifier's features.

    Args:
        denoiser: ``model(x, t)`` in convention ``prediction`` on the noising's states.
        noising: a :class:`~mrdiffusion.processes.BandNoising` (states are
            packed band coefficients; ``to_state``/``from_state`` default to its
            layout's ``pack``/``unpack``) or one schedule (states are images).
        dataset: ``train``, ``test`` (integer levels ``(N, C, H, W)``), ``levels``;
            labels as ``train_labels``/``test_labels`` (see :func:`dataset_labels`).
        n_test: test images for the likelihood (default all).
        n_samples: samples for the Fréchet distance and the timing (0: none).
        solver, nfe, sampler: passed to :func:`mrdiffusion.sampling.sample`;
            ``sampler`` names the solver in the output (default its ``repr``).
        trace: ``"exact"``, ``"hutchinson"`` or ``"auto"`` (exact up to
            :data:`EXACT_TRACE_MAX_DIM` coordinates); ``rtol``, ``atol``,
            ``n_probes``, ``eps``, ``stop_times``, ``prior_data_var``: see
            :func:`~mrdiffusion.metrics.pf_ode_nll`; ``stop_times="auto"`` stops
            the bands that are a point mass at ``T`` where their ``σ`` is 0.01
            (:func:`~mrdiffusion.metrics.point_mass_stop_times`), others at ``T``.
        pad: zero-level pixels added on each side of every image before it
            reaches the model (and cropped from samples); bits/dim are per real pixel.
        classifier_config, cache: the classifier's configuration and cache folder.
        dtype, device: of the model's states (default: a module's parameters', else float64 on the CPU).
        draw: ``draw(n, seed) -> (images, nfe)``: ``n`` samples as integer grey
            levels ``(n, C, H, W)``, for a model whose sampling is not one plain
            :func:`~mrdiffusion.sampling.sample` call (a point-mass run samples
            across its activations); ``solver`` then only names the sampler.

    A ``torch.nn.Module`` denoiser is put in eval mode for the call (and back after).

    Returns:
        a dict with :data:`EVAL_KEYS`: the mean bits/dim and its standard error
        (over test images, including the Hutchinson noise), the solve's ``rtol``,
        the Fréchet distance of samples to test images and its floor (training
        against test images, the same count), the classifier's test accuracy and
        hash, the sampling wall time per image, and why FD was skipped (or ``None``).
    """
    from ..sampling import DEFAULT_SOLVER, as_denoiser, as_noising

    for attr in ("train", "test", "levels"):
        if not hasattr(dataset, attr):
            raise ValueError(f"dataset: expected train/test images and levels, missing {attr!r}")
    _count("n_test", n_test, 2, allow_none=True)
    _count("n_samples", n_samples, 0)
    _count("nfe", nfe, 1)
    _count("pad", pad, 0)
    _count("batch_size", batch_size, 1)
    if trace not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"trace: expected 'auto', 'exact' or 'hutchinson', got {trace!r}")
    levels = int(dataset.levels)
    test = dataset.test if n_test is None else dataset.test[:n_test]
    if test.shape[0] < 2:
        raise ValueError(f"dataset: expected at least 2 test images, got {test.shape[0]}")
    n_real = int(test[0].numel())
    images = torch.nn.functional.pad(test.long(), (pad,) * 4) if pad else test.long()
    dim = int(images[0].numel())
    trace = ("exact" if dim <= EXACT_TRACE_MAX_DIM else "hutchinson") if trace == "auto" else trace
    to_state, from_state = _state_maps(noising, to_state, from_state)
    param = next(denoiser.parameters(), None) if isinstance(denoiser, torch.nn.Module) else None
    dtype = dtype or (param.dtype if param is not None else torch.float64)
    device = device or (param.device if param is not None else torch.device("cpu"))
    if isinstance(stop_times, str):
        if stop_times != "auto":
            raise ValueError(f"stop_times: expected 'auto', None or per-coordinate times, got {stop_times!r}")
        stop_times = point_mass_stop_times(noising)
    D = as_denoiser(denoiser, as_noising(noising), prediction)
    say = log or (lambda msg: None)

    with _eval_mode(denoiser):
        say(f"likelihood: {images.shape[0]} test images, {trace} trace, rtol {rtol}")
        nll = dequantized_nll(D, noising, images, levels, to_state=to_state, n_real_dims=n_real,
                              batch_size=batch_size, seed=seed, dtype=dtype, device=device, trace=trace, rtol=rtol,
                              atol=atol, n_probes=n_probes, eps=eps, stop_times=stop_times,
                              prior_data_var=prior_data_var)
        solver = DEFAULT_SOLVER if solver is None else solver
        samples, seconds, nfe_made = None, None, nfe
        if n_samples:
            say(f"sampling: {n_samples} samples, {nfe} NFE")
            samples, seconds, nfe_made = _draw(denoiser, noising, images.shape[1:], n_samples, solver=solver,
                                               nfe=nfe, prediction=prediction, to_state=to_state,
                                               from_state=from_state, pad=pad, levels=levels, batch_size=batch_size,
                                               seed=seed, dtype=dtype, device=device, draw=draw)
    fd, floor, acc, key, n_fd, reason = _frechet(dataset, samples, levels, classifier_config, cache, log)
    out = {"bits_per_dim": nll.mean, "bits_per_dim_se": nll.se, "n_test": int(images.shape[0]),
           "ode_rtol": float(rtol), "fd": fd, "fd_floor": floor, "n_samples": int(n_fd or n_samples),
           "sampler": sampler or repr(solver), "nfe": int(nfe_made), "classifier_acc": acc, "classifier_hash": key,
           "sample_seconds_per_image": seconds, "fd_skipped": reason}
    for k, v in out.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
    return {k: out[k] for k in EVAL_KEYS}


@contextlib.contextmanager
def _eval_mode(module):
    """A ``torch.nn.Module`` in eval mode for the block, its training flag restored after."""
    training = isinstance(module, torch.nn.Module) and module.training
    if training:
        module.eval()
    try:
        yield
    finally:
        if training:
            module.train()


def _draw(denoiser, noising, shape, n, *, solver, nfe, prediction, to_state, from_state, pad, levels, batch_size,
          seed, dtype, device, draw=None):
    """``n`` samples as integer levels (padding cropped), the wall time per sample and the NFE made."""
    from ..data import quantize
    from ..sampling import as_noising, sample

    if draw is not None:
        parts, seconds, nfe_made = [], 0.0, nfe
        for i in range(0, n, batch_size):
            start = time.perf_counter()
            images, nfe_made = draw(min(batch_size, n - i), seed + 1 + i)
            if images.is_cuda:
                torch.cuda.synchronize(images.device)
            seconds += time.perf_counter() - start
            parts.append(images.detach().cpu().long())
        return torch.cat(parts), seconds / n, nfe_made

    like = to_state(torch.zeros((1, *shape), dtype=dtype, device=device))
    T = float(as_noising(noising).T)
    _, sigma_T = as_noising(noising).alpha_sigma(T, like=like)
    gen = torch.Generator().manual_seed(seed + 1)
    parts, seconds, nfe_made = [], 0.0, nfe
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        x_T = sigma_T * torch.randn((b, *like.shape[1:]), generator=gen, dtype=dtype).to(device)
        start = time.perf_counter()
        with torch.no_grad():
            x0, info = sample(denoiser, noising, x_T, nfe=nfe, solver=solver, seed=seed, prediction=prediction,
                              sample_ids=torch.arange(i, i + b))
        if x0.is_cuda:
            torch.cuda.synchronize(x0.device)
        seconds += time.perf_counter() - start
        nfe_made = info.nfe
        parts.append(from_state(x0).detach().cpu())
    x = torch.cat(parts)
    if pad:
        x = x[..., pad:-pad, pad:-pad]
    return quantize(x, levels), seconds / n, nfe_made


def _frechet(dataset, samples, levels, config, cache, log):
    """``(fd, floor, accuracy, hash, n, reason)``: FD of samples and of training images to test images."""
    if samples is None:
        return None, None, None, None, None, "n_samples is 0"
    train_y, test_y = dataset_labels(dataset)
    if train_y is None:
        return None, None, None, None, None, test_y
    clf = load_or_train_classifier(dataset.train, train_y, dataset.test, test_y, levels, config,
                                   name=getattr(dataset, "name", "data"), folder=cache, log=log)
    n = min(samples.shape[0], dataset.test.shape[0], dataset.train.shape[0])
    if n < 2:
        return None, None, clf.accuracy, clf.hash, None, f"too few images for a covariance ({n})"
    if n < samples.shape[0] and log is not None:
        log(f"FD on {n} samples: the data set has {dataset.test.shape[0]} test images")
    f_test = clf.features(dataset.test[:n])
    fd = frechet_distance(clf.features(samples[:n]), f_test)
    floor = frechet_distance(clf.features(dataset.train[:n]), f_test)
    return fd, floor, clf.accuracy, clf.hash, n, None
