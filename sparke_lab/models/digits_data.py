"""The handwritten digits the digits mini-SD and its judge are trained on.

scikit-learn's bundled digits (1797 8x8 images), upsampled bilinearly to 16x16, white strokes
on black, values in [0,1]; a fixed stratified split (seed 0): 1347 training images (VAE, UNet,
judge, the digits image-text encoder) and 450 held-out images for fidelity metrics. Its own
module so that :mod:`.digits` and :mod:`.judge` both read it without importing each other.
Used in notebooks 04_kernel_eigenspectra and 08_guided_generation_digits.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F

#: Pixel resolution of the pipeline's images (the sklearn digits are 8x8, upsampled).
IMAGE_SIZE = 16
#: Seed of the fixed train/test split of the 1797 sklearn digits (75 % / 25 %, stratified).
SPLIT_SEED = 0


def _split_indices() -> Dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    tr, te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y,
                              random_state=SPLIT_SEED)
    return {"train": np.sort(tr), "test": np.sort(te), "all": np.arange(len(y))}


def digits_arrays(split: str = "train", size: int = IMAGE_SIZE) -> Tuple[torch.Tensor, np.ndarray]:
    """The sklearn digits of ``split`` ("train", "test" or "all") as (N,1,size,size) in [0,1].

    Images are upsampled bilinearly from 8x8; returns ``(images, labels)``. The split is
    fixed (stratified, seed 0): 1347 train and 450 test images.
    """
    from sklearn.datasets import load_digits

    idx = _split_indices()
    if split not in idx:
        raise ValueError(f"unknown split {split!r}; use 'train', 'test' or 'all'")
    d = load_digits()
    x = torch.from_numpy(d.images[idx[split]].astype(np.float32) / 16.0)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1), d.target[idx[split]].astype(np.int64)


def digits_real_images(split: str = "test", size: int = IMAGE_SIZE, return_labels: bool = False):
    """Held-out real digits at the pipeline's resolution, for fidelity metrics.

    Returns a float32 tensor (N,1,16,16) in [0,1] (the same convention as the pipeline's
    ``output_type="pt"``), or ``(images, labels)`` when ``return_labels``. ``split="test"`` is
    the 450 images never seen by the diffusion model or the judge. Used in notebook
    08_guided_generation_digits.
    """
    x, y = digits_arrays(split, size)
    return (x, y) if return_labels else x


def random_shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill), a light augmentation."""
    B, _, H, W = x.shape
    p = max_shift
    xp = F.pad(x, (p, p, p, p))
    sh = torch.randint(0, 2 * p + 1, (B, 2), generator=g)
    out = torch.empty_like(x)
    for i in range(B):
        out[i] = xp[i, :, sh[i, 0]:sh[i, 0] + H, sh[i, 1]:sh[i, 1] + W]
    return out


def augment_digits(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random small affine jitter (shift <=1.5 px, rotation <=10 deg, scale 0.9-1.1) + noise.

    The training augmentation of the judge and of the digits image-text encoder."""
    B = x.shape[0]
    ang = (torch.rand(B, generator=g) - 0.5) * (20 * np.pi / 180)
    sc = 0.9 + 0.2 * torch.rand(B, generator=g)
    sh = (torch.rand(B, 2, generator=g) - 0.5) * (3.0 / IMAGE_SIZE) * 2
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, sh[:, 0]], 1),
                         torch.stack([sin, cos, sh[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    x = x + 0.05 * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1)
