"""Kernels as similarity: Gaussian and cosine, full or in chunks.

Convention (SPARKE and RKE papers): the Gaussian kernel is
``k_sigma(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` and the cosine kernel is
``<x, y> / (||x|| ||y||)``. Both have ``k(x, x) = 1``, so ``Tr K = n`` and the
eigenvalues of ``K / n`` form a probability vector.

Everything takes NumPy arrays or torch tensors of shape ``(n, d)`` and computes in
torch (CPU or GPU, float32 or float64). Sums over all pairs are done block by block
so that ``n = 100,000`` never materialises an ``n x n`` matrix.

Taught in: notebook 01_kernels_and_similarity (kernels, bandwidth, the normalised
kernel matrix) and 06_scaling_from_n3_to_n (chunking).
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]
KERNELS = ("gaussian", "cosine")

#: Rows times columns of one kernel block (about 64 MB in float32).
DEFAULT_BLOCK_ELEMENTS = 16 * 1024 * 1024


# ----------------------------------------------------------------------------- checks
def as_features(X: ArrayLike, name: str = "X", *, min_rows: int = 1,
                device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """Validate ``X`` as a finite 2-D feature matrix and return it as a torch tensor.

    Floating inputs keep float32/float64 (half types are promoted to float32, whose
    sums are accurate); integer and bool inputs become float64. Raises ``TypeError``
    for anything that is not an array, ``ValueError`` for a wrong shape, too few rows
    or NaN/Inf entries.
    """
    if isinstance(X, torch.Tensor):
        t = X.detach()
    elif isinstance(X, np.ndarray):
        if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise TypeError(f"{name} must hold numbers, got a NumPy array of dtype {X.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(X))
    elif isinstance(X, (list, tuple)):
        try:
            t = torch.as_tensor(np.asarray(X, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a numeric 2-D array: {exc}") from None
    else:
        raise TypeError(f"{name} must be a NumPy array or torch tensor of shape (n, d), "
                        f"got {type(X).__name__}")
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got {t.dtype}")
    if t.ndim != 2:
        hint = " (use X.reshape(len(X), -1) to flatten images or latents)" if t.ndim > 2 else \
               " (use X.reshape(-1, 1) for one feature per sample)" if t.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n samples, d features), got shape "
                         f"{tuple(t.shape)}{hint}")
    if t.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {t.shape[0]}")
    if t.shape[1] < 1:
        raise ValueError(f"{name} has zero features per sample (shape {tuple(t.shape)})")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    elif not t.is_floating_point():
        t = t.double()
    if device is not None:
        t = t.to(device)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise ValueError(f"{name} contains NaN or Inf in {bad} of {t.shape[0]} rows; "
                         "clean or drop those samples before scoring")
    return t


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """Return ``sigma`` as a float, raising ``ValueError`` unless it is finite and > 0."""
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {sigma!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"{name} must be a finite bandwidth > 0, got {sigma!r} "
                         "(try median_heuristic_bandwidth(X) for a starting value)")
    return s


def check_kernel(kernel: str) -> str:
    """Return the kernel name, raising ``ValueError`` for an unknown one."""
    if not isinstance(kernel, str) or kernel.lower() not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    return kernel.lower()


def normalise_rows(X: torch.Tensor, name: str) -> torch.Tensor:
    """Rows of ``X`` scaled to unit length (the cosine kernel's feature map); zero rows refused."""
    norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(f"{name} has all-zero rows; the cosine kernel is undefined for them")
    return X / norms


def _common_dtype(X: torch.Tensor, Y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    dt = torch.promote_types(X.dtype, Y.dtype)
    if Y.device != X.device:
        Y = Y.to(X.device)
    return X.to(dt), Y.to(dt)


# ----------------------------------------------------------------------------- kernels
def squared_distances(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances ``||x_i - y_j||^2`` (clamped at 0)."""
    xx = (X * X).sum(dim=1, keepdim=True)
    yy = (Y * Y).sum(dim=1, keepdim=True).T
    return (xx + yy - 2.0 * (X @ Y.T)).clamp_min_(0.0)


def gaussian_kernel(X: ArrayLike, Y: Optional[ArrayLike] = None, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian kernel matrix ``exp(-||x_i - y_j||^2 / (2 sigma^2))`` of shape (n, m).

    Taught in: 01_kernels_and_similarity.
    """
    return kernel_matrix(X, Y, kernel="gaussian", sigma=sigma)


def cosine_kernel(X: ArrayLike, Y: Optional[ArrayLike] = None) -> torch.Tensor:
    """Cosine kernel matrix ``<x_i, y_j> / (||x_i|| ||y_j||)`` of shape (n, m).

    Taught in: 01_kernels_and_similarity.
    """
    return kernel_matrix(X, Y, kernel="cosine")


def _kernel_block(X: torch.Tensor, Y: torch.Tensor, kernel: str, sigma: float) -> torch.Tensor:
    """Kernel block for already validated tensors (cosine inputs already normalised)."""
    if kernel == "gaussian":
        return torch.exp(squared_distances(X, Y) * (-0.5 / sigma**2))
    return X @ Y.T


def _prepare(X: torch.Tensor, kernel: str, name: str) -> torch.Tensor:
    return normalise_rows(X, name) if kernel == "cosine" else X


def kernel_matrix(X: ArrayLike, Y: Optional[ArrayLike] = None, kernel: str = "gaussian",
                  sigma: float = 1.0) -> torch.Tensor:
    """The full kernel matrix ``K_ij = k(x_i, y_j)`` (``Y=None`` means ``Y = X``).

    Use this for moderate n (it allocates n x m); the scores use chunked sums instead.
    ``sigma`` is ignored by the cosine kernel. Taught in: 01_kernels_and_similarity.
    """
    kernel = check_kernel(kernel)
    Xt = as_features(X, "X")
    Yt = Xt if Y is None else as_features(Y, "Y")
    if Yt.shape[1] != Xt.shape[1]:
        raise ValueError(f"X and Y must have the same number of features, got "
                         f"{Xt.shape[1]} and {Yt.shape[1]}")
    if kernel == "gaussian":
        sigma = check_sigma(sigma)
    Xt, Yt = _common_dtype(Xt, Yt)
    Xp = _prepare(Xt, kernel, "X")
    Yp = Xp if Y is None else _prepare(Yt, kernel, "Y")
    K = _kernel_block(Xp, Yp, kernel, sigma)
    if Y is None and kernel == "gaussian":
        K.fill_diagonal_(1.0)  # exact 1 on the diagonal despite rounding in the distances
    return K


def iter_kernel_blocks(X: torch.Tensor, Y: Optional[torch.Tensor] = None, kernel: str = "gaussian",
                       sigma: float = 1.0, block_elements: int = DEFAULT_BLOCK_ELEMENTS
                       ) -> Iterator[Tuple[slice, torch.Tensor]]:
    """Yield ``(rows, K[rows, :])`` panels of the kernel matrix, a few MB at a time.

    Inputs must already be validated tensors. Taught in: 06_scaling_from_n3_to_n.
    """
    kernel = check_kernel(kernel)
    Yt = X if Y is None else Y
    Xp = _prepare(X, kernel, "X")
    Yp = Xp if Y is None else _prepare(Yt, kernel, "Y")
    rows = max(1, block_elements // max(1, Yp.shape[0]))
    for start in range(0, Xp.shape[0], rows):
        sl = slice(start, min(start + rows, Xp.shape[0]))
        yield sl, _kernel_block(Xp[sl], Yp, kernel, sigma)


def _kernel_power_block(pairs) -> torch.Tensor:
    """``prod_f k_f(X_f, Y_f)^power`` for factors ``(X, Y, kernel, sigma, power)``.

    Gaussian factors are combined in the exponent (``k_sigma^p = exp(-p d^2 / (2 sigma^2))``),
    so a block costs one exp however many Gaussian factors it has, and no pow.
    """
    exponent, product = None, None
    for X, Y, kernel, sigma, power in pairs:
        if kernel == "gaussian":
            # -c ||x - y||^2 = -c (|x|^2 + |y|^2) + 2c x.y in one fused addmm; <= 0 up to round-off
            c = power / (2.0 * sigma**2)
            norms = (X * X).sum(1, keepdim=True) + (Y * Y).sum(1, keepdim=True).T
            e = torch.addmm(norms, X, Y.T, beta=-c, alpha=2.0 * c).clamp_max_(0.0)
            exponent = e if exponent is None else exponent.add_(e)
        else:
            f = (X @ Y.T).pow_(power)
            product = f if product is None else product.mul_(f)
    if exponent is None:
        return product
    return exponent.exp_() if product is None else exponent.exp_().mul_(product)


def pairwise_kernel_power_sum(X: torch.Tensor, kernel: str = "gaussian", sigma: float = 1.0,
                              power: int = 2, T: Optional[torch.Tensor] = None,
                              kernel_t: str = "gaussian", sigma_t: float = 1.0,
                              block: Optional[int] = None) -> float:
    """``sum_ij k_X(x_i, x_j)^power * k_T(t_i, t_j)^power`` over all ordered pairs.

    The kernel matrix is visited in square blocks of the upper triangle (symmetry halves
    the work) and summed in float64, so memory stays O(block^2 + n d) for any n.
    With ``T=None`` the prompt factor is 1. This is ``||K||_F^2`` (power 2) of the
    image kernel or of the joint Hadamard-product kernel ``K_X o K_T``.

    Inputs must be validated tensors of equal length. Taught in: 02_renyi_kernel_entropy
    (the Frobenius route) and 06_scaling_from_n3_to_n.
    """
    n = X.shape[0]
    if block is None:
        block = max(256, int(math.isqrt(DEFAULT_BLOCK_ELEMENTS)))
    Xp = _prepare(X, kernel, "X")
    Tp = None if T is None else _prepare(T, kernel_t, "T")
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for i in range(0, n, block):
        for j in range(i, n, block):
            factors = [(Xp[i:i + block], Xp[j:j + block], kernel, sigma, power)]
            if Tp is not None:
                factors.append((Tp[i:i + block], Tp[j:j + block], kernel_t, sigma_t, power))
            s = _kernel_power_block(factors).sum(dtype=torch.float64)
            total += s if i == j else 2.0 * s
    return float(total)


def median_heuristic_bandwidth(X: ArrayLike, max_samples: int = 2000, seed: int = 0) -> float:
    """The median heuristic: sigma = median pairwise Euclidean distance (a heuristic).

    A common starting bandwidth, not a tuned one: for mode counting choose sigma
    against the spread of one mode (see 02_renyi_kernel_entropy). Uses at most
    ``max_samples`` random rows.
    """
    Xt = as_features(X, "X", min_rows=2)
    if Xt.shape[0] > max_samples:
        g = torch.Generator().manual_seed(seed)
        Xt = Xt[torch.randperm(Xt.shape[0], generator=g)[:max_samples].to(Xt.device)]
    d2 = squared_distances(Xt, Xt)
    iu = torch.triu_indices(Xt.shape[0], Xt.shape[0], offset=1, device=Xt.device)
    med = float(d2[iu[0], iu[1]].median().sqrt())
    if med == 0.0:
        raise ValueError("all samples are identical: the median distance is 0, so no bandwidth fits")
    return med
