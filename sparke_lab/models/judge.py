"""The digits judge: a small CNN classifier whose penultimate layer is the metric feature space.

It plays two roles for the digits mini-SD: its predicted digit tells whether an image
follows its prompt, and its 64-d penultimate features stand in for Inception/DINOv2 features
in fidelity and diversity metrics. It is trained on the training split of the sklearn digits
(the same split the diffusion model sees) and evaluated on the held-out split.

Input convention (all methods): images as

- a torch tensor (B,1,H,W), (B,3,H,W) or (B,H,W) with values in [0,1] (what the pipeline
  returns with ``output_type="pt"``); pass ``value_range=(-1, 1)`` for raw VAE decodes;
- a numpy array (B,H,W), (B,H,W,C) or (B,C,H,W) in [0,1] (``output_type="np"``), or uint8 in
  0..255;
- a list of PIL images (``output_type="pil"``), or a pipeline output with ``.images``.

Colour images are averaged to grey; any size is resized to 16x16.

Used in notebooks 04_kernel_eigenspectra (features) and 08_guided_generation_digits.
"""
from __future__ import annotations

import json
import time
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import pick_device, set_seed
from ._common import (PathLike, corrupted_checkpoint, load_safetensors, model_dir, read_json,
                      torch_threads, train_dir)
from .digits_data import IMAGE_SIZE, digits_arrays

FEATURE_DIM = 64


class JudgeNet(nn.Module):
    """conv(1->16) - conv(16->32) - pool - conv(32->64) - pool - fc(1024->64) - fc(64->10)."""

    def __init__(self, feature_dim: int = FEATURE_DIM, n_classes: int = 10):
        super().__init__()
        self.config = {"feature_dim": feature_dim, "n_classes": n_classes}
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.2),
            nn.Linear(64 * (IMAGE_SIZE // 4) ** 2, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, n_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) for images (B,1,16,16) in [0,1]."""
        f = self.body(x * 2 - 1)
        return self.head(f), f


def to_judge_input(images, value_range: Tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Convert images in any accepted form (see the module doc) to (B,1,16,16) float in [0,1]."""
    if hasattr(images, "images") and not isinstance(images, (torch.Tensor, np.ndarray)):
        images = images.images
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("no images given")
        if all(hasattr(im, "convert") for im in images):  # PIL
            arr = np.stack([np.asarray(im.convert("L"), dtype=np.float32) / 255.0
                            for im in images])
            x = torch.from_numpy(arr)[:, None]
            value_range = (0.0, 1.0)
        else:
            x = torch.stack([torch.as_tensor(np.asarray(im)) for im in images])
    elif isinstance(images, np.ndarray):
        arr = images
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
            value_range = (0.0, 1.0)
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.permute(0, 3, 1, 2)  # (B,H,W,C) -> (B,C,H,W)
    elif isinstance(images, torch.Tensor):
        x = images
    else:
        raise TypeError(f"unsupported image type {type(images).__name__}; give a torch tensor, "
                        "a numpy array or a list of PIL images")
    x = x.detach().float().cpu()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
        raise ValueError(f"images must be (B,C,H,W) with C in 1/3/4, (B,H,W) or (B,H,W,C); "
                         f"got shape {tuple(x.shape)}")
    if x.shape[1] == 4:
        x = x[:, :3]
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    lo, hi = value_range
    x = (x - lo) / (hi - lo)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                          align_corners=False, antialias=True)
    return x.clamp(0, 1)


class DigitsJudge:
    """The trained judge: ``predict``, ``predict_proba`` and ``features`` on batches of images.

    See the module docstring for the accepted image formats (default value range [0,1]).
    Returns numpy arrays. ``accuracy`` holds the held-out accuracy measured at training.
    Used in notebooks 04_kernel_eigenspectra and 08_guided_generation_digits.
    """

    def __init__(self, net: JudgeNet, device=None, info: Optional[dict] = None):
        self.device = pick_device(device)
        self.net = net.to(self.device).eval()
        self.info = dict(info or {})
        self.accuracy = self.info.get("test_accuracy")
        self.feature_dim = net.config["feature_dim"]

    @torch.no_grad()
    def _run(self, images, value_range, batch_size=1024):
        x = to_judge_input(images, value_range)
        logits, feats = [], []
        for chunk in torch.split(x, batch_size):
            lg, f = self.net(chunk.to(self.device))
            logits.append(lg.float().cpu())
            feats.append(f.float().cpu())
        return torch.cat(logits), torch.cat(feats)

    def predict(self, images, value_range=(0.0, 1.0)) -> np.ndarray:
        """(B,) predicted digits (int64)."""
        return self._run(images, value_range)[0].argmax(1).numpy()

    def predict_proba(self, images, value_range=(0.0, 1.0)) -> np.ndarray:
        """(B,10) class probabilities."""
        return torch.softmax(self._run(images, value_range)[0], 1).numpy()

    def features(self, images, value_range=(0.0, 1.0), normalize: bool = False) -> np.ndarray:
        """(B,64) penultimate-layer features (float32); unit-length rows when ``normalize``."""
        f = self._run(images, value_range)[1]
        if normalize:
            f = F.normalize(f, dim=1)
        return f.numpy()

    def __call__(self, images, value_range=(0.0, 1.0)) -> np.ndarray:
        return self.predict(images, value_range)

    def __repr__(self) -> str:
        return f"DigitsJudge(accuracy={self.accuracy}, feature_dim={self.feature_dim})"


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random small affine jitter (shift <=1.5 px, rotation <=10 deg, scale 0.9-1.1) + noise."""
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


def train_judge(out_dir: Optional[PathLike] = None, quick: bool = False, seed: int = 0,
                epochs: Optional[int] = None, progress: bool = True, threads: Optional[int] = 1
                ) -> Dict:
    """Train the judge on the training split of the digits and save it to ``out_dir``.

    Default folder: ``judge`` under the user data folder (``judge.safetensors`` +
    ``config.json``; see :func:`sparke_lab.models._common.train_dir`). ``quick`` trains
    a couple of epochs (seconds, for tests). Returns a report with the held-out accuracy
    (450 test images), per-digit accuracy and the training time. Run by
    ``sparke-lab train judge``; used in notebooks 04_kernel_eigenspectra and
    08_guided_generation_digits.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    out = train_dir("judge", out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    epochs = epochs or (2 if quick else 40)
    with torch_threads(threads):
        x_tr, y_tr = digits_arrays("train")
        x_te, y_te = digits_arrays("test")
        y_tr_t = torch.from_numpy(y_tr)
        net = JudgeNet()
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        bs = 64
        n_steps = epochs * ((len(x_tr) + bs - 1) // bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=n_steps)
        t0 = time.perf_counter()
        net.train()
        for _ in tqdm(range(epochs), desc="judge", disable=not progress):
            perm = torch.randperm(len(x_tr), generator=g)
            for s in range(0, len(x_tr), bs):
                idx = perm[s:s + bs]
                logits, _ = net(_augment(x_tr[idx], g))
                loss = F.cross_entropy(logits, y_tr_t[idx], label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        train_s = time.perf_counter() - t0
        net.eval()
        judge = DigitsJudge(net, "cpu")
        pred_te = judge.predict(x_te)
        pred_tr = judge.predict(x_tr)
    acc = float((pred_te == y_te).mean())
    report = {
        "test_accuracy": round(acc, 4),
        "train_accuracy": round(float((pred_tr == y_tr).mean()), 4),
        "test_per_digit": {str(d): round(float((pred_te[y_te == d] == d).mean()), 3)
                           for d in range(10)},
        "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "epochs": epochs, "seed": seed,
        "quick": quick, "train_seconds": round(train_s, 1), "feature_dim": FEATURE_DIM,
        "image_size": IMAGE_SIZE,
    }
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(out / "judge.safetensors"))
    (out / "config.json").write_text(json.dumps({"model": net.config, "report": report},
                                                indent=2) + "\n")
    report["out_dir"] = str(out)
    return report


def load_digits_judge(device=None, path: Optional[PathLike] = None) -> DigitsJudge:
    """Load the shipped judge (``judge`` of :func:`data_dir`, or ``path``) as a :class:`DigitsJudge`.

    A missing or corrupted checkpoint raises FileNotFoundError / RuntimeError naming the path
    and ``sparke-lab train judge``. Used in notebooks 04_kernel_eigenspectra and
    08_guided_generation_digits.
    """
    folder = model_dir("judge", path)
    cfg = read_json(folder / "config.json", "judge")
    state = load_safetensors(folder / "judge.safetensors", "judge")
    try:
        net = JudgeNet(**cfg["model"])
        net.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise corrupted_checkpoint("judge", folder, exc) from exc
    return DigitsJudge(net, device, cfg.get("report"))
