"""Scores against exact cases, brute-force eigenvalue routes, the vendi-score package and mixtures."""
import math

import numpy as np
import pytest
import torch
from vendi_score import vendi

import sparke_lab as sl
from sparke_lab.scores import entropy


def blocks(sizes):
    """Features whose cosine kernel is block-diagonal with all-ones blocks."""
    return np.concatenate([np.tile(np.eye(len(sizes))[i], (s, 1)) for i, s in enumerate(sizes)])


def brute_entropy(K, order):
    lam = np.clip(np.linalg.eigvalsh(K / len(K)), 0, None)
    lam = lam[lam > 1e-12]
    if order == 1:
        return -np.sum(lam * np.log(lam))
    if math.isinf(order):
        return -np.log(lam.max())
    return np.log(np.sum(lam**order)) / (1 - order)


# ------------------------------------------------------------------ exact cases
def test_identity_kernel_gives_n():
    X = np.eye(9)  # orthogonal rows: cosine kernel is I
    for order in (0.5, 1, 2, 3, math.inf):
        assert sl.vendi_score(X, kernel="cosine", order=order) == pytest.approx(9, rel=1e-9)
    assert sl.rke_score(X, kernel="cosine") == pytest.approx(9, rel=1e-12)
    # far-apart points under the Gaussian kernel: K = I up to exp(-huge)
    assert sl.rke_score(100 * np.eye(9), sigma=1.0) == pytest.approx(9, rel=1e-12)


def test_all_ones_kernel_gives_one():
    X = np.ones((12, 3))
    assert sl.rke_score(X) == pytest.approx(1.0, rel=1e-12)
    assert sl.vendi_score(X) == pytest.approx(1.0, rel=1e-9)
    assert sl.vendi_score(X, kernel="cosine", order=0.5) == pytest.approx(1.0, rel=1e-9)


def test_blocks_211():
    X = blocks([2, 1, 1])
    assert sl.rke_score(X, kernel="cosine") == pytest.approx(8 / 3, rel=1e-12)
    assert sl.vendi_score(X, kernel="cosine") == pytest.approx(2 * math.sqrt(2), rel=1e-9)
    assert sl.vendi_score(X, kernel="cosine", order=math.inf) == pytest.approx(2.0, rel=1e-9)


def test_entropy_of_a_known_distribution():
    p = np.array([0.5, 0.25, 0.25])
    assert entropy(p, 1) == pytest.approx(-(p * np.log(p)).sum())
    assert entropy(p, 2) == pytest.approx(-np.log((p**2).sum()))
    assert entropy(p, math.inf) == pytest.approx(math.log(2))
    assert entropy(p, 0.5) == pytest.approx(2 * np.log(np.sqrt(p).sum()))
    assert entropy(p * 7, 1) == pytest.approx(entropy(p, 1))  # renormalised


# -------------------------------------------------------- routes against each other
@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
def test_frobenius_route_equals_eigenvalue_route(rng, kernel):
    X = rng.normal(size=(120, 5))
    K = sl.kernel_matrix(X, kernel=kernel, sigma=1.7).double().numpy()
    lam = np.linalg.eigvalsh(K / len(K))
    assert sl.rke_score(X, kernel=kernel, sigma=1.7) == pytest.approx(1 / np.sum(lam**2), rel=1e-9)
    assert sl.vendi_score(X, kernel=kernel, sigma=1.7, order=2) == pytest.approx(1 / np.sum(lam**2), rel=1e-9)
    for order in (0.5, 1.0, 1.5, 3.0, math.inf):
        assert sl.renyi_entropy(X, order, kernel=kernel, sigma=1.7) == pytest.approx(brute_entropy(K, order), rel=1e-7)


def test_cosine_dual_eigenvalues(rng):
    # d < n takes the d x d route; it must give the same non-zero spectrum as n x n
    X = rng.normal(size=(60, 4))
    K = sl.cosine_kernel(X).double().numpy()
    full = np.sort(np.linalg.eigvalsh(K / 60))[::-1][:4]
    np.testing.assert_allclose(sl.kernel_eigenvalues(X, kernel="cosine")[:4], full, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("q", [0.5, 1.0, 2.0, 5.0])
def test_matches_vendi_score_package(rng, q):
    X = rng.normal(size=(80, 4))
    K = sl.gaussian_kernel(X, sigma=1.2).double().numpy()
    assert sl.vendi_score(X, sigma=1.2, order=q) == pytest.approx(vendi.score_K(K, q=q), rel=1e-6)
    assert sl.score_from_kernel(K, order=q) == pytest.approx(vendi.score_K(K, q=q), rel=1e-6)


def test_cosine_matches_vendi_score_dual(rng):
    X = rng.normal(size=(50, 6))
    assert sl.vendi_score(X, kernel="cosine") == pytest.approx(vendi.score_dual(X, normalize=True), rel=1e-6)


def test_float32_and_torch(rng):
    X = rng.normal(size=(200, 8))
    ref = sl.rke_score(X, sigma=2.0)
    assert sl.rke_score(X.astype(np.float32), sigma=2.0) == pytest.approx(ref, rel=1e-5)
    assert sl.rke_score(torch.from_numpy(X), sigma=2.0) == pytest.approx(ref, rel=1e-12)
    assert isinstance(ref, float)


# ------------------------------------------------------------------ mixtures
@pytest.mark.parametrize("weights", [4, [0.6, 0.3, 0.1], [0.4, 0.3, 0.2, 0.1]])
def test_mixture_mode_count(weights):
    m = sl.gaussian_mixture(1500, weights, dim=16, separation=12.0, spread=0.01, seed=1)
    assert sl.rke_score(m.X, sigma=1.0) == pytest.approx(m.expected_rke(), rel=0.03)
    assert sl.vendi_score(m.X, sigma=1.0) == pytest.approx(m.expected_vendi(), rel=0.03)


def test_one_component_formula():
    # RKE of one Gaussian component is (1 + 4 s^2 / sigma^2)^(d/2) in the large-n limit
    s, sigma, d = 0.3, 1.0, 3
    m = sl.gaussian_mixture(3000, 1, dim=d, spread=s, seed=2)
    assert sl.rke_score(m.X, sigma=sigma) == pytest.approx((1 + 4 * s**2 / sigma**2) ** (d / 2), rel=0.05)


# ------------------------------------------------------------------ conditional
def test_conditional_identical_prompts_equals_rke(rng):
    X = rng.normal(size=(90, 3))
    T = np.tile(rng.normal(size=(1, 4)), (90, 1))
    assert sl.conditional_rke_score(X, T, sigma_x=1.1, sigma_t=0.3) == pytest.approx(sl.rke_score(X, sigma=1.1), rel=1e-9)
    assert sl.conditional_vendi_score(X, T, sigma_x=1.1, sigma_t=0.3) == pytest.approx(sl.vendi_score(X, sigma=1.1), rel=1e-6)


def test_conditional_distinct_prompts_gives_one(rng):
    X = rng.normal(size=(40, 3))
    T = 100 * np.eye(40)
    assert sl.conditional_rke_score(X, T, sigma_x=1.0, sigma_t=0.3) == pytest.approx(1.0, rel=1e-9)
    assert sl.conditional_vendi_score(X, T, sigma_x=1.0, sigma_t=0.3) == pytest.approx(1.0, rel=1e-6)


def test_conditional_matches_brute_force(rng):
    X, T = rng.normal(size=(70, 4)), rng.normal(size=(70, 2))
    KX = sl.gaussian_kernel(X, sigma=1.5).double().numpy()
    KT = sl.gaussian_kernel(T, sigma=0.8).double().numpy()
    expect = np.sum(KT**2) / np.sum((KX * KT) ** 2)
    assert sl.conditional_rke_score(X, T, 1.5, 0.8) == pytest.approx(expect, rel=1e-9)
    h = brute_entropy(KX * KT, 1) - brute_entropy(KT, 1)
    assert sl.conditional_vendi_score(X, T, 1.5, 0.8) == pytest.approx(math.exp(h), rel=1e-7)
    info = brute_entropy(KX, 1) + brute_entropy(KT, 1) - brute_entropy(KX * KT, 1)
    assert sl.information_vendi_score(X, T, 1.5, 0.8) == pytest.approx(math.exp(info), rel=1e-7)
    assert sl.information_vendi_score(X, T, 1.5, 0.8) >= 1 - 1e-9


def test_conditional_rke_is_not_subadditive():
    # Order 2 is not subadditive: Cond-RKE can exceed RKE(X). Image and prompt labels
    # (far apart points, so kernels are 0/1 blocks): X blocks (4,1,1), joint blocks (2,1,1,1,1).
    X = 100.0 * np.array([[2], [0], [1], [2], [2], [2]])
    T = 100.0 * np.array([[1], [1], [1], [1], [0], [2]])
    assert sl.rke_score(X, sigma=1.0) == pytest.approx(36 / 18)
    assert sl.conditional_rke_score(X, T, 1.0, 1.0) == pytest.approx(18 / 8)
    # order 1 is subadditive: Cond-Vendi <= Vendi holds on the same data
    assert sl.conditional_vendi_score(X, T, 1.0, 1.0) <= sl.vendi_score(X, sigma=1.0) + 1e-9


# ------------------------------------------------------------------ bad input
def test_bad_input_errors(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        sl.rke_score(X[:1])
    with pytest.raises(ValueError, match="NaN or Inf"):
        sl.vendi_score(np.where(np.eye(10, 3) > 0, np.nan, X))
    with pytest.raises(ValueError, match="same samples"):
        sl.conditional_rke_score(X, rng.normal(size=(9, 2)))
    with pytest.raises(ValueError, match="bandwidth"):
        sl.rke_score(X, sigma=0)
    with pytest.raises(ValueError, match="bandwidth"):
        sl.conditional_rke_score(X, X, sigma_x=1.0, sigma_t=-1.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        sl.vendi_score(X, kernel="rbf")
    for bad_order in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="order"):
            sl.vendi_score(X, order=bad_order)
    with pytest.raises(TypeError, match="order"):
        sl.renyi_entropy(X, "two")
    with pytest.raises(ValueError, match="unknown method"):
        sl.rke_score(X, method="fast")
    with pytest.raises(ValueError, match="2-D"):
        sl.rke_score(X[:, 0])
    with pytest.raises(ValueError, match="symmetric"):
        sl.score_from_kernel(np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="diagonal"):
        sl.score_from_kernel(2 * np.ones((3, 3)))
