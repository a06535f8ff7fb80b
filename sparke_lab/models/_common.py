"""Shared helpers of :mod:`sparke_lab.models`: where the shipped models live, clear errors.

The shipped checkpoints sit in the repository's ``data/`` folder (``data/toy2d``,
``data/digits-sd``, ``data/judge``, ``data/prompts``). Set ``SPARKE_LAB_DATA`` to use another
folder (for example a copy made by ``sparke-lab train ... --out DIR``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

from ..utils import torch_threads  # noqa: F401  (digits and judge import it from here)

PathLike = Union[str, os.PathLike]

#: Environment variable that overrides the data folder.
DATA_ENV = "SPARKE_LAB_DATA"

#: The CLI command that rebuilds each shipped model.
RETRAIN = {
    "toy2d": "sparke-lab train toy2d",
    "digits-sd": "sparke-lab train digits",
    "judge": "sparke-lab train judge",
    "digits-clip": "sparke-lab train clip",
}


def data_dir() -> Path:
    """The folder holding the shipped models: ``$SPARKE_LAB_DATA`` or ``<repo>/data``."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def model_dir(name: str, path: Optional[PathLike] = None) -> Path:
    """``path`` if given, else ``data_dir() / name``."""
    return Path(path).expanduser() if path is not None else data_dir() / name


def missing_checkpoint(name: str, path: Path, what: str = "checkpoint",
                       cause: Optional[BaseException] = None) -> FileNotFoundError:
    """A FileNotFoundError that names the path and the command that rebuilds it."""
    return FileNotFoundError(
        f"{what} for the {name} model not found at {path}. Rebuild it with "
        f"`{RETRAIN[name]}` (or `{RETRAIN[name]} --out {path.parent if path.suffix else path}`), "
        f"or point {DATA_ENV} at a folder that holds it.")


def corrupted_checkpoint(name: str, path: Path, cause: BaseException) -> RuntimeError:
    """A RuntimeError that names the path, the cause and the command that rebuilds it."""
    return RuntimeError(
        f"the {name} checkpoint at {path} could not be loaded ({type(cause).__name__}: "
        f"{cause}). It may be corrupted or from an incompatible version; rebuild it with "
        f"`{RETRAIN[name]}`.")


def read_json(path: Path, name: str) -> dict:
    """Read a JSON config of a shipped model, with the errors above."""
    if not path.is_file():
        raise missing_checkpoint(name, path, "config")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise corrupted_checkpoint(name, path, exc) from exc


def load_safetensors(path: Path, name: str, device="cpu") -> dict:
    """Load a safetensors state dict of a shipped model, with the errors above."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise missing_checkpoint(name, path, "weights")
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises SafetensorError, OSError, ...
        raise corrupted_checkpoint(name, path, exc) from exc


def dir_size_bytes(path: Path) -> int:
    """Total size in bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
