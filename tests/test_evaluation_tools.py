"""sparke_lab.evaluation_tools against brute-force references (exact enumeration where the
claim is an expectation, so no tolerance depends on a random draw)."""
import itertools
import math

import numpy as np
import pytest
import torch

import sparke_lab as sl
from sparke_lab import evaluation_tools as ev


def _inv_rke_matrix(K):
    K = np.asarray(K, dtype=np.float64)
    return float(np.sum(K ** 2)) / K.shape[0] ** 2


# ------------------------------------------------------------------ finite-n bias
@pytest.mark.parametrize("weights", [(1 / 3, 1 / 3, 1 / 3), (0.6, 0.3, 0.1)])
def test_expected_inverse_rke_is_exact_for_separated_point_modes(weights):
    # n = 4 iid draws from 3 point masses far apart: enumerate all 3^4 outcomes
    w = np.asarray(weights)
    centres = 10.0 * np.eye(3)
    n = 4
    mean = 0.0
    for labels in itertools.product(range(3), repeat=n):
        p = float(np.prod(w[list(labels)]))
        mean += p / sl.rke_score(centres[list(labels)], sigma=1.0)
    assert abs(mean - ev.expected_inverse_rke(n, float(np.sum(w ** 2)))) < 1e-12


def test_expected_inverse_rke_holds_for_any_kernel_population():
    # a discrete population of 3 nearby points (kernel values strictly between 0 and 1)
    pts = np.array([[0.0, 0.0], [0.7, 0.2], [0.1, 1.1]])
    w = np.array([0.5, 0.3, 0.2])
    sigma = 0.9
    K = sl.gaussian_kernel(pts, sigma=sigma).double().numpy()
    p2 = float(w @ (K ** 2) @ w)                        # E k(X, X')^2
    n = 3
    mean = sum(float(np.prod(w[list(lab)])) * _inv_rke_matrix(K[np.ix_(lab, lab)])
               for lab in itertools.product(range(3), repeat=n))
    assert abs(mean - ev.expected_inverse_rke(n, p2)) < 1e-12


def test_bootstrap_mean_of_inverse_rke_is_the_formula_with_the_sample_as_population():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 2))
    n = len(X)
    K = sl.gaussian_kernel(X, sigma=0.8).double().numpy()
    boot = np.mean([_inv_rke_matrix(K[np.ix_(r, r)])
                    for r in itertools.product(range(n), repeat=n)])   # all n^n resamples
    plug_in = 1.0 / sl.rke_score(X, sigma=0.8)
    assert abs(boot - ev.expected_inverse_rke(n, plug_in)) < 1e-12
    assert boot > plug_in                                            # biased toward duplicates


def test_expected_inverse_rke_rejects_bad_input():
    with pytest.raises(ValueError, match="n must be an integer"):
        ev.expected_inverse_rke(0, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ev.expected_inverse_rke(10, 1.5)


def test_unbiased_inverse_rke_matches_brute_force_and_is_unbiased():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(23, 3))
    K = sl.gaussian_kernel(X, sigma=1.3).double().numpy()
    off = (np.sum(K ** 2) - 23) / (23 * 22)
    assert abs(ev.unbiased_inverse_rke(X, sigma=1.3) - off) < 1e-12
    # exact expectation over all 3^3 draws from a discrete population
    pts = np.array([[0.0, 0.0], [0.7, 0.2], [0.1, 1.1]])
    w = np.array([0.5, 0.3, 0.2])
    Kp = sl.gaussian_kernel(pts, sigma=0.9).double().numpy()
    mean = sum(float(np.prod(w[list(lab)])) * ev.unbiased_inverse_rke(pts[list(lab)], sigma=0.9)
               for lab in itertools.product(range(3), repeat=3))
    assert abs(mean - float(w @ (Kp ** 2) @ w)) < 1e-12
    with pytest.raises(ValueError):
        ev.unbiased_inverse_rke(X[:1])
    with pytest.raises(ValueError):
        ev.unbiased_inverse_rke(X, sigma=0.0)


# ------------------------------------------------------------------ matching n
def test_subsample_indices_are_distinct_seeded_and_checked():
    subs = ev.subsample_indices(10, 4, repeats=6, seed=3)
    assert len(subs) == 6 and all(len(set(s.tolist())) == 4 and s.max() < 10 for s in subs)
    again = ev.subsample_indices(10, 4, repeats=6, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(subs, again))
    with pytest.raises(ValueError, match="without replacement"):
        ev.subsample_indices(5, 6, repeats=1)


def test_subsample_and_matched_scores_score_the_right_rows():
    X = np.arange(20.0)[:, None]
    T = np.arange(20.0)[:, None] * 10
    vals = ev.subsample_scores(lambda A, B: float(A.sum() + B.sum()), (X, T), size=5, repeats=4, seed=2)
    ref = [float(X[i].sum() + T[i].sum()) for i in ev.subsample_indices(20, 5, 4, seed=2)]
    assert np.allclose(vals, ref)
    full = ev.subsample_scores(lambda A: float(A.sum()), X, size=20)
    assert full.shape == (1,) and full[0] == X.sum()
    out = ev.matched_n_scores(lambda A: float(len(A)), {"small": X[:8], "big": X}, repeats=3)
    assert out["small"].tolist() == [8.0] and out["big"].tolist() == [8.0] * 3
    with pytest.raises(ValueError, match="exceeds the size"):
        ev.matched_n_scores(lambda A: 0.0, {"small": X[:8], "big": X}, n=10)
    with pytest.raises(ValueError, match="same samples"):
        ev.subsample_scores(lambda A, B: 0.0, (X, T[:5]), size=3)


# ------------------------------------------------------------------ bandwidth
def test_sigma_scan_equals_the_scores():
    X = np.random.default_rng(4).normal(size=(40, 3))
    sig = [0.3, 1.0, 4.0]
    assert np.allclose(ev.sigma_scan(X, sig), [sl.rke_score(X, sigma=s) for s in sig], rtol=1e-12)
    assert np.allclose(ev.sigma_scan(X, sig, order=1.0), [sl.vendi_score(X, sigma=s) for s in sig],
                       rtol=1e-12)
    with pytest.raises(ValueError):
        ev.sigma_scan(X, [1.0, -1.0])


def _brute_plateau(s, v, n, max_slope, margin):
    ls, lv = np.log(s), np.log(v)
    best = None
    for a in range(len(s)):
        for b in range(a + 1, len(s)):
            seg = range(a, b)
            ok = all(abs((lv[i + 1] - lv[i]) / (ls[i + 1] - ls[i])) <= max_slope for i in seg)
            inside = all(1 + margin < v[i] < (1 - margin) * n for i in range(a, b + 1))
            if ok and inside and (best is None or ls[b] - ls[a] > best[0] + 1e-12):
                best = (ls[b] - ls[a], a, b)
    return best


def test_find_plateau_matches_brute_force_and_skips_trivial_plateaus():
    s = np.logspace(-3, 3, 25)
    ls = np.log10(s)
    # n = 100 at small sigma, a flat 4 over [0.1, 10], 1 at large sigma, steep ramps between
    v = np.exp(np.interp(ls, [-3, -2, -1, 1, 2, 3], np.log([100, 100, 4, 4, 1, 1])))
    got = ev.find_plateau(s, v, n=100)
    _, a, b = _brute_plateau(s, v, 100, 0.1, 0.1)
    assert (got.sigma_lo, got.sigma_hi) == (s[a], s[b])
    assert abs(got.sigma_lo - 0.1) < 1e-9 and abs(got.sigma_hi - 10.0) < 1e-9
    assert abs(got.sigma - 1.0) < 1e-9 and abs(got.score - 4.0) < 1e-9
    # without n the plateau at n (one decade, sigma <= 1e-2) is not excluded, and is shorter
    assert ev.find_plateau(s, v).sigma_lo == got.sigma_lo
    with pytest.raises(ValueError, match="no range of sigma"):
        ev.find_plateau(s, 1000.0 / s, n=10 ** 9)


def test_find_plateau_on_a_mixture_reports_the_mode_count():
    mix = sl.gaussian_mixture(300, [0.5, 0.2, 0.2, 0.1], dim=2, separation=10.0, spread=0.1, seed=0)
    sig = np.logspace(-2.5, 2.5, 21)
    p = ev.find_plateau(sig, ev.sigma_scan(mix.X, sig), n=300)
    assert 0.1 < p.sigma_lo < p.sigma < p.sigma_hi < 10.0
    assert abs(p.score / mix.expected_rke() - 1) < 0.05


# ------------------------------------------------------------------ intervals
def test_paired_interval_uses_the_delete_d_jackknife_scale_exactly():
    # mean statistic, every half of n = 10: se must be the textbook S / sqrt(n)
    rng = np.random.default_rng(5)
    a = rng.normal(size=10)
    b = a + rng.normal(size=10)
    halves = [np.array(c) for c in itertools.combinations(range(10), 5)]
    res = ev.paired_subsample_interval(lambda v: float(np.mean(v)), a, b, subsets=halves)
    d = b - a
    N = len(halves)
    textbook = np.std(d, ddof=1) / math.sqrt(10)
    assert abs(res.se - textbook * math.sqrt(N / (N - 1))) < 1e-12   # ddof=1 over all halves
    assert abs(res.delta - d.mean()) < 1e-12
    assert abs((res.hi - res.lo) / 2 - 1.959963984540054 * res.se) < 1e-9
    # the paired subset differences are scored on the same rows
    assert np.allclose(res.subset_deltas, [b[h].mean() - a[h].mean() for h in halves])


def test_paired_interval_identical_sets_and_bad_input():
    X = np.random.default_rng(6).normal(size=(30, 2))
    res = ev.paired_subsample_interval(lambda A: sl.rke_score(A, sigma=1.0), X, X, repeats=5)
    assert res.delta == 0 and res.se == 0 and res.subset_size == 15
    with pytest.raises(ValueError, match="paired row by row"):
        ev.paired_subsample_interval(np.sum, X, X[:20])
    with pytest.raises(ValueError, match="level"):
        ev.paired_subsample_interval(np.sum, X, X, level=1.0)
    with pytest.raises(ValueError, match="distinct row indices"):
        ev.paired_subsample_interval(np.sum, X, X, subsets=[np.array([0, 0]), np.array([1, 2])])


def test_subsample_interval_is_the_jackknife_interval_of_one_score():
    # mean statistic over every half of n = 10: se is the textbook S / sqrt(n) (ddof over halves)
    x = np.random.default_rng(8).normal(size=10)
    halves = [np.array(c) for c in itertools.combinations(range(10), 5)]
    res = ev.subsample_interval(lambda v: float(np.mean(v)), x, subsets=halves)
    N = len(halves)
    assert abs(res.delta - x.mean()) < 1e-12
    assert abs(res.se - np.std(x, ddof=1) / math.sqrt(10) * math.sqrt(N / (N - 1))) < 1e-12
    assert np.allclose(res.subset_deltas, [x[h].mean() for h in halves])
    # a conditional score on (X, T) subsets: rows of X and T taken together, brute-force se
    X = np.random.default_rng(9).normal(size=(24, 2))
    T = np.eye(3)[np.arange(24) % 3]
    f = lambda A, B: sl.conditional_rke_score(A, B, sigma_x=1.0, sigma_t=0.3)
    one = ev.subsample_interval(f, (X, T), repeats=6, size=8, seed=3)
    subset_scores = [f(X[i], T[i]) for i in ev.subsample_indices(24, 8, 6, 3)]
    assert one.subset_size == 8 and np.allclose(one.subset_deltas, subset_scores)
    assert abs(one.delta - f(X, T)) < 1e-12
    assert abs(one.se - np.std(subset_scores, ddof=1) * math.sqrt(8 / 16)) < 1e-12
    with pytest.raises(ValueError, match="level"):
        ev.subsample_interval(np.sum, X, level=0.0)
    with pytest.raises(ValueError, match="same samples"):
        ev.subsample_interval(f, (X, T[:10]))


# ------------------------------------------------------------------ feature space
def test_greedy_rke_subset_is_greedy_rke_maximisation():
    X = np.random.default_rng(7).normal(size=(30, 3))
    got = ev.greedy_rke_subset(X, 8, sigma=1.1, first=4)
    chosen = [4]
    for _ in range(7):
        rest = [c for c in range(30) if c not in chosen]
        chosen.append(max(rest, key=lambda c: sl.rke_score(X[chosen + [c]], sigma=1.1)))
    assert got.tolist() == chosen
    assert ev.greedy_rke_subset(torch.as_tensor(X), 8, sigma=1.1, first=4).tolist() == chosen
    with pytest.raises(ValueError, match="distinct rows"):
        ev.greedy_rke_subset(X, 31)
    with pytest.raises(ValueError, match="not a row index"):
        ev.greedy_rke_subset(X, 3, first=30)


# ------------------------------------------------------------------ matched fidelity
@pytest.mark.parametrize("maximize", [(True, True), (True, False), (False, True), (False, False)])
def test_pareto_front_matches_brute_force(maximize):
    rng = np.random.default_rng(8)
    x, y = rng.uniform(size=25), rng.uniform(size=25)
    sx, sy = (1 if maximize[0] else -1), (1 if maximize[1] else -1)
    brute = [i for i in range(25)
             if not any(sx * x[j] >= sx * x[i] and sy * y[j] >= sy * y[i]
                        and (x[j] != x[i] or y[j] != y[i]) for j in range(25))]
    got = ev.pareto_front(x, y, maximize)
    assert sorted(got.tolist()) == sorted(brute)
    assert np.all(np.diff(x[got]) >= 0)


def test_frontier_at_interpolates_the_front():
    fid = np.array([0.99, 0.97, 0.95, 0.90, 0.96])          # the last point is dominated
    tv = np.array([0.20, 0.12, 0.08, 0.06, 0.15])
    m = (True, False)                                         # high fidelity, low TV are better
    assert 4 not in ev.pareto_front(fid, tv, m).tolist()
    assert abs(ev.frontier_at(fid, tv, 0.96, m) - 0.10) < 1e-12      # halfway between .95 and .97
    assert abs(ev.frontier_at(fid, tv, 0.97, m) - 0.12) < 1e-12
    assert abs(ev.frontier_at(fid, tv, 0.80, m) - 0.06) < 1e-12      # below the range: most diverse
    with pytest.raises(ValueError, match="no run reaches fidelity"):
        ev.frontier_at(fid, tv, 0.995, m)
    with pytest.raises(ValueError, match="finite"):
        ev.frontier_at([0.9, np.nan], [0.1, 0.2], 0.9)
