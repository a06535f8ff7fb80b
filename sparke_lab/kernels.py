"""Kernels as similarity: Gaussian and cosine, full or in chunks.

Convention (SPARKE and RKE papers): the Gaussian kernel is
``k_sigma(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` and the cosine kernel is
``<x, y> / (||x|| ||y||)``. Both have ``k(x, x) = 1``, so ``Tr K = n`` and the
eigenvalues of ``K / n`` form a probability vector.

Everything takes NumPy arrays or torch tensors of shape ``(n, d)`` and computes in
torch (CPU or GPU). Kernel values are computed in float64 on centred data and certified
by a rounding-error bound (:func:`exact_route_relative_error`), so a large offset or an
extreme bandwidth cannot produce impossible scores; the diagonal is exactly 1. Sums over
all pairs are done block by block so that ``n = 100,000`` never materialises an
``n x n`` matrix.

Taught in: notebook 01_kernels_and_similarity (kernels, bandwidth, the normalised
kernel matrix) and 06_scaling_from_n3_to_n (chunking).
"""
from __future__ import annotations

import math
import sys
from typing import Iterator, Optional, Sequence, Tuple, Union

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
    if s < sys.float_info.min:
        raise ValueError(f"{name}={sigma!r} is below the smallest normal float "
                         f"({sys.float_info.min:.3g}), so 1/{name} is not representable; "
                         "rescale the features instead")
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


# ----------------------------------------------------------------------------- accuracy
#: Largest error, in the exponent, accepted from the fast Gram route of a Gaussian kernel
#: value; pairs the bound below cannot certify are recomputed from raw differences.
EXPONENT_TOL = 1e-8
#: exp(-746) is below half the smallest float64 subnormal: kernel values past it are 0.
_UNDERFLOW_EXPONENT = 746.0
_U64 = 2.0 ** -53
_TINY = 2.0 ** -1000      # absolute floor of the bound (subnormal rounding of the scaled data)
#: Rows times columns of one float64 block of the exact routes (32 MB per temporary).
_BLOCK_ELEMENTS_64 = 4 * 1024 * 1024


def higham_gamma(k: int) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)`` in float64 (``u = 2^-53``): the relative error
    bound of a dot product or sum of ``k`` terms, whatever the order of summation."""
    return k * _U64 / (1.0 - k * _U64)


def exact_route_relative_error(d: int) -> float:
    """Bound on the relative error of every ``k(x, y)^power`` from the exact routes
    (:func:`kernel_matrix`, :func:`pairwise_kernel_power_sum`) for ``d`` features.

    A Gaussian value comes either from the Gram route, certified to an exponent error of
    at most :data:`EXPONENT_TOL`, or from raw differences, whose exponent has relative error
    at most ``higham_gamma(d + 3)`` (and only exponents above -746 survive in float64);
    ``exp`` adds one rounding. Cosine values: ``higham_gamma(d + 4)`` of the unit-norm rows,
    relative to 1.
    """
    gauss = math.expm1(max(EXPONENT_TOL, _UNDERFLOW_EXPONENT * higham_gamma(d + 3)))
    return gauss + higham_gamma(d + 4) + 2 * _U64


def _times(D: torch.Tensor, c: float) -> torch.Tensor:
    """``D * c`` for ``D >= 0`` and ``c`` possibly inf, with ``0 * inf = 0``."""
    if math.isinf(c):
        return torch.where(D > 0, math.inf, 0.0).to(D.dtype)
    return D * c


class _Factor:
    """One factor ``k(x, y)^power`` of a (joint) kernel, evaluated accurately in float64.

    Gaussian: the data are centred (the kernel is translation invariant) and scaled by a
    power of two (exact) so that the largest row norm R is in [1/2, 1). The Gram route
    ``|a|^2 + |b|^2 - 2 a.b`` then has absolute error at most
    ``higham_gamma(d + 8) (|a| + |b|)^2``
    (Higham's dot-product bound; the 8 covers the centring and the two additions), times
    ``c = (power / 2) (2^k / sigma)^2`` in the exponent.
    """

    def __init__(self, X: torch.Tensor, Y: Optional[torch.Tensor], kernel: str, sigma: float, power: int):
        self.kernel, self.power = kernel, power
        self.X = X
        self.Y = X if Y is None else Y
        self.d = X.shape[1]
        if kernel == "cosine":
            return
        self.gamma = higham_gamma(self.d + 8)
        self.mu = _column_mean64(X)
        R = max(_max_row_norm64(X, self.mu), 0.0 if Y is None else _max_row_norm64(Y, self.mu))
        # subnormal data (R < 2^-1000) are scaled by 2^1000 only: 2^-k would overflow; the
        # bound below holds for any exact power-of-two scale
        k = max(math.frexp(R)[1], -1000) if R > 0 else 0
        self.inv_scale = math.ldexp(1.0, -k)
        try:
            self.c = (power / 2.0) * (math.ldexp(1.0, k) / sigma) ** 2
        except OverflowError:
            self.c = math.inf
        self.s_raw = math.sqrt(power / 2.0) / sigma   # raw differences times this, squared

    def rows(self, which: str, sl: slice):
        A = (self.X if which == "x" else self.Y)[sl].double()
        if self.kernel == "cosine":
            norms = torch.linalg.vector_norm(A, dim=1, keepdim=True)
            if bool((norms == 0).any()):
                raise ValueError(f"{'X' if which == 'x' else 'Y'} has all-zero rows; the cosine "
                                 "kernel is undefined for them")
            return A / norms, None
        A = (A - self.mu.to(A.device)) * self.inv_scale
        return A, (A * A).sum(1)

    def direct(self, gi: torch.Tensor, gj: torch.Tensor) -> torch.Tensor:
        """``c ||x_gi - y_gj||^2`` from raw differences (relative error higham_gamma(d + 3))."""
        diff = self.X[gi].double() - self.Y[gj].double()
        t = torch.where(diff == 0, 0.0, diff * self.s_raw) if math.isinf(self.s_raw) else diff * self.s_raw
        return (t * t).sum(1)


def _column_mean64(X: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    total = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    for s in range(0, X.shape[0], chunk):
        total += X[s:s + chunk].double().sum(0)
    return total / X.shape[0]


def _max_row_norm64(X: torch.Tensor, mu: torch.Tensor, chunk: int = 65536) -> float:
    best = 0.0
    for s in range(0, X.shape[0], chunk):
        A = X[s:s + chunk].double() - mu.to(X.device)
        best = max(best, float(torch.linalg.vector_norm(A, dim=1).max()))
    return best


def _same_index(i_sl: slice, j_sl: slice, device):
    """Block positions (rows, cols) where the global row index equals the column index."""
    lo, hi = max(i_sl.start, j_sl.start), min(i_sl.stop, j_sl.stop)
    if lo >= hi:
        return None
    g = torch.arange(lo, hi, device=device)
    return g - i_sl.start, g - j_sl.start


def _block_values(factors: Sequence[_Factor], i_sl: slice, j_sl: slice, symmetric: bool) -> torch.Tensor:
    """``prod_f k_f(x_i, y_j)^power_f`` for rows ``i_sl`` and columns ``j_sl``, float64.

    Every Gaussian value is certified by the bound of :class:`_Factor` or recomputed from raw
    differences (see :func:`exact_route_relative_error`); with ``symmetric`` the entries with
    ``i == j`` are exactly 1 and all values lie in [0, 1] (cosine: [-1, 1]).
    """
    diag = _same_index(i_sl, j_sl, factors[0].X.device) if symmetric else None
    prepared = [(f, f.rows("x", i_sl), f.rows("y", j_sl)) for f in factors]
    # block-level bound first: when it certifies the block, the exponents are built in place
    bound = 0.0
    for f, (A, na), (B, nb) in prepared:
        if f.kernel == "gaussian":
            r = float(na.max().sqrt()) + float(nb.max().sqrt())
            bound += f.c * (f.gamma * r * r + _TINY)
    certified = bound <= EXPONENT_TOL
    expo, prod, parts = None, None, []
    for f, (A, na), (B, nb) in prepared:
        if f.kernel == "cosine":
            v = (A @ B.T).clamp_(-1.0, 1.0)
            if diag is not None:
                v[diag] = 1.0
            v = v.pow_(f.power) if f.power != 1 else v
            prod = v if prod is None else prod.mul_(v)
            continue
        D = torch.addmm(na[:, None], A, B.T, alpha=-2.0).add_(nb[None]).clamp_min_(0.0)
        if certified:  # c is finite here
            e = D.mul_(-f.c)
        else:
            parts.append((f, D, na.sqrt(), nb.sqrt()))
            e = _times(D, f.c).neg_()
        expo = e if expo is None else expo.add_(e)
    if expo is None:
        return prod
    if diag is not None:
        expo[diag] = 0.0
    if not certified:
        _repair(expo, parts, i_sl, j_sl, diag)
    val = expo.exp_()
    return val if prod is None else val.mul_(prod)


def _repair(expo: torch.Tensor, parts, i_sl: slice, j_sl: slice, diag) -> None:
    """Per pair: keep certified exponents, set certified underflows to -inf, and recompute
    the rest from raw differences."""
    err = torch.zeros_like(expo)
    lower = torch.zeros_like(expo)    # a lower bound of -exponent
    for f, D, ra, rb in parts:
        b = (ra[:, None] + rb[None]).square_().mul_(f.gamma).add_(_TINY)
        err += _times(b, f.c)
        lower += _times((D - b).clamp_min_(0.0), f.c)
    zero = lower > _UNDERFLOW_EXPONENT
    need = ~(zero | (err <= EXPONENT_TOL))
    if diag is not None:
        zero[diag] = False
        need[diag] = False
    expo.masked_fill_(zero, -math.inf)
    ii, jj = need.nonzero(as_tuple=True)
    if not len(ii):
        return
    d = sum(f.d for f, *_ in parts)
    step = max(1, _BLOCK_ELEMENTS_64 // max(1, d))
    for s in range(0, len(ii), step):
        bi, bj = ii[s:s + step], jj[s:s + step]
        gi, gj = bi + i_sl.start, bj + j_sl.start
        expo[bi, bj] = -sum(f.direct(gi, gj) for f, *_ in parts)


# ----------------------------------------------------------------------------- kernels
def squared_distances(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances ``||x_i - y_j||^2`` (clamped at 0).

    The data are centred on the mean of ``X`` first (distances do not change), so a large
    common offset does not cancel away the digits of small distances.
    """
    mu = X.mean(0, keepdim=True)
    X, Y = X - mu, Y - mu.to(Y.device, Y.dtype)
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


def _validated_pair(X: ArrayLike, Y: Optional[ArrayLike], kernel: str, sigma: float):
    kernel = check_kernel(kernel)
    Xt = as_features(X, "X")
    Yt = None if Y is None else as_features(Y, "Y")
    if Yt is not None and Yt.shape[1] != Xt.shape[1]:
        raise ValueError(f"X and Y must have the same number of features, got "
                         f"{Xt.shape[1]} and {Yt.shape[1]}")
    if kernel == "gaussian":
        sigma = check_sigma(sigma)
    if Yt is not None:
        Xt, Yt = _common_dtype(Xt, Yt)
    return Xt, Yt, kernel, sigma


def kernel_matrix(X: ArrayLike, Y: Optional[ArrayLike] = None, kernel: str = "gaussian",
                  sigma: float = 1.0) -> torch.Tensor:
    """The full kernel matrix ``K_ij = k(x_i, y_j)`` (``Y=None`` means ``Y = X``).

    Use this for moderate n (it allocates n x m); the scores use chunked sums instead.
    ``sigma`` is ignored by the cosine kernel. Computed in float64 and returned in the
    inputs' dtype, every entry within :func:`exact_route_relative_error` of the true
    value for any offset of the data and any bandwidth; with ``Y=None`` the diagonal is
    exactly 1. Taught in: 01_kernels_and_similarity.
    """
    Xt, Yt, kernel, sigma = _validated_pair(X, Y, kernel, sigma)
    out_dtype = Xt.dtype
    return _kernel_matrix64(Xt, Yt, kernel, sigma).to(out_dtype)


def _kernel_matrix64(Xt: torch.Tensor, Yt: Optional[torch.Tensor], kernel: str, sigma: float,
                     power: int = 1) -> torch.Tensor:
    """``kernel_matrix`` of validated tensors, in float64 (``k^power``)."""
    f = _Factor(Xt, Yt, kernel, sigma, power)
    m = f.Y.shape[0]
    K = torch.empty(Xt.shape[0], m, dtype=torch.float64, device=Xt.device)
    rows = max(1, _BLOCK_ELEMENTS_64 // max(1, m))
    for start in range(0, Xt.shape[0], rows):
        sl = slice(start, min(start + rows, Xt.shape[0]))
        K[sl] = _block_values([f], sl, slice(0, m), Yt is None)
    return K


def iter_kernel_blocks(X: torch.Tensor, Y: Optional[torch.Tensor] = None, kernel: str = "gaussian",
                       sigma: float = 1.0, block_elements: int = DEFAULT_BLOCK_ELEMENTS
                       ) -> Iterator[Tuple[slice, torch.Tensor]]:
    """Yield ``(rows, K[rows, :])`` panels of the kernel matrix, a few MB at a time.

    Inputs must already be validated tensors. Taught in: 06_scaling_from_n3_to_n.
    """
    kernel = check_kernel(kernel)
    f = _Factor(X, Y, kernel, sigma, 1)
    m = f.Y.shape[0]
    rows = max(1, min(block_elements, _BLOCK_ELEMENTS_64) // max(1, m))
    for start in range(0, X.shape[0], rows):
        sl = slice(start, min(start + rows, X.shape[0]))
        yield sl, _block_values([f], sl, slice(0, m), Y is None).to(X.dtype)


def pairwise_kernel_power_sum(X: torch.Tensor, kernel: str = "gaussian", sigma: float = 1.0,
                              power: int = 2, T: Optional[torch.Tensor] = None,
                              kernel_t: str = "gaussian", sigma_t: float = 1.0,
                              block: Optional[int] = None) -> float:
    """``sum_ij k_X(x_i, x_j)^power * k_T(t_i, t_j)^power`` over all ordered pairs.

    The kernel matrix is visited in square blocks of the upper triangle (symmetry halves
    the work) and summed in float64, so memory stays O(block^2 + n d) for any n.
    With ``T=None`` the prompt factor is 1. This is ``||K||_F^2`` (power 2) of the
    image kernel or of the joint Hadamard-product kernel ``K_X o K_T``.

    Accuracy: each term is within :func:`exact_route_relative_error` (of the total
    dimension) of the true value, the diagonal terms are exactly 1 and all terms lie in
    [0, 1] for even powers, so ``n <= sum <= n^2`` holds exactly (RKE in [1, n]).

    Inputs must be validated tensors of equal length. Taught in: 02_renyi_kernel_entropy
    (the Frobenius route) and 06_scaling_from_n3_to_n.
    """
    n = X.shape[0]
    if block is None:
        block = max(256, int(math.isqrt(_BLOCK_ELEMENTS_64)))
    factors = [_Factor(X, None, kernel, sigma, power)]
    if T is not None:
        factors.append(_Factor(T, None, kernel_t, sigma_t, power))
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for i in range(0, n, block):
        for j in range(i, n, block):
            v = _block_values(factors, slice(i, min(i + block, n)), slice(j, min(j + block, n)), i == j)
            s = v.sum()
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
