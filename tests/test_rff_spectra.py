"""Random-Fourier-feature scores converge to the exact ones; spectra find the modes; RRKE."""
import math

import numpy as np
import pytest
import torch

import sparke_lab as sl
from sparke_lab.rff import FourierFeatures, joint_feature_map


def test_feature_map_unit_norm_and_kernel_approximation(rng):
    X = torch.from_numpy(rng.normal(size=(30, 4)))
    fm = FourierFeatures(4, "gaussian", sigma=1.5, n_features=20000, seed=3, dtype=torch.float64)
    F = fm(X)
    torch.testing.assert_close(F.norm(dim=1), torch.ones(30, dtype=torch.float64))
    err = (F @ F.T - sl.gaussian_kernel(X, sigma=1.5)).abs().max()
    assert err < 0.03
    # same seed, same map; different seed, different map
    assert torch.equal(FourierFeatures(4, sigma=1.5, n_features=50, seed=3)(X),
                       FourierFeatures(4, sigma=1.5, n_features=50, seed=3)(X))
    assert not torch.equal(FourierFeatures(4, sigma=1.5, n_features=50, seed=3)(X),
                           FourierFeatures(4, sigma=1.5, n_features=50, seed=4)(X))


def test_joint_map_is_product_kernel(rng):
    X, T = torch.from_numpy(rng.normal(size=(25, 3))), torch.from_numpy(rng.normal(size=(25, 2)))
    phi = joint_feature_map(3, 2, "gaussian", 1.2, 0.7, n_features=20000, seed=0, dtype=torch.float64)
    F = phi(X, T)
    K = sl.gaussian_kernel(X, sigma=1.2) * sl.gaussian_kernel(T, sigma=0.7)
    assert (F @ F.T - K).abs().max() < 0.03
    phic = joint_feature_map(3, 2, "cosine", 1.0, 1.0, n_features=8, dtype=torch.float64)
    torch.testing.assert_close(phic(X, T) @ phic(X, T).T, sl.cosine_kernel(X) * sl.cosine_kernel(T))


def rel_err(a, b):
    return abs(a - b) / abs(b)


def test_rff_rke_converges():
    m = sl.gaussian_mixture(3000, [0.5, 0.3, 0.2], dim=10, separation=6.0, spread=0.5, seed=0)
    exact = sl.rke_score(m.X, sigma=1.5)
    errs = {nf: np.mean([rel_err(sl.rke_score(m.X, sigma=1.5, method="rff", n_features=nf, seed=s), exact)
                         for s in range(5)]) for nf in (16, 256, 4096)}
    assert errs[4096] < errs[16]
    assert errs[4096] < 0.04  # Monte Carlo error ~ 1/sqrt(n_features)


def test_rff_vendi_and_conditional_converge():
    m = sl.gaussian_mixture(1000, [0.5, 0.3, 0.2], dim=6, separation=6.0, spread=0.3, seed=1)
    T = np.eye(3)[m.labels] + 0.05 * np.random.default_rng(0).normal(size=(1000, 3))
    for order in (1.0, 3.0):
        exact = sl.vendi_score(m.X, sigma=1.0, order=order)
        small = sl.vendi_score(m.X, sigma=1.0, order=order, method="rff", n_features=8, seed=0)
        big = sl.vendi_score(m.X, sigma=1.0, order=order, method="rff", n_features=1024, seed=0)
        assert rel_err(big, exact) < 0.05 and rel_err(big, exact) < rel_err(small, exact)
    exact = sl.conditional_rke_score(m.X, T, 1.0, 0.5)
    approx = sl.conditional_rke_score(m.X, T, 1.0, 0.5, method="rff", n_features=4096)
    assert rel_err(approx, exact) < 0.05
    exact = sl.conditional_vendi_score(m.X, T, 1.0, 0.5)
    approx = sl.conditional_vendi_score(m.X, T, 1.0, 0.5, method="rff", n_features=1024)
    assert rel_err(approx, exact) < 0.08


def test_cosine_rff_route_is_exact(rng):
    X = rng.normal(size=(300, 5))
    assert sl.rke_score(X, kernel="cosine", method="rff") == pytest.approx(sl.rke_score(X, kernel="cosine"), rel=1e-6)


def test_spectrum_and_modes_find_mixture_components():
    m = sl.gaussian_mixture(600, [0.5, 0.3, 0.2], dim=5, separation=10.0, spread=0.05, seed=4)
    for method in ("exact", "rff"):
        spec = sl.kernel_spectrum(m.X, sigma=1.0, top_k=3, method=method, n_features=1024)
        np.testing.assert_allclose(spec.values[:3], [0.5, 0.3, 0.2], atol=0.02)
        assert spec.values.sum() == pytest.approx(1.0, abs=1e-6)
        modes = sl.find_modes(m.X, 3, sigma=1.0, spectrum=spec)
        for mode, expect_weight in zip(modes, [0.5, 0.3, 0.2]):
            labels = m.labels[mode.members]
            assert len(set(labels)) == 1  # every member from one component
            assert len(mode.members) == round(600 * expect_weight)
            assert set(m.labels[mode.top(10)]) == {labels[0]}


def test_rrke_properties(rng):
    X = rng.normal(size=(150, 3))
    assert sl.rrke(X, X) == pytest.approx(0.0, abs=1e-9)
    near = sl.rrke(X, X + 0.1)
    far = sl.rrke(X, X + 3.0)
    assert 0 <= near < far
    # brute force nuclear norm
    K = sl.gaussian_kernel(X, X + 0.5).double().numpy() / 150
    assert sl.rrke(X, X + 0.5) == pytest.approx(-2 * np.log(np.linalg.svd(K, compute_uv=False).sum()), rel=1e-9)
    assert sl.rrke(X, X + 0.5, method="rff", n_features=256) == pytest.approx(sl.rrke(X, X + 0.5), abs=0.05)


def test_exact_eigen_route_refuses_huge_n(monkeypatch):
    import sparke_lab.scores as scores
    monkeypatch.setattr(scores, "MAX_EXACT_EIGEN_N", 50)
    X = np.random.default_rng(0).normal(size=(60, 2))
    with pytest.raises(ValueError, match="method='rff'"):
        sl.vendi_score(X)
    assert sl.vendi_score(X, method="rff", n_features=64) > 1


def test_feature_sum_equals_sum_of_features(rng):
    X = torch.from_numpy(rng.normal(size=(300, 5)))
    T = torch.from_numpy(rng.normal(size=(300, 2)))
    fm = FourierFeatures(5, "gaussian", sigma=1.3, n_features=64, seed=1, dtype=torch.float64)
    torch.testing.assert_close(fm.feature_sum(X, chunk=70), fm(X).sum(0))
    phi = joint_feature_map(5, 2, "gaussian", 1.3, 0.4, n_features=64, dtype=torch.float64)
    torch.testing.assert_close(phi.feature_sum(X, T), phi(X, T).sum(0))
