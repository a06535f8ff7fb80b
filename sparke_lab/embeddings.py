"""Two-dimensional pictures of feature sets with UMAP (McInnes et al. 2018).

A thin, seeded wrapper: the same features and ``random_state`` give the same picture.
UMAP preserves neighbourhoods, not distances or densities, so read its islands as
"these samples resemble each other", never as "this mode holds that much mass": the
kernel-entropy scores are computed on the features, not on the embedding.

Taught in: 05_umap_embeddings (also used by the comparison report).
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np


def umap_embed(X, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean",
               random_state: int = 0, n_components: int = 2, init: str = "spectral",
               n_epochs: Optional[int] = None) -> np.ndarray:
    """UMAP embedding of the rows of ``X`` (n, d) into ``n_components`` dimensions.

    ``random_state`` fixes the result (UMAP then runs single-threaded). ``n_neighbors`` is
    clipped to n - 1 so that tiny sets work. The first call in a process compiles UMAP's
    numba code (about half a minute on a laptop); later calls take seconds.
    Returns a float32 array of shape (n, n_components).
    """
    try:
        import torch
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 3:
        raise ValueError(f"umap_embed needs a 2-D array with at least 3 rows, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("umap_embed: X contains NaN or Inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba/umap chatter (n_jobs with random_state, ...)
        import umap
        reducer = umap.UMAP(n_neighbors=int(min(n_neighbors, len(X) - 1)), min_dist=min_dist,
                            metric=metric, random_state=int(random_state),
                            n_components=n_components, init=init, n_epochs=n_epochs, n_jobs=1)
        return reducer.fit_transform(X).astype(np.float32)
