"""Evaluating diversity honestly: sample size, bandwidth, intervals, feature space, fidelity.

The plug-in kernel scores are biased at finite n and depend on a bandwidth; a comparison of
two methods needs the same n, a reported sigma, an interval from a resampling scheme that does
not duplicate samples, features the methods were not tuned on, and the same fidelity. This
module holds the reusable pieces (derivations: docs/maths.md, "Finite-n bias", "Intervals"):

* finite-n bias: :func:`expected_inverse_rke` (the exact expectation of ``1 / RKE`` over n iid
  draws, or over a bootstrap resample), :func:`unbiased_inverse_rke` (the off-diagonal
  U-statistic); :func:`subsample_scores` and :func:`matched_n_scores` score sets at one n;
* bandwidth: :func:`sigma_scan` and :func:`find_plateau`;
* intervals: :func:`subsample_indices` and :func:`paired_subsample_interval` (paired
  half-sample subsampling without replacement, delete-d jackknife scaling);
  :func:`subsample_interval` for one set's score;
* feature space: :func:`greedy_rke_subset` (a discrete SPARKE: the subset a method tuned on
  one feature space would pick);
* matched fidelity: :func:`pareto_front` and :func:`frontier_at`.

Taught in: 11_evaluating_diversity; the recipe for one's own samples (bandwidth, matched n, a
reported interval): 10_evaluate_your_own_model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .kernels import ArrayLike, as_features, check_kernel, check_sigma, kernel_matrix, \
    pairwise_kernel_power_sum
from .scores import rke_score, vendi_score

Arrays = Union[ArrayLike, Tuple[ArrayLike, ...]]


# ------------------------------------------------------------------ helpers
def _as_tuple(arrays: Arrays) -> Tuple:
    return tuple(arrays) if isinstance(arrays, (tuple, list)) else (arrays,)


def _rows(arrays: Tuple, what: str) -> int:
    if not arrays:
        raise ValueError(f"{what}: no arrays given")
    n = len(arrays[0])
    for a in arrays[1:]:
        if len(a) != n:
            raise ValueError(f"{what}: the arrays must describe the same samples, got "
                             f"{[len(x) for x in arrays]} rows")
    return n


def _take(arrays: Tuple, idx: np.ndarray) -> Tuple:
    out = []
    for a in arrays:
        if isinstance(a, torch.Tensor):
            out.append(a[torch.as_tensor(idx, device=a.device)])
        else:
            out.append(np.asarray(a)[idx])
    return tuple(out)


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------ finite-n bias
def expected_inverse_rke(n: int, population_inverse_rke: float) -> float:
    """``E[1 / RKE_n] = 1/n + (1 - 1/n) * p2`` for the plug-in RKE of n iid draws.

    ``p2 = E k(X, X')^2`` is the population's inverse RKE (``1/k`` for k equal, well-separated
    tight modes). Exact for any kernel with ``k(x, x) = 1``: the n diagonal terms of
    ``sum_ij k_ij^2`` are 1 and each of the ``n (n - 1)`` others has mean ``p2``. So the
    plug-in RKE is pulled toward n (it can never exceed n) and scores at different n are not
    comparable. With the empirical distribution as the population (``p2 = 1 / RKE`` of a
    sample of size n) the same formula is the mean of ``1 / RKE`` over bootstrap resamples of
    size n: resampling with replacement applies the bias a second time.
    Taught in: 11_evaluating_diversity.
    """
    n = _check_int(n, "n", 1)
    p2 = float(population_inverse_rke)
    if not (0.0 <= p2 <= 1.0) or math.isnan(p2):
        raise ValueError(f"population_inverse_rke = E k(X, X')^2 must lie in [0, 1], got {p2!r}")
    return 1.0 / n + (1.0 - 1.0 / n) * p2


def unbiased_inverse_rke(X: ArrayLike, kernel: str = "gaussian", sigma: float = 1.0) -> float:
    """``sum_{i != j} k(x_i, x_j)^2 / (n (n - 1))``: an unbiased estimate of ``E k(X, X')^2``.

    The plug-in ``||K/n||_F^2`` keeps the diagonal (n ones), which biases ``1 / RKE`` up by
    ``(1 - 1/RKE_population) / n`` (:func:`expected_inverse_rke`); dropping it gives a
    U-statistic whose mean is the population's inverse RKE at every n >= 2. (Its inverse is
    consistent for the population RKE, but not unbiased for it.) O(n^2), blockwise.
    Taught in: 11_evaluating_diversity; applied in 10_evaluate_your_own_model.
    """
    kernel = check_kernel(kernel)
    Xt = as_features(X, "X", min_rows=2)
    if kernel == "gaussian":
        sigma = check_sigma(sigma)
    n = Xt.shape[0]
    total = pairwise_kernel_power_sum(Xt, kernel, sigma, 2)
    return max(total - n, 0.0) / (n * (n - 1))


# ------------------------------------------------------------------ matching n
def subsample_indices(n: int, size: int, repeats: int, seed: int = 0) -> List[np.ndarray]:
    """``repeats`` random subsets of ``size`` of ``range(n)``, each without replacement
    (sorted index arrays, seeded). Taught in: 11_evaluating_diversity."""
    n, size, repeats = _check_int(n, "n", 1), _check_int(size, "size", 1), _check_int(repeats, "repeats", 1)
    if size > n:
        raise ValueError(f"cannot draw subsets of {size} rows from {n} without replacement")
    rng = np.random.default_rng(seed)
    return [np.sort(rng.permutation(n)[:size]) for _ in range(repeats)]


def subsample_scores(score: Callable[..., float], arrays: Arrays, size: int, repeats: int = 20,
                     seed: int = 0) -> np.ndarray:
    """``score(*arrays[idx])`` over ``repeats`` random subsets of ``size`` rows without
    replacement; ``arrays`` is one (n, d) array or a tuple of row-aligned arrays (e.g.
    ``(X, T)`` for a conditional score). ``size == n`` scores the set once.
    Taught in: 11_evaluating_diversity.
    """
    arrays = _as_tuple(arrays)
    n = _rows(arrays, "subsample_scores")
    if _check_int(size, "size", 2) == n:
        return np.array([float(score(*arrays))])
    return np.array([float(score(*_take(arrays, idx)))
                     for idx in subsample_indices(n, size, repeats, seed)])


def matched_n_scores(score: Callable[..., float], sets: Mapping[str, Arrays],
                     n: Optional[int] = None, repeats: int = 20, seed: int = 0) -> Dict[str, np.ndarray]:
    """Score every set at one sample size ``n`` (default: the smallest set).

    Plug-in scores depend on n (:func:`expected_inverse_rke`), so sets of different sizes
    are compared only after subsampling each to the same n without replacement; the mean
    over ``repeats`` subsets is the score at n and their spread shows the subsampling noise.
    Returns ``{name: scores}`` (one value for a set that already has n rows).
    Taught in: 11_evaluating_diversity; applied in 10_evaluate_your_own_model.
    """
    if not sets:
        raise ValueError("no sets given")
    sizes = {k: _rows(_as_tuple(v), k) for k, v in sets.items()}
    n = min(sizes.values()) if n is None else _check_int(n, "n", 2)
    small = [k for k, s in sizes.items() if s < n]
    if small:
        raise ValueError(f"n = {n} exceeds the size of {small} ({[sizes[k] for k in small]} rows); "
                         f"choose n <= {min(sizes.values())}")
    return {k: subsample_scores(score, v, n, repeats, seed) for k, v in sets.items()}


# ------------------------------------------------------------------ bandwidth
def sigma_scan(X: ArrayLike, sigmas: Sequence[float], order: float = 2.0,
               kernel: str = "gaussian") -> np.ndarray:
    """The score ``exp(H_order)`` of ``X`` at each Gaussian bandwidth in ``sigmas``
    (order 2: :func:`~sparke_lab.scores.rke_score`, else :func:`~sparke_lab.scores.vendi_score`).
    Taught in: 11_evaluating_diversity (choose sigma on the plateau and report it); applied in
    10_evaluate_your_own_model.
    """
    s = np.asarray(sigmas, dtype=float).ravel()
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("sigmas must be a non-empty list of positive numbers")
    if float(order) == 2.0:
        return np.array([rke_score(X, kernel=kernel, sigma=float(v)) for v in s])
    return np.array([vendi_score(X, kernel=kernel, sigma=float(v), order=order) for v in s])


@dataclass
class Plateau:
    """The flattest long stretch of a score-vs-sigma curve: ``sigma_lo..sigma_hi``, its
    geometric centre ``sigma`` and the ``score`` there, and the largest ``|d log score /
    d log sigma|`` inside (``max_abs_slope``)."""
    sigma_lo: float
    sigma_hi: float
    sigma: float
    score: float
    max_abs_slope: float


def find_plateau(sigmas: Sequence[float], scores: Sequence[float], n: Optional[int] = None,
                 max_slope: float = 0.1, margin: float = 0.1) -> Plateau:
    """The widest range of bandwidths over which the score is flat.

    Local slopes ``d log score / d log sigma`` between neighbouring sigmas (sorted); a
    plateau is a run of consecutive intervals with ``|slope| <= max_slope``. The two trivial
    plateaus are excluded: intervals whose scores come within ``margin`` (relative) of 1
    (``sigma`` above every gap: one mode) or of ``n`` (``sigma`` below the spread: every
    sample its own mode; pass the sample size ``n``). Among the rest the run spanning the
    most decades of sigma wins. ``score`` is interpolated (log-log) at the run's geometric
    centre ``sigma``: the bandwidth to report with the score.
    No flat run raises ``ValueError``: the data have no scale at which a mode count is stable.
    Taught in: 11_evaluating_diversity; applied in 10_evaluate_your_own_model.
    """
    s = np.asarray(sigmas, dtype=float).ravel()
    v = np.asarray(scores, dtype=float).ravel()
    if s.size != v.size or s.size < 2:
        raise ValueError(f"need matching sigmas and scores with at least 2 points, got "
                         f"{s.size} and {v.size}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(v))) or np.any(s <= 0) or np.any(v <= 0):
        raise ValueError("sigmas and scores must be finite and positive")
    if not max_slope > 0 or not 0 <= margin < 1:
        raise ValueError("need max_slope > 0 and 0 <= margin < 1")
    order = np.argsort(s)
    s, v = s[order], v[order]
    if np.any(np.diff(s) <= 0):
        raise ValueError("sigmas must be distinct")
    ls, lv = np.log(s), np.log(v)
    slope = np.diff(lv) / np.diff(ls)
    inside = (v > 1.0 + margin) & (True if n is None else (v < (1.0 - margin) * float(n)))
    ok = (np.abs(slope) <= max_slope) & inside[:-1] & inside[1:]
    best, run_start = None, None
    for i in range(len(ok) + 1):
        if i < len(ok) and ok[i]:
            run_start = i if run_start is None else run_start
            continue
        if run_start is not None:
            span = ls[i] - ls[run_start]          # intervals run_start .. i-1 cover s[run_start..i]
            if best is None or span > best[0] + 1e-12:
                best = (span, run_start, i)
            run_start = None
    if best is None:
        raise ValueError(f"no range of sigma where the score is flat (|d log score / d log sigma| "
                         f"<= {max_slope}) away from 1 and n: no stable mode count at any scale; "
                         f"report the whole curve or scan a wider/finer sigma range")
    _, a, b = best
    centre = 0.5 * (ls[a] + ls[b])
    return Plateau(sigma_lo=float(s[a]), sigma_hi=float(s[b]), sigma=float(math.exp(centre)),
                   score=float(math.exp(np.interp(centre, ls[a:b + 1], lv[a:b + 1]))),
                   max_abs_slope=float(np.abs(slope[a:b]).max()))


# ------------------------------------------------------------------ intervals
@dataclass
class PairedInterval:
    """``delta = score(B) - score(A)`` at full size with a normal interval ``lo..hi`` of
    standard error ``se``; ``subset_deltas`` are the paired differences on the subsets."""
    delta: float
    se: float
    lo: float
    hi: float
    level: float
    subset_size: int
    subset_deltas: np.ndarray


def _check_subsets(n: int, size: Optional[int], repeats: int, seed: int,
                   subsets: Optional[Sequence[np.ndarray]]) -> Tuple[List[np.ndarray], int]:
    """Random subsets of ``size`` rows (default ``n // 2``), or the given ones checked."""
    if subsets is None:
        m = n // 2 if size is None else _check_int(size, "size", 2)
        if not 2 <= m < n:
            raise ValueError(f"subset size must satisfy 2 <= size < n = {n}, got {m}")
        subsets = subsample_indices(n, m, repeats, seed)
    else:
        subsets = [np.asarray(i, dtype=np.int64) for i in subsets]
        sizes = {len(i) for i in subsets}
        if len(subsets) < 2 or len(sizes) != 1:
            raise ValueError("subsets must be at least two index arrays of one size")
        m = sizes.pop()
        if not 2 <= m < n or any(len(set(i.tolist())) != m or i.min() < 0 or i.max() >= n for i in subsets):
            raise ValueError(f"each subset must hold {m} distinct row indices in 0..{n - 1} with m < n")
    return subsets, m


def paired_subsample_interval(score: Callable[..., float], a: Arrays, b: Arrays,
                              repeats: int = 50, size: Optional[int] = None, level: float = 0.95,
                              seed: int = 0, subsets: Optional[Sequence[np.ndarray]] = None
                              ) -> PairedInterval:
    """Interval for the gain ``score(b) - score(a)`` of two paired sample sets.

    Row i of ``a`` and of ``b`` belong together (same seed / prompt), so both are scored on
    the *same* random subsets of ``size`` rows (default ``n // 2``), drawn without
    replacement: a bootstrap would duplicate samples, and a duplicate raises kernel
    similarity and biases every entropy down (:func:`expected_inverse_rke`). The spread of
    the subset differences estimates the full-size standard error with the delete-d
    jackknife factor (d = n - m rows left out; docs/maths.md, "Intervals")::

        se = sd(subset deltas) * sqrt(m / (n - m))        (m = size; factor 1 for halves)

    For smooth (non-degenerate) statistics this is consistent; where the first-order term
    vanishes (e.g. RKE of exactly equal modes) it over-covers. Dividing the half-sample
    spread by sqrt(2) instead would treat halves of one sample as independent samples of
    size n/2 and make the interval too narrow by sqrt(2). ``subsets`` overrides the random
    subsets (e.g. the same ones for several methods). Taught in: 11_evaluating_diversity;
    applied in 10_evaluate_your_own_model.
    """
    A, B = _as_tuple(a), _as_tuple(b)
    n = _rows(A, "a")
    if _rows(B, "b") != n:
        raise ValueError(f"a and b must be paired row by row: a has {n} rows, b has {_rows(B, 'b')}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    subsets, m = _check_subsets(n, size, repeats, seed, subsets)
    delta = float(score(*B)) - float(score(*A))
    d = np.array([float(score(*_take(B, i))) - float(score(*_take(A, i))) for i in subsets])
    return interval_from_subset_deltas(delta, d, n, m, level)


def subsample_interval(score: Callable[..., float], arrays: Arrays, repeats: int = 50,
                       size: Optional[int] = None, level: float = 0.95, seed: int = 0,
                       subsets: Optional[Sequence[np.ndarray]] = None) -> PairedInterval:
    """Interval for one set's score: :func:`paired_subsample_interval` without the baseline.

    ``score(*arrays)`` at full size, with the standard error from the spread of the score on
    random subsets of ``size`` rows (default ``n // 2``) without replacement, delete-d
    jackknife scale ``sqrt(m / (n - m))``. The returned interval's ``delta`` is the score
    itself (its gain over nothing) and ``subset_deltas`` the subset scores. Use it to report a
    single model's score; for a comparison of two paired sets use
    :func:`paired_subsample_interval` (most of the noise cancels in the difference).
    Taught in: 10_evaluate_your_own_model.
    """
    arrays = _as_tuple(arrays)
    n = _rows(arrays, "subsample_interval")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    subsets, m = _check_subsets(n, size, repeats, seed, subsets)
    full = float(score(*arrays))
    return interval_from_subset_deltas(full, [float(score(*_take(arrays, i))) for i in subsets],
                                       n, m, level)


def interval_from_subset_deltas(delta: float, subset_deltas: Sequence[float], n: int, m: int,
                                level: float = 0.95) -> PairedInterval:
    """The interval of :func:`paired_subsample_interval` from already computed paired
    differences on subsets of ``m`` of ``n`` rows: ``se = sd(deltas) * sqrt(m / (n - m))``
    (the delete-d jackknife scale), normal around the full-size ``delta``. The comparison
    runner caches the first method's subset scores and calls this for every other method."""
    d = np.asarray(subset_deltas, dtype=float)
    if not 2 <= m < n or len(d) < 2:
        raise ValueError(f"need 2 <= m < n and at least two subsets, got m={m}, n={n}, {len(d)} subsets")
    se = float(np.std(d, ddof=1)) * math.sqrt(m / (n - m))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return PairedInterval(delta=float(delta), se=se, lo=delta - z * se, hi=delta + z * se,
                          level=level, subset_size=m, subset_deltas=d)


# ------------------------------------------------------------------ feature space
def greedy_rke_subset(X: ArrayLike, size: int, sigma: float = 1.0, kernel: str = "gaussian",
                      first: int = 0) -> np.ndarray:
    """Indices of ``size`` rows of ``X`` chosen greedily to maximise their RKE.

    Starting from row ``first``, each step adds the candidate ``c`` with the smallest
    ``sum_{s in S} k(x_s, c)^2``, which is exactly the one that maximises RKE(S + c), since
    ``||K_{S+c}||_F^2 = ||K_S||_F^2 + 2 sum_s k(x_s, c)^2 + 1``: SPARKE's row loss, used to
    pick instead of to move. A selection "tuned" on one feature space: evaluated there it
    looks far more diverse than evaluated on another. O(size n d).
    Taught in: 11_evaluating_diversity (never guide and evaluate in the same space).
    """
    kernel = check_kernel(kernel)
    Xt = as_features(X, "X", min_rows=1).double()
    n = Xt.shape[0]
    size = _check_int(size, "size", 1)
    if size > n:
        raise ValueError(f"cannot choose {size} distinct rows out of {n}")
    first = _check_int(first, "first", 0)
    if first >= n:
        raise ValueError(f"first = {first} is not a row index (n = {n})")
    chosen = [first]
    loss = torch.zeros(n, dtype=torch.float64, device=Xt.device)
    taken = torch.zeros(n, dtype=torch.bool, device=Xt.device)
    taken[first] = True
    for _ in range(size - 1):
        row = kernel_matrix(Xt[chosen[-1]:chosen[-1] + 1], Xt, kernel=kernel, sigma=sigma)[0].double()
        loss += row * row
        nxt = int(torch.argmin(torch.where(taken, torch.full_like(loss, math.inf), loss)))
        chosen.append(nxt)
        taken[nxt] = True
    return np.array(chosen, dtype=np.int64)


# ------------------------------------------------------------------ matched fidelity
def _oriented(x, y, maximize) -> Tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.size != y.size or x.size == 0:
        raise ValueError(f"need matching, non-empty fidelity and diversity values, got {x.size} and {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fidelity and diversity values must be finite (drop failed runs first)")
    mx, my = maximize
    return (x if mx else -x), (y if my else -y)


def pareto_front(x: Sequence[float], y: Sequence[float],
                 maximize: Tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Indices of the points not dominated by another (better or equal in both, better in
    one), sorted by ``x`` ascending. ``maximize`` says which direction is better for x
    (fidelity, e.g. on-mode fraction) and y (diversity; ``False`` for a distance like TV).
    Taught in: 11_evaluating_diversity.
    """
    xo, yo = _oriented(x, y, maximize)
    keep = []
    for i in range(xo.size):
        dominated = np.any((xo >= xo[i]) & (yo >= yo[i]) & ((xo > xo[i]) | (yo > yo[i])))
        if not dominated:
            keep.append(i)
    keep = np.array(keep, dtype=np.int64)
    # equal points: keep one
    _, first = np.unique(np.stack([xo[keep], yo[keep]], 1), axis=0, return_index=True)
    keep = keep[np.sort(first)]
    xs = np.asarray(x, dtype=float).ravel()[keep]
    return keep[np.argsort(xs, kind="stable")]


def frontier_at(x: Sequence[float], y: Sequence[float], target: float,
                maximize: Tuple[bool, bool] = (True, True)) -> float:
    """The diversity ``y`` a method reaches at fidelity ``x = target``: linear interpolation
    along its Pareto front (:func:`pareto_front`; mixing two settings over the prompts reaches
    any point between them).

    A ``target`` beyond the best fidelity of every run raises ``ValueError`` (run weaker
    settings). A ``target`` the front passes without reaching (every run already has a better
    fidelity) returns the front's most diverse point: a conservative value, since a stronger
    setting might do better. Compare methods at one ``target`` (e.g. the unguided fidelity
    minus 3 points), never at one strength each. Taught in: 11_evaluating_diversity.
    """
    idx = pareto_front(x, y, maximize)
    xo, yo = _oriented(x, y, maximize)
    o = np.argsort(xo[idx], kind="stable")
    fx, fy = xo[idx][o], yo[idx][o]
    t = float(target) if maximize[0] else -float(target)
    if not math.isfinite(t):
        raise ValueError(f"target must be finite, got {target!r}")
    if t > fx.max() + 1e-12:
        best = fx.max() if maximize[0] else -fx.max()
        raise ValueError(f"no run reaches fidelity {target} (best: {best:.4g}); add weaker settings")
    if t <= fx.min():
        val = fy[np.argmin(fx)]
    else:
        val = float(np.interp(t, fx, fy))
    return float(val if maximize[1] else -val)

