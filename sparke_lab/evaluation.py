"""The metric rows of a comparison: one row per method, and the interval of its gain.

Per method, on image features: Vendi, RKE, their prompt-aware (conditional) forms given the
prompt cluster, in-batch similarity; with a classifier (the digits judge) prompt fidelity,
the share of rejected ("not a digit") samples and, per broad prompt cluster, validity, the
spread over its valid classes and the total-variation distance of its class distribution to
the caption distribution; with real reference features precision / recall / density /
coverage and KID. The gains of Cond-Vendi, broad validity, spread and TV over the first
method get 95 % intervals from paired half-sample subsampling (the same images are drawn
for every method). :mod:`sparke_lab.report` shows the rows; ``metrics.csv`` / ``metrics.json``
hold them. Used by ``sparke-lab compare``; taught in 08_guided_generation_digits.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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


class PairedGains:
    """Gains of every method over the first one it sees, with 95 % intervals, for several
    statistics at once.

    Paired (sample ``i`` has the same prompt and seed for every method): each statistic is
    also computed on ``n_boot`` random halves without replacement, the same halves for
    every method (a bootstrap with replacement duplicates images and biases a diversity
    score down). The standard error of the full-size gain is the standard deviation of the
    half-sample gains itself (the delete-n/2 jackknife,
    :func:`sparke_lab.evaluation_tools.interval_from_subset_deltas`), the interval normal.
    The first method's half-sample values are cached.
    """

    def __init__(self, n: int, n_boot: int = 50):
        self.n, self.n_boot = int(n), int(n_boot)
        self.halves = [np.random.default_rng(k).permutation(self.n)[: self.n // 2]
                       for k in range(self.n_boot)]
        self._base: Dict[str, Tuple[float, np.ndarray]] = {}

    def row(self, name: str, value: float, half_values: Sequence[float]) -> dict:
        """``{name}_delta`` and its interval ``_lo`` / ``_hi`` for a statistic of the current
        method whose full-size value is ``value`` and whose values on :attr:`halves` are
        ``half_values`` (0 with a zero-width interval for the first method); NaN when a half
        has no value (e.g. no valid image)."""
        from .evaluation_tools import interval_from_subset_deltas

        half = np.asarray(half_values, dtype=float)
        if name not in self._base:
            self._base[name] = (value, half)
        base_value, base_half = self._base[name]
        delta = value - base_value
        d = half - base_half
        if self.n < 4 or not np.isfinite(d).all() or not math.isfinite(delta):
            lo = hi = float("nan")
        else:
            iv = interval_from_subset_deltas(delta, d, self.n, self.n // 2)
            lo, hi = iv.lo, iv.hi
        return {f"{name}_delta": delta, f"{name}_delta_lo": lo, f"{name}_delta_hi": hi}


def fidelity_row(pred: Optional[np.ndarray], prompts, prompt_idx: np.ndarray) -> dict:
    """Prompt fidelity (the predicted class is valid for the sample's prompt; a prompt
    without valid classes: any of ten; the judge's -1 "not a digit" is never valid) and the
    share of rejected samples. ``prompts``: specs with ``.valid``; ``prompt_idx``: per sample."""
    valid_sets = [tuple(prompts[pi].valid) for pi in prompt_idx]
    if pred is None or not any(valid_sets):
        return {}
    return {"prompt_fidelity": M.prompt_fidelity(pred, [v or tuple(range(10)) for v in valid_sets]),
            "rejected": float(np.mean(np.asarray(pred) == -1))}


def broad_clusters(prompts, prompt_idx: np.ndarray) -> Dict[int, np.ndarray]:
    """Sample indices of each broad prompt cluster (prompts with several valid classes),
    pooled over the cluster's phrasings, by cluster id."""
    prompt_idx = np.asarray(prompt_idx)
    out: Dict[int, List[int]] = {}
    for i, pi in enumerate(prompt_idx):
        if len(prompts[pi].valid) > 1:
            out.setdefault(prompts[pi].cluster, []).append(i)
    return {c: np.asarray(v) for c, v in sorted(out.items())}


def cluster_rows(pred: np.ndarray, prompts, prompt_idx: np.ndarray,
                 idx: Optional[np.ndarray] = None) -> Dict[int, dict]:
    """Per broad cluster (samples ``idx`` only, default all): validity, spread over the valid
    classes and TV to the caption distribution (:func:`sparke_lab.metrics.cluster_class_metrics`;
    TV is NaN for prompts without ``weights``)."""
    pred, prompt_idx = np.asarray(pred), np.asarray(prompt_idx)
    sel = np.arange(len(pred)) if idx is None else np.asarray(idx)
    out = {}
    for c, members in broad_clusters(prompts, prompt_idx).items():
        m = np.intersect1d(members, sel)
        if len(m) == 0:
            continue
        spec = prompts[prompt_idx[m[0]]]
        out[c] = M.cluster_class_metrics(pred[m], spec.valid, spec.weights or None)
    return out


def _mean_of(rows: Dict[int, dict], key: str) -> float:
    vals = [r[key] for r in rows.values()]
    return float(np.nanmean(vals)) if vals and not all(np.isnan(vals)) else float("nan")


def class_rows(pred: Optional[np.ndarray], prompts, prompt_idx: np.ndarray,
               gains: Optional[PairedGains] = None, half_values: Optional[dict] = None
               ) -> Tuple[dict, dict]:
    """Broad-prompt class metrics: ``broad_validity``, ``broad_spread`` and ``broad_tv`` (means
    over clusters) with paired intervals of their gain over the first method, and the
    per-cluster rows (``{cluster: {validity, spread, tv, distribution, n}}``). With
    ``half_values`` (a dict) the statistics on ``gains.halves`` are stored in it."""
    if pred is None or not broad_clusters(prompts, prompt_idx):
        return {}, {}
    per = cluster_rows(pred, prompts, prompt_idx)
    keys = (("validity", "broad_validity"), ("spread", "broad_spread"), ("tv", "broad_tv"))
    row = {name: _mean_of(per, key) for key, name in keys}
    if gains is not None:
        halves = [cluster_rows(pred, prompts, prompt_idx, h) for h in gains.halves]
        for key, name in keys:
            values = [_mean_of(r, key) for r in halves]
            if half_values is not None:
                half_values[name] = np.asarray(values, dtype=float)
            if not math.isnan(row[name]):
                row.update(gains.row(name, row[name], values))
    members = broad_clusters(prompts, prompt_idx)
    clusters = {int(c): {"validity": r["validity"], "spread": r["spread"], "tv": r["tv"], "n": r["n"],
                         "label": prompts[prompt_idx[members[c][0]]].prompt,
                         "valid": list(prompts[prompt_idx[members[c][0]]].valid),
                         "distribution": [float(v) for v in r["distribution"]]}
                for c, r in per.items()}
    return row, clusters


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
        self.gains = PairedGains(len(self.prompt_idx), n_boot)

    def row(self, method: str, images: np.ndarray, eta: Optional[float] = None) -> Tuple[dict, dict]:
        """``(row, per_method)``: the metric row of ``method``'s images (uint8, ordered by
        image index) and what the report draws (images, features, predicted classes)."""
        F = self.extractor.features(images)
        row = {"method": method, "samples": len(F)}
        if eta is not None:
            row["eta"] = float(eta)
        row.update(diversity_row(F, self.T, self.clusters, self.sigma))
        halves = {"cond_vendi": np.array([scores.conditional_vendi_score(
            F[h], self.T[h], sigma_x=self.sigma, sigma_t=SIGMA_CLUSTER) for h in self.gains.halves])}
        row.update(self.gains.row("cond_vendi", row["cond_vendi"], halves["cond_vendi"]))
        pred = self.extractor.predict(images)
        row.update(fidelity_row(pred, self.prompts, self.prompt_idx))
        if "prompt_fidelity" in row:
            valid_sets = [tuple(self.prompts[pi].valid) or tuple(range(10)) for pi in self.prompt_idx]
            ok = np.array([int(p) in set(v) for p, v in zip(pred, valid_sets)], dtype=float)
            halves["prompt_fidelity"] = np.array([ok[h].mean() for h in self.gains.halves])
        class_row, clusters = class_rows(pred, self.prompts, self.prompt_idx, self.gains, halves)
        row.update(class_row)
        if self.real is not None:
            row.update(distribution_row(self.real, F))
        return row, dict(images=images, features=F, pred=pred, clusters=clusters, halves=halves)


# ------------------------------------------------------------------ matched fidelity
#: (fidelity, diversity) pairs the frontier comparison uses, the first one available wins.
FRONTIER_AXES = (("broad_validity", "broad_spread"), ("prompt_fidelity", "cond_vendi"))


def method_groups(methods: Sequence[str]) -> Dict[str, List[str]]:
    """Guided methods grouped by their base name (``sparke@0.1`` -> ``sparke``), each with
    ``none`` (strength 0: every method's frontier starts at the unguided point) when present.
    ``none`` and ``cfg@w`` references form no group."""
    groups: Dict[str, List[str]] = {}
    for m in methods:
        base = m.partition("@")[0]
        if base in ("none", "cfg"):
            continue
        groups.setdefault(base, []).append(m)
    if "none" in methods:
        for g in groups.values():
            g.insert(0, "none")
    return groups


def matched_fidelity(results: Dict[str, dict], halves: Dict[str, dict], drop: float = 0.03,
                     n: Optional[int] = None) -> Tuple[Optional[Tuple[str, str]], List[dict]]:
    """Each method's diversity at a common fidelity: the unguided fidelity minus ``drop``.

    Per method group (:func:`method_groups`, needs ``none``) the diversity is interpolated
    along the group's Pareto front of (fidelity, diversity)
    (:func:`sparke_lab.evaluation_tools.frontier_at`; NaN where no setting reaches the
    target). The same on every half of the paired half-samples (target: that half's
    unguided fidelity minus ``drop``) gives a 95 % interval of the gain over ``none`` and, with
    a ``cfg@w`` reference (a lower CFG), of the share of the diversity CFG lost that is
    recovered: ``(D_matched - D_none) / (D_cfg - D_none)``. Returns the axes used and one
    row per group (``method``, ``settings``, ``target``, ``matched``, ``gain`` with
    ``gain_lo`` / ``gain_hi`` and the per-half gains ``half_gains`` (the same halves for every
    group, so two groups' difference has a paired interval: :func:`matched_difference`),
    ``recovered`` with its interval when a reference exists)."""
    from .evaluation_tools import frontier_at, interval_from_subset_deltas

    if "none" not in results:
        return None, []
    axes = next(((f, d) for f, d in FRONTIER_AXES if f in results["none"] and d in results["none"]
                 and f in halves.get("none", {}) and d in halves.get("none", {})), None)
    if axes is None:
        return None, []
    fk, dk = axes

    def at(members, target, fid, div):
        x = np.array([fid(m) for m in members], dtype=float)
        y = np.array([div(m) for m in members], dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 1 or not math.isfinite(target):
            return float("nan")
        try:
            return frontier_at(x[ok], y[ok], target)
        except ValueError:
            return float("nan")

    refs = [m for m in results if m.partition("@")[0] == "cfg"]
    ref = refs[0] if refs else None
    n_half = len(halves["none"][dk])
    rows = []
    for base, members in method_groups(list(results)).items():
        target = results["none"][fk] - drop
        matched = at(members, target, lambda m: results[m][fk], lambda m: results[m][dk])
        row = {"method": base, "settings": len(members) - 1, "fidelity": fk, "diversity": dk,
               "target": target, "matched": matched, "gain": matched - results["none"][dk]}
        half_gain = np.array([at(members, halves["none"][fk][i] - drop, lambda m: halves[m][fk][i],
                                 lambda m: halves[m][dk][i]) - halves["none"][dk][i]
                              for i in range(n_half)])
        row["gain_lo"] = row["gain_hi"] = float("nan")
        row["half_gains"] = [float(v) for v in half_gain]  # paired: compare methods half by half
        if n and math.isfinite(row["gain"]) and np.isfinite(half_gain).all():
            iv = interval_from_subset_deltas(row["gain"], half_gain, n, n // 2)
            row["gain_lo"], row["gain_hi"] = iv.lo, iv.hi
        if ref is not None and ref in halves:
            lost = results[ref][dk] - results["none"][dk]
            row["reference"] = ref
            row["recovered"] = row["gain"] / lost if lost else float("nan")
            half_lost = halves[ref][dk] - halves["none"][dk]
            rec = half_gain / np.where(half_lost != 0, half_lost, np.nan)
            row["recovered_lo"] = row["recovered_hi"] = float("nan")
            if n and math.isfinite(row["recovered"]) and np.isfinite(rec).all():
                iv = interval_from_subset_deltas(row["recovered"], rec, n, n // 2)
                row["recovered_lo"], row["recovered_hi"] = iv.lo, iv.hi
        rows.append(row)
    return axes, rows


def matched_difference(row_a: dict, row_b: dict, n: int, level: float = 0.95) -> dict:
    """``matched(a) - matched(b)`` of two rows of :func:`matched_fidelity` (the same run, so
    the same halves) with a paired interval: is one method better than another at matched
    fidelity, beyond the noise?"""
    from .evaluation_tools import interval_from_subset_deltas

    delta = row_a["matched"] - row_b["matched"]
    d = np.asarray(row_a["half_gains"]) - np.asarray(row_b["half_gains"])
    if not (math.isfinite(delta) and np.isfinite(d).all()):
        return {"delta": delta, "lo": float("nan"), "hi": float("nan")}
    iv = interval_from_subset_deltas(delta, d, n, n // 2, level)
    return {"delta": delta, "lo": iv.lo, "hi": iv.hi}

