"""Model conventions and the exact conversions between them (per coordinate ``α``, ``σ``).

With ``x_t = α x_0 + σ ε`` (docs/sampling.md):

- data prediction ``D(x, t) ≈ E[x_0 | x_t]`` (k-diffusion / EDM denoisers),
- noise prediction ``ε̂ = (x - α D)/σ``,
- score ``s = ∇ log p_t = -(x - α D)/σ² = -ε̂/σ``.

Conversions *to* data prediction are exact at ``σ = 0`` too (``D = x/α``);
conversions *from* it divide by ``σ`` and refuse ``σ = 0``.
"""

from __future__ import annotations

import torch

__all__ = ["PREDICTIONS", "to_data", "from_data", "as_denoiser"]

PREDICTIONS = ("data", "eps", "score")


def _check(prediction):
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")


def to_data(output, prediction, x, alpha, sigma):
    """The data prediction ``D`` from a model output in convention ``prediction``."""
    _check(prediction)
    if prediction == "data":
        return output
    if prediction == "eps":
        return (x - sigma * output) / alpha
    return (x + sigma * sigma * output) / alpha


def from_data(D, prediction, x, alpha, sigma):
    """The model output in convention ``prediction`` that has data prediction ``D`` (needs ``σ > 0``)."""
    _check(prediction)
    if prediction == "data":
        return D
    if bool((torch.as_tensor(sigma) == 0).any()):
        raise ValueError("sigma: the noise and score predictions are undefined at σ = 0")
    eps = (x - alpha * D) / sigma
    return eps if prediction == "eps" else -eps / sigma


def as_denoiser(model, noising, prediction="data"):
    """``D(x, t)`` for a ``model(x, t)`` that predicts ``prediction`` under ``noising`` (per coordinate)."""
    _check(prediction)
    if not callable(model):
        raise ValueError(f"model: expected a callable model(x, t), got {type(model).__name__}")
    if prediction == "data":
        return model

    def denoise(x, t):
        alpha, sigma = noising.alpha_sigma(t, like=x)
        return to_data(model(x, t), prediction, x, alpha, sigma)

    return denoise
