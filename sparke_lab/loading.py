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


def check_model(model: str) -> None:
    """Refuse a model that :func:`load_model` could not load, without loading it: the
    shipped ``digits`` folder, a local diffusers folder (with ``model_index.json``), or a hub
    id whose ``model_index.json`` is in the Hugging Face cache (nothing is downloaded)."""
    if model == "digits":
        from .models import data_dir
        if not (data_dir() / "digits-sd" / "model_index.json").is_file():
            raise FileNotFoundError(f"the shipped digits model is missing from {data_dir() / 'digits-sd'}; "
                                    "run `sparke-lab train digits`")
        return
    local = Path(model).expanduser()
    if local.exists():
        if not (local / "model_index.json").exists():
            raise FileNotFoundError(f"{local} is not a diffusers pipeline folder (no model_index.json)")
        return
    if model.startswith((".", "/", "~")) or os.sep in model and model.count("/") != 1:
        raise FileNotFoundError(f"model path {model} does not exist")
    from huggingface_hub import try_to_load_from_cache
    try:
        cached = try_to_load_from_cache(model, "model_index.json")
    except ValueError as exc:  # not a valid repo id
        raise FileNotFoundError(f"model {model!r} is neither a local folder nor a hub id ({exc})") from None
    if not isinstance(cached, str):
        raise FileNotFoundError(f"model {model!r} is not a local folder and not in your Hugging Face cache "
                                "(nothing is downloaded): give a local diffusers folder or download it first")


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
    check_model(model)
    local = Path(model).expanduser()
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


def check_features(spec: str) -> None:
    """Refuse a feature-extractor spec :func:`feature_extractor` could not build: ``auto``,
    ``pixels`` or ``module:function`` with an importable module and a callable function."""
    if spec in ("auto", "pixels"):
        return
    if ":" not in spec:
        raise ValueError(f"unknown feature extractor {spec!r}: use auto, pixels or module:function")
    import importlib
    mod, fn = spec.split(":", 1)
    try:
        module = importlib.import_module(mod)
    except Exception as exc:  # ImportError, or any error raised while importing the module
        raise ValueError(f"--features {spec}: cannot import module {mod!r} ({type(exc).__name__}: {exc})") from None
    if not hasattr(module, fn):
        raise ValueError(f"--features {spec}: module {mod!r} has no function {fn!r}")
    if not callable(getattr(module, fn)):
        raise ValueError(f"--features {spec}: {mod}.{fn} is not a function "
                         f"(a {type(getattr(module, fn)).__name__})")


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
    check_features(spec)
    import importlib
    mod, fn = spec.split(":", 1)
    return FeatureExtractor(getattr(importlib.import_module(mod), fn))
