"""The metric rows of a comparison: one row per method, and the interval of its gain.

Per method, on image features: Vendi, RKE, their prompt-aware (conditional) forms given the
prompt cluster, in-batch similarity; with a classifier (the digits judge) prompt fidelity
and the spread over the valid classes of broad prompts; with real reference features
precision / recall / density / coverage and KID. The Cond-Vendi gain over the first method
gets a 95 % interval from paired half-sample subsampling (the same images are drawn for
every method). :mod:`sparke_lab.report` shows the rows; ``metrics.csv`` / ``metrics.json``
hold them. Used by ``sparke-lab compare``; taught in 08_guided_generation_digits.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import metrics as M
from . import scores
from .kernels import median_heuristic_bandwidth

#: bandwidth of the prompt kernel on one-hot prompt clusters (0.5: different clusters ~0)
SIGMA_CLUSTER = 0.5


def cluster_features(clusters: Sequence[int]) -> np.ndarray:
    """One-hot prompt-cluster features (n, number of clusters), clusters in sorted order."""
    clusters = np.asarray(clusters)
    uniq = {c: j for j, c in enumerate(sorted(set(clusters.tolist())))}
    return np.eye(len(uniq))[[uniq[c] for c in clusters]]


def diversity_row(F: np.ndarray, T: np.ndarray, clusters: np.ndarray, sigma: float) -> dict:
    """Vendi, RKE, Cond-Vendi, Cond-RKE (given the clusters ``T``) and in-batch similarity."""
    return {"vendi": scores.vendi_score(F, sigma=sigma),
            "rke": scores.rke_score(F, sigma=sigma),
            "cond_vendi": scores.conditional_vendi_score(F, T, sigma_x=sigma, sigma_t=SIGMA_CLUSTER),
            "cond_rke": scores.conditional_rke_score(F, T, sigma_x=sigma, sigma_t=SIGMA_CLUSTER),
            "in_batch_sim": M.in_batch_similarity(F, clusters)}


class CondVendiGain:
    """The Cond-Vendi gain of each method over the first one it sees, with a 95 % interval.

    Paired (the same images are drawn for every method): Cond-Vendi on ``n_boot`` random
    halves without replacement (a bootstrap with replacement duplicates images and biases a
    diversity score down), the same halves for every method; the standard error at full
    size is ~ sd(half differences) / sqrt(2), and the interval normal around the full-size
    gain.
    """

    def __init__(self, T: np.ndarray, sigma: float, n_boot: int = 50):
        self.T, self.sigma, self.n_boot = T, sigma, int(n_boot)
        self.halves: Optional[List[np.ndarray]] = None
        self._base: Optional[Tuple[np.ndarray, float]] = None

    def row(self, F: np.ndarray, value: float) -> dict:
        """``cond_vendi_delta`` and its interval ``_lo`` / ``_hi`` for features ``F`` whose
        full-size Cond-Vendi is ``value`` (0 with a zero-width interval for the first)."""
        if self.halves is None:
            self.halves = [np.random.default_rng(k).permutation(len(F))[: len(F) // 2]
                           for k in range(self.n_boot)]
        half = np.array([scores.conditional_vendi_score(F[h], self.T[h], sigma_x=self.sigma,
                                                        sigma_t=SIGMA_CLUSTER) for h in self.halves])
        if self._base is None:
            self._base = (half, value)
        base_half, base_value = self._base
        delta = value - base_value
        se = float(np.std(half - base_half, ddof=1)) / math.sqrt(2.0)
        return {"cond_vendi_delta": delta, "cond_vendi_delta_lo": delta - 1.96 * se,
                "cond_vendi_delta_hi": delta + 1.96 * se}


def fidelity_row(pred: Optional[np.ndarray], prompts, prompt_idx: np.ndarray) -> dict:
    """Prompt fidelity (the predicted class is valid for the sample's prompt; a prompt
    without valid classes: any of ten) and, for broad prompts (several valid classes), the
    mean spread over them. ``prompts``: specs with ``.valid``; ``prompt_idx``: per sample."""
    valid_sets = [tuple(prompts[pi].valid) for pi in prompt_idx]
    if pred is None or not any(valid_sets):
        return {}
    row = {"prompt_fidelity": M.prompt_fidelity(pred, [v or tuple(range(10)) for v in valid_sets])}
    broad = [i for i, v in enumerate(valid_sets) if len(v) > 1]
    if broad:
        spreads = []
        for pi in sorted({prompt_idx[i] for i in broad}):
            sel = prompt_idx == pi
            spreads.append(M.class_spread(pred[sel], prompts[pi].valid))
        row["broad_spread"] = float(np.nanmean(spreads))
    return row


def distribution_row(real: np.ndarray, F: np.ndarray) -> dict:
    """Precision, recall, density, coverage (k = 3) and KID against real features."""
    row = dict(M.prdc(real, F, k=3))
    row["kid"] = M.kernel_inception_distance(real, F, subsets=20, subset_size=min(500, len(F)))["kid"]
    return row


class MethodMetrics:
    """Computes one metric row per method of a run, in the order the methods come.

    ``prompts``: the run's prompt specs (``.cluster``, ``.valid``); ``prompt_idx``: the
    prompt of each sample; ``extractor``: a :class:`sparke_lab.loading.FeatureExtractor`.
    The image-feature bandwidth is the median heuristic on the real reference features, or
    (none) on ``bandwidth_images()``, e.g. the first method's images.
    """

    def __init__(self, prompts, prompt_idx: np.ndarray, extractor,
                 bandwidth_images: Callable[[], np.ndarray], n_boot: int = 50):
        self.prompts = prompts
        self.prompt_idx = np.asarray(prompt_idx)
        self.clusters = np.array([prompts[pi].cluster for pi in self.prompt_idx])
        self.T = cluster_features(self.clusters)
        self.extractor = extractor
        self.real = extractor.reference()
        self.sigma = median_heuristic_bandwidth(
            self.real if self.real is not None else extractor.features(bandwidth_images()))
        self.gain = CondVendiGain(self.T, self.sigma, n_boot)

    def row(self, method: str, images: np.ndarray, eta: Optional[float] = None) -> Tuple[dict, dict]:
        """``(row, per_method)``: the metric row of ``method``'s images (uint8, ordered by
        image index) and what the report draws (images, features, predicted classes)."""
        F = self.extractor.features(images)
        row = {"method": method, "samples": len(F)}
        if eta is not None:
            row["eta"] = float(eta)
        row.update(diversity_row(F, self.T, self.clusters, self.sigma))
        row.update(self.gain.row(F, row["cond_vendi"]))
        pred = self.extractor.predict(images)
        row.update(fidelity_row(pred, self.prompts, self.prompt_idx))
        if self.real is not None:
            row.update(distribution_row(self.real, F))
        return row, dict(images=images, features=F, pred=pred)
