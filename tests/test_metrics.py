"""Metrics cross-checked against the prdc package and direct formulas."""
import numpy as np
import pytest
from prdc import compute_prdc

from sparke_lab import metrics


def test_prdc_matches_package(rng):
    real = rng.normal(size=(300, 8))
    fake = rng.normal(loc=0.3, scale=1.2, size=(250, 8))
    ours = metrics.prdc(real, fake, k=3)
    ref = compute_prdc(real_features=real, fake_features=fake, nearest_k=3)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key


def test_prdc_identical_and_disjoint(rng):
    real = rng.normal(size=(200, 4))
    same = metrics.prdc(real, real.copy(), k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = metrics.prdc(real, real + 100, k=3)
    assert far["precision"] == 0.0 and far["coverage"] == 0.0


def brute_kid(r, f, degree=3):
    d = r.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** degree
    m = len(r)
    kxx, kyy, kxy = k(r, r), k(f, f), k(r, f)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_matches_direct_formula(rng):
    r, f = rng.normal(size=(100, 5)), rng.normal(0.5, 1, size=(100, 5))
    out = metrics.kernel_inception_distance(r, f, subsets=1, subset_size=100)
    assert out["kid"] == pytest.approx(brute_kid(r, f), rel=1e-9)
    same = metrics.kernel_inception_distance(r, rng.normal(size=(100, 5)), subsets=20, subset_size=100)
    assert abs(same["kid"]) < out["kid"]


def test_in_batch_similarity(rng):
    F = np.array([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    assert metrics.in_batch_similarity(F, [0, 0, 1, 1]) == pytest.approx(1.0)
    assert metrics.in_batch_similarity(F, [0, 1, 0, 1]) == pytest.approx(0.0)
    assert metrics.in_batch_similarity(F) == pytest.approx((2 * 1 + 2 * 1) / 12)
    with pytest.raises(ValueError, match="cluster labels"):
        metrics.in_batch_similarity(F, [0, 1])


def test_class_spread_and_fidelity():
    assert metrics.class_spread([1, 3, 5, 7, 9] * 4) == pytest.approx(5.0)
    assert metrics.class_spread([1, 1, 1, 3]) == pytest.approx(1 / (0.75**2 + 0.25**2))
    assert metrics.class_spread([1, 2, 3], valid=[1, 3]) == pytest.approx(2.0)
    assert metrics.prompt_fidelity([1, 2, 3], [{1}, {1, 3}, {3}]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        metrics.prompt_fidelity([1], [{1}, {2}])


def test_bootstrap_interval():
    v = np.arange(100.0)
    mean, lo, hi = metrics.bootstrap_interval(v)
    assert mean == pytest.approx(49.5) and lo < mean < hi and hi - lo < 20


def test_class_distribution_tv_and_cluster_metrics():
    pred = [1, 1, 7, 3, -1, 2, 1, 7]  # -1: rejected, 2: not an odd digit
    valid = (1, 3, 5, 7, 9)
    p = metrics.class_distribution(pred, valid)
    np.testing.assert_allclose(p, [3 / 6, 1 / 6, 0, 2 / 6, 0])
    q = (0.45, 0.15, 0.05, 0.25, 0.10)
    tv = 0.5 * sum(abs(a - b) for a, b in zip(p, q))
    assert metrics.total_variation(p, q) == pytest.approx(tv)
    r = metrics.cluster_class_metrics(pred, valid, q)
    assert r["n"] == 8 and r["validity"] == pytest.approx(6 / 8)
    assert r["spread"] == pytest.approx(1 / np.sum(p ** 2)) and r["tv"] == pytest.approx(tv)
    # extremes: all on one digit -> spread 1; exactly the caption distribution -> TV 0
    assert metrics.cluster_class_metrics([1] * 5, valid, q)["spread"] == pytest.approx(1.0)
    assert metrics.total_variation(q, q) == 0.0
    assert metrics.total_variation([1, 0], [0, 1]) == 1.0
    none_valid = metrics.cluster_class_metrics([-1, 2], valid, q)
    assert none_valid["validity"] == 0 and np.isnan(none_valid["spread"]) and np.isnan(none_valid["tv"])
    with pytest.raises(ValueError, match="probability"):
        metrics.total_variation([0.5, 0.6], [0.5, 0.5])
    with pytest.raises(ValueError, match="same length"):
        metrics.total_variation([1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="caption weights"):
        metrics.cluster_class_metrics(pred, valid, (0.5, 0.5))
    with pytest.raises(ValueError, match="no predictions"):
        metrics.cluster_class_metrics([], valid, q)
