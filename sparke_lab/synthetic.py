"""Synthetic data with a known number of modes, for checking scores against the truth.

Taught in: 02_renyi_kernel_entropy (mode counting) and the ``sparke-lab demo`` job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass
class Mixture:
    """Samples ``X`` (n, d), their mode ``labels`` (n,), the mode ``means`` and ``weights``."""
    X: np.ndarray
    labels: np.ndarray
    means: np.ndarray
    weights: np.ndarray

    def expected_rke(self) -> float:
        """``1 / sum w^2``: the RKE limit for well-separated, tight modes."""
        return float(1.0 / np.sum(self.weights ** 2))

    def expected_vendi(self) -> float:
        """``exp(Shannon(w))``: the Vendi limit for well-separated, tight modes."""
        w = self.weights[self.weights > 0]
        return float(np.exp(-np.sum(w * np.log(w))))


def gaussian_mixture(n: int, weights: Sequence[float] | int = 10, dim: int = 2,
                     separation: float = 10.0, spread: float = 0.05, seed: int = 0,
                     exact_counts: bool = True) -> Mixture:
    """Sample a mixture ``sum_i w_i N(mu_i, spread^2 I_dim)``.

    ``weights`` is a list of mode weights or an int k for k equal modes. Means are placed
    at distance ``separation`` from each other along orthogonal axes when ``k <= dim``,
    otherwise on a random configuration scaled so that the closest pair is ``separation``
    apart. ``exact_counts`` puts round(n w_i) samples in mode i (so a test can compare with
    1/sum w^2 without sampling noise in the weights).
    """
    if isinstance(weights, (int, np.integer)):
        if weights < 1:
            raise ValueError(f"need at least one mode, got {weights}")
        w = np.full(int(weights), 1.0 / int(weights))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0 or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be a non-empty list of non-negative numbers")
        w = w / w.sum()
    if n < len(w):
        raise ValueError(f"n = {n} is smaller than the number of modes {len(w)}")
    if dim < 1 or spread < 0 or separation <= 0:
        raise ValueError("need dim >= 1, spread >= 0 and separation > 0")
    rng = np.random.default_rng(seed)
    k = len(w)
    if k <= dim:
        means = np.eye(k, dim) * separation / np.sqrt(2.0)
    elif dim == 2:
        ang = 2 * np.pi * np.arange(k) / k
        radius = separation / (2 * np.sin(np.pi / k))
        means = radius * np.stack([np.cos(ang), np.sin(ang)], 1)
    else:
        means = rng.normal(size=(k, dim))
        d = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
        means *= separation / d[~np.eye(k, dtype=bool)].min()
    if exact_counts:
        counts = np.floor(w * n).astype(int)
        counts[np.argsort(-(w * n - counts))[: n - counts.sum()]] += 1
        labels = np.repeat(np.arange(k), counts)
    else:
        labels = rng.choice(k, size=n, p=w)
    X = means[labels] + spread * rng.normal(size=(n, dim))
    perm = rng.permutation(n)
    return Mixture(X=X[perm], labels=labels[perm], means=means, weights=w)
