"""Property-based checks of the scores (hypothesis): invariances, bounds, monotonicity."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import sparke_lab as sl

finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False, width=64)
feature_sets = st.integers(2, 25).flatmap(
    lambda n: st.integers(1, 4).flatmap(lambda d: arrays(np.float64, (n, d), elements=finite)))
sigmas = st.floats(0.2, 5.0)
SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(X=feature_sets, sigma=sigmas, seed=st.integers(0, 1000))
def test_permutation_invariance(X, sigma, seed):
    perm = np.random.default_rng(seed).permutation(len(X))
    assert sl.rke_score(X[perm], sigma=sigma) == pytest.approx(sl.rke_score(X, sigma=sigma), rel=1e-9)
    assert sl.vendi_score(X[perm], sigma=sigma) == pytest.approx(sl.vendi_score(X, sigma=sigma), rel=1e-7)


@SETTINGS
@given(X=feature_sets, sigma=sigmas)
def test_bounds_and_order(X, sigma):
    n = len(X)
    rke = sl.rke_score(X, sigma=sigma)
    vendi = sl.vendi_score(X, sigma=sigma)
    assert 1 - 1e-9 <= rke <= n + 1e-9
    assert vendi >= rke * (1 - 1e-7)  # H_alpha is non-increasing in alpha
    assert rke >= sl.vendi_score(X, sigma=sigma, order=math.inf) * (1 - 1e-7)


@SETTINGS
@given(X=feature_sets, s1=sigmas, s2=sigmas)
def test_rke_non_increasing_in_sigma(X, s1, s2):
    lo, hi = sorted((s1, s2))
    assert sl.rke_score(X, sigma=hi) <= sl.rke_score(X, sigma=lo) * (1 + 1e-9)


@SETTINGS
@given(X=feature_sets, sigma=sigmas)
def test_duplicating_every_sample_leaves_scores_unchanged(X, sigma):
    X2 = np.concatenate([X, X])
    assert sl.rke_score(X2, sigma=sigma) == pytest.approx(sl.rke_score(X, sigma=sigma), rel=1e-9)
    assert sl.vendi_score(X2, sigma=sigma) == pytest.approx(sl.vendi_score(X, sigma=sigma), rel=1e-6)


@SETTINGS
@given(X=feature_sets, data=st.data(), sx=sigmas, stt=sigmas)
def test_conditional_bounds(X, data, sx, stt):
    T = data.draw(arrays(np.float64, (len(X), 2), elements=finite))
    assert sl.conditional_rke_score(X, T, sx, stt) >= 1 - 1e-9
    cv = sl.conditional_vendi_score(X, T, sx, stt)
    assert 1 - 1e-6 <= cv <= sl.vendi_score(X, sigma=sx) * (1 + 1e-6)
