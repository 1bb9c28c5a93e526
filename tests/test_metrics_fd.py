"""The Fréchet distance against closed forms, and the classifier, its cache and the evaluation dict."""

import math

import numpy as np
import pytest
import torch

from mrdiffusion.metrics import feature_moments, frechet_distance, frechet_distance_from_moments


def _spd(d, rng):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _psd_sqrt(S):
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0, None))) @ V.T


def _closed_form(m1, S1, m2, S2):
    """``|m1 − m2|² + tr(S1 + S2 − 2 (S1^{1/2} S2 S1^{1/2})^{1/2})`` by symmetric eigendecompositions."""
    r = _psd_sqrt(S1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2) - 2 * np.trace(_psd_sqrt(r @ S2 @ r)))


def test_moments_match_the_symmetric_closed_form():
    rng = np.random.default_rng(0)
    for d in (1, 3, 16):
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        S1, S2 = _spd(d, rng), _spd(d, rng)
        assert frechet_distance_from_moments(m1, S1, m2, S2) == pytest.approx(_closed_form(m1, S1, m2, S2),
                                                                               rel=1e-9, abs=1e-10)


def test_commuting_covariances_and_identical_laws():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expect = 1 + 4 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # = 5 + 1 + 1 + 4
    assert frechet_distance_from_moments(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expect, rel=1e-12)
    S = _spd(5, np.random.default_rng(1))
    assert abs(frechet_distance_from_moments(m1[:1].repeat(5), S, m1[:1].repeat(5), S)) < 1e-9


def test_features_fitted_in_float64_and_sample_law_converges():
    rng = np.random.default_rng(2)
    d = 4
    m1, m2, S1, S2 = rng.standard_normal(d), rng.standard_normal(d), _spd(d, rng), _spd(d, rng)
    fa = rng.multivariate_normal(m1, S1, size=40000).astype(np.float32)
    fb = rng.multivariate_normal(m2, S2, size=40000)
    ma, Sa = feature_moments(torch.as_tensor(fa))
    mb, Sb = feature_moments(fb)
    assert Sa.dtype == np.float64
    assert frechet_distance(torch.as_tensor(fa), fb) == pytest.approx(_closed_form(ma, Sa, mb, Sb), rel=1e-9)
    pop = _closed_form(m1, S1, m2, S2)
    assert frechet_distance(fa, fb) == pytest.approx(pop, rel=0.05)


def test_rank_deficient_features_are_handled():
    rng = np.random.default_rng(3)
    f = np.zeros((50, 6))
    f[:, :2] = rng.standard_normal((50, 2))
    g = np.zeros((50, 6))
    g[:, :2] = rng.standard_normal((50, 2)) + 1.0
    fd = frechet_distance(f, g)
    (m1, S1), (m2, S2) = feature_moments(f), feature_moments(g)
    assert fd == pytest.approx(_closed_form(m1, S1, m2, S2), abs=1e-4)  # the εI shift moves it by O(√ε)


def test_bad_features_are_named():
    with pytest.raises(ValueError, match="feats"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same feature dimension"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="feats"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
