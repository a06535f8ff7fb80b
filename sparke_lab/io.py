"""Reading users' feature files: .npy, .npz, .pt/.pth, .safetensors, .csv/.txt.

Used by the ``sparke-lab scores`` command and 10_evaluate_your_own_model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

SUPPORTED = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".csv", ".txt")


def _pick(mapping: dict, key: Optional[str], path: Path) -> np.ndarray:
    keys = list(mapping.keys())
    if key is not None:
        if key not in mapping:
            raise KeyError(f"{path}: no array named {key!r}; it holds {keys}")
        return mapping[key]
    if len(keys) == 1:
        return mapping[keys[0]]
    for preferred in ("features", "X", "x", "embeddings"):
        if preferred in mapping:
            return mapping[preferred]
    raise ValueError(f"{path} holds several arrays {keys}; choose one with --key NAME")


def load_features(path: Union[str, Path], key: Optional[str] = None) -> np.ndarray:
    """Load an (n, d) feature matrix from a file; ``key`` picks one array of a container.

    Higher-dimensional arrays (images, latents) are flattened to (n, -1). Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` for an unknown format.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"feature file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            arr = _pick({k: z[k] for k in z.files}, key, p)
    elif suffix in (".pt", ".pth"):
        import torch
        obj = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            obj = _pick(obj, key, p)
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"{p} does not hold a tensor (got {type(obj).__name__})")
        arr = obj.detach().float().numpy() if obj.dtype in (torch.float16, torch.bfloat16) else obj.detach().numpy()
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file
        arr = _pick(load_file(str(p)), key, p)
    elif suffix in (".csv", ".txt"):
        arr = np.loadtxt(p, delimiter="," if suffix == ".csv" else None, ndmin=2)
    else:
        raise ValueError(f"unsupported feature file {p.name!r}; use one of {SUPPORTED}")
    arr = np.asarray(arr)
    if arr.ndim == 1:
        raise ValueError(f"{p} holds a 1-D array of shape {arr.shape}; features must be (n, d)")
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    return arr
