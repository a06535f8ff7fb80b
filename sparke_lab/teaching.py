"""Small reusable pieces of the course that are neither scores nor plots.

* :func:`block_kernel`: kernel matrices made of all-ones blocks (exact toy spectra), 02.
* :func:`time_call`, :func:`loglog_slope`: honest timing on the student's machine, 06.
* :data:`DIGIT_PROMPTS`, :func:`digit_prompt_features`, :func:`prompted_digits`: a toy
  "prompt -> image" data set built from real handwritten digits, with prompt features whose
  similarity reflects meaning (prompts that allow the same digits are close), 03 and 05.
* :func:`toy_mode_tv`, :func:`rke_guidance_field`, :func:`plot_toy_methods`,
  :func:`toy_guided_panel`, :func:`toy_guidance_explorer`: guided sampling on the 2-D toy, 07.
* :func:`tile_images`, :func:`show_tiles`: image grids inside one axes, 08-10.
* :func:`feature_spaces`: the same images in latent, semantic and judge features, 09.
* :func:`write_demo_image_folder`, :func:`load_image_folder`, :func:`downsampled_pixels`:
  scoring a folder of your own images, 10.
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


# ------------------------------------------------------- guided sampling on the 2-D toy (07)
def toy_mode_tv(mixture, points, labels) -> np.ndarray:
    """Per-class total-variation distance ``0.5 * sum |w_hat - w|`` between the empirical mode
    weights of ``points`` (see ``ToyMixture.mode_weights``) and the true weights; (n_classes,).
    Taught in: 07_guided_sampling_2d.
    """
    W = mixture.mode_weights(points, labels)
    return 0.5 * np.abs(W - np.asarray(mixture.weights)[None]).sum(1)


def rke_guidance_field(bank_points, bank_classes, query_class: int, n_classes: int,
                       sigma_image: float = 1.0, sigma_text: float = 0.3,
                       lim: float = 3.0, n: int = 21, conditional: bool = True):
    """The descent direction of the (conditional) inverse RKE on a grid of 2-D points.

    The bank holds ``bank_points`` (m, 2) with one-hot prompt features of ``bank_classes``; a
    query point ``f`` of class ``query_class`` has loss ``L(f) = sum_i k_T(t_i, t)^2
    k_X(x_i, f)^2`` (``conditional=False``: no ``k_T`` factor). Returns ``(gx, gy, U, V, L)``:
    grid coordinates (n, n), the negative gradient components (n, n) and the loss (n, n).
    Taught in: 07_guided_sampling_2d.
    """
    import torch
    from .guidance import MemoryBank
    from .guidance.objectives import bank_loss_grad
    Xb = torch.as_tensor(np.asarray(bank_points, dtype=np.float32))
    eye = torch.eye(int(n_classes))
    Tb = eye[torch.as_tensor(np.asarray(bank_classes, dtype=np.int64))]
    bank = MemoryBank.from_features(Xb, Tb)
    xs = np.linspace(-lim, lim, int(n), dtype=np.float32)
    gx, gy = np.meshgrid(xs, xs)
    F = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], 1))
    Tq = eye[int(query_class)].expand(len(F), -1).contiguous() if conditional else None
    loss, grad = bank_loss_grad(bank, F, Tq, kernel="gaussian", sigma=float(sigma_image),
                                kernel_t="gaussian", sigma_t=float(sigma_text))
    U, V = (-grad).numpy().T
    return gx, gy, U.reshape(gx.shape), V.reshape(gx.shape), loss.numpy().reshape(gx.shape)


def plot_toy_methods(results: Dict[str, np.ndarray], labels, mixture, cols: int = 4):
    """Scatter plots of 2-D toy samples per method (coloured by requested class, mode centres
    as crosses) and, below each, the mode weights of class 0 against the truth; titles give
    the mean TV distance and the on-mode fraction. ``results``: name -> (n, 2) points.
    Returns the figure. Taught in: 07_guided_sampling_2d.
    """
    import matplotlib.pyplot as plt
    from .plotting import categorical_colors
    names = list(results)
    cols = min(int(cols), len(names))
    blocks = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(3.1 * cols, 5.4 * blocks),
                             gridspec_kw={"height_ratios": [2.2, 1] * blocks}, squeeze=False)
    colors = categorical_colors(mixture.n_classes)
    labels = np.asarray(labels)
    truth = np.asarray(mixture.weights)
    k = mixture.modes_per_class
    for j, name in enumerate(names):
        r, c = divmod(j, cols)
        ax, bx = axes[2 * r, c], axes[2 * r + 1, c]
        P = np.asarray(results[name], dtype=float)
        for cl in range(mixture.n_classes):
            m = labels == cl
            ax.scatter(P[m, 0], P[m, 1], s=5, alpha=0.6, lw=0, color=colors[cl])
        C = mixture.centers
        ax.scatter(C[:, 0], C[:, 1], marker="x", s=25, color="k", lw=1)
        ax.set_aspect("equal")
        lim = mixture.radius * 1.6
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
        ax.set_xticks([]), ax.set_yticks([])
        tv = toy_mode_tv(mixture, P, labels)
        ax.set_title(f"{name}\nTV {np.nanmean(tv):.3f}, on-mode "
                     f"{mixture.on_mode_fraction(P, labels):.0%}", fontsize=9)
        W = mixture.mode_weights(P, labels)
        x = np.arange(k)
        bx.bar(x - 0.2, truth, 0.4, color="0.75", label="truth")
        bx.bar(x + 0.2, np.nanmean(W, 0), 0.4, color=colors[0], label="samples (mean over classes)")
        bx.set_xticks(x, ["dominant", "second", "third"][:k] if k <= 3 else [str(i) for i in range(k)], fontsize=8)
        bx.set_ylim(0, 1)
        if c == 0:
            bx.set_ylabel("weight")
        if j == 0:
            bx.legend(fontsize=7, loc="upper right")
    for j in range(len(names), blocks * cols):
        r, c = divmod(j, cols)
        axes[2 * r, c].axis("off"), axes[2 * r + 1, c].axis("off")
    fig.tight_layout()
    return fig


def toy_guided_panel(pipe, labels, scale: float = 1.0, sigma: float = 1.0, cfg: float = 3.0,
                     num_steps: int = 50, batch_size: int = 50, seed: int = 0):
    """Sample the 2-D toy (a :class:`sparke_lab.models.ToyPipeline`) at CFG ``cfg`` without and
    with SPARKE (recommended toy settings with ``scale`` and ``sigma_image=sigma``) and draw
    both with :func:`plot_toy_methods`.
    The drawing function of :func:`toy_guidance_explorer`. Taught in: 07_guided_sampling_2d.
    """
    import torch
    from .guidance import SparkeGuidance, generate
    out = {}
    for name, cb in [(f"CFG {cfg:g}, no guidance", None),
                     (f"SPARKE scale {scale:.3g}, σ {sigma:.3g}",
                      SparkeGuidance.recommended("toy2d", scale=float(scale), sigma_image=float(sigma))
                      if scale > 0 else None)]:
        out[name] = generate(pipe, labels, cb, batch_size=batch_size, num_inference_steps=num_steps,
                             guidance_scale=cfg, generator=torch.Generator().manual_seed(seed),
                             progress=False)
    return plot_toy_methods(out, labels, pipe.mixture, cols=2)


def toy_guidance_explorer(pipe, labels, scale: float = 1.0, sigma: float = 1.0, **fixed):
    """Sliders for SPARKE's scale and image bandwidth sigma over :func:`toy_guided_panel`
    (a :class:`sparke_lab.widgets.LiveFigure`, drawn once at the defaults).
    Taught in: 07_guided_sampling_2d.
    """
    from ._extras import require_extra
    from .widgets import LiveFigure, sigma_slider
    W = require_extra("ipywidgets", "lab", "the notebook widgets")
    scale_w = W.FloatSlider(value=scale, min=0.0, max=4.0, step=0.25, description="scale",
                            continuous_update=False)
    return LiveFigure(toy_guided_panel, {"scale": scale_w,
                                         "sigma": sigma_slider(sigma, 0.1, 5.0)},
                      pipe=pipe, labels=labels, **fixed)


# ------------------------------------------------------- your own images (10)
def write_demo_image_folder(folder, images, prompts, csv: bool = False) -> list:
    """Write images (n, H, W) in [0, 1] as grayscale PNGs into ``folder``; the prompt goes
    into the file name (``0007__an odd digit.png``) or, with ``csv=True``, into
    ``prompts.csv`` (columns ``file,prompt``). Returns the written paths.
    Taught in: 10_evaluate_your_own_model.
    """
    import csv as _csv
    from pathlib import Path
    from PIL import Image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    imgs = np.asarray(images, dtype=float)
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]
    if len(imgs) != len(prompts):
        raise ValueError(f"{len(imgs)} images but {len(prompts)} prompts")
    paths, rows = [], []
    for i, (im, p) in enumerate(zip(imgs, prompts)):
        name = f"{i:04d}.png" if csv else f"{i:04d}__{p}.png"
        Image.fromarray(np.clip(np.rint(im * 255), 0, 255).astype(np.uint8), mode="L").save(folder / name)
        paths.append(folder / name)
        rows.append((name, p))
    if csv:
        with open(folder / "prompts.csv", "w", newline="") as fh:
            w = _csv.writer(fh)
            w.writerow(["file", "prompt"])
            w.writerows(rows)
    return paths


def load_image_folder(folder, size: Optional[int] = None) -> Tuple[np.ndarray, list]:
    """Read every PNG/JPEG of ``folder`` (sorted by name) as grayscale floats in [0, 1],
    resized to ``size`` x ``size`` when given; returns ``(images (n, H, W), prompts)``.
    Prompts come from ``prompts.csv`` (columns ``file,prompt``) when present, else from the
    file name after ``__`` (``0007__an odd digit.png``), else ``None``.
    Taught in: 10_evaluate_your_own_model.
    """
    import csv as _csv
    from pathlib import Path
    from PIL import Image
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"no .png/.jpg images in {folder}")
    table = {}
    if (folder / "prompts.csv").is_file():
        with open(folder / "prompts.csv", newline="") as fh:
            table = {r["file"]: r["prompt"] for r in _csv.DictReader(fh)}
    imgs, prompts = [], []
    for p in files:
        im = Image.open(p).convert("L")
        if size is not None and im.size != (size, size):
            im = im.resize((int(size), int(size)), Image.BILINEAR)
        imgs.append(np.asarray(im, dtype=np.float32) / 255.0)
        prompts.append(table.get(p.name, p.stem.split("__", 1)[1] if "__" in p.stem else None))
    shapes = {a.shape for a in imgs}
    if len(shapes) > 1:
        raise ValueError(f"images have different sizes {sorted(shapes)}; pass size=")
    return np.stack(imgs), prompts


# ------------------------------------------------------- image grids in one axes (08-10)
def tile_images(images, nrow: int = 8, pad: int = 1, value: float = 0.5) -> np.ndarray:
    """Tile images (B, H, W), (B, 1, H, W) or (B, H, W, 1) in [0, 1] into one (rows, cols) array
    with ``nrow`` images per row and ``pad`` pixels of ``value`` between them, for
    ``ax.imshow`` next to other panels (``plotting.plot_image_grid`` makes its own figure).
    Taught in: 08_guided_generation_digits, 09_stable_diffusion_on_gpu, 10_evaluate_your_own_model.
    """
    from .plotting import image_stack
    imgs = image_stack(images)
    if imgs.ndim not in (3, 4) or len(imgs) == 0:
        raise ValueError(f"expected a non-empty stack of images, got shape {imgs.shape}")
    B, H, W = imgs.shape[:3]
    ncol = min(int(nrow), B)
    nr = int(np.ceil(B / ncol))
    out = np.full((nr * (H + pad) - pad, ncol * (W + pad) - pad) + imgs.shape[3:], value)
    for k in range(B):
        r, c = divmod(k, ncol)
        out[r * (H + pad):r * (H + pad) + H, c * (W + pad):c * (W + pad) + W] = imgs[k]
    return out


def show_tiles(images, ax, nrow: int = 8, title: str = "") -> None:
    """Draw :func:`tile_images` into ``ax`` (gray colour map for one channel, no ticks).
    Taught in: 08_guided_generation_digits, 09_stable_diffusion_on_gpu.
    """
    t = tile_images(images, nrow)
    ax.imshow(t, cmap="gray" if t.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title)
    ax.grid(False)


def downsampled_pixels(images, size: int = 16) -> np.ndarray:
    """Generic image features: grayscale images (n, H, W) in [0, 1], area-downsampled to
    ``size`` x ``size`` and flattened to (n, size*size). A baseline when no learned feature
    extractor fits your images. Taught in: 10_evaluate_your_own_model.
    """
    import torch
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected grayscale images (n, H, W), got shape {tuple(x.shape)}")
    x = torch.nn.functional.adaptive_avg_pool2d(x[:, None], int(size))
    return x.reshape(len(x), -1).numpy().astype(np.float64)


# ------------------------------------------------------------------ feature spaces (09)
def feature_spaces(images, pipe=None, clip=None, judge=None, batch_size: int = 64) -> Dict[str, np.ndarray]:
    """The same images in up to three feature spaces, each row of unit length (float64).

    * ``"latent"`` (needs ``pipe``): the pipeline VAE's encoding (posterior mean) of the images,
      flattened: the space latent SPARKE repels in (up to the decoder-encoder round trip);
    * ``"semantic"`` (needs ``clip``, a :class:`~sparke_lab.guidance.semantic.ClipFeatures`):
      the image tower's embedding, the space semantic SPARKE repels in;
    * ``"judge"`` (needs ``judge``, the digits classifier): its penultimate layer, a space no
      guidance used.

    ``images``: (n, C, H, W) in [0, 1]. A score is only as independent as its space: a method
    looks best in the space it was steered in, so compare methods in a space none of them used.

    Taught in: 09_stable_diffusion_on_gpu.
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must be (n, C, H, W) in [0, 1], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf; generate them again (e.g. in float32)")
    if pipe is None and clip is None and judge is None:
        raise ValueError("give at least one of pipe (latent space), clip (semantic) or judge")
    x = x.float()
    out: Dict[str, np.ndarray] = {}
    chunks = range(0, len(x), int(batch_size))
    with torch.no_grad():
        if pipe is not None:
            vae = pipe.vae
            rows = []
            for s in chunks:
                b = (x[s:s + batch_size] * 2 - 1).to(vae.device, vae.dtype)
                rows.append(vae.encode(b).latent_dist.mean.float().reshape(len(b), -1).cpu())
            out["latent"] = F.normalize(torch.cat(rows), dim=1).double().numpy()
        if clip is not None:
            from .guidance.semantic import clip_image_features
            dev = next(clip.model.parameters()).device
            rows = [clip_image_features(clip.model, x[s:s + batch_size].to(dev), clip.image_size,
                                        clip.image_mean, clip.image_std).float().cpu() for s in chunks]
            out["semantic"] = torch.cat(rows).double().numpy()
        if judge is not None:
            out["judge"] = np.asarray(judge.features(x, normalize=True), dtype=np.float64)
    return out
