"""Random Fourier features: explicit feature maps whose inner products approximate kernels.

For the Gaussian kernel draw ``omega_j ~ N(0, sigma^-2 I)`` and map
``phi(x) = m^{-1/2} [cos(omega_j^T x), sin(omega_j^T x)]_{j <= m}``; then
``E[phi(x)^T phi(y)] = k_sigma(x, y)`` and ``||phi(x)|| = 1`` exactly. The cosine kernel
needs no sampling: the L2-normalised input is already an exact feature map.

One class serves the scores (``method="rff"``), the spectra and the guidance sketch bank.

Taught in: 06_scaling_from_n3_to_n.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from .kernels import as_features, check_kernel, check_sigma, normalise_rows


def _gaussian_frequencies(dim: int, m: int, seed: int, orthogonal: bool) -> torch.Tensor:
    """(dim, m) frequencies with N(0, I) marginals; orthogonal within blocks of ``dim``."""
    g = torch.Generator().manual_seed(seed)
    if not orthogonal:
        return torch.randn(dim, m, generator=g, dtype=torch.float64)
    nb, rest = divmod(m, dim)
    blocks = []
    if nb:  # full square blocks, QR batched (cheap when dim is small and m large)
        Q, R = torch.linalg.qr(torch.randn(nb, dim, dim, generator=g, dtype=torch.float64))
        Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)  # uniform rotations
        lengths = torch.randn(nb, dim, dim, generator=g, dtype=torch.float64).norm(dim=1)  # chi_dim
        blocks.append((Q * lengths.unsqueeze(-2)).permute(1, 0, 2).reshape(dim, nb * dim))
    if rest:  # reduced QR of a (dim, rest) Gaussian: O(dim rest^2), never O(dim^3)
        Q, R = torch.linalg.qr(torch.randn(dim, rest, generator=g, dtype=torch.float64))
        Q = Q * torch.sign(torch.diagonal(R))
        lengths = torch.randn(dim, rest, generator=g, dtype=torch.float64).norm(dim=0)
        blocks.append(Q * lengths)
    return torch.cat(blocks, dim=1)


class FourierFeatures:
    """A fixed, seeded feature map ``phi`` with ``phi(x)^T phi(y) ~ k(x, y)``.

    Parameters
    ----------
    dim: input dimension d.
    kernel: "gaussian" (random Fourier features, output 2 * n_features) or "cosine"
        (exact map x / ||x||, output d; n_features and seed are ignored).
    sigma: Gaussian bandwidth.
    n_features: number of frequencies m.
    seed: seed of the frequencies, so the same map can be rebuilt anywhere.
    orthogonal: draw the frequencies in orthogonal blocks (orthogonal random features,
        Yu et al. 2016): the same kernel in expectation with lower variance.
    """

    def __init__(self, dim: int, kernel: str = "gaussian", sigma: float = 1.0,
                 n_features: int = 2048, seed: int = 0,
                 device: Union[str, torch.device, None] = None,
                 dtype: torch.dtype = torch.float32, orthogonal: bool = True):
        self.kernel = check_kernel(kernel)
        self.dim = int(dim)
        self.seed = int(seed)
        self.dtype = dtype
        if self.kernel == "gaussian":
            self.sigma = check_sigma(sigma)
            if int(n_features) < 1:
                raise ValueError(f"n_features must be >= 1, got {n_features}")
            self.n_features = int(n_features)
            omega = _gaussian_frequencies(self.dim, self.n_features, self.seed, orthogonal)
            self.omega = (omega / self.sigma).to(device=device, dtype=dtype)
            self.out_dim = 2 * self.n_features
        else:
            self.sigma = float("nan")
            self.n_features = self.dim
            self.omega = None
            self.out_dim = self.dim

    def to(self, device=None, dtype=None) -> "FourierFeatures":
        if self.omega is not None:
            self.omega = self.omega.to(device=device or self.omega.device, dtype=dtype or self.dtype)
        if dtype is not None:
            self.dtype = dtype
        return self

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """Map validated rows ``X`` (n, d) to features (n, out_dim) of unit norm."""
        if X.shape[-1] != self.dim:
            raise ValueError(f"feature map built for dimension {self.dim}, got inputs of "
                             f"dimension {X.shape[-1]}")
        if self.kernel == "cosine":
            return normalise_rows(X.to(self.dtype), "X")
        omega = self.omega if self.omega.device == X.device else self.omega.to(X.device)
        proj = X.to(self.dtype) @ omega
        scale = 1.0 / math.sqrt(self.n_features)
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1) * scale

    def feature_sum(self, X: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """``sum_i phi(x_i)`` in float64 (the mean embedding times n), chunk by chunk.

        Sums the cos and sin halves directly: no (n, 2m) feature matrix, no float64 copy.
        """
        if self.kernel == "cosine":
            return sum(self(X[s:s + chunk]).sum(0, dtype=torch.float64) for s in range(0, X.shape[0], chunk))
        omega = self.omega if self.omega.device == X.device else self.omega.to(X.device)
        c = torch.zeros(self.n_features, dtype=torch.float64, device=X.device)
        s_ = torch.zeros_like(c)
        for start in range(0, X.shape[0], chunk):
            proj = X[start:start + chunk].to(self.dtype) @ omega
            c += torch.cos(proj).sum(0, dtype=torch.float64)
            s_ += torch.sin(proj).sum(0, dtype=torch.float64)
        return torch.cat([c, s_]) / math.sqrt(self.n_features)

    def map_in_chunks(self, X: torch.Tensor, chunk: int = 8192):
        """Yield feature blocks of ``chunk`` rows (memory O(chunk * out_dim))."""
        for start in range(0, X.shape[0], chunk):
            yield self(X[start:start + chunk])


def joint_feature_map(dim_x: int, dim_t: int, kernel: str, sigma_x: float, sigma_t: float,
                      kernel_t: Optional[str] = None, n_features: int = 2048, seed: int = 0,
                      device=None, dtype=torch.float32):
    """A feature map of the joint kernel ``k_X(x, x') k_T(t, t')`` on pairs (x, t).

    Two Gaussian kernels multiply into one Gaussian kernel on the concatenation
    ``[x / sigma_x, t / sigma_t]`` with bandwidth 1, so a single RFF map of dimension
    ``2 * n_features`` serves. Other pairs use the row-wise outer product of the two maps.
    Returns a callable ``phi(X, T) -> (n, D)``.
    """
    kernel = check_kernel(kernel)
    kernel_t = check_kernel(kernel_t or kernel)
    if kernel == "gaussian" and kernel_t == "gaussian":
        sx, st = check_sigma(sigma_x, "sigma_x"), check_sigma(sigma_t, "sigma_t")
        fm = FourierFeatures(dim_x + dim_t, "gaussian", 1.0, n_features, seed, device, dtype)

        def joined(X: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
            return torch.cat([X.to(dtype) / sx, T.to(X.device, dtype) / st], dim=1)

        def phi(X: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
            return fm(joined(X, T))
        phi.out_dim = fm.out_dim
        phi.feature_sum = lambda X, T: fm.feature_sum(joined(X, T))
        return phi
    fx = FourierFeatures(dim_x, kernel, sigma_x, n_features, seed, device, dtype)
    ft = FourierFeatures(dim_t, kernel_t, sigma_t, n_features, seed + 1, device, dtype)

    def phi(X: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        a, b = fx(X), ft(T.to(X.device))
        return (a[:, :, None] * b[:, None, :]).reshape(X.shape[0], -1)
    phi.out_dim = fx.out_dim * ft.out_dim
    return phi
