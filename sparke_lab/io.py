"""Reading users' feature files: .npy, .npz, .pt/.pth, .safetensors, .csv/.txt.

Every failure names the file and says what was wrong with it (empty, truncated, not the
format its name says, a ragged row); nothing is read partially.
Used by the ``sparke-lab scores`` command and 10_evaluate_your_own_model.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

SUPPORTED = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".csv", ".txt")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


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


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _unreadable(p: Path, kind: str, exc: BaseException) -> ValueError:
    return ValueError(f"{p} could not be read as a {kind} file ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else 'no details'}); it is truncated, "
                      f"damaged or not a {kind} file: write it again")


def _torch_to_numpy(t) -> np.ndarray:
    import torch
    t = t.detach().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()  # NumPy has no bfloat16; float32 holds both half types exactly
    return t.numpy()


def _split(line: str, delimiter: Optional[str]) -> List[str]:
    return [f.strip() for f in line.split(delimiter)] if delimiter else line.split()


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _data_lines(p: Path):
    """(line number, stripped text) of the non-blank, non-comment lines."""
    with open(p, encoding="utf-8", errors="replace") as fh:
        for no, line in enumerate(fh, 1):
            s = line.strip()
            if s and not s.startswith("#"):
                yield no, s


def _text_error(p: Path, delimiter: Optional[str], header_line: int) -> ValueError:
    """The first line that is not numeric or has another number of values than the first."""
    width, first_no = None, None
    for no, s in _data_lines(p):
        if no <= header_line:
            continue
        fields = _split(s, delimiter)
        bad = next((f for f in fields if not _is_number(f)), None)
        if bad is not None:
            hint = " (comma-separated values? name the file .csv)" if delimiter is None and "," in bad else ""
            return ValueError(f"{p}, line {no}: {bad!r} is not a number{hint}; after an optional "
                              "header row every line must hold numbers only")
        if width is None:
            width, first_no = len(fields), no
        elif len(fields) != width:
            return ValueError(f"{p}, line {no}: {len(fields)} values, but line {first_no} has {width}; "
                              "every row must hold the same number of features")
    return ValueError(f"{p} could not be read as numbers")


def _load_text(p: Path, suffix: str) -> np.ndarray:
    delimiter = "," if suffix == ".csv" else None
    first = next(_data_lines(p), None)
    if first is None:
        raise ValueError(f"{p} holds no numbers (it is empty or only comments)")
    header_line = 0
    fields = _split(first[1], delimiter)
    if delimiter is None and all(_is_number(f) for f in first[1].split(",")):
        raise ValueError(f"{p}, line {first[0]}: comma-separated values in a .txt file; name it "
                         ".csv (a .txt table separates values by spaces)")
    if not any(_is_number(f) for f in fields):
        header_line = first[0]  # a header row of column names: skipped
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": reported below
            arr = np.loadtxt(p, delimiter=delimiter, ndmin=2, skiprows=header_line, dtype=np.float64)
    except ValueError:
        raise _text_error(p, delimiter, header_line) from None
    if arr.size == 0:
        raise ValueError(f"{p} has a header row but no rows of numbers")
    return arr


def load_features(path: Union[str, Path], key: Optional[str] = None) -> np.ndarray:
    """Load an (n, d) feature matrix from a file; ``key`` picks one array of a container.

    Higher-dimensional arrays (images, latents) are flattened to (n, -1); float16 and
    bfloat16 tensors (.pt, .safetensors) become float32. A CSV/TXT file may start with one
    header row of column names. Raises ``FileNotFoundError`` for a missing file, ``KeyError``
    for an unknown ``key`` and ``ValueError`` naming the file for everything else: an
    unknown format, an empty, truncated or mislabelled file, a ragged or non-numeric row.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"feature file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give a feature file ({', '.join(SUPPORTED)})")
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED:
        raise ValueError(f"unsupported feature file {p.name!r}; use one of {SUPPORTED}")
    if p.stat().st_size == 0:
        raise ValueError(f"{p} is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(64)
    if suffix == ".npy":
        if not head.startswith(_NPY_MAGIC):
            what = "a text file" if _looks_like_text(head) else "something else"
            raise ValueError(f"{p} is not a NumPy .npy file (no .npy header; it looks like {what}); "
                             "save it with numpy.save, or name a text table .csv or .txt")
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            if "pickled" in str(exc):
                raise ValueError(f"{p} holds Python objects (pickled data), not numbers; save a "
                                 "numeric array with numpy.save") from None
            raise _unreadable(p, ".npy", exc) from exc
        except Exception as exc:  # EOFError, OSError ... from a truncated file
            raise _unreadable(p, ".npy", exc) from exc
    elif suffix == ".npz":
        if not head.startswith(_ZIP_MAGICS):
            raise ValueError(f"{p} is not a NumPy .npz archive (no zip header); save it with numpy.savez")
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # BadZipFile, EOFError, ValueError ... from a damaged archive
            raise _unreadable(p, ".npz", exc) from exc
        arr = _pick(arrays, key, p)
    elif suffix in (".pt", ".pth"):
        import torch
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # RuntimeError (zip), UnpicklingError, EOFError ...
            raise _unreadable(p, "torch .pt", exc) from exc
        if isinstance(obj, dict):
            obj = _pick(obj, key, p)
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"{p} does not hold a tensor (got {type(obj).__name__})")
        arr = _torch_to_numpy(obj)
    elif suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            tensors = load_file(str(p))
        except Exception as exc:  # SafetensorError from a truncated or foreign file
            raise _unreadable(p, ".safetensors", exc) from exc
        arr = _torch_to_numpy(_pick(tensors, key, p))
    else:
        arr = _load_text(p, suffix)
    arr = np.asarray(arr)
    if arr.ndim == 0:
        raise ValueError(f"{p} holds a single number; features must be (n, d)")
    if arr.ndim == 1:
        raise ValueError(f"{p} holds a 1-D array of shape {arr.shape}; features must be (n, d)")
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{p} holds an empty array of shape {arr.shape}; features must be (n, d) with n, d >= 1")
    return arr
