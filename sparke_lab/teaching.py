"""Small reusable pieces of the course that are neither scores nor plots.

* :func:`block_kernel`: kernel matrices made of all-ones blocks (exact toy spectra), 02.
* :func:`time_call`, :func:`loglog_slope`: honest timing on the student's machine, 06.
* :data:`DIGIT_PROMPTS`, :func:`digit_prompt_features`, :func:`prompted_digits`: a toy
  "prompt -> image" data set built from real handwritten digits, with prompt features whose
  similarity reflects meaning (prompts that allow the same digits are close), 03 and 05.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np


# ------------------------------------------------------------------ exact toy kernels (02)
def block_kernel(sizes: Sequence[int]) -> np.ndarray:
    """Block-diagonal kernel matrix of all-ones blocks of the given ``sizes``.

    Each block is a set of identical samples, distinct blocks are perfectly dissimilar, so
    the eigenvalues of K/n are exactly ``sizes / n`` (and zeros). Blocks (2, 1, 1) give
    RKE 8/3 and Vendi 2*sqrt(2). Taught in: 02_renyi_kernel_entropy.
    """
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError("sizes must be a non-empty list of positive integers")
    n = sum(sizes)
    K = np.zeros((n, n))
    start = 0
    for s in sizes:
        K[start:start + s, start:start + s] = 1.0
        start += s
    return K


# ------------------------------------------------------------------------- timing (06)
def time_call(fn: Callable, *args, repeat: int = 3, warmup: int = 1, **kwargs) -> float:
    """Best wall time in seconds of ``fn(*args, **kwargs)`` over ``repeat`` runs.

    The best (not the mean) of a few runs is the least noisy estimate of the cost on a
    shared machine. Taught in: 06_scaling_from_n3_to_n.
    """
    for _ in range(max(0, warmup)):
        fn(*args, **kwargs)
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best


def loglog_slope(ns: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope p of log(seconds) against log(n): the measured exponent in n^p.

    Taught in: 06_scaling_from_n3_to_n.
    """
    ns, ts = np.asarray(ns, float), np.asarray(seconds, float)
    ok = np.isfinite(ts) & (ts > 0)
    if ok.sum() < 2:
        raise ValueError("need at least two positive timings")
    return float(np.polyfit(np.log(ns[ok]), np.log(ts[ok]), 1)[0])


# --------------------------------------------------------------- prompted digits (03, 05)
#: Toy prompts and the digits each one allows. Several phrasings of one meaning share a set.
DIGIT_PROMPTS: Dict[str, Tuple[int, ...]] = {
    **{f"a handwritten {w}": (d,) for d, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))},
    "an odd digit": (1, 3, 5, 7, 9),
    "an even digit": (0, 2, 4, 6, 8),
    "a digit less than five": (0, 1, 2, 3, 4),
    "any digit": tuple(range(10)),
}


def digit_prompt_features(prompts: Sequence[str], table: Optional[Dict[str, Tuple[int, ...]]] = None,
                          noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Prompt features: the L2-normalised indicator of the digits a prompt allows (n, 10).

    A stand-in for a text encoder whose geometry we control: two prompts are close when
    they allow the same digits ("an odd digit" and "a handwritten three" overlap in one digit
    of five). ``noise`` adds seeded Gaussian jitter of that standard deviation per row before
    normalising (like the small differences an encoder sees between phrasings).
    Taught in: 03_conditional_entropy and 05_umap_embeddings.
    """
    table = DIGIT_PROMPTS if table is None else table
    F = np.zeros((len(prompts), 10))
    for i, p in enumerate(prompts):
        if p not in table:
            raise KeyError(f"unknown prompt {p!r}; known prompts: {sorted(table)}")
        F[i, list(table[p])] = 1.0
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    if noise > 0:
        F = F + noise * np.random.default_rng(seed).normal(size=F.shape)
        F /= np.linalg.norm(F, axis=1, keepdims=True)
    return F


def prompted_digits(labels: Sequence[int], prompts: Sequence[str], per_prompt: int = 50,
                    behaviour: str = "diverse", seed: int = 0,
                    table: Optional[Dict[str, Tuple[int, ...]]] = None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Simulate a generator that answers each prompt with real digit images.

    For each prompt draw ``per_prompt`` indices into ``labels`` (the labels of a pool of
    real images) among the images the prompt allows: ``behaviour="diverse"`` spreads them
    evenly over the allowed digits, ``"collapsed"`` always shows the prompt's first allowed
    digit (a mode-collapsed generator that still follows the prompt).
    Returns ``(indices, prompt_ids)``, both of length ``len(prompts) * per_prompt``.
    Taught in: 03_conditional_entropy and 05_umap_embeddings.
    """
    if behaviour not in ("diverse", "collapsed"):
        raise ValueError("behaviour must be 'diverse' or 'collapsed'")
    table = DIGIT_PROMPTS if table is None else table
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    idx, pid = [], []
    for j, p in enumerate(prompts):
        allowed = table[p] if behaviour == "diverse" else table[p][:1]
        digits = np.asarray(allowed)[np.arange(per_prompt) % len(allowed)]
        for d in digits:
            pool = np.flatnonzero(labels == d)
            if len(pool) == 0:
                raise ValueError(f"no image of digit {d} in the pool")
            idx.append(int(rng.choice(pool)))
            pid.append(j)
    return np.asarray(idx), np.asarray(pid)


# --------------------------------------------------------------------- modes as colours (05)
def assign_modes(spectrum, n_modes: int = 10) -> np.ndarray:
    """Give each sample the index of the top eigenvector (of ``n_modes``) with its largest entry.

    ``spectrum`` is a :class:`sparke_lab.Spectrum` (``kernel_spectrum(..., top_k >= n_modes)``).
    A hard labelling "which mode does this sample belong to", for colouring plots; samples far
    from every mode still get the closest one. Taught in: 05_umap_embeddings.
    """
    V = np.asarray(spectrum.vectors)
    k = min(int(n_modes), V.shape[1])
    if k < 1:
        raise ValueError("n_modes must be >= 1")
    return np.argmax(V[:, :k], axis=1)
