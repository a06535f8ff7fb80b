"""Kernel-entropy scores: order-alpha Renyi entropy, Vendi, RKE, conditional and relative scores.

With a kernel satisfying k(x, x) = 1 the eigenvalues of ``K / n`` are a probability
vector ``lambda`` and

* ``H_alpha = log(sum lambda^alpha) / (1 - alpha)``; ``H_1 = -sum lambda log lambda``;
  ``H_inf = -log max lambda`` (natural logarithm);
* ``score_alpha = exp(H_alpha)``, an effective number of modes. Vendi is order 1
  (eigendecomposition, O(n^3)); RKE is order 2, ``1 / ||K/n||_F^2 = n^2 / sum_ij k_ij^2``,
  computed from pairwise kernel values in O(n^2) time and O(block^2) memory;
* conditional (prompt-aware) scores use the joint kernel ``K_X o K_T`` (Hadamard product):
  ``H_alpha(X|T) = H_alpha(X, T) - H_alpha(T)``.

``method="rff"`` swaps in random Fourier features: linear in n, for large n;
``rke_score`` and ``conditional_rke_score`` give the estimate's standard error with
``return_se=True``. All functions take (n, d) NumPy arrays or torch tensors and return
Python floats.

Taught in: 02_renyi_kernel_entropy (orders, Vendi, RKE), 03_conditional_entropy
(conditional scores), 06_scaling_from_n3_to_n (exact vs RFF).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from .kernels import (ArrayLike, _kernel_matrix64, as_features, check_kernel, check_sigma,
                      pairwise_kernel_power_sum)
from .rff import Estimate, FourierFeatures, joint_feature_map, squared_kernel_mean

METHODS = ("exact", "rff")
#: Largest n for which the exact eigen-route (O(n^3) time, O(n^2) memory) is attempted.
MAX_EXACT_EIGEN_N = 30_000
DEFAULT_N_FEATURES = 2048


# ------------------------------------------------------------------ checks and helpers
def check_order(order: float) -> float:
    """Return the Renyi order as a float (``inf`` allowed); ``ValueError`` unless > 0."""
    try:
        a = float(order)
    except (TypeError, ValueError):
        raise TypeError(f"order must be a number > 0 (or math.inf), got {order!r}") from None
    if math.isnan(a) or a <= 0:
        raise ValueError(f"order must be > 0 (1 = Vendi/Shannon, 2 = RKE, inf = min-entropy), "
                         f"got {order!r}")
    return a


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS` ("exact", "rff"), else a ValueError."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return method


def _pair(X: ArrayLike, T: ArrayLike):
    Xt = as_features(X, "X", min_rows=2)
    Tt = as_features(T, "T", min_rows=2, device=Xt.device)
    if Xt.shape[0] != Tt.shape[0]:
        raise ValueError(f"X and T must describe the same samples: X has {Xt.shape[0]} rows, "
                         f"T has {Tt.shape[0]}")
    return Xt, Tt


def kernel_sigma(kernel: str, sigma: float, name: str = "sigma") -> float:
    """The checked bandwidth of a Gaussian kernel; 1.0 for the cosine kernel (no bandwidth)."""
    return check_sigma(sigma, name) if kernel == "gaussian" else 1.0


# ---------------------------------------------------------------- the functional core
def entropy(eigenvalues: Union[Sequence[float], np.ndarray, torch.Tensor], order: float = 1.0) -> float:
    """Order-``alpha`` Renyi entropy (natural log) of a spectrum, e.g. the eigenvalues of K/n.

    Negative round-off eigenvalues are set to 0 and the vector is renormalised to sum 1.
    Eigenvalues below ``1e-12 * max`` are treated as 0 (round-off, which would otherwise
    inflate low orders). Any order works (``log sum lam^a`` by log-sum-exp, so order 400 or
    1e6 does not underflow to inf); the result is clipped to [0, log N] where the true value
    lies. Taught in: 02_renyi_kernel_entropy.
    """
    a = check_order(order)
    lam = torch.as_tensor(np.asarray(eigenvalues, dtype=np.float64)
                          if not isinstance(eigenvalues, torch.Tensor) else eigenvalues.detach().double().cpu())
    lam = lam.flatten().clamp_min(0.0)
    total = float(lam.sum())
    if lam.numel() == 0 or not math.isfinite(total) or total <= 0:
        raise ValueError("eigenvalues must be finite with a positive sum")
    lam = lam / total
    lam = lam[lam > 1e-12 * float(lam.max())]
    if a == 1.0:
        h = float(-(lam * lam.log()).sum())
    else:
        log_lam = lam.log()
        top = float(log_lam.max())
        if math.isinf(a):
            h = -top
        else:
            # log sum lam^a = a log max + log sum (lam / max)^a: no underflow to 0 at high
            # orders, no overflow at low ones
            h = (a * top + float(torch.log(torch.exp(a * (log_lam - top)).sum()))) / (1.0 - a)
    return min(max(h, 0.0), math.log(lam.numel()))  # the true value lies in [0, log N]


def score_from_kernel(K: ArrayLike, order: float = 1.0) -> float:
    """``exp(H_order)`` of a user-given kernel matrix with unit diagonal (Vendi-Score style).

    ``K`` must be square, symmetric and have ones on its diagonal (k(x, x) = 1).
    Taught in: 02_renyi_kernel_entropy.
    """
    Kt = as_features(K, "K")
    n = Kt.shape[0]
    if Kt.shape[1] != n:
        raise ValueError(f"K must be square, got shape {tuple(Kt.shape)}")
    Kt = Kt.double()
    if not torch.allclose(Kt, Kt.T, atol=1e-8):
        raise ValueError("K must be symmetric")
    if not torch.allclose(torch.diagonal(Kt), torch.ones(n, dtype=Kt.dtype, device=Kt.device), atol=1e-6):
        raise ValueError("K must have k(x, x) = 1 on its diagonal (normalise it first)")
    return math.exp(entropy(torch.linalg.eigvalsh(Kt / n), order))


# ------------------------------------------------------------------------- spectra
def feature_covariance(phi, *arrays, chunk: int = 8192,
                       progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """``C = (1/n) sum_i phi(row_i) phi(row_i)^T`` (float64), accumulated ``chunk`` rows at a time.

    Its non-zero eigenvalues are those of ``Phi Phi^T / n``, the approximate ``K / n``.
    Only the upper blocks of the symmetric product are multiplied (3/4 of the work);
    ``progress(rows_done, n)`` is called before the first chunk and after each.
    """
    n = arrays[0].shape[0]
    C = None
    if progress is not None:
        progress(0, n)
    for start in range(0, n, chunk):
        F = phi(*[a[start:start + chunk] for a in arrays]).double()
        h = F.shape[1] // 2
        if C is None:
            C = torch.zeros(F.shape[1], F.shape[1], dtype=torch.float64, device=F.device)
        A, B = F[:, :h], F[:, h:]
        C[:h] += A.T @ F
        C[h:, h:] += B.T @ B
        if progress is not None:
            progress(min(start + chunk, n), n)
    h = C.shape[0] // 2
    C[h:, :h] = C[:h, h:].T
    return C / n


def _covariance_eigenvalues(phi, *arrays, progress=None) -> torch.Tensor:
    return torch.linalg.eigvalsh(feature_covariance(phi, *arrays, progress=progress)).flip(0)


def _exact_eigenvalues(K: torch.Tensor) -> torch.Tensor:
    n = K.shape[0]
    return torch.linalg.eigvalsh(K.double() / n).flip(0)


def check_exact_size(n: int, what: str) -> None:
    """Refuse an exact n x n eigendecomposition above ``MAX_EXACT_EIGEN_N`` samples."""
    if n > MAX_EXACT_EIGEN_N:
        raise ValueError(f"{what} with method='exact' needs an n x n eigendecomposition "
                         f"(n = {n} > {MAX_EXACT_EIGEN_N}); use method='rff' for large n")


def _centred(A: torch.Tensor) -> torch.Tensor:
    """``A`` minus its column mean: Gaussian kernels are translation invariant, and random
    Fourier phases ``w . x`` of data far from the origin would lose their digits."""
    return A - A.double().mean(0).to(A.dtype)


def _gaussian_map(dims, sigmas, n_features: int, seed: int, arrays, device):
    """The random Fourier map of a Gaussian (joint) kernel on centred ``arrays``: float32
    phases, or float64 where ``|w . x|`` could exceed what float32 resolves (~1e-3 rad)."""
    if len(dims) == 1:
        fm = FourierFeatures(dims[0], "gaussian", sigmas[0], n_features, seed, device=device,
                             dtype=torch.float64)
        radius = float(torch.linalg.vector_norm(arrays[0].double(), dim=1).max())
    else:
        fm = joint_feature_map(dims[0], dims[1], "gaussian", sigmas[0], sigmas[1], "gaussian",
                               n_features, seed, device=device, dtype=torch.float64)
        radius = math.hypot(*(float(torch.linalg.vector_norm(a.double(), dim=1).max()) / s
                              for a, s in zip(arrays, sigmas)))
    omega = fm.omega if isinstance(fm, FourierFeatures) else fm.feature_map.omega
    if radius * float(omega.norm(dim=0).max()) <= 1e4:
        fm = fm.to(dtype=torch.float32) if isinstance(fm, FourierFeatures) else \
            joint_feature_map(dims[0], dims[1], "gaussian", sigmas[0], sigmas[1], "gaussian",
                              n_features, seed, device=device, dtype=torch.float32)
    return fm


def kernel_eigenvalues(X: ArrayLike, kernel: str = "gaussian", sigma: float = 1.0,
                       method: str = "exact", n_features: int = DEFAULT_N_FEATURES,
                       seed: int = 0, *, progress: Optional[Callable[[int, int], None]] = None
                       ) -> np.ndarray:
    """Eigenvalues of ``K / n`` in descending order (they sum to 1).

    ``exact``: eigendecomposition of the n x n matrix (for the cosine kernel with d < n,
    the identical non-zero eigenvalues of the d x d matrix ``X^T X / n``).
    ``rff``: eigenvalues of the 2m x 2m feature covariance (FKEA), linear in n
    (``progress(rows_done, n)`` is called while the covariance accumulates).
    Taught in: 02_renyi_kernel_entropy and 04_kernel_eigenspectra.
    """
    kernel, method = check_kernel(kernel), check_method(method)
    Xt = as_features(X, "X", min_rows=1)
    sigma = kernel_sigma(kernel, sigma)
    n, d = Xt.shape
    if kernel == "cosine" and (method == "rff" or d < n):
        fm = FourierFeatures(d, "cosine", dtype=torch.float64)
        return _covariance_eigenvalues(fm, Xt, progress=progress).cpu().numpy()
    if method == "rff":
        Xc = _centred(Xt)
        fm = _gaussian_map([d], [sigma], n_features, seed, [Xc], Xt.device)
        return _covariance_eigenvalues(fm, Xc, progress=progress).cpu().numpy()
    check_exact_size(n, "kernel_eigenvalues")
    return _exact_eigenvalues(_kernel_matrix64(Xt, None, kernel, sigma)).cpu().numpy()


def joint_kernel_eigenvalues(X: ArrayLike, T: ArrayLike, sigma_x: float = 1.0, sigma_t: float = 1.0,
                             kernel: str = "gaussian", kernel_t: Optional[str] = None,
                             method: str = "exact", n_features: int = DEFAULT_N_FEATURES,
                             seed: int = 0, *, progress: Optional[Callable[[int, int], None]] = None
                             ) -> np.ndarray:
    """Eigenvalues of the joint kernel ``(K_X o K_T) / n`` (Hadamard product), descending.

    Taught in: 03_conditional_entropy.
    """
    kernel, method = check_kernel(kernel), check_method(method)
    kernel_t = check_kernel(kernel_t or kernel)
    Xt, Tt = _pair(X, T)
    sx, st = kernel_sigma(kernel, sigma_x, "sigma_x"), kernel_sigma(kernel_t, sigma_t, "sigma_t")
    if method == "rff":
        if kernel == "gaussian" and kernel_t == "gaussian":
            Xt, Tt = _centred(Xt), _centred(Tt)
            phi = _gaussian_map([Xt.shape[1], Tt.shape[1]], [sx, st], n_features, seed, [Xt, Tt], Xt.device)
        else:
            phi = joint_feature_map(Xt.shape[1], Tt.shape[1], kernel, sx, st, kernel_t,
                                    n_features, seed, device=Xt.device)
        return _covariance_eigenvalues(phi, Xt, Tt, progress=progress).cpu().numpy()
    check_exact_size(Xt.shape[0], "joint_kernel_eigenvalues")
    K = _kernel_matrix64(Xt, None, kernel, sx).mul_(_kernel_matrix64(Tt, None, kernel_t, st))
    return _exact_eigenvalues(K).cpu().numpy()


# -------------------------------------------------------------------- order-alpha scores
def renyi_entropy(X: ArrayLike, order: float, kernel: str = "gaussian", sigma: float = 1.0,
                  method: str = "exact", n_features: int = DEFAULT_N_FEATURES, seed: int = 0) -> float:
    """Order-``alpha`` Renyi kernel entropy ``H_alpha`` of the samples (natural log).

    Order 2 takes the Frobenius route of :func:`rke_score` (no eigendecomposition).
    Taught in: 02_renyi_kernel_entropy.
    """
    a = check_order(order)
    if a == 2.0:
        return math.log(rke_score(X, kernel, sigma, method, n_features, seed))
    return entropy(kernel_eigenvalues(X, kernel, sigma, method, n_features, seed), a)


def vendi_score(X: ArrayLike, kernel: str = "gaussian", sigma: float = 1.0, order: float = 1.0,
                method: str = "exact", n_features: int = DEFAULT_N_FEATURES, seed: int = 0) -> float:
    """Vendi score ``exp(H_order)`` (Friedman & Dieng 2023); order 1 is the Vendi score,
    order 2 equals :func:`rke_score`. Taught in: 02_renyi_kernel_entropy.
    """
    return math.exp(renyi_entropy(X, order, kernel, sigma, method, n_features, seed))


def _mean_squared_kernel(Xt: torch.Tensor, kernel: str, sigma: float,
                         Tt: Optional[torch.Tensor] = None, kernel_t: str = "gaussian",
                         sigma_t: float = 1.0, method: str = "exact",
                         n_features: int = DEFAULT_N_FEATURES, seed: int = 0,
                         progress: Optional[Callable[[int, int], None]] = None) -> Estimate:
    """``(1/n^2) sum_ij k_X(x_i,x_j)^2 k_T(t_i,t_j)^2`` = ``||K/n||_F^2`` of the (joint) kernel,
    with its standard error (0 when exact).

    exact: blockwise pairwise sum, O(n^2) time, no n x n matrix, each term accurate to
    :func:`~sparke_lab.kernels.exact_route_relative_error`.
    rff with Gaussian kernels: the unbiased covariance-form estimate of
    :func:`~sparke_lab.rff.squared_kernel_mean` (linear in n) and its standard error, the
    value clipped to [1/n, 1] where the exact value lies. Other kernels: ``||C||_F^2`` of the
    feature covariance (exact for cosine; no error bar for mixed cosine x Gaussian).
    """
    n = Xt.shape[0]
    if method == "exact":
        s = pairwise_kernel_power_sum(Xt, kernel, sigma, 2, Tt, kernel_t, sigma_t)
        return Estimate(s / n**2, 0.0)
    all_gauss = kernel == "gaussian" and (Tt is None or kernel_t == "gaussian")
    if all_gauss:
        arrays, sigmas = ([Xt], [sigma]) if Tt is None else ([Xt, Tt], [sigma, sigma_t])
        est = squared_kernel_mean(arrays, sigmas, n_features, seed, progress=progress)
        return Estimate(min(max(est.value, 1.0 / n), 1.0), est.stderr)  # the exact value is in [1/n, 1]
    if Tt is None:
        phi, arrays = FourierFeatures(Xt.shape[1], kernel, sigma, n_features, seed, device=Xt.device), (Xt,)
    else:
        phi = joint_feature_map(Xt.shape[1], Tt.shape[1], kernel, sigma, sigma_t, kernel_t,
                                n_features, seed, device=Xt.device)
        arrays = (Xt, Tt)
    lam = _covariance_eigenvalues(phi, *arrays, progress=progress)
    exact_map = kernel == "cosine" and (Tt is None or kernel_t == "cosine")
    return Estimate(float((lam.clamp_min(0) ** 2).sum()), 0.0 if exact_map else math.nan)


def rke_score(X: ArrayLike, kernel: str = "gaussian", sigma: float = 1.0, method: str = "exact",
              n_features: int = DEFAULT_N_FEATURES, seed: int = 0, *, return_se: bool = False,
              progress: Optional[Callable[[int, int], None]] = None):
    """Renyi Kernel Entropy score ``exp(H_2) = 1 / ||K/n||_F^2 = n^2 / sum_ij k(x_i, x_j)^2``
    (Jalali et al. 2023).

    ``method="exact"`` sums the pairwise kernel values block by block: O(n^2) time, no
    eigendecomposition and no n x n matrix; the result always lies in [1, n].
    ``method="rff"`` is linear in n: an unbiased random-feature estimate of the Frobenius
    norm (``n_features`` frequencies, ``seed``; see :func:`~sparke_lab.rff.squared_kernel_mean`).
    ``return_se=True`` returns ``(score, standard_error)`` instead of the score, the error by
    the delta method ``se(RKE) = se(V) / V^2`` (0 for exact values); ``progress(done, total)``
    is called as rows are processed (rff). Taught in: 02_renyi_kernel_entropy; scaling in
    06_scaling_from_n3_to_n.
    """
    kernel, method = check_kernel(kernel), check_method(method)
    Xt = as_features(X, "X", min_rows=2)
    sigma = kernel_sigma(kernel, sigma)
    est = _mean_squared_kernel(Xt, kernel, sigma, method=method, n_features=n_features, seed=seed,
                               progress=progress)
    value = 1.0 / est.value
    return (value, est.stderr * value * value) if return_se else value


# ---------------------------------------------------------------- conditional scores
def conditional_rke_score(X: ArrayLike, T: ArrayLike, sigma_x: float = 1.0, sigma_t: float = 1.0,
                          kernel: str = "gaussian", kernel_t: Optional[str] = None,
                          method: str = "exact", n_features: int = DEFAULT_N_FEATURES,
                          seed: int = 0, *, return_se: bool = False,
                          progress: Optional[Callable[[int, int], None]] = None):
    """Conditional RKE ``exp(H_2(X|T)) = ||K_T||_F^2 / ||K_X o K_T||_F^2`` (SPARKE's score).

    ``X`` are image features, ``T`` prompt features of the same samples. At least 1;
    equals ``rke_score(X)`` when all prompts are identical and 1 when they are mutually far
    apart. Not always <= RKE(X) (order 2 is not subadditive). ``return_se=True`` returns
    ``(score, standard_error)`` as in :func:`rke_score`.
    Taught in: 03_conditional_entropy.
    """
    kernel, method = check_kernel(kernel), check_method(method)
    kernel_t = check_kernel(kernel_t or kernel)
    Xt, Tt = _pair(X, T)
    sx, st = kernel_sigma(kernel, sigma_x, "sigma_x"), kernel_sigma(kernel_t, sigma_t, "sigma_t")
    joint = _mean_squared_kernel(Xt, kernel, sx, Tt, kernel_t, st, method, n_features, seed, progress)
    prompts = _mean_squared_kernel(Tt, kernel_t, st, method=method, n_features=n_features,
                                   seed=seed + 7, progress=progress)
    value = prompts.value / joint.value
    if method == "rff":
        value = max(value, 1.0)
    if not return_se:
        return value
    # independent frequencies for the two norms: relative errors add in quadrature
    return value, value * math.hypot(prompts.stderr / prompts.value, joint.stderr / joint.value)


def conditional_entropy(X: ArrayLike, T: ArrayLike, order: float = 1.0, sigma_x: float = 1.0,
                        sigma_t: float = 1.0, kernel: str = "gaussian", kernel_t: Optional[str] = None,
                        method: str = "exact", n_features: int = DEFAULT_N_FEATURES, seed: int = 0) -> float:
    """``H_alpha(X|T) = H_alpha(X, T) - H_alpha(T)`` with the Hadamard-product joint kernel.

    Taught in: 03_conditional_entropy.
    """
    a = check_order(order)
    if a == 2.0:
        return math.log(conditional_rke_score(X, T, sigma_x, sigma_t, kernel, kernel_t,
                                              method, n_features, seed))
    kernel_t_ = check_kernel(kernel_t or kernel)
    h_joint = entropy(joint_kernel_eigenvalues(X, T, sigma_x, sigma_t, kernel, kernel_t,
                                               method, n_features, seed), a)
    h_t = entropy(kernel_eigenvalues(T, kernel_t_, sigma_t, method, n_features, seed + 1), a)
    return h_joint - h_t


def conditional_vendi_score(X: ArrayLike, T: ArrayLike, sigma_x: float = 1.0, sigma_t: float = 1.0,
                            kernel: str = "gaussian", kernel_t: Optional[str] = None,
                            order: float = 1.0, method: str = "exact",
                            n_features: int = DEFAULT_N_FEATURES, seed: int = 0) -> float:
    """Conditional Vendi ``exp(H_1(X, T) - H_1(T))`` (Jalali et al. 2024); at most Vendi(X).

    ``order`` other than 1 gives the order-alpha conditional score.
    Taught in: 03_conditional_entropy.
    """
    return math.exp(conditional_entropy(X, T, order, sigma_x, sigma_t, kernel, kernel_t,
                                        method, n_features, seed))


def information_vendi_score(X: ArrayLike, T: ArrayLike, sigma_x: float = 1.0, sigma_t: float = 1.0,
                            kernel: str = "gaussian", kernel_t: Optional[str] = None,
                            method: str = "exact", n_features: int = DEFAULT_N_FEATURES,
                            seed: int = 0) -> float:
    """Information Vendi ``exp(I(X; T)) = exp(H_1(X) + H_1(T) - H_1(X, T))`` (>= 1):
    how much of the image diversity is explained by the prompts.

    Taught in: 03_conditional_entropy.
    """
    kernel = check_kernel(kernel)
    kernel_t_ = check_kernel(kernel_t or kernel)
    Xt, Tt = _pair(X, T)
    h_x = entropy(kernel_eigenvalues(Xt, kernel, sigma_x, method, n_features, seed), 1.0)
    h_t = entropy(kernel_eigenvalues(Tt, kernel_t_, sigma_t, method, n_features, seed + 1), 1.0)
    h_xt = entropy(joint_kernel_eigenvalues(Xt, Tt, sigma_x, sigma_t, kernel, kernel_t,
                                            method, n_features, seed), 1.0)
    return math.exp(h_x + h_t - h_xt)


# ------------------------------------------------------------------- relative score
def rrke(X: ArrayLike, Y: ArrayLike, kernel: str = "gaussian", sigma: float = 1.0,
         method: str = "exact", n_features: int = DEFAULT_N_FEATURES, seed: int = 0) -> float:
    """Relative Renyi Kernel Entropy ``-log ||K_XY / sqrt(nm)||_nuc^2`` (Jalali et al. 2023).

    A divergence between two sample sets (e.g. generated vs reference): 0 for identical
    sets, larger when the sets share fewer modes. ``exact`` takes the singular values of the
    n x m cross-kernel; ``rff`` the nuclear norm of ``C_X^{1/2} C_Y^{1/2}`` (linear in n + m).
    Taught in: 06_scaling_from_n3_to_n (exercise) and the metrics of the comparison report.
    """
    kernel, method = check_kernel(kernel), check_method(method)
    Xt = as_features(X, "X", min_rows=1)
    Yt = as_features(Y, "Y", min_rows=1, device=Xt.device)
    if Xt.shape[1] != Yt.shape[1]:
        raise ValueError(f"X and Y must have the same number of features, got "
                         f"{Xt.shape[1]} and {Yt.shape[1]}")
    sigma = kernel_sigma(kernel, sigma)
    n, m = Xt.shape[0], Yt.shape[0]
    if method == "exact" and kernel == "gaussian":
        check_exact_size(min(n, m), "rrke")
        K = _kernel_matrix64(Xt, Yt, kernel, sigma) / math.sqrt(n * m)
        nuc = float(torch.linalg.svdvals(K).sum())
    else:
        fm = FourierFeatures(Xt.shape[1], kernel, sigma, n_features, seed, device=Xt.device,
                             dtype=torch.float64)

        def sqrt_cov(A):
            w, V = torch.linalg.eigh(feature_covariance(fm, A))
            return (V * w.clamp_min(0).sqrt()) @ V.T
        nuc = float(torch.linalg.svdvals(sqrt_cov(Xt) @ sqrt_cov(Yt)).sum())
    nuc = min(nuc, 1.0)  # <= 1 by Cauchy-Schwarz; round-off can exceed it slightly
    return float(-2.0 * math.log(nuc)) if nuc > 0 else math.inf
