"""Plotting helpers that only draw: one shared style, spectra, scatter plots, image grids.

Every function takes data and returns a matplotlib Figure (or draws on ``ax``), so widgets
can wrap them and headless runs still render. Taught in: 01_kernels_and_similarity
(style, kernel profiles and matrices), 02_renyi_kernel_entropy and 04_kernel_eigenspectra
(spectra, mode galleries), 03_conditional_entropy (joint kernels), 05_umap_embeddings
(scatter plots) and 06_scaling_from_n3_to_n (timings).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    if any(spectra.keys()):
        ax.legend()
    return fig


def image_stack(images) -> np.ndarray:
    """Images (B, H, W), (B, H, W, C) or (B, C, H, W) (array or tensor) as a float array
    (B, H, W) or (B, H, W, C): channels last, a single channel dropped."""
    imgs = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=float)
    if imgs.ndim == 4 and imgs.shape[1] in (1, 3) and imgs.shape[-1] not in (1, 3):
        imgs = imgs.transpose(0, 2, 3, 1)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    return imgs


def plot_image_rows(rows: Sequence[Sequence[np.ndarray]], figsize, row_labels: Optional[Sequence[str]] = None,
                    cell_titles=None, title: str = "", cmap: str = "gray", vmin: float = 0.0,
                    vmax: float = 1.0, frame: bool = False, bare: bool = False,
                    interpolation: Optional[str] = None, label_size: float = 8,
                    label_pad: Optional[float] = None, title_size=None, cell_title_kw=None,
                    ncols: Optional[int] = None):
    """The image-grid drawer of the library: ``rows[r]`` is a sequence of images (H, W) or
    (H, W, C), drawn left to right (a shorter row leaves blank cells).

    ``row_labels``: text left of each row; ``cell_titles[r][c]``: a title above a cell, a string
    or ``(text, colour)`` (``cell_title_kw`` e.g. the font size); float images are clipped to
    ``[vmin, vmax]``. ``frame`` keeps the axes' spines (as the style draws them), ``bare`` turns the axes off entirely
    (no labels); ``ncols`` (default: the longest row) fixes the number of columns.
    :func:`plot_image_grid`, :func:`plot_mode_gallery`, :func:`plot_prompt_grid`
    and ``models.digits.save_digits_grid`` draw with it. Returns the figure.
    """
    import matplotlib.pyplot as plt
    ncols = ncols or max(1, max((len(r) for r in rows), default=1))
    fig, axes = plt.subplots(len(rows), ncols, figsize=figsize, squeeze=False)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if bare:
                ax.axis("off")
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                for sp in ax.spines.values():
                    sp.set_visible(sp.get_visible() and frame)
            if c >= len(row):
                continue
            im = np.asarray(row[c])
            if im.ndim == 3 and im.shape[-1] == 1:
                im = im[..., 0]
            if np.issubdtype(im.dtype, np.floating):
                im = np.clip(im, vmin, vmax)
            ax.imshow(im, cmap=cmap, vmin=vmin, vmax=vmax, interpolation=interpolation)
            label = None if cell_titles is None else cell_titles[r][c]
            if label is not None:
                text, color = label if isinstance(label, tuple) else (label, None)
                kw = dict(cell_title_kw or {}, **({} if color is None else {"color": color}))
                ax.set_title(str(text), **kw)
        if row_labels is not None and not bare:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center",
                                  fontsize=label_size, labelpad=label_pad)
    if title:
        fig.suptitle(title, **({} if title_size is None else {"fontsize": title_size}))
    return fig


def plot_image_grid(images: np.ndarray, nrow: int = 8, titles: Optional[Sequence[str]] = None,
                    cmap: str = "gray", title: str = ""):
    """Show images (B, H, W) or (B, H, W, C) or (B, C, H, W) in [0, 1] as one grid of ``nrow``
    images per row, optionally titled one by one. Its own figure (for a grid inside another
    figure's axes: ``teaching.show_tiles``). Taught in: 04_kernel_eigenspectra."""
    imgs = image_stack(images)
    b = len(imgs)
    ncol = min(nrow, b)
    nr = int(np.ceil(b / ncol))
    rows = [list(imgs[i:i + ncol]) for i in range(0, b, ncol)]
    cells = None if titles is None else [list(titles[i:i + ncol]) for i in range(0, b, ncol)]
    return plot_image_rows(rows, (1.1 * ncol, 1.1 * nr + (0.3 if title else 0)), cell_titles=cells,
                           title=title, cmap=cmap, bare=True, cell_title_kw=dict(fontsize=8))


def plot_prompt_grid(images, prompt_idx, prompt_texts: Sequence[str], title: str = "",
                     per_row: int = 8, max_prompts: int = 14, first=()):
    """One row per prompt (at most ``max_prompts``, the prompt indices in ``first`` before the
    others): its first ``per_row`` images (uint8 (n, H, W, C), in sample order), the prompt's
    text on the left. The sample grids of the comparison report (same prompts and seeds for
    every method; broad prompts first)."""
    prompt_idx = np.asarray(prompt_idx)
    present = sorted(set(prompt_idx.tolist()))
    lead = [p for p in first if p in present]
    shown = (lead + [p for p in present if p not in lead])[:max_prompts]
    rows = [[images[i] for i in np.flatnonzero(prompt_idx == pi)[:per_row]] for pi in shown]
    return plot_image_rows(rows, (per_row * 0.75 + 2.2, len(shown) * 0.78 + 0.4),
                           row_labels=[prompt_texts[pi] for pi in shown], title=title,
                           vmin=0, vmax=255, title_size=11, ncols=per_row)


# ----------------------------------------------------------------------------- helpers
def _new_ax(ax, figsize=None):
    import matplotlib.pyplot as plt
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def categorical_colors(k: int):
    """``k`` distinguishable colours: the style's colour-blind-safe cycle for k <= 8,
    ``tab10`` / ``tab20`` beyond. Used by every scatter plot of labelled samples."""
    import matplotlib.pyplot as plt
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", [])
    if k <= len(cycle) and k <= 8:
        return list(cycle[:k])
    if k <= 10:
        cmap = plt.get_cmap("tab10")
        return [cmap(i) for i in range(k)]
    cmap = plt.get_cmap("tab20")  # strong shades first, then their light partners
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [cmap(order[i % 20]) for i in range(k)]


def _to_numpy(X) -> np.ndarray:
    try:
        import torch
        if isinstance(X, torch.Tensor):
            return X.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np.asarray(X)


# ----------------------------------------------------------------------------- kernels (01)
def plot_kernel_profile(sigmas: Sequence[float] = (0.5, 1.0, 2.0), max_distance: Optional[float] = None,
                        ax=None, title: str = "Gaussian kernel as a function of distance"):
    """``k_sigma(d) = exp(-d^2 / (2 sigma^2))`` against the distance d for several bandwidths.

    A dotted marker shows d = sigma, where the kernel is exp(-1/2) ~ 0.61 for every sigma.
    Taught in: 01_kernels_and_similarity.
    """
    fig, ax = _new_ax(ax)
    sigmas = [float(s) for s in sigmas]
    dmax = max_distance if max_distance is not None else 3.5 * max(sigmas)
    d = np.linspace(0.0, dmax, 400)
    for s, c in zip(sigmas, categorical_colors(len(sigmas))):
        ax.plot(d, np.exp(-d**2 / (2 * s**2)), color=c, label=fr"$\sigma$ = {s:g}")
        ax.plot([s], [np.exp(-0.5)], "o", color=c, ms=6)
    ax.axhline(np.exp(-0.5), color="0.5", ls=":", lw=1)
    ax.text(dmax, np.exp(-0.5) + 0.02, r"$e^{-1/2}\approx 0.61$ at $d=\sigma$", ha="right",
            va="bottom", fontsize=9, color="0.35")
    ax.set_xlabel(r"distance $d = \|x - y\|$ (feature units)")
    ax.set_ylabel(r"similarity $k_\sigma(x, y)$")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(title)
    ax.legend()
    return fig


def plot_points(X, labels=None, ax=None, title: str = "", xlabel: str = r"$x_1$",
                ylabel: str = r"$x_2$", legend_title: Optional[str] = None,
                label_names: Optional[Dict] = None, s: float = 14, alpha: float = 0.8,
                equal: bool = True, legend: bool = True):
    """Scatter plot of 2-D points, coloured by categorical ``labels`` (or one colour).

    Used for toy data (01-03) and for UMAP embeddings (05_umap_embeddings).
    """
    X = _to_numpy(X)
    fig, ax = _new_ax(ax)
    if labels is None:
        ax.scatter(X[:, 0], X[:, 1], s=s, alpha=alpha, lw=0)
    else:
        labels = _to_numpy(labels)
        cats = list(dict.fromkeys(sorted(labels.tolist())))
        for c, col in zip(cats, categorical_colors(len(cats))):
            m = labels == c
            name = label_names.get(c, c) if label_names else c
            ax.scatter(X[m, 0], X[m, 1], s=s, alpha=alpha, lw=0, color=col, label=str(name))
        if legend and len(cats) <= 20:
            ax.legend(title=legend_title, loc="center left", bbox_to_anchor=(1.0, 0.5),
                      markerscale=1.6)
    if equal:
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig


def plot_kernel_matrix(K, ax=None, title: str = "Kernel matrix K", groups=None,
                       colorbar: bool = True, vmax: float = 1.0, label: str = r"$k(x_i, x_j)$"):
    """Heatmap of a kernel matrix (samples in the given order; sort them by group first).

    ``groups``: optional label per sample (already sorted); thin lines separate the groups.
    Taught in: 01_kernels_and_similarity and 03_conditional_entropy.
    """
    K = _to_numpy(K)
    fig, ax = _new_ax(ax)
    im = ax.imshow(K, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
    if groups is not None:
        g = np.asarray(groups)
        cuts = np.flatnonzero(g[1:] != g[:-1]) + 0.5
        for c in cuts:
            ax.axhline(c, color="w", lw=0.6, alpha=0.7)
            ax.axvline(c, color="w", lw=0.6, alpha=0.7)
    ax.set_xlabel("sample j")
    ax.set_ylabel("sample i")
    ax.grid(False)
    ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return fig


def plot_eigenvalue_bars(values, top: int = 20, ax=None,
                         title: str = "Eigenvalues of K/n: a probability vector"):
    """The leading eigenvalues of K/n as bars, with their total mass in the legend.

    Taught in: 01_kernels_and_similarity.
    """
    v = np.clip(_to_numpy(values).astype(float), 0, None)
    fig, ax = _new_ax(ax)
    k = min(top, len(v))
    ax.bar(np.arange(1, k + 1), v[:k], color=categorical_colors(1)[0],
           label=fr"top {k} sum to {v[:k].sum():.3f} (all {len(v)}: {v.sum():.3f})")
    ax.set_xlabel("eigenvalue index i (largest first)")
    ax.set_ylabel(r"$\lambda_i$ of $K/n$")
    ax.set_ylim(0, max(1e-3, 1.1 * v[:k].max()))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.legend(loc="upper right")
    return fig


def plot_kernel_panel(X, sigma: float = 1.0, labels=None, top: int = 15):
    """Three panels for one bandwidth: the data, K (samples sorted by label) and its spectrum.

    The pure function behind :func:`sparke_lab.widgets.kernel_explorer`.
    Taught in: 01_kernels_and_similarity.
    """
    import matplotlib.pyplot as plt
    from .kernels import gaussian_kernel
    X = _to_numpy(X)
    order = np.argsort(labels, kind="stable") if labels is not None else np.arange(len(X))
    K = gaussian_kernel(X[order], sigma=sigma).double()
    lam = np.linalg.eigvalsh(K.numpy() / len(X))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9), gridspec_kw=dict(width_ratios=[1, 1.15, 1]))
    plot_points(X, labels, ax=axes[0], title="samples", legend=False)
    plot_kernel_matrix(K, ax=axes[1], groups=None if labels is None else np.asarray(labels)[order],
                       title=fr"$K$ at $\sigma$ = {sigma:.3g} (sorted by mode)")
    plot_eigenvalue_bars(lam, top=top, ax=axes[2], title=r"eigenvalues of $K/n$")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- entropy (02)
def plot_curves(x, curves: Dict[str, Sequence[float]], ax=None, title: str = "",
                xlabel: str = "", ylabel: str = "", logx: bool = False, logy: bool = False,
                hlines: Optional[Dict[str, float]] = None, vlines: Optional[Dict[str, float]] = None,
                markers: bool = True):
    """Several named curves over one x axis, with optional labelled reference lines.

    Used for score-versus-bandwidth (02), score-versus-order (02), conditional score versus
    prompt distance (03) and approximation error versus features (06).
    """
    fig, ax = _new_ax(ax)
    x = _to_numpy(x)
    for (name, y), col in zip(curves.items(), categorical_colors(max(8, len(curves)))):
        ax.plot(x, _to_numpy(y), marker="o" if markers else None, ms=4, color=col, label=name)
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color=["0.15", "#7B3294", "0.5"][i % 3], ls=["--", "-.", ":"][i % 3], lw=1.3,
                   label=name)
    for i, (name, xv) in enumerate((vlines or {}).items()):
        ax.axvline(xv, color=["0.6", "#A6611A", "0.4"][i % 3], ls=[":", "--", "-."][i % 3], lw=1.3,
                   label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(curves) + len(hlines or {}) + len(vlines or {}) > 3:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend()
    return fig


def plot_spectrum_and_score(X, sigma: float = 1.0, alpha: float = 2.0, labels=None,
                            top: int = 20, true_modes: Optional[float] = None):
    """Data, the spectrum of K/n and the order-alpha score exp(H_alpha) for one (sigma, alpha).

    The pure function behind :func:`sparke_lab.widgets.spectrum_explorer`.
    Taught in: 02_renyi_kernel_entropy.
    """
    import matplotlib.pyplot as plt
    from .scores import entropy, kernel_eigenvalues
    X = _to_numpy(X)
    lam = kernel_eigenvalues(X, sigma=sigma)
    score = float(np.exp(entropy(lam, alpha)))
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.0))
    plot_points(X, labels, ax=axes[0], legend=False,
                title=fr"samples; dashed circle: radius $\sigma$ = {sigma:.3g}")
    axes[0].add_patch(plt.Circle((X[0, 0], X[0, 1]), sigma, fill=False, ls="--", color="0.3"))
    k = min(top, len(lam))
    axes[1].bar(np.arange(1, k + 1), np.clip(lam[:k], 0, None), color=categorical_colors(1)[0])
    axes[1].set_xlabel("eigenvalue index i (largest first)")
    axes[1].set_ylabel(r"$\lambda_i$ of $K/n$")
    axes[1].set_ylim(0, 1.0)
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    txt = fr"$\exp(H_{{{alpha:g}}})$ = {score:.2f} effective modes"
    if true_modes is not None:
        txt += f"\n(true mode count {true_modes:g})"
    axes[1].text(0.97, 0.95, txt, transform=axes[1].transAxes, ha="right", va="top",
                 fontsize=11, bbox=dict(boxstyle="round", fc="white", ec="0.7"))
    axes[1].set_title(fr"spectrum at $\sigma$ = {sigma:.3g}, order $\alpha$ = {alpha:g}")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- modes (04)
def plot_mode_gallery(images, modes, per_mode: int = 8, labels=None,
                      title: str = "Modes found by the top eigenvectors of K/n"):
    """One row per mode: the ``per_mode`` images with the largest eigenvector entries.

    ``modes`` is the list returned by :func:`sparke_lab.find_modes`; images are (n, H, W) in
    [0, 1]. Row titles give the eigenvalue (the mode's weight) and, with ``labels``, the most
    common label among the shown images. Taught in: 04_kernel_eigenspectra.
    """
    imgs = _to_numpy(images).astype(float)
    rows, names = [], []
    for mode in modes:
        idx = mode.top(per_mode)
        rows.append([imgs[i] for i in idx])
        name = fr"mode {mode.rank + 1}" + "\n" + fr"$\lambda$={mode.weight:.3f}"
        if labels is not None:
            lab = np.asarray(labels)[idx]
            vals, counts = np.unique(lab, return_counts=True)
            name += f"\nlabel {vals[counts.argmax()]} ({counts.max()}/{len(idx)})"
        names.append(name)
    fig = plot_image_rows(rows, (0.95 * per_mode + 1.6, 1.0 * len(modes) + 0.5), row_labels=names,
                          title=title, cmap="gray_r", label_size=9, label_pad=8, ncols=per_mode)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- scaling (06)
def plot_timings(ns, timings: Dict[str, Sequence[float]], ax=None,
                 title: str = "Measured cost on this machine"):
    """Log-log plot of seconds against n, one line per method, the fitted slope in the legend.

    A slope p means time ~ n^p on the measured range. Taught in: 06_scaling_from_n3_to_n.
    """
    fig, ax = _new_ax(ax)
    ns = np.asarray(ns, dtype=float)
    for (name, ts), col in zip(timings.items(), categorical_colors(max(8, len(timings)))):
        ts = np.asarray(ts, dtype=float)
        ok = np.isfinite(ts) & (ts > 0)
        slope = np.polyfit(np.log(ns[ok]), np.log(ts[ok]), 1)[0] if ok.sum() >= 2 else np.nan
        ax.plot(ns[ok], ts[ok], marker="o", color=col, label=f"{name} (slope {slope:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([f"{int(v):,}" for v in ns])
    ax.minorticks_off()
    ax.set_xlabel("number of samples n")
    ax.set_ylabel("wall time (seconds)")
    ax.set_title(title)
    ax.legend()
    return fig


# ----------------------------------------------------------------------------- conditional (03)
def plot_conditional_panel(X, T, sigma_x: float = 1.0, sigma_t: float = 1.0, groups=None):
    """Three heatmaps, ``K_X``, ``K_T`` and the joint ``K_X o K_T``, with RKE(X), RKE(T) and
    the conditional RKE ``||K_T||_F^2 / ||K_X o K_T||_F^2`` in the titles.

    ``groups`` (e.g. the prompt id of each sample, in the given order) draws separators.
    The pure function behind :func:`sparke_lab.widgets.conditional_explorer`.
    Taught in: 03_conditional_entropy.
    """
    import matplotlib.pyplot as plt
    from .kernels import gaussian_kernel
    KX = gaussian_kernel(X, sigma=sigma_x).double().numpy()
    KT = gaussian_kernel(T, sigma=sigma_t).double().numpy()
    KJ = KX * KT
    n = len(KX)
    rke_x, rke_t = n**2 / np.sum(KX**2), n**2 / np.sum(KT**2)
    cond = np.sum(KT**2) / np.sum(KJ**2)
    fig, axes = plt.subplots(1, 3, figsize=(14.5, 4.3))
    plot_kernel_matrix(KX, ax=axes[0], groups=groups, colorbar=False,
                       title=fr"images $K_X$ ($\sigma_x$={sigma_x:.3g})" + f"\nRKE(X) = {rke_x:.2f}")
    plot_kernel_matrix(KT, ax=axes[1], groups=groups, colorbar=False,
                       title=fr"prompts $K_T$ ($\sigma_t$={sigma_t:.3g})" + f"\nRKE(T) = {rke_t:.2f}")
    plot_kernel_matrix(KJ, ax=axes[2], groups=groups, colorbar=True,
                       title=r"joint $K_X \circ K_T$" + f"\nCond-RKE(X|T) = {cond:.2f}")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the comparison report
def plot_map_by_method_and_prompt(Z, method_of, method_names: Sequence[str], prompt_of,
                                  prompt_texts: Sequence[str]):
    """A 2-D map of samples (e.g. UMAP of image features) twice: coloured by method
    (``method_of[i]`` indexes ``method_names``) and by prompt (``prompt_of[i]`` indexes
    ``prompt_texts``; the first 20 prompts in the legend). The comparison report's map."""
    import matplotlib.pyplot as plt
    Z, method_of, prompt_of = np.asarray(Z), np.asarray(method_of), np.asarray(prompt_of)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for i, m in enumerate(method_names):
        sel = method_of == i
        axes[0].scatter(Z[sel, 0], Z[sel, 1], s=6, alpha=0.6, label=m)
    axes[0].legend(markerscale=3, fontsize=8)
    axes[0].set_title("coloured by method")
    cmap = plt.get_cmap("tab20")
    for j, pi in enumerate(sorted(set(prompt_of.tolist()))):
        sel = prompt_of == pi
        axes[1].scatter(Z[sel, 0], Z[sel, 1], s=6, alpha=0.6, color=cmap(j % 20),
                        label=prompt_texts[pi][:28] if j < 20 else None)
    axes[1].legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes[1].set_title("coloured by prompt")
    for ax in axes:
        ax.set_xlabel("UMAP 1"), ax.set_ylabel("UMAP 2")
    return fig


def plot_scale_curve(scales: Sequence[float], diversity: Sequence[float],
                     fidelity: Optional[Sequence[float]] = None):
    """Cond-Vendi over the SPARKE guidance scale and, on a second axis, prompt fidelity
    (fractions, shown in %): the fidelity-diversity trade-off of the comparison report."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = list(scales)
    ax.plot(xs, list(diversity), marker="o", label="Cond-Vendi")
    ax.set_xlabel("SPARKE guidance scale η")
    ax.set_ylabel("Cond-Vendi (diversity)")
    if fidelity is not None:
        ax2 = ax.twinx()
        ax2.plot(xs, [100 * f for f in fidelity], marker="s", color="C1", label="prompt fidelity")
        ax2.set_ylabel("prompt fidelity (%)", color="C1")
        ax2.set_ylim(0, 102)
        ax2.grid(False)
    ax.set_title("fidelity–diversity trade-off")
    ax.legend(loc="upper left")
    return fig


def plot_frontiers(groups: Dict[str, Sequence], target: Optional[float] = None, ax=None,
                   xlabel: str = "fidelity", ylabel: str = "diversity", references=(),
                   x_span: float = 0.3):
    """Fidelity (x) against diversity (y) per method group: ``groups`` maps a name to
    ``(x, y, label)`` points (its settings, ``none`` included), drawn as a line through the
    points sorted by x; ``target`` draws the matched-fidelity line; ``references`` are extra
    labelled points (e.g. a lower CFG); the x axis shows at most ``x_span`` below the target.
    The comparison report's frontier figure (taught in 11_evaluating_diversity)."""
    fig, ax = _new_ax(ax, figsize=(6.4, 4.4))
    colors = categorical_colors(max(len(groups), 1))
    for (name, pts), col in zip(groups.items(), colors):
        pts = sorted([p for p in pts if np.isfinite(p[0]) and np.isfinite(p[1])], key=lambda p: p[0])
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=col, label=name, lw=1.5)
    for x, y, label in references:
        ax.scatter([x], [y], marker="*", s=120, color="k", zorder=5)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if target is not None:
        ax.axvline(target, color="0.4", ls="--", lw=1)
        ax.annotate("matched\nfidelity", (target, ax.get_ylim()[0]), textcoords="offset points",
                    xytext=(-4, 4), ha="right", va="bottom", fontsize=8, color="0.3")
        xs = [p[0] for pts in groups.values() for p in pts if np.isfinite(p[0])]
        if xs:  # the interesting part is near the target; far weaker fidelity is in the table
            ax.set_xlim(max(min(xs), target - x_span), max(xs) + 0.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("Fidelity-diversity frontiers")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig

