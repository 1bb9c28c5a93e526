r"""The Fréchet distance between two sets of features, as Gaussians.

.. math::
    \mathrm{FD} = \lVert μ_1 - μ_2 \rVert^2
        + \operatorname{tr}\bigl(Σ_1 + Σ_2 - 2 (Σ_1 Σ_2)^{1/2}\bigr),

the squared 2-Wasserstein distance between ``N(μ_1, Σ_1)`` and ``N(μ_2, Σ_2)``
(Dowson & Landau 1982; Heusel et al. 2017). ``(Σ_1Σ_2)^{1/2}`` is
``scipy.linalg.sqrtm`` in float64, with the usual handling of its round-off:
an ``ε I`` shift of both covariances when the product is singular, and the
real part kept when the imaginary part is round-off (larger ones raise).
The features here are a small classifier's (:mod:`.classifier`): this is *not*
the FID, whose features are Inception-v3's on natural images.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["frechet_distance", "frechet_distance_from_moments", "feature_moments"]


def feature_moments(feats):
    """Mean and unbiased covariance (float64) of ``feats`` ``(N, d)``, ``N ≥ 2``."""
    f = np.asarray(feats.detach().cpu() if hasattr(feats, "detach") else feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feats: expected an array (N, d) with N >= 2 samples, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("feats: expected finite features, got NaN or infinity")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2, *, eps=1e-6, imag_atol=1e-3):
    """The Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (float64)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"moments: expected means (d,) and covariances (d, d) of one d, got {mu1.shape}, "
                         f"{s1.shape}, {mu2.shape}, {s2.shape}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.all(np.isfinite(covmean)):  # singular product: shift both covariances by ε I
        off = np.eye(d) * eps
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=imag_atol):
            raise ValueError(f"sqrtm: imaginary component {np.max(np.abs(covmean.imag)):.3g} is not round-off")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_distance(feats_a, feats_b, **kwargs):
    """The Fréchet distance between the Gaussians fitted to two feature sets ``(N_a, d)`` and ``(N_b, d)``."""
    mu1, s1 = feature_moments(feats_a)
    mu2, s2 = feature_moments(feats_b)
    if mu1.shape != mu2.shape:
        raise ValueError(f"feats_a, feats_b: expected the same feature dimension, got {mu1.shape[0]} and "
                         f"{mu2.shape[0]}")
    return frechet_distance_from_moments(mu1, s1, mu2, s2, **kwargs)
