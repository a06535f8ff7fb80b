"""Memory banks for diversity guidance: what earlier samples looked like (storage only).

A bank holds the features ``x_i`` (e.g. flattened, normalised latents) and prompt features
``t_i`` of *finished* samples. What guidance computes from them, the row loss
``L(f) = sum_i k_T(t_i, t)^2 k_X(x_i, f)^2`` and its gradient, lives in
:mod:`sparke_lab.guidance.objectives`; a bank stores what that needs:

* :class:`MemoryBank` (exact): every row (and its squared norm); ``max_size`` turns it into a
  sliding window (ring buffer). A query then costs one kernel row, O(n D).
* :class:`SketchBank`: random-Fourier-feature running sums. Since
  ``k_sigma^2 = k_{sigma / sqrt 2}`` and a product of Gaussian kernels is one Gaussian kernel
  on ``[x / s_x, t / s_t]``, ``L(f) ~ phi(u)^T S`` with ``S = sum_i phi(u_i)``. A query costs
  O(m D) whatever the bank size n.

Both save to and load from safetensors with metadata that is checked on load (never pickle).
A bank passed as ``reference=`` to :class:`~sparke_lab.guidance.SparkeGuidance` is a fixed
set to repel from (novelty guidance) and is never updated.

Taught in: 07_guided_sampling_2d (the bank and its kernel row), 08_guided_generation_digits
(banks across calls, save/load), 09_stable_diffusion_on_gpu (sketch bank at scale).
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Optional, Tuple, Union

import torch

from ..kernels import as_features, check_sigma
from ..rff import FourierFeatures
from .objectives import exact_bank_loss_grad, sketch_bank_loss_grad

PathLike = Union[str, "os.PathLike[str]"]
FORMAT_VERSION = "1"


def _as_rows(X, name: str, device, min_rows: int = 1) -> torch.Tensor:
    """Validate ``X`` (finite, 2-D) and return float32 on ``device`` (1-D becomes one row)."""
    if isinstance(X, torch.Tensor) and X.ndim == 1:
        X = X[None]
    return as_features(X, name, min_rows=min_rows).to(device=device, dtype=torch.float32)


# ------------------------------------------------------------------ metadata helpers
def _check_meta(meta: Dict[str, str], path, expect: Dict[str, str]) -> None:
    for key, want in expect.items():
        got = meta.get(key)
        if got != want:
            raise ValueError(f"{path} is not a sparke-lab {expect.get('kind', '')} bank file "
                             f"(metadata {key!r} is {got!r}, expected {want!r})")


def _read_safetensors(path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no bank file at {path}")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # SafetensorError, OSError ...
        raise ValueError(f"{path} is not a readable safetensors bank file: {exc}") from exc
    return tensors, meta


# ------------------------------------------------------------------------ exact bank
class MemoryBank:
    """Exact memory bank: the features (and prompt features) of finished samples.

    ``max_size``: keep only the newest ``max_size`` rows (a sliding window, as c-VSG's
    window of 150); ``None`` keeps the full history (SPARKE's default). Storage grows by
    doubling; with ``max_size`` it is a ring buffer, so adding never copies the bank.
    ``device``: where the rows live (``None``: where the first rows come from).

    A query (:meth:`loss_and_grad`) computes one kernel row per query sample: O(n D).
    Taught in: 07_guided_sampling_2d and 08_guided_generation_digits.
    """

    kind = "exact"

    def __init__(self, max_size: Optional[int] = None, device=None):
        if max_size is not None and int(max_size) < 1:
            raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
        self.max_size = None if max_size is None else int(max_size)
        self.device = None if device is None else torch.device(device)
        self._X: Optional[torch.Tensor] = None
        self._T: Optional[torch.Tensor] = None
        self._sq: Optional[torch.Tensor] = None
        self._n = 0          # rows held
        self._next = 0       # ring-buffer write position (max_size only)
        self.total_added = 0

    # ---- size and content
    def __len__(self) -> int:
        return self._n

    @property
    def dim(self) -> Optional[int]:
        return None if self._X is None else self._X.shape[1]

    @property
    def prompt_dim(self) -> Optional[int]:
        return None if self._T is None else self._T.shape[1]

    @property
    def has_prompts(self) -> bool:
        return self._T is not None

    @property
    def features(self) -> torch.Tensor:
        """(n, D) stored features (a view; oldest-first order is not guaranteed)."""
        if self._X is None:
            return torch.zeros(0, 0)
        return self._X[:self._n]

    @property
    def prompt_features(self) -> Optional[torch.Tensor]:
        """(n, e) stored prompt features, or None for a bank without prompts."""
        return None if self._T is None else self._T[:self._n]

    def __repr__(self) -> str:
        return (f"MemoryBank(n={len(self)}, dim={self.dim}, prompt_dim={self.prompt_dim}, "
                f"max_size={self.max_size})")

    @classmethod
    def from_features(cls, X, T=None, max_size: Optional[int] = None, device=None) -> "MemoryBank":
        """A bank holding ``X`` (n, D) and optional prompt features ``T`` (n, e), e.g. a
        reference set for novelty guidance."""
        bank = cls(max_size=max_size, device=device)
        bank.add(X, T)
        return bank

    def clear(self) -> None:
        """Empty the bank in place (the object the guidance holds, not a copy)."""
        self._X = self._T = self._sq = None
        self._n = self._next = 0
        self.total_added = 0

    # ---- adding
    def reserve(self, capacity: int) -> None:
        """Pre-allocate room for ``capacity`` rows (after the first ``add``, which fixes the
        dimensions), so that filling a large bank never holds two copies of it."""
        if self._X is None:
            raise ValueError("reserve() needs the feature dimension: add some rows first")
        self._grow(int(capacity))

    def _grow(self, need: int) -> None:
        cap = 0 if self._X is None else self._X.shape[0]
        if need <= cap:
            return
        new_cap = max(need, min(2 * cap, cap + (1 << 20)), 16)
        if self.max_size is not None:
            new_cap = min(new_cap, self.max_size)

        def grow(A):
            if A is None:
                return None
            B = torch.empty((new_cap,) + tuple(A.shape[1:]), dtype=A.dtype, device=A.device)
            B[:self._n] = A[:self._n]
            return B
        self._X, self._T, self._sq = grow(self._X), grow(self._T), grow(self._sq)

    def add(self, X, T=None) -> None:
        """Append rows ``X`` (B, D) with prompt features ``T`` (B, e) (or None).

        A bank either always or never has prompt features; dims must match earlier rows.
        NaN/Inf rows raise ``ValueError`` (they must never enter a bank).
        """
        Xt = _as_rows(X, "X", self.device or (X.device if isinstance(X, torch.Tensor) else "cpu"))
        Tt = None if T is None else _as_rows(T, "T", Xt.device)
        if Tt is not None and Tt.shape[0] != Xt.shape[0]:
            raise ValueError(f"X has {Xt.shape[0]} rows but T has {Tt.shape[0]}")
        if self._X is None and self._n == 0:
            self.device = Xt.device
            self._X = torch.empty(0, Xt.shape[1], device=Xt.device)
            self._sq = torch.empty(0, device=Xt.device)
            self._T = None if Tt is None else torch.empty(0, Tt.shape[1], device=Xt.device)
        if Xt.shape[1] != self._X.shape[1]:
            raise ValueError(f"feature dimension {Xt.shape[1]} does not match the bank's "
                             f"{self._X.shape[1]}")
        if (Tt is None) != (self._T is None):
            raise ValueError("this bank " + ("stores" if self._T is not None else "has no") +
                             " prompt features; pass T consistently (None for an unconditional bank)")
        if Tt is not None and Tt.shape[1] != self._T.shape[1]:
            raise ValueError(f"prompt feature dimension {Tt.shape[1]} does not match the "
                             f"bank's {self._T.shape[1]}")
        Xt = Xt.to(self._X.device)
        Tt = None if Tt is None else Tt.to(self._X.device)
        if self.max_size is not None and Xt.shape[0] > self.max_size:
            Xt = Xt[-self.max_size:]
            Tt = None if Tt is None else Tt[-self.max_size:]
        b = Xt.shape[0]
        self.total_added += b
        sq = (Xt * Xt).sum(1)
        if self.max_size is None or self._n + b <= self.max_size:
            self._grow(self._n + b)
            sl = slice(self._n, self._n + b)
            self._X[sl], self._sq[sl] = Xt, sq
            if Tt is not None:
                self._T[sl] = Tt
            self._n += b
            self._next = self._n % self.max_size if self.max_size else self._n
            return
        self._grow(self.max_size)
        for j in range(b):  # ring buffer: overwrite the oldest rows
            if self._n < self.max_size:
                pos = self._n
                self._n += 1
            else:
                pos = self._next
            self._X[pos], self._sq[pos] = Xt[j], sq[j]
            if Tt is not None:
                self._T[pos] = Tt[j]
            self._next = (pos + 1) % self.max_size

    # ---- queries
    @property
    def squared_norms(self) -> torch.Tensor:
        """(n,) ``||x_i||^2`` of the stored rows, kept since they were added."""
        if self._sq is None:
            return torch.zeros(0)
        return self._sq[:self._n]

    def loss_and_grad(self, F: torch.Tensor, Tq: Optional[torch.Tensor], kernel: str,
                      sigma: float, kernel_t: str = "gaussian", sigma_t: float = 1.0,
                      chunk: int = 65536) -> Tuple[torch.Tensor, torch.Tensor]:
        """The row loss over this bank and its gradient for queries ``F`` (B, D): see
        :func:`sparke_lab.guidance.objectives.exact_bank_loss_grad`."""
        return exact_bank_loss_grad(self, F, Tq, kernel, sigma, kernel_t, sigma_t, chunk)

    def check_query(self, F: torch.Tensor, Tq: Optional[torch.Tensor]) -> None:
        """Refuse queries whose feature or prompt dimension differs from the stored rows'."""
        if F.shape[1] != self._X.shape[1]:
            raise ValueError(f"query features have dimension {F.shape[1]} but the bank holds "
                             f"dimension {self._X.shape[1]} (same model and feature choice?)")
        if Tq is not None:
            if self._T is None:
                raise ValueError("conditional guidance needs a bank with prompt features; this "
                                 "bank has none (use objective='rke' or a new bank)")
            if Tq.shape[1] != self._T.shape[1]:
                raise ValueError(f"prompt features have dimension {Tq.shape[1]} but the bank "
                                 f"holds dimension {self._T.shape[1]} (same text encoder?)")

    def digest(self) -> List[float]:
        """A few numbers that change with any row (processes compare them)."""
        if self._n == 0:
            return [0.0, float(self.total_added), 0.0, 0.0]
        T = self.prompt_features
        return [float(self._n), float(self.total_added), float(self.features.double().sum()),
                0.0 if T is None else float(T.double().sum())]

    # ---- persistence
    def save(self, path: PathLike, extra: Optional[Dict[str, str]] = None) -> None:
        """Write the bank to a safetensors file (tensors + checked metadata, no pickle)."""
        from safetensors.torch import save_file

        if self._n == 0:
            raise ValueError("the bank is empty; nothing to save")
        # oldest row first, so that a loaded ring buffer evicts the same rows next
        order = None
        if self.max_size is not None and self._n == self.max_size and self._next:
            order = (torch.arange(self._n, device=self._X.device) + self._next) % self._n
        pick = (lambda A: A) if order is None else (lambda A: A[order])
        tensors = {"features": pick(self.features).detach().cpu().contiguous()}
        if self._T is not None:
            tensors["prompt_features"] = pick(self.prompt_features).detach().cpu().contiguous()
        meta = {"format": "sparke-lab-bank", "version": FORMAT_VERSION, "kind": self.kind,
                "n": str(self._n), "dim": str(self.dim),
                "prompt_dim": "" if self._T is None else str(self.prompt_dim),
                "max_size": "" if self.max_size is None else str(self.max_size),
                "total_added": str(self.total_added)}
        if extra:
            meta["extra"] = json.dumps(extra)
        save_file(tensors, os.fspath(path), metadata=meta)

    @classmethod
    def load(cls, path: PathLike, device=None, expect_dim: Optional[int] = None,
             expect_prompt_dim: Optional[int] = None) -> "MemoryBank":
        """Read a bank written by :meth:`save`; metadata and shapes are checked.

        ``expect_dim`` / ``expect_prompt_dim`` raise ``ValueError`` on a mismatch (a bank
        from another model or text encoder).
        """
        tensors, meta = _read_safetensors(path)
        _check_meta(meta, path, {"format": "sparke-lab-bank", "kind": cls.kind})
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: bank format version {meta.get('version')!r} is not "
                             f"supported (expected {FORMAT_VERSION})")
        X = tensors.get("features")
        if X is None or X.ndim != 2 or str(X.shape[0]) != meta.get("n") or str(X.shape[1]) != meta.get("dim"):
            raise ValueError(f"{path}: features do not match the metadata (n, dim)")
        T = tensors.get("prompt_features")
        if (T is None) != (meta.get("prompt_dim", "") == ""):
            raise ValueError(f"{path}: prompt features do not match the metadata")
        if T is not None and (T.shape[0] != X.shape[0] or str(T.shape[1]) != meta["prompt_dim"]):
            raise ValueError(f"{path}: prompt features do not match the metadata (n, prompt_dim)")
        if expect_dim is not None and X.shape[1] != int(expect_dim):
            raise ValueError(f"{path}: bank feature dimension {X.shape[1]} != expected {expect_dim}")
        if expect_prompt_dim is not None and (T is None or T.shape[1] != int(expect_prompt_dim)):
            got = None if T is None else T.shape[1]
            raise ValueError(f"{path}: bank prompt dimension {got} != expected {expect_prompt_dim}")
        max_size = int(meta["max_size"]) if meta.get("max_size") else None
        bank = cls(max_size=max_size, device=device)
        bank.add(X.float(), None if T is None else T.float())
        bank.total_added = int(meta.get("total_added", X.shape[0]))
        return bank


# ------------------------------------------------------------------------ sketch bank
class SketchBank:
    """Random-Fourier-feature sketch of a bank: constant cost per query at any n.

    Holds ``S = sum_i phi(u_i)`` and ``M = sum_i x_i phi(u_i)^T`` (D x 2m) with ``u_i = [x_i / (sigma_image / sqrt 2), t_i / (sigma_text /
    sqrt 2)]`` (prompt part only when ``conditional``) and ``phi`` the random Fourier features
    of the unit-bandwidth Gaussian kernel, so that ``phi(u)^T S ~ sum_i c_i`` with
    ``c_i = k_X(x_i, x)^2 k_T(t_i, t)^2`` (the loss) and ``M phi(u) ~ sum_i c_i x_i`` (the
    kernel-weighted mean the gradient needs). Gaussian kernels only. Features are drawn from ``seed`` when the first
    rows arrive (their dimension fixes the map), so a saved sketch is rebuilt exactly.

    ``n_features`` m: more frequencies, less noise (error ~ 1/sqrt(m) per kernel value); a
    query costs O(m D) time, the bank O(m (D + e)) memory for the frequencies and ``M``
    (about 270 MB each in float32 for SD-1.5 latents, D = 16,384, at m = 2048).
    Taught in: 09_stable_diffusion_on_gpu (and 06_scaling_from_n3_to_n for RFF).
    """

    kind = "sketch"

    def __init__(self, sigma_image: float = 0.8, sigma_text: float = 0.3,
                 conditional: bool = True, n_features: int = 2048, seed: int = 0, device=None):
        self.sigma_image = check_sigma(sigma_image, "sigma_image")
        self.sigma_text = check_sigma(sigma_text, "sigma_text")
        self.conditional = bool(conditional)
        if int(n_features) < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.n_features = int(n_features)
        self.seed = int(seed)
        self.device = None if device is None else torch.device(device)
        self.max_size = None
        self._fm: Optional[FourierFeatures] = None
        self.dim: Optional[int] = None
        self.prompt_dim: Optional[int] = None
        self._S: Optional[torch.Tensor] = None
        self._n = 0
        self.total_added = 0

    def __len__(self) -> int:
        return self._n

    @property
    def has_prompts(self) -> bool:
        return self.conditional

    def __repr__(self) -> str:
        return (f"SketchBank(n={self._n}, dim={self.dim}, prompt_dim={self.prompt_dim}, "
                f"n_features={self.n_features}, conditional={self.conditional})")

    def clear(self) -> None:
        if self._S is not None:
            self._S.zero_()
            self._M.zero_()
        self._n = 0
        self.total_added = 0

    def _build(self, dim: int, prompt_dim: Optional[int], device) -> None:
        self.dim, self.prompt_dim = int(dim), (None if prompt_dim is None else int(prompt_dim))
        total = self.dim + (self.prompt_dim or 0)
        # plain (not orthogonal-block) frequencies: orthogonalising blocks of size D + e
        # costs O((D + e)^3), minutes at SD latent size, for no gain at m << D
        self._fm = FourierFeatures(total, "gaussian", 1.0, self.n_features, self.seed,
                                   device=device, dtype=torch.float32, orthogonal=False)
        self._S = torch.zeros(2 * self.n_features, dtype=torch.float64, device=device)
        self._M = torch.zeros(self.dim, 2 * self.n_features, dtype=torch.float32, device=device)
        self.device = torch.device(device)

    def _u(self, X: torch.Tensor, T: Optional[torch.Tensor]) -> torch.Tensor:
        sx = self.sigma_image / math.sqrt(2.0)
        if not self.conditional:
            return X / sx
        st = self.sigma_text / math.sqrt(2.0)
        return torch.cat([X / sx, T.to(X.device, X.dtype) / st], dim=1)

    def _check(self, X: torch.Tensor, T: Optional[torch.Tensor], what: str) -> None:
        if self.conditional and T is None:
            raise ValueError(f"this sketch bank is conditional: {what} needs prompt features")
        if self.dim is not None and X.shape[1] != self.dim:
            raise ValueError(f"feature dimension {X.shape[1]} does not match the sketch's {self.dim}")
        if self.conditional and self.prompt_dim is not None and T.shape[1] != self.prompt_dim:
            raise ValueError(f"prompt feature dimension {T.shape[1]} does not match the "
                             f"sketch's {self.prompt_dim}")

    def add(self, X, T=None) -> None:
        """Add rows to the running sums: O(B m (D + e)), the rows themselves are not kept."""
        Xt = _as_rows(X, "X", self.device or (X.device if isinstance(X, torch.Tensor) else "cpu"))
        Tt = None if (T is None or not self.conditional) else _as_rows(T, "T", Xt.device)
        if Tt is not None and Tt.shape[0] != Xt.shape[0]:
            raise ValueError(f"X has {Xt.shape[0]} rows but T has {Tt.shape[0]}")
        self._check(Xt, Tt, "add")
        if self._fm is None:
            self._build(Xt.shape[1], None if Tt is None else Tt.shape[1], Xt.device)
        self._accumulate(Xt, Tt, self._S, self._M)
        self._n += Xt.shape[0]
        self.total_added += Xt.shape[0]

    def _accumulate(self, X: torch.Tensor, T: Optional[torch.Tensor], S: torch.Tensor,
                    M: torch.Tensor) -> None:
        X = X.to(S.device)
        for s in range(0, X.shape[0], 4096):
            xs = X[s:s + 4096]
            phi = self._fm(self._u(xs, None if T is None else T[s:s + 4096]))
            S += phi.double().sum(0)
            M += xs.T @ phi

    def add_all_ranks(self, X: Optional[torch.Tensor], T: Optional[torch.Tensor], group) -> None:
        """Add every process's rows by all-reducing the sketch's sums: the message is
        ``2m (D + 2)`` numbers whatever the number of rows or the bank size (``X`` None:
        no rows on this rank). Every rank must call it; afterwards all sketches are equal."""
        b = 0 if X is None else int(X.shape[0])
        Xt = None if X is None else _as_rows(X, "X", self.device or X.device)
        Tt = None if (Xt is None or T is None or not self.conditional) else _as_rows(T, "T", Xt.device)
        head = group.gather_floats([b, -1 if Xt is None else Xt.shape[1],
                                    -1 if Tt is None else Tt.shape[1]], tag="bank")
        have = head[head[:, 0] > 0]
        if len(have) == 0:
            return
        if bool((have[:, 1:] != have[0, 1:]).any()):  # every rank raises, none waits
            raise RuntimeError(f"ranks disagree on feature sizes (rows, D, e per rank: {head.tolist()})")
        if Xt is not None:
            self._check(Xt, Tt, "add")  # same dims and same sketch on every rank: all pass or all raise
        src = have[0]
        if self._fm is None:
            self._build(int(src[1]), None if src[2] < 0 else int(src[2]),
                        self.device or (Xt.device if Xt is not None else group.device))
        dS = torch.zeros(2 * self.n_features + 1, dtype=torch.float64, device=self._S.device)
        dM = torch.zeros_like(self._M)
        if b:
            self._accumulate(Xt, Tt, dS[:-1], dM)
            dS[-1] = b                                          # the row count rides along
        group.all_reduce_sum_([dS, dM], tag="bank")
        self._S += dS[:-1]
        self._M += dM
        n = int(round(float(dS[-1])))
        self._n += n
        self.total_added += n

    def check_query(self, F: torch.Tensor, Tq: Optional[torch.Tensor]) -> None:
        """Refuse queries whose feature or prompt dimension differs from the sketch's."""
        self._check(F, Tq, "a query")

    def feature_map(self, X: torch.Tensor, T: Optional[torch.Tensor]) -> torch.Tensor:
        """``phi(u)`` (B, 2m) of rows ``X`` with prompt features ``T``: the random features
        the sums are made of."""
        return self._fm(self._u(X, T))

    @property
    def sums(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(S, M)``: ``S = sum_i phi(u_i)`` (2m,) and ``M = sum_i x_i phi(u_i)^T`` (D, 2m)."""
        return self._S, self._M

    def loss_and_grad(self, F: torch.Tensor, Tq: Optional[torch.Tensor], kernel: str = "gaussian",
                      sigma: float = None, kernel_t: str = "gaussian", sigma_t: float = None,
                      chunk: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """RFF estimate of the bank's loss row and its gradient, O(m D) per query: see
        :func:`sparke_lab.guidance.objectives.sketch_bank_loss_grad`."""
        return sketch_bank_loss_grad(self, F, Tq, kernel, sigma, kernel_t, sigma_t)

    def digest(self) -> List[float]:
        """A few numbers that change with any added row (processes compare them)."""
        if self._S is None:
            return [0.0, float(self.total_added), 0.0, 0.0]
        return [float(self._n), float(self.total_added), float(self._S.sum()), float(self._M.double().sum())]

    def save(self, path: PathLike, extra: Optional[Dict[str, str]] = None) -> None:
        """Write the running sum and the map's settings (safetensors, checked metadata)."""
        from safetensors.torch import save_file

        if self._S is None:
            raise ValueError("the sketch bank is empty; nothing to save")
        meta = {"format": "sparke-lab-bank", "version": FORMAT_VERSION, "kind": self.kind,
                "n": str(self._n), "dim": str(self.dim),
                "prompt_dim": "" if self.prompt_dim is None else str(self.prompt_dim),
                "sigma_image": repr(self.sigma_image), "sigma_text": repr(self.sigma_text),
                "conditional": str(int(self.conditional)), "n_features": str(self.n_features),
                "seed": str(self.seed), "total_added": str(self.total_added),
                "frequencies": "gaussian-iid"}
        if extra:
            meta["extra"] = json.dumps(extra)
        save_file({"sum": self._S.detach().cpu().contiguous(),
                   "weighted_sum": self._M.detach().cpu().contiguous()}, os.fspath(path), metadata=meta)

    @classmethod
    def load(cls, path: PathLike, device=None, expect_dim: Optional[int] = None,
             expect_prompt_dim: Optional[int] = None) -> "SketchBank":
        """Read a sketch written by :meth:`save`, rebuilding the same random features."""
        tensors, meta = _read_safetensors(path)
        _check_meta(meta, path, {"format": "sparke-lab-bank", "kind": cls.kind})
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: bank format version {meta.get('version')!r} is not supported")
        try:
            bank = cls(float(meta["sigma_image"]), float(meta["sigma_text"]),
                       bool(int(meta["conditional"])), int(meta["n_features"]),
                       int(meta["seed"]), device=device)
            dim = int(meta["dim"])
            pdim = int(meta["prompt_dim"]) if meta.get("prompt_dim") else None
            n = int(meta["n"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: incomplete sketch-bank metadata ({exc})") from exc
        if meta.get("frequencies", "gaussian-iid") != "gaussian-iid":
            raise ValueError(f"{path}: unsupported random-feature kind {meta.get('frequencies')!r}")
        S = tensors.get("sum")
        if S is None or S.shape != (2 * bank.n_features,):
            raise ValueError(f"{path}: running sum does not match n_features")
        if expect_dim is not None and dim != int(expect_dim):
            raise ValueError(f"{path}: bank feature dimension {dim} != expected {expect_dim}")
        if expect_prompt_dim is not None and pdim != int(expect_prompt_dim):
            raise ValueError(f"{path}: bank prompt dimension {pdim} != expected {expect_prompt_dim}")
        M = tensors.get("weighted_sum")
        if M is None or M.shape != (dim, 2 * bank.n_features):
            raise ValueError(f"{path}: weighted sum does not match (dim, 2 * n_features)")
        if n < 0 or not bool(torch.isfinite(S).all()) or not bool(torch.isfinite(M).all()):
            # NaN sums would switch guidance off silently (every step skipped as non-finite)
            raise ValueError(f"{path}: the sketch's running sums hold NaN or Inf (or n < 0); the file "
                             "is damaged: delete it (and its method's samples) to rebuild the bank")
        bank._build(dim, pdim, device or "cpu")
        bank._S.copy_(S.double())
        bank._M.copy_(M.float())
        bank._n = n
        bank.total_added = int(meta.get("total_added", n))
        return bank


def _read_meta(path) -> Dict[str, str]:
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no bank file at {path}")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise ValueError(f"{path} is not a readable safetensors bank file: {exc}") from exc


def load_bank(path: PathLike, device=None, **kw):
    """Load either bank kind from ``path`` (the ``kind`` metadata decides)."""
    meta = _read_meta(path)
    kind = meta.get("kind")
    if meta.get("format") != "sparke-lab-bank" or kind not in ("exact", "sketch"):
        raise ValueError(f"{path} is not a sparke-lab bank file (format={meta.get('format')!r}, "
                         f"kind={kind!r})")
    return (MemoryBank if kind == "exact" else SketchBank).load(path, device=device, **kw)
