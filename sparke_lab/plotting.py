"""Plotting helpers that only draw: one shared style, spectra, scatter plots, image grids.

Every function takes data and returns a matplotlib Figure (or draws on ``ax``), so widgets
can wrap them and headless runs still render. Taught in: 01_kernels_and_similarity
(style), 02_renyi_kernel_entropy and 04_kernel_eigenspectra (spectra).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

STYLE_FILE = Path(__file__).with_name("sparke.mplstyle")


def use_style() -> None:
    """Apply the project's seaborn theme and matplotlib style (call once per notebook)."""
    import matplotlib.pyplot as plt
    try:
        import seaborn as sns
        sns.set_theme(context="notebook", style="whitegrid")
    except ImportError:  # seaborn is a dependency, but drawing must not need it
        pass
    plt.style.use(str(STYLE_FILE))


def plot_spectrum(spectra: Dict[str, np.ndarray] | np.ndarray, top: int = 30, ax=None,
                  title: str = "Eigenspectrum of K/n", log: bool = True):
    """Bar/line plot of the leading eigenvalues of K/n; ``spectra`` may map names to arrays.

    Taught in: 02_renyi_kernel_entropy and 04_kernel_eigenspectra.
    """
    import matplotlib.pyplot as plt
    if not isinstance(spectra, dict):
        spectra = {"": np.asarray(spectra)}
    if ax is None:
        fig, ax = plt.subplots()
    else:
        fig = ax.figure
    for name, vals in spectra.items():
        v = np.clip(np.asarray(vals, dtype=float)[:top], 1e-12, None)
        ax.plot(np.arange(1, len(v) + 1), v, marker="o", label=name or None)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index i (largest first)")
    ax.set_ylabel(r"eigenvalue $\lambda_i$ of $K/n$")
    ax.set_title(title)
    if any(spectra.keys()):
        ax.legend()
    return fig


def plot_image_grid(images: np.ndarray, nrow: int = 8, titles: Optional[Sequence[str]] = None,
                    ax=None, cmap: str = "gray", title: str = ""):
    """Show images (B, H, W) or (B, H, W, C) or (B, C, H, W) in [0, 1] as one grid."""
    import matplotlib.pyplot as plt
    imgs = np.asarray(images, dtype=float)
    if imgs.ndim == 4 and imgs.shape[1] in (1, 3) and imgs.shape[-1] not in (1, 3):
        imgs = imgs.transpose(0, 2, 3, 1)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    b = len(imgs)
    ncol = min(nrow, b)
    nr = int(np.ceil(b / ncol))
    if ax is None:
        fig, axes = plt.subplots(nr, ncol, figsize=(1.1 * ncol, 1.1 * nr + (0.3 if title else 0)),
                                 squeeze=False)
    else:
        raise ValueError("plot_image_grid draws its own figure; pass ax=None")
    for k, a in enumerate(axes.flat):
        a.axis("off")
        if k < b:
            a.imshow(np.clip(imgs[k], 0, 1), cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                a.set_title(str(titles[k]), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
