"""Metrics for comparing generation methods: diversity, fidelity, prompt adherence.

Each function names its source. Features are (n, d) arrays from any extractor: the digits
judge's penultimate layer here, Inception/DINOv2/CLIP image features for real models.

Taught in: 08_guided_generation_digits and the comparison report.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import torch

from .kernels import ArrayLike, as_features, squared_distances


# ------------------------------------------------------------- precision / recall family
def _nn_radii(F: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest neighbour in the same set (self excluded)."""
    d = squared_distances(F, F).sqrt_()
    # the 0-th smallest is the point itself (distance 0); take the k-th
    return d.kthvalue(k + 1, dim=1).values


def prdc(real: ArrayLike, fake: ArrayLike, k: int = 3) -> Dict[str, float]:
    """Precision, recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

    With k-NN balls around real samples (radius = distance to the k-th real neighbour):
    precision = share of fake samples inside some real ball; recall = share of real samples
    inside some fake ball (fake radii); density = mean number of real balls containing a
    fake sample, divided by k; coverage = share of real balls that contain a fake sample.
    Matches the ``prdc`` package (cross-checked in tests). O((n+m)^2) memory: for up to a
    few thousand samples each.
    """
    R = as_features(real, "real", min_rows=k + 1).double()
    G = as_features(fake, "fake", min_rows=k + 1, device=R.device).double()
    if R.shape[1] != G.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {R.shape[1]} vs {G.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    r_real, r_fake = _nn_radii(R, k), _nn_radii(G, k)
    d = squared_distances(R, G).sqrt_()  # (n_real, n_fake)
    inside_real = d < r_real[:, None]   # fake j inside real ball i
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float((d < r_fake[None, :]).any(dim=1).double().mean()),
        "density": float(inside_real.double().sum(dim=0).mean() / k),
        "coverage": float((d.min(dim=1).values < r_real).double().mean()),
    }


# --------------------------------------------------------------------- kernel distance
def kernel_inception_distance(real: ArrayLike, fake: ArrayLike, subsets: int = 50,
                              subset_size: int = 1000, degree: int = 3, seed: int = 0) -> Dict[str, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3.

    Averaged over random subsets of ``subset_size`` (capped at the smaller set); returns
    the mean and the standard deviation over subsets. Reported as "KD" in the SPARKE tables.
    """
    R = as_features(real, "real", min_rows=2).double()
    G = as_features(fake, "fake", min_rows=2, device=R.device).double()
    if R.shape[1] != G.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {R.shape[1]} vs {G.shape[1]}")
    d = R.shape[1]
    m = min(subset_size, R.shape[0], G.shape[0])
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(max(1, subsets)):
        r = R[torch.randperm(R.shape[0], generator=g)[:m]]
        f = G[torch.randperm(G.shape[0], generator=g)[:m]]
        kxx = (r @ r.T / d + 1) ** degree
        kyy = (f @ f.T / d + 1) ** degree
        kxy = (r @ f.T / d + 1) ** degree
        off = m * (m - 1)
        mmd = (kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off \
            - 2 * kxy.mean()
        vals.append(float(mmd))
    return {"kid": float(np.mean(vals)), "kid_std": float(np.std(vals))}


# ------------------------------------------------------------------------- diversity
def in_batch_similarity(features: ArrayLike, clusters: Optional[Sequence] = None) -> float:
    """Mean pairwise cosine similarity of image features within each prompt cluster (SPARKE
    paper, Table 1: lower is more diverse), averaged over clusters with >= 2 samples."""
    F = as_features(features, "features", min_rows=2).double()
    F = F / F.norm(dim=1, keepdim=True).clamp_min(1e-12)
    groups = np.zeros(len(F), dtype=int) if clusters is None else np.asarray(clusters)
    if len(groups) != len(F):
        raise ValueError(f"{len(groups)} cluster labels for {len(F)} samples")
    sims = []
    for c in np.unique(groups):
        idx = torch.from_numpy(np.flatnonzero(groups == c))
        if len(idx) < 2:
            continue
        S = F[idx] @ F[idx].T
        sims.append(float((S.sum() - S.diagonal().sum()) / (len(idx) * (len(idx) - 1))))
    if not sims:
        raise ValueError("no prompt cluster has two or more samples")
    return float(np.mean(sims))


def class_spread(predicted: Iterable[int], valid: Optional[Iterable[int]] = None) -> float:
    """RKE over predicted classes, ``1 / sum_c p_c^2`` (the effective number of classes).

    With ``valid`` only predictions in the valid set count (spread over valid digits of a
    broad prompt). An RKE with a 0/1 kernel on class labels.
    """
    pred = np.asarray(list(predicted))
    if valid is not None:
        pred = pred[np.isin(pred, np.asarray(list(valid)))]
    if pred.size == 0:
        return float("nan")
    _, counts = np.unique(pred, return_counts=True)
    p = counts / counts.sum()
    return float(1.0 / np.sum(p**2))


def prompt_fidelity(predicted: Sequence[int], valid_sets: Sequence[Iterable[int]]) -> float:
    """Share of samples whose predicted class is valid for its prompt (judge-based
    stand-in for CLIPScore on the digits model)."""
    if len(predicted) != len(valid_sets):
        raise ValueError(f"{len(predicted)} predictions for {len(valid_sets)} prompts")
    if len(predicted) == 0:
        raise ValueError("no samples")
    return float(np.mean([int(p) in set(v) for p, v in zip(predicted, valid_sets)]))


def bootstrap_interval(values: Sequence[float] | np.ndarray, stat=np.mean, n_boot: int = 1000,
                       level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of ``stat`` over ``values`` (rows resampled)."""
    v = np.asarray(values)
    if len(v) < 2:
        raise ValueError("need at least two values to bootstrap")
    rng = np.random.default_rng(seed)
    boots = np.array([stat(v[rng.integers(0, len(v), len(v))]) for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(stat(v)), float(lo), float(hi)


# ------------------------------------------------------------- class distributions (digits)
def class_distribution(predicted: Iterable[int], classes: Sequence[int]) -> np.ndarray:
    """Shares of ``classes`` (in that order) among the predictions that fall in ``classes``.

    Predictions outside ``classes`` (invalid digits, the judge's -1 "not a digit") do not
    count; all-NaN when none is left. Used for the class-distribution metrics of broad
    prompts (notebook 08_guided_generation_digits, the comparison report).
    """
    pred = np.asarray(list(predicted))
    classes = list(classes)
    if not classes:
        raise ValueError("classes is empty")
    counts = np.array([np.sum(pred == c) for c in classes], dtype=float)
    if counts.sum() == 0:
        return np.full(len(classes), np.nan)
    return counts / counts.sum()


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """Total-variation distance ``0.5 * sum_c |p_c - q_c|`` of two distributions (in [0, 1]).

    Both must have the same length, be non-negative and sum to 1 (within 1e-6); NaN in ``p``
    (no valid sample) gives NaN.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p and q must be 1-d of the same length, got {p.shape} and {q.shape}")
    if np.isnan(p).any():
        return float("nan")
    for name, v in (("p", p), ("q", q)):
        if np.isnan(v).any() or (v < 0).any() or abs(v.sum() - 1) > 1e-6:
            raise ValueError(f"{name} must be a probability vector (non-negative, sum 1), got {v}")
    return float(0.5 * np.abs(p - q).sum())


def cluster_class_metrics(predicted: Iterable[int], valid: Sequence[int],
                          caption_weights: Optional[Sequence[float]] = None) -> Dict[str, object]:
    """Validity, spread and TV to the caption distribution of one broad prompt cluster.

    ``predicted``: the judge's labels of the cluster's images (-1 = not a digit);
    ``valid``: the cluster's valid digits; ``caption_weights``: the class distribution of
    its training captions, aligned with ``valid`` (``Prompt.class_weights``). Returns
    ``validity`` (share of valid images), ``spread`` (``1 / sum p_c^2`` over valid images,
    the order-2 effective number of digits), ``tv`` (total variation between the valid
    images' class distribution and the caption distribution; NaN without weights),
    ``distribution`` (the shares, aligned with ``valid``) and ``n``. Definitions:
    docs/guidance.md ("Evaluating guidance on the digits testbed").
    """
    pred = np.asarray(list(predicted))
    if pred.size == 0:
        raise ValueError("no predictions for this cluster")
    p = class_distribution(pred, valid)
    out: Dict[str, object] = {"n": int(pred.size),
                              "validity": float(np.isin(pred, list(valid)).mean()),
                              "spread": float(1.0 / np.sum(p ** 2)) if not np.isnan(p).any()
                              else float("nan"),
                              "distribution": p}
    if caption_weights is not None:
        if len(caption_weights) != len(valid):
            raise ValueError(f"{len(caption_weights)} caption weights for {len(valid)} valid digits")
        out["tv"] = total_variation(p, caption_weights)
    else:
        out["tv"] = float("nan")
    return out
