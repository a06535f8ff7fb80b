"""Eigenspectra of kernel matrices and mode identification from eigenvectors.

With well-separated modes ``K / n`` is nearly block diagonal: each mode contributes one
eigenvalue close to its frequency, with an eigenvector close to the indicator of its
samples. The samples with the largest entries of a top eigenvector show that mode.
With random Fourier features the per-sample scores ``Phi v`` play the eigenvector's role.

Taught in: 04_kernel_eigenspectra (spectra, modes, mode galleries).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

from .kernels import ArrayLike, as_features, check_kernel, kernel_matrix
from .rff import FourierFeatures
from .scores import (DEFAULT_N_FEATURES, check_method, check_exact_size, kernel_sigma,
                     feature_covariance)


@dataclass
class Spectrum:
    """Eigenvalues of K/n (descending, summing to ~1) and the top eigenvectors.

    ``vectors[:, j]`` is the j-th eigenvector over the n samples (unit norm, sign fixed so
    its entries sum to a positive number); for ``method="rff"`` it is the normalised
    per-sample score ``Phi v_j``.
    """
    values: np.ndarray
    vectors: np.ndarray
    method: str

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Mode:
    """One mode found by an eigenvector: its weight (eigenvalue) and the samples carrying it.

    ``indices`` are all samples ordered by their entry in the eigenvector (largest first);
    ``members`` are those whose entry is at least half the largest entry.
    """
    rank: int
    weight: float
    indices: np.ndarray
    members: np.ndarray
    scores: np.ndarray = field(repr=False)

    def top(self, k: int = 16) -> np.ndarray:
        """Indices of the ``k`` samples that carry this mode most strongly."""
        return self.indices[:k]


def _fix_signs(V: torch.Tensor) -> torch.Tensor:
    s = torch.sign(V.sum(dim=0))
    s[s == 0] = 1
    return V * s


def kernel_spectrum(X: ArrayLike, kernel: str = "gaussian", sigma: float = 1.0,
                    top_k: Optional[int] = 10, method: str = "exact",
                    n_features: int = DEFAULT_N_FEATURES, seed: int = 0) -> Spectrum:
    """Eigenvalues of ``K / n`` and the ``top_k`` eigenvectors (``None``: all, exact only).

    exact: O(n^3) eigendecomposition; rff: 2m x 2m eigenproblem plus ``Phi v`` (linear in n).
    Taught in: 04_kernel_eigenspectra.
    """
    kernel, method = check_kernel(kernel), check_method(method)
    Xt = as_features(X, "X", min_rows=2)
    sigma = kernel_sigma(kernel, sigma)
    n = Xt.shape[0]
    if top_k is not None and int(top_k) < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if method == "exact":
        check_exact_size(n, "kernel_spectrum")
        w, V = torch.linalg.eigh(kernel_matrix(Xt, kernel=kernel, sigma=sigma).double() / n)
        w, V = w.flip(0), V.flip(1)
        k = n if top_k is None else min(int(top_k), n)
        V = _fix_signs(V[:, :k])
    else:
        if top_k is None:
            raise ValueError("top_k=None (all eigenvectors) needs method='exact'")
        fm = FourierFeatures(Xt.shape[1], kernel, sigma, n_features, seed, device=Xt.device,
                             dtype=torch.float64)
        w, U = torch.linalg.eigh(feature_covariance(fm, Xt))
        w, U = w.flip(0), U.flip(1)
        k = min(int(top_k), U.shape[1])
        V = torch.cat([f @ U[:, :k] for f in fm.map_in_chunks(Xt)], 0)
        V = _fix_signs(V / torch.linalg.vector_norm(V, dim=0).clamp_min(1e-300))
    return Spectrum(values=w.clamp_min(0).cpu().numpy(), vectors=V.cpu().numpy(), method=method)


def find_modes(X: ArrayLike, n_modes: int = 5, kernel: str = "gaussian", sigma: float = 1.0,
               method: str = "exact", n_features: int = DEFAULT_N_FEATURES, seed: int = 0,
               spectrum: Optional[Spectrum] = None) -> List[Mode]:
    """The ``n_modes`` leading modes: weight (eigenvalue) and the samples that carry each.

    Pass a precomputed ``spectrum`` to avoid a second eigendecomposition.
    Note: modes of equal weight share an eigenspace, whose eigenvectors may mix them.
    Taught in: 04_kernel_eigenspectra.
    """
    if int(n_modes) < 1:
        raise ValueError(f"n_modes must be >= 1, got {n_modes}")
    spec = spectrum or kernel_spectrum(X, kernel, sigma, n_modes, method, n_features, seed)
    modes = []
    for j in range(min(int(n_modes), spec.vectors.shape[1])):
        v = spec.vectors[:, j]
        order = np.argsort(-v, kind="stable")
        members = order[v[order] >= 0.5 * v[order[0]]] if v[order[0]] > 0 else order[:0]
        modes.append(Mode(rank=j, weight=float(spec.values[j]), indices=order,
                          members=members, scores=v))
    return modes
