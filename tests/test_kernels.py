"""Kernels against brute-force formulas, chunked sums against full matrices, input checks."""
import math

import numpy as np
import pytest
import torch

import sparke_lab as sl
from sparke_lab.kernels import as_features, pairwise_kernel_power_sum


def brute_gaussian(X, Y, sigma):
    return np.array([[math.exp(-np.sum((x - y) ** 2) / (2 * sigma**2)) for y in Y] for x in X])


def brute_cosine(X, Y):
    return np.array([[x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for y in Y] for x in X])


def test_gaussian_matches_brute_force(rng):
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(sl.gaussian_kernel(X, Y, sigma=0.7).numpy(), brute_gaussian(X, Y, 0.7), rtol=1e-10)
    K = sl.gaussian_kernel(X, sigma=1.3).numpy()
    np.testing.assert_allclose(K, brute_gaussian(X, X, 1.3), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(np.diag(K), 1.0)


def test_cosine_matches_brute_force(rng):
    X, Y = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
    np.testing.assert_allclose(sl.cosine_kernel(X, Y).numpy(), brute_cosine(X, Y), rtol=1e-10)


def test_squared_gaussian_is_gaussian_at_sigma_over_root2(rng):
    X = rng.normal(size=(10, 4))
    K = sl.gaussian_kernel(X, sigma=1.1).numpy()
    np.testing.assert_allclose(K**2, sl.gaussian_kernel(X, sigma=1.1 / math.sqrt(2)).numpy(), rtol=1e-10, atol=1e-15)


def test_numpy_and_torch_inputs_agree(rng):
    X = rng.normal(size=(20, 5)).astype(np.float32)
    a = sl.gaussian_kernel(X, sigma=2.0)
    b = sl.gaussian_kernel(torch.from_numpy(X), sigma=2.0)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert sl.gaussian_kernel(X.astype(np.float64), sigma=2.0).dtype == torch.float64


@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blockwise_power_sum_equals_full_matrix(rng, kernel, dtype):
    X = rng.normal(size=(157, 6)).astype(dtype)
    T = rng.normal(size=(157, 3)).astype(dtype)
    Xt, Tt = as_features(X), as_features(T)
    K = sl.kernel_matrix(X, kernel=kernel, sigma=1.5).double()
    KT = sl.kernel_matrix(T, kernel="gaussian", sigma=0.9).double()
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    # small blocks force many off-diagonal blocks and a ragged last block
    assert pairwise_kernel_power_sum(Xt, kernel, 1.5, 2, block=40) == pytest.approx(float((K**2).sum()), rel=rtol)
    got = pairwise_kernel_power_sum(Xt, kernel, 1.5, 2, Tt, "gaussian", 0.9, block=33)
    assert got == pytest.approx(float(((K * KT) ** 2).sum()), rel=rtol)


def test_median_heuristic(rng):
    X = rng.normal(size=(50, 3))
    d = [np.linalg.norm(X[i] - X[j]) for i in range(50) for j in range(i + 1, 50)]
    assert sl.median_heuristic_bandwidth(X) == pytest.approx(float(np.median(d)), rel=1e-6)
    with pytest.raises(ValueError, match="identical"):
        sl.median_heuristic_bandwidth(np.ones((5, 2)))


@pytest.mark.parametrize("bad, match", [
    (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN or Inf"),
    (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or Inf"),
    (np.zeros(5), "2-D"),
    (np.zeros((2, 3, 4)), "2-D"),
])
def test_bad_features(bad, match):
    with pytest.raises(ValueError, match=match):
        sl.gaussian_kernel(bad)


def test_bad_types_and_parameters(rng):
    X = rng.normal(size=(4, 2))
    with pytest.raises(TypeError):
        sl.gaussian_kernel("not an array")
    with pytest.raises(TypeError):
        sl.gaussian_kernel(np.array([["a", "b"]]))
    for s in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bandwidth"):
            sl.gaussian_kernel(X, sigma=s)
    with pytest.raises(ValueError, match="unknown kernel"):
        sl.kernel_matrix(X, kernel="laplace")
    with pytest.raises(ValueError, match="all-zero rows"):
        sl.cosine_kernel(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same number of features"):
        sl.gaussian_kernel(X, rng.normal(size=(3, 5)))
