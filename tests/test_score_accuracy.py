"""Accuracy of the scores (issue 14, items 2.1 and 3).

1. The exact routes on adversarial data (large offsets, tiny and huge bandwidths, float32 and
   float64, duplicated rows), checked with hypothesis against the invariants
   ``1 <= RKE <= rank <= n``, ``RKE <= Vendi`` and ``H_alpha`` non-increasing in ``alpha``, and
   against a float64 brute force, every tolerance derived from an error bound.
2. The random-feature RKE: within 1 % on clustered data where the old estimator was 3 % off,
   and its standard error covers the exact value as often as it claims (binomial test).
"""
import math

import numpy as np
import pytest
from hypothesis import example, HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

import sparke_lab as sl
from sparke_lab.kernels import exact_route_relative_error, higham_gamma
from sparke_lab.rff import _group_sizes
from sparke_lab.scores import entropy, kernel_eigenvalues

U = 2.0 ** -53
ORDERS = [0.5, 1.0, 2.0, 3.0, 10.0, 400.0, math.inf]


def brute_sum_k2(X: np.ndarray, sigma: float) -> float:
    """``sum_ij exp(-||x_i - x_j||^2 / sigma^2)`` (= k^2) from raw float64 differences.

    Differences of float32 inputs are exact in float64; dividing, squaring and a d-term sum
    give an exponent with relative error <= higham_gamma(d + 3), so each term is within
    ``expm1(746 higham_gamma(d + 3)) + 2u`` (terms below exp(-746) are 0 in float64 either way)."""
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(over="ignore"):
        D = (((X[:, None, :] - X[None, :, :]) / sigma) ** 2).sum(-1)
    return float(np.exp(-D).sum())


def brute_error(d: int) -> float:
    return math.expm1(746 * higham_gamma(d + 3)) + 2 * U


def eigen_error(n: int) -> float:
    """Relative effect of the symmetric eigensolver on sum(lambda^2): backward stability,
    computed eigenvalues exact for K + E with ||E||_2 <= c n u ||K||_2; we assume c <= 10
    (LAPACK's bounds are modest multiples of n u), so ||E||_F / ||K||_F <= 10 n^1.5 u."""
    return 10 * n ** 1.5 * U


@st.composite
def adversarial(draw):
    n = draw(st.integers(2, 24))
    d = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    base = draw(arrays(np.float64, (n, d), elements=st.floats(-1, 1)))
    spread = 10.0 ** draw(st.integers(-6, 3))
    offset = draw(arrays(np.float64, (d,), elements=st.floats(-1e6, 1e6)))
    X = base * spread + offset
    for i in range(draw(st.integers(0, n // 2))):  # duplicated rows: rank < n
        X[draw(st.integers(0, n - 1))] = X[draw(st.integers(0, n - 1))]
    X = X.astype(dtype)
    extreme = draw(st.sampled_from([None, None, None, 1e-300, 1e-160, 1e300]))
    sigma = extreme if extreme else spread * 10.0 ** draw(st.floats(-4, 4))
    return X, sigma


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=adversarial())
@example(case=(np.array([[2.22507386e-313], [0.0]]), 1.0))  # subnormal data: 2^-k overflowed
def test_exact_scores_on_adversarial_data(case):
    X, sigma = case
    n, d = X.shape
    rank = len(np.unique(X, axis=0))      # the Gaussian kernel of distinct points is positive definite
    eps = exact_route_relative_error(d)   # per kernel value, from the library's certified routes
    rke = sl.rke_score(X, sigma=sigma)
    assert 1.0 <= rke <= n                # by construction: unit diagonal, values in [0, 1]
    # sum k^2 >= sum over groups of duplicates of (size^2) (1 - eps) >= n^2 (1 - eps) / rank
    assert rke <= rank / (1 - eps)
    # against the float64 brute force: both sums of positive terms, each term within its bound
    ref = brute_sum_k2(X, sigma)
    tol = eps + brute_error(d) + 2 * higham_gamma(n * n)
    assert abs(n * n / rke - ref) <= tol * ref
    # H_1 >= H_2 of the same matrix: the two routes differ by the kernel errors (2 eps) and the
    # eigensolver (twice eigen_error for sum lambda^2); eigenvalues below 1e-12 max are dropped
    # (at most n 1e-12 of the mass, which moves H_1 - H_2 by <= n 1e-12 (log n + 2))
    vendi = sl.vendi_score(X, sigma=sigma)
    tol_v = 2 * eps + 4 * eigen_error(n) + n * 1e-12 * (math.log(n) + 2) + 1e-14
    assert rke <= vendi * (1 + tol_v)
    assert vendi <= n * (1 + 4 * U)
    # H_alpha non-increasing in alpha, on one spectrum; each H_a is computed with absolute error
    # <= (n + 4) u (1 + a L) / |1 - a| (log-sum-exp of n terms, L = max |log lambda| <= log(1e12 n)
    # after the cut), Shannon with (n + 4) u (1 + L)
    lam = kernel_eigenvalues(X, sigma=sigma)
    L = math.log(1e12 * n) + 1
    H = [entropy(lam, a) for a in ORDERS]

    def err(a):
        if math.isinf(a):
            return 4 * U * L
        if a == 1:
            return (n + 4) * U * (1 + L)
        return (n + 4) * U * (1 + a * L) / abs(1 - a)
    for (a, ha), (b, hb) in zip(zip(ORDERS, H), zip(ORDERS[1:], H[1:])):
        assert ha >= hb - err(a) - err(b), (a, b, ha, hb)
    # the Frobenius RKE sits between H_1 and H_3 of the spectrum
    assert math.log(rke) >= H[3] - tol_v - err(3.0)


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6])
def test_float32_offsets_do_not_move_the_scores(offset):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 8))
    X32 = (X + offset).astype(np.float32)
    ref = brute_sum_k2(X32, 1.0)
    eps = exact_route_relative_error(8) + brute_error(8) + 2 * higham_gamma(3600)
    assert 60 * 60 / sl.rke_score(X32, sigma=1.0) == pytest.approx(ref, rel=eps)
    # the same float32 values, centred in float64, give the same kernel
    K32 = sl.gaussian_kernel(X32, sigma=1.0).double().numpy()
    Kc = sl.gaussian_kernel(X32.astype(np.float64) - offset, sigma=1.0).numpy()
    np.testing.assert_allclose(K32, Kc, rtol=2 * exact_route_relative_error(8) + 2 ** -23, atol=0)
    np.testing.assert_array_equal(np.diag(K32), 1.0)


# ------------------------------------------------------------------ random-feature estimates
@pytest.fixture(scope="module")
def clustered():
    """20 tight clusters in 16-D at sigma 3 (the setting of issue 14, at n = 5,000)."""
    m = sl.gaussian_mixture(5000, 20, dim=16, separation=8.0, spread=0.05, seed=0)
    return m.X, sl.rke_score(m.X, sigma=3.0)


def test_rff_rke_within_one_percent_on_clustered_data(clustered):
    # The mean-embedding estimator used before was off by up to 2.9 % on these seeds (and 4.9 %
    # on the 20,000-point set of the issue); the covariance form's standard error here is about
    # 0.2 %, so 1 % is 5 standard errors.
    X, exact = clustered
    for seed in range(6):
        value, se = sl.rke_score(X, sigma=3.0, method="rff", n_features=4096, seed=seed, return_se=True)
        assert abs(value / exact - 1) < 0.01, seed
        assert 0 < se < 0.005 * exact and abs(value - exact) < 5 * se, (seed, value, se)
    assert sl.rke_score(X, sigma=3.0, method="rff", n_features=4096, seed=3) == \
        sl.rke_score(X, sigma=3.0, method="rff", n_features=4096, seed=3, return_se=True)[0]


def coverage_counts(X, sigma, exact, n_features, seeds):
    within1 = within2 = 0
    for s in seeds:
        v, se = sl.rke_score(X, sigma=sigma, method="rff", n_features=n_features, seed=s, return_se=True)
        within1 += abs(v - exact) <= se
        within2 += abs(v - exact) <= 2 * se
    return within1, within2


@pytest.mark.parametrize("data", ["clustered", "diffuse"])
def test_rff_standard_error_covers_the_exact_value(data):
    """``|estimate - exact| <= k SE`` over N = 200 seeds, k = 1 and 2.

    With m = 512 frequencies in G = 32 groups, (estimate - exact) / SE is close to Student's t
    with G - 1 = 31 degrees of freedom, so each seed covers with p_1 = P(|t_31| <= 1) = 0.675 and
    p_2 = P(|t_31| <= 2) = 0.946. The seeds are independent draws of the frequencies, so the
    counts are Binomial(N, p_k); we accept counts inside the central interval of probability
    1 - 1e-4 (per count). An SE too small lowers both counts, one too large raises the 1-SE count.
    """
    if data == "clustered":
        m = sl.gaussian_mixture(2000, 10, dim=8, separation=6.0, spread=0.3, seed=2)
        X, sigma = m.X, 1.5
    else:
        X, sigma = np.random.default_rng(3).normal(size=(2000, 4)), 0.7
    exact = sl.rke_score(X, sigma=sigma)
    N, G = 200, 32
    assert len(_group_sizes(512)) == G
    within1, within2 = coverage_counts(X, sigma, exact, 512, range(N))
    for count, k in ((within1, 1.0), (within2, 2.0)):
        p = 2 * stats.t.cdf(k, G - 1) - 1
        lo, hi = stats.binom.ppf(0.5e-4, N, p), stats.binom.isf(0.5e-4, N, p)
        assert lo <= count <= hi, (data, k, count, (lo, hi), p * N)
