"""The digits judge: a small CNN classifier that can say "not a digit", and whose penultimate
layer is the metric feature space.

It plays two roles for the digits mini-SD: its predicted digit tells whether an image
follows its prompt, and its 64-d penultimate features stand in for Inception/DINOv2 features
in fidelity and diversity metrics. It is trained on the training split of the sklearn digits
(the same split the diffusion model sees) and evaluated on the held-out split.

Rejection: a judge that names a digit for every image accepts scribbles and so overstates
every guided method's fidelity. The network has an 11th class, "not a digit", trained on the
generated negatives of :mod:`.negatives` (noise, random strokes, blends of two digits,
corrupted digits), and :meth:`DigitsJudge.predict` returns :data:`REJECT` (-1) when that class
wins or when the most probable digit has less than ``min_confidence`` probability (a floor
calibrated at training on digits the network never trained on). Prompt fidelity counts -1 as
invalid.

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
from .digits_data import IMAGE_SIZE, augment_digits, digits_arrays

FEATURE_DIM = 64
#: What :meth:`DigitsJudge.predict` returns for an image it does not accept as a digit.
REJECT = -1
#: Share of the training split held out from the network to calibrate ``min_confidence``.
CALIBRATION_SHARE = 0.1


class JudgeNet(nn.Module):
    """conv(1->16) - conv(16->32) - pool - conv(32->64) - pool - fc(1024->64) - fc(64->11).

    Classes 0-9 are the digits, class 10 (when ``n_classes`` is 11) is "not a digit".
    """

    def __init__(self, feature_dim: int = FEATURE_DIM, n_classes: int = 11):
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
    """The trained judge: ``predict``, ``predict_proba``, ``accepts`` and ``features``.

    See the module docstring for the accepted image formats (default value range [0,1]).
    Returns numpy arrays. ``predict`` gives the digit, or :data:`REJECT` (-1) for an image
    that is not accepted as a digit: the "not a digit" class wins, or the best digit's
    probability is below ``min_confidence`` (calibrated at training; stored in the config).
    ``accuracy`` holds the held-out accuracy measured at training, ``info`` the whole report.
    Used in notebooks 04_kernel_eigenspectra and 08_guided_generation_digits.
    """

    def __init__(self, net: JudgeNet, device=None, info: Optional[dict] = None,
                 min_confidence: float = 0.0):
        if not 0.0 <= float(min_confidence) < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence}")
        self.device = pick_device(device)
        self.net = net.to(self.device).eval()
        self.info = dict(info or {})
        self.accuracy = self.info.get("test_accuracy")
        self.feature_dim = net.config["feature_dim"]
        self.can_reject = net.config["n_classes"] == 11
        self.min_confidence = float(min_confidence)

    @torch.no_grad()
    def _run(self, images, value_range, batch_size=1024):
        x = to_judge_input(images, value_range)
        logits, feats = [], []
        for chunk in torch.split(x, batch_size):
            lg, f = self.net(chunk.to(self.device))
            logits.append(lg.float().cpu())
            feats.append(f.float().cpu())
        return torch.cat(logits), torch.cat(feats)

    def _decide(self, proba: torch.Tensor) -> np.ndarray:
        digit_p, digit = proba[:, :10].max(1)
        out = digit.clone()
        if self.can_reject:
            out[proba[:, 10] >= digit_p] = REJECT
        out[digit_p < self.min_confidence] = REJECT
        return out.numpy()

    def predict(self, images, value_range=(0.0, 1.0)) -> np.ndarray:
        """(B,) predicted digits (int64), :data:`REJECT` (-1) for "not a digit"."""
        return self._decide(torch.softmax(self._run(images, value_range)[0], 1))

    def predict_proba(self, images, value_range=(0.0, 1.0)) -> np.ndarray:
        """(B,11) class probabilities: digits 0-9, then "not a digit" (B,10 for an old
        10-class judge)."""
        return torch.softmax(self._run(images, value_range)[0], 1).numpy()

    def accepts(self, images, value_range=(0.0, 1.0)) -> np.ndarray:
        """(B,) bool: whether each image is accepted as a digit (``predict != REJECT``)."""
        return self.predict(images, value_range) != REJECT

    def features(self, images, value_range=(0.0, 1.0), normalize: bool = False) -> np.ndarray:
        """(B,64) penultimate-layer features (float32); unit-length rows when ``normalize``."""
        f = self._run(images, value_range)[1]
        if normalize:
            f = F.normalize(f, dim=1)
        return f.numpy()

    def __call__(self, images, value_range=(0.0, 1.0)) -> np.ndarray:
        return self.predict(images, value_range)

    def __repr__(self) -> str:
        return (f"DigitsJudge(accuracy={self.accuracy}, feature_dim={self.feature_dim}, "
                f"rejects={self.can_reject}, min_confidence={self.min_confidence:g})")


def _calibration_split(y: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(y)), test_size=CALIBRATION_SHARE, stratify=y,
                            random_state=seed)


def rejection_report(judge: "DigitsJudge", n: int = 1000, seed: int = 12345) -> Dict:
    """How the judge treats held-out real digits and fresh not-a-digit images.

    ``real_accepted_correct``: share of the 450 held-out real digits accepted *and* correctly
    labelled; ``real_accepted``: accepted at all; for each kind of :mod:`.negatives` (drawn
    with ``seed``, never the training seeds; blends and corruptions of held-out digits) the
    share rejected. Used by ``sparke-lab train judge`` and tests/test_models_judge.py.
    """
    from .negatives import KINDS, not_a_digit

    x_te, y_te = digits_arrays("test")
    pred = judge.predict(x_te)
    rep = {"real_accepted_correct": round(float((pred == y_te).mean()), 4),
           "real_accepted": round(float((pred != REJECT).mean()), 4)}
    held_out = (x_te, torch.from_numpy(y_te))
    for k, kind in enumerate(KINDS):
        imgs = not_a_digit(kind, n, seed=seed + k, digits=held_out)
        rep[f"{kind}_rejected"] = round(float((judge.predict(imgs) == REJECT).mean()), 4)
    return rep


def train_judge(out_dir: Optional[PathLike] = None, quick: bool = False, seed: int = 0,
                epochs: Optional[int] = None, progress: bool = True, threads: Optional[int] = 1,
                calibration_quantile: float = 0.005, negatives_per_batch: int = 24) -> Dict:
    """Train the judge on the training split of the digits and save it to ``out_dir``.

    Default folder: ``judge`` under the user data folder (``judge.safetensors`` +
    ``config.json``; see :func:`sparke_lab.models._common.train_dir`). The network
    sees 90 % of the training split (light affine jitter) and, in every batch,
    ``negatives_per_batch`` fresh not-a-digit images (:func:`.negatives.mixed_negatives`) as
    class 10. The other 10 % calibrate the confidence floor: ``min_confidence`` is the
    ``calibration_quantile`` quantile of the best-digit probability on those unseen digits
    (so about 99.5 % of real digits clear it), capped at 0.5. ``quick`` trains a couple of
    epochs (seconds, for tests). Returns a report with the held-out accuracy (450 test
    images), per-digit accuracy, :func:`rejection_report` and the training time. Run by
    ``sparke-lab train judge``; used in notebooks 04_kernel_eigenspectra and
    08_guided_generation_digits.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from .negatives import mixed_negatives

    out = train_dir("judge", out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    epochs = epochs or (2 if quick else 40)
    with torch_threads(threads):
        x_all, y_all = digits_arrays("train")
        x_te, y_te = digits_arrays("test")
        fit, cal = _calibration_split(y_all, seed)
        x_tr, y_tr = x_all[fit], y_all[fit]
        y_tr_t = torch.from_numpy(y_tr)
        net = JudgeNet()
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        bs = 64
        n_steps = epochs * ((len(x_tr) + bs - 1) // bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=n_steps)
        t0 = time.perf_counter()
        net.train()
        reject = torch.full((negatives_per_batch,), 10, dtype=torch.long)
        for _ in tqdm(range(epochs), desc="judge", disable=not progress):
            perm = torch.randperm(len(x_tr), generator=g)
            for s in range(0, len(x_tr), bs):
                idx = perm[s:s + bs]
                neg = mixed_negatives(negatives_per_batch, g, x_tr, y_tr_t)
                logits, _ = net(torch.cat([augment_digits(x_tr[idx], g), neg]))
                loss = F.cross_entropy(logits, torch.cat([y_tr_t[idx], reject]),
                                       label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        train_s = time.perf_counter() - t0
        net.eval()
        raw = DigitsJudge(net, "cpu")
        cal_p = torch.from_numpy(raw.predict_proba(x_all[cal]))[:, :10].max(1).values
        min_conf = min(0.5, float(torch.quantile(cal_p, calibration_quantile)))
        judge = DigitsJudge(net, "cpu", min_confidence=min_conf)
        pred_te = judge.predict(x_te)
        pred_tr = judge.predict(x_tr)
        rejection = rejection_report(judge, n=200 if quick else 1000)
    acc = float((pred_te == y_te).mean())
    report = {
        "test_accuracy": round(acc, 4),
        "train_accuracy": round(float((pred_tr == y_tr).mean()), 4),
        "test_per_digit": {str(d): round(float((pred_te[y_te == d] == d).mean()), 3)
                           for d in range(10)},
        "rejection": rejection,
        "min_confidence": round(min_conf, 4),
        "calibration": {"images": int(len(cal)), "quantile": calibration_quantile},
        "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "epochs": epochs, "seed": seed,
        "negatives_per_batch": negatives_per_batch,
        "quick": quick, "train_seconds": round(train_s, 1), "feature_dim": FEATURE_DIM,
        "image_size": IMAGE_SIZE,
    }
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(out / "judge.safetensors"))
    (out / "config.json").write_text(json.dumps({"model": net.config, "report": report,
                                                 "min_confidence": min_conf},
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
    return DigitsJudge(net, device, cfg.get("report"), min_confidence=cfg.get("min_confidence", 0.0))
