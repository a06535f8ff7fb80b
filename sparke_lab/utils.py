"""Small shared helpers: device and dtype choice, seeding, input validation, plain-text tables.

Taught in: notebooks 01 (devices and seeds are set in every parameter cell).
"""
from __future__ import annotations

import contextlib
import os
import random
import warnings
from typing import List, Optional, Union

import numpy as np
import torch

DeviceLike = Union[str, torch.device, None]

#: Environment switch that turns notebooks and the demo to full size.
FULL_SIZE_ENV = "SPARKE_LAB_FULL"


def full_size() -> bool:
    """True when ``SPARKE_LAB_FULL`` is set to a true value (1/true/yes).

    Notebooks and the demo read their problem sizes through this one switch.
    """
    return os.environ.get(FULL_SIZE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick_device(device: DeviceLike = None) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` picks cuda > mps > cpu.

    Code in this project never writes a literal device name: it asks this helper.
    """
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: DeviceLike = None, dtype: Union[str, torch.dtype, None] = None,
               *, fallback: bool = True) -> torch.dtype:
    """Pick a compute dtype for a pipeline on ``device``.

    ``None`` gives float16 on CUDA and float32 elsewhere. Half precision on the CPU is
    refused (slow and unsupported by many kernels): with ``fallback=True`` it warns and
    returns float32, otherwise it raises ``ValueError``.
    """
    dev = pick_device(device)
    if dtype is None:
        return torch.float16 if dev.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        names = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
                 "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
                 "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
                 "fp64": torch.float64, "float64": torch.float64}
        if dtype.lower() not in names:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
        dtype = names[dtype.lower()]
    if dtype in (torch.float16, torch.bfloat16) and dev.type == "cpu":
        msg = (f"{dtype} on the CPU is not supported by sparke-lab pipelines; "
               "use float32 on the CPU (half precision is for GPUs)")
        if not fallback:
            raise ValueError(msg)
        warnings.warn(msg + "; falling back to float32", RuntimeWarning, stacklevel=2)
        return torch.float32
    return dtype


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) in one call."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_generator(seed: int, device: DeviceLike = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (pipelines take these)."""
    return torch.Generator(device=pick_device(device)).manual_seed(int(seed))


@contextlib.contextmanager
def torch_threads(n: Optional[int]):
    """Temporarily set torch's intra-op thread count (``None``: leave it unchanged).

    Tiny models (the 2-D toy MLP) run fastest on one thread, and on a small shared CPU extra
    threads that spin-wait make them many times slower.
    """
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def format_table(rows: List[dict], columns: List[str], floatfmt: str = "{:.3f}") -> str:
    """A plain-text table with right-aligned numbers (the CLI's tables)."""
    def fmt(v):
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths)))
    out = [line, "-" * len(line)]
    for row in cells:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(out)
