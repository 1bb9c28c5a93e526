"""The Fréchet distance against closed forms, and the classifier, its cache and the evaluation dict."""

import json
import os

import numpy as np
import pytest
import torch

from mrdiffusion.hvae.data import Dataset, load_dataset
from mrdiffusion.metrics import (EVAL_KEYS, ClassifierConfig, classifier_key, dataset_labels, dequantize, evaluate,
                                 feature_moments, frechet_distance, frechet_distance_from_moments,
                                 load_or_train_classifier)
from mrdiffusion.processes import BandNoising, VPSchedule, gaussian_denoiser
from mrdiffusion.sampling import ScalarNoising


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


TINY = ClassifierConfig(width=8, features=16, epochs=1, batch_size=256)


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds, dataset_labels(ds)


@pytest.fixture(scope="module")
def digits_classifier(digits, tmp_path_factory):
    """The default digits classifier, trained once for this module (about ten seconds on one CPU thread)."""
    ds, (tr, te) = digits
    folder = str(tmp_path_factory.mktemp("cache"))
    return folder, load_or_train_classifier(ds.train, tr, ds.test, te, ds.levels, name="digits", folder=folder)


def test_digits_labels_match_the_images(digits):
    from sklearn.datasets import load_digits

    ds, (tr, te) = digits
    raw = load_digits()
    assert tr.shape == (ds.train.shape[0],) and te.shape == (ds.test.shape[0],)
    # every test image is one of scikit-learn's images of the same label
    imgs = torch.as_tensor(raw.images, dtype=torch.int64).reshape(len(raw.images), -1)
    for i in range(0, ds.test.shape[0], 37):
        rows = (imgs == ds.test[i].reshape(1, -1)).all(1).nonzero().flatten()
        assert te[i].item() in set(int(raw.target[r]) for r in rows)
    syn = load_dataset("synthetic")
    y, reason = dataset_labels(syn)
    assert y is None and "no labels" in reason


def test_default_digits_classifier_reaches_97_percent(digits_classifier, digits):
    folder, clf = digits_classifier
    ds, (tr, te) = digits
    assert clf.accuracy >= 0.97, clf.accuracy
    assert not clf.cached and clf.hash == classifier_key(ds.train, tr, ds.levels, clf.config)
    again = load_or_train_classifier(ds.train, tr, ds.test, te, ds.levels, name="digits", folder=folder)
    assert again.cached and again.hash == clf.hash and again.accuracy == clf.accuracy
    f = again.features(ds.test[:5])
    assert f.dtype == torch.float64 and f.shape == (5, clf.config.features)


def test_cache_is_keyed_by_data_and_config_and_survives_damage(digits, tmp_path):
    ds, (tr, te) = digits
    a = load_or_train_classifier(ds.train, tr, ds.test, te, ds.levels, TINY, name="digits", folder=str(tmp_path))
    files = os.listdir(tmp_path / "classifiers")
    assert files == [f"digits-{a.hash}.pt"]
    other = ClassifierConfig(width=8, features=16, epochs=1, batch_size=256, seed=1)
    assert classifier_key(ds.train, tr, ds.levels, other) != a.hash
    flipped = tr.clone()
    flipped[0] = (flipped[0] + 1) % 10
    assert classifier_key(ds.train, flipped, ds.levels, TINY) != a.hash
    (tmp_path / "classifiers" / files[0]).write_bytes(b"torn")
    b = load_or_train_classifier(ds.train, tr, ds.test, te, ds.levels, TINY, name="digits", folder=str(tmp_path))
    assert not b.cached and b.hash == a.hash and b.accuracy == a.accuracy  # seeded: the same network again
    assert load_or_train_classifier(ds.train, tr, ds.test, te, ds.levels, TINY, name="digits",
                                    folder=str(tmp_path)).cached


def _gaussian_model(ds):
    x, _ = dequantize(ds.train, ds.levels, generator=torch.Generator().manual_seed(0))
    return x.mean(0), x.var(0)


def test_evaluate_reports_every_key(digits, digits_classifier):
    folder, clf = digits_classifier
    ds, _ = digits
    m, v = _gaussian_model(ds)
    noise = VPSchedule()
    out = evaluate(gaussian_denoiser(ScalarNoising(noise), m, v), noise, ds, n_test=6, n_samples=200, nfe=6,
                   cache=folder)
    assert tuple(out) == EVAL_KEYS
    json.dumps(out)
    assert out["n_test"] == 6 and out["n_samples"] == 200 and out["nfe"] <= 6 and out["ode_rtol"] == 1e-5
    assert out["classifier_hash"] == clf.hash and out["classifier_acc"] == clf.accuracy
    assert out["fd_skipped"] is None and out["sample_seconds_per_image"] > 0
    # A per-pixel Gaussian is a poor digit model: far above the floor of real images against real images.
    assert 0 < out["fd_floor"] < out["fd"]
    # Its bits/dim are the PF-ODE's estimate of the Gaussian's own dequantised NLL (exact trace on 64 pixels).
    x, log_delta = dequantize(ds.test[:6], ds.levels, generator=torch.Generator().manual_seed(0))
    lp = -0.5 * ((x - m) ** 2 / v + torch.log(2 * torch.pi * v))
    expect = float(((-lp.reshape(6, -1).sum(1) - 64 * log_delta) / (64 * np.log(2))).mean())
    assert abs(out["bits_per_dim"] - expect) < 2e-3  # the prior at T is N(0, σ_T²), not the exact marginal


def test_evaluate_without_labels_skips_fd_with_its_reason(tmp_path):
    ds = load_dataset("synthetic")
    small = Dataset("synthetic", ds.train[:50], ds.test[:20], ds.levels)
    bn = BandNoising((8, 8), 3, schedules=VPSchedule())
    D = gaussian_denoiser(bn, torch.zeros(64, dtype=torch.float64), torch.full((64,), 0.3, dtype=torch.float64))
    out = evaluate(D, bn, small, n_test=4, n_samples=8, nfe=4, trace="hutchinson", cache=str(tmp_path),
                   sampler="DPM(3M)")
    assert out["fd"] is None and out["classifier_hash"] is None and "no labels" in out["fd_skipped"]
    assert out["sampler"] == "DPM(3M)" and out["bits_per_dim"] > 0 and out["sample_seconds_per_image"] > 0
    assert not (tmp_path / "classifiers").exists()


@pytest.mark.parametrize("kwargs, match", [(dict(n_test=1), "n_test"), (dict(n_samples=-1), "n_samples"),
                                           (dict(nfe=0), "nfe"), (dict(trace="x"), "trace"), (dict(pad=-1), "pad")])
def test_evaluate_bad_arguments_are_named(kwargs, match):
    ds = Dataset("d", torch.zeros(4, 1, 8, 8, dtype=torch.long), torch.zeros(4, 1, 8, 8, dtype=torch.long), 17)
    with pytest.raises(ValueError, match=match):
        evaluate(lambda x, t: x, VPSchedule(), ds, **kwargs)


def test_evaluate_follows_a_float32_module(tmp_path):
    """A float32 network gets float32 states (its parameters' dtype), for the likelihood and for sampling."""
    seen = set()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x, t):
            seen.add(x.dtype)
            return self.scale * x

    ds = Dataset("d", torch.randint(0, 17, (8, 1, 4, 4)), torch.randint(0, 17, (8, 1, 4, 4)), 17)
    out = evaluate(Net(), VPSchedule(), ds, n_test=3, n_samples=4, nfe=3, cache=str(tmp_path))
    assert seen == {torch.float32} and np.isfinite(out["bits_per_dim"])
