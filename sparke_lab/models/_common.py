"""Shared helpers of :mod:`sparke_lab.models`: where the shipped models live, clear errors.

The shipped checkpoints are package data, ``sparke_lab/data/`` (``toy2d``, ``digits-sd``,
``judge``, ``prompts``), found through :mod:`importlib.resources`, so they come with every
install (a wheel, ``pip install git+...``, an editable checkout). Set ``SPARKE_LAB_DATA`` to
load every model from another folder of the same layout. ``sparke-lab train`` writes to
:func:`user_data_dir` (``$XDG_DATA_HOME/sparke-lab`` or ``~/.local/share/sparke-lab``), never
into the installed package.
"""
from __future__ import annotations

import importlib.resources
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


#: Environment variable (the XDG base-directory rule) under which trained models are written.
XDG_ENV = "XDG_DATA_HOME"


def shipped_data_dir() -> Path:
    """The models and prompt sets shipped inside the package (``sparke_lab/data``)."""
    folder = importlib.resources.files("sparke_lab") / "data"
    if not isinstance(folder, Path):  # a zipped install: diffusers needs real folders
        raise RuntimeError(
            f"sparke_lab is installed in a form without real folders ({folder!r}); install it "
            f"unzipped (pip does), or point {DATA_ENV} at a copy of sparke_lab/data")
    return folder


def data_dir() -> Path:
    """The folder the loaders read: ``$SPARKE_LAB_DATA`` if set, else :func:`shipped_data_dir`."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return shipped_data_dir()


def user_data_dir() -> Path:
    """Where ``sparke-lab train`` writes by default: ``$XDG_DATA_HOME/sparke-lab``, or
    ``~/.local/share/sparke-lab`` when ``XDG_DATA_HOME`` is unset (the XDG base-directory rule,
    also used on macOS and Windows here). Loaders read it only when told: pass the folder to a
    loader or set ``SPARKE_LAB_DATA`` to it.
    """
    base = os.environ.get(XDG_ENV, "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".local" / "share"
    return root / "sparke-lab"


def model_dir(name: str, path: Optional[PathLike] = None) -> Path:
    """``path`` if given, else ``data_dir() / name``."""
    return Path(path).expanduser() if path is not None else data_dir() / name


def train_dir(name: str, out_dir: Optional[PathLike] = None) -> Path:
    """Where a training run of ``name`` writes: ``out_dir`` if given, else
    ``$SPARKE_LAB_DATA/name`` when that is set (the folder the loaders then read), else
    ``user_data_dir() / name``. Never the installed package unless told so.
    """
    if out_dir is not None:
        return Path(out_dir).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    return (Path(env).expanduser() if env else user_data_dir()) / name


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
