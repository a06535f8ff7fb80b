"""What a comparison runs on: the pipeline (:func:`load_model`) and the image features
(:func:`feature_extractor`) the metrics are computed on.

Nothing here downloads weights: ``digits`` is the shipped pipeline, anything else a local
diffusers folder or a hub id already in the Hugging Face cache.
Used by :mod:`sparke_lab.experiments` (``sparke-lab compare``); taught in
08_guided_generation_digits and 09_stable_diffusion_on_gpu (``load_model``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def load_model(model: str, device=None, dtype=None):
    """``digits`` (the shipped pipeline) or a local diffusers folder / hub id (needs weights).

    Taught in: 09_stable_diffusion_on_gpu."""
    from .utils import pick_device, pick_dtype
    if model == "digits":
        from .models import load_digits_pipeline
        return load_digits_pipeline(device=device, dtype=dtype)
    from diffusers import DiffusionPipeline
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    local = Path(model).expanduser()
    if local.exists() and not (local / "model_index.json").exists():
        raise FileNotFoundError(f"{local} is not a diffusers pipeline folder (no model_index.json)")
    if not local.exists() and (model.startswith((".", "/", "~")) or os.sep in model and model.count("/") != 1):
        raise FileNotFoundError(f"model path {model} does not exist")
    try:
        pipe = DiffusionPipeline.from_pretrained(str(local) if local.exists() else model, torch_dtype=dt)
    except OSError as exc:
        raise FileNotFoundError(f"could not load model {model!r}: {exc}. Give a local diffusers folder, "
                                "or a hub id whose weights are in your Hugging Face cache") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


class FeatureExtractor:
    """Image features (and, for digits, predicted classes and reference features)."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], predict=None, reference=None):
        self._fn, self._predict, self._reference = fn, predict, reference

    def features(self, images_u8: np.ndarray) -> np.ndarray:
        return np.asarray(self._fn(images_u8.astype(np.float32) / 255.0), dtype=np.float64)

    def predict(self, images_u8: np.ndarray):
        return None if self._predict is None else np.asarray(self._predict(images_u8.astype(np.float32) / 255.0))

    def reference(self):
        return None if self._reference is None else self._reference()


def feature_extractor(model: str, spec: str = "auto") -> FeatureExtractor:
    """``auto``: the digits judge for the digits model, else downsampled pixels;
    ``pixels``; or ``module:function`` taking float images (n, H, W, C) in [0, 1] and
    returning (n, d) features (plug in DINOv2/Inception/CLIP here)."""
    if spec == "auto" and model == "digits":
        from .models import digits_real_images, load_digits_judge
        judge = load_digits_judge()
        to_nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        return FeatureExtractor(lambda x: judge.features(to_nchw(x)), lambda x: judge.predict(to_nchw(x)),
                                lambda: np.asarray(judge.features(digits_real_images("test")), dtype=np.float64))
    if spec in ("auto", "pixels"):
        def pixels(x):
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
            t = torch.nn.functional.interpolate(t, size=(32, 32), mode="area")
            return t.reshape(len(t), -1).numpy()
        return FeatureExtractor(pixels)
    if ":" not in spec:
        raise ValueError(f"unknown feature extractor {spec!r}: use auto, pixels or module:function")
    import importlib
    mod, fn = spec.split(":", 1)
    return FeatureExtractor(getattr(importlib.import_module(mod), fn))
