"""The guidance objectives and the step rule: what every diversity method computes per sample.

One sample's latent walks: features (the sphere map ``f = z / ||z||``) -> the objective's loss
and gradient over the bank rows (storage in :mod:`.bank`) and the round's other samples ->
the pull-back to the latent -> one step. All of that maths lives here:

* :func:`prompt_weights`: ``w_ij = k_T(t_i, t_j)^2``, why unrelated prompts barely repel;
* :func:`kernel_row_loss_grad`: SPARKE's row loss ``L(f) = sum_i w_i k_X(x_i, f)^2`` and its
  gradient (maths.md, "The SPARKE guidance objective"), one kernel row per query, O(n D);
* :func:`bank_loss_grad`: that row loss over a bank, exact (:class:`~.bank.MemoryBank` rows,
  in chunks) or from a random-feature sketch (:class:`~.bank.SketchBank` sums, O(m D));
* :func:`peer_loss_grad`: the same row loss over the round's other samples (in-batch term);
* :func:`vendi_loss_grad`: ``-H_1`` of ``K / N`` over all rows and its gradient (Vendi and
  conditional Vendi guidance, O(N^3));
* :func:`sphere_features`, :func:`sphere_pullback`: ``f = z / ||z||`` and ``dL/df -> dL/dz``;
* :func:`guidance_step`, :func:`published_step`: the one step rule of SPARKE, latent RKE,
  Vendi and Particle Guidance (``"published"``: length ``scale * ||z||``; ``"gated"``: that
  length times :func:`prompt_gate`, the share of the kernel neighbourhood with a related
  prompt; ``"none"``: ``scale * direction / rows``).

Taught in: 07_guided_sampling_2d (the objective, its gradient and the step on 2-D points) and
assignment a2_conditional_rke_gradient (the gradient by hand, the published step).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..kernels import kernel_matrix

NORMALIZATIONS = ("published", "none", "gated")


# ------------------------------------------------------------------ kernel-row maths
def prompt_weights(Tb: Optional[torch.Tensor], Tq: Optional[torch.Tensor], kernel_t: str,
                   sigma_t: float) -> Optional[torch.Tensor]:
    """``w_ij = k_T(tb_i, tq_j)^2`` of shape (n, B), or None without prompts (w = 1).

    Taught in: 07_guided_sampling_2d (why unrelated prompts barely repel).
    """
    if Tb is None or Tq is None:
        return None
    if kernel_t == "gaussian":
        d2 = ((Tb * Tb).sum(1, keepdim=True) + (Tq * Tq).sum(1)[None]
              - 2.0 * Tb @ Tq.T).clamp_min_(0.0)
        return torch.exp(d2 * (-1.0 / sigma_t ** 2))  # k^2 = exp(-d2 / sigma^2)
    nb = torch.linalg.vector_norm(Tb, dim=1, keepdim=True).clamp_min(1e-12)
    nq = torch.linalg.vector_norm(Tq, dim=1, keepdim=True).clamp_min(1e-12)
    return ((Tb / nb) @ (Tq / nq).T) ** 2


def kernel_row_loss_grad(Xb: torch.Tensor, F: torch.Tensor, kernel: str, sigma: float,
                         w: Optional[torch.Tensor] = None, xb_sq: Optional[torch.Tensor] = None
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Loss ``L_j = sum_i w_ij k(xb_i, f_j)^2`` and its gradient w.r.t. each query ``f_j``.

    ``Xb`` (n, D) bank rows, ``F`` (B, D) queries, ``w`` (n, B) prompt weights or None.
    Two matrix products over the bank, O(n D B); no n x n matrix. Returns ``(L (B,),
    grad (B, D))``. Taught in: 07_guided_sampling_2d.
    """
    if xb_sq is None:
        xb_sq = (Xb * Xb).sum(1)
    dots = Xb @ F.T                                           # (n, B)
    f_sq = (F * F).sum(1)
    if kernel == "gaussian":
        d2 = (xb_sq[:, None] + f_sq[None] - 2.0 * dots).clamp_min_(0.0)
        k2 = torch.exp(d2 * (-1.0 / sigma ** 2))              # k^2
        c = k2 if w is None else k2 * w
        loss = c.sum(0)
        # grad_f k^2 = 2 k grad k = -(2 / sigma^2) k^2 (f - x)
        grad = (-2.0 / sigma ** 2) * (loss[:, None] * F - c.T @ Xb)
        return loss, grad
    # cosine: k = <x, f> / (|x| |f|); grad_f k = x / (|x||f|) - k f / |f|^2
    nx = xb_sq.clamp_min(1e-24).sqrt()
    nf = f_sq.clamp_min(1e-24).sqrt()
    k = dots / nx[:, None] / nf[None]
    ww = torch.ones_like(k) if w is None else w
    loss = (ww * k * k).sum(0)
    a = 2.0 * ww * k                                          # d(k^2)/dk, weighted
    grad = ((a / nx[:, None]).T @ Xb) / nf[:, None] - ((a * k).sum(0) / f_sq.clamp_min(1e-24))[:, None] * F
    return loss, grad


# ------------------------------------------------------------------ the row loss over a bank
def exact_bank_loss_grad(bank, F: torch.Tensor, Tq: Optional[torch.Tensor], kernel: str,
                         sigma: float, kernel_t: str = "gaussian", sigma_t: float = 1.0,
                         chunk: int = 65536) -> Tuple[torch.Tensor, torch.Tensor]:
    """``L_j = sum_i k_T(t_i, t_j)^2 k_X(x_i, f_j)^2`` and ``grad_f L`` over the rows of a
    :class:`~.bank.MemoryBank`, for queries ``F`` (B, D); ``Tq=None`` ignores prompts
    (unconditional RKE). O(n D B) in chunks of ``chunk`` rows, never an n x n matrix."""
    B = F.shape[0]
    loss = torch.zeros(B, dtype=F.dtype, device=F.device)
    grad = torch.zeros_like(F)
    n = len(bank)
    if n == 0:
        return loss, grad
    bank.check_query(F, Tq)
    X, T, sq = bank.features, bank.prompt_features, bank.squared_norms
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        Xb = X[s:e].to(F.device, F.dtype)
        w = None
        if Tq is not None:
            w = prompt_weights(T[s:e].to(F.device, F.dtype), Tq, kernel_t, sigma_t)
        l, g = kernel_row_loss_grad(Xb, F, kernel, sigma, w, sq[s:e].to(F.device, F.dtype))
        loss += l
        grad += g
    return loss, grad


def sketch_bank_loss_grad(bank, F: torch.Tensor, Tq: Optional[torch.Tensor],
                          kernel: str = "gaussian", sigma: Optional[float] = None,
                          kernel_t: str = "gaussian", sigma_t: Optional[float] = None
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random-feature estimate of the row loss and its gradient from a
    :class:`~.bank.SketchBank`'s sums ``S = sum_i phi(u_i)``, ``M = sum_i x_i phi(u_i)^T``:
    ``L ~ phi(u)^T S`` and ``sum_i c_i x_i ~ M phi(u)``. O(m D) per query at any bank size."""
    B = F.shape[0]
    if len(bank) == 0:
        return torch.zeros(B, dtype=F.dtype, device=F.device), torch.zeros_like(F)
    if kernel != "gaussian" or (Tq is not None and kernel_t != "gaussian"):
        raise ValueError("the sketch bank supports Gaussian kernels only")
    if sigma is not None and abs(float(sigma) - bank.sigma_image) > 1e-12:
        raise ValueError(f"sketch bank built for sigma_image={bank.sigma_image}, guidance "
                         f"uses {sigma}")
    if Tq is not None and sigma_t is not None and abs(float(sigma_t) - bank.sigma_text) > 1e-12:
        raise ValueError(f"sketch bank built for sigma_text={bank.sigma_text}, guidance "
                         f"uses {sigma_t}")
    if Tq is None and bank.conditional:
        raise ValueError("this sketch bank is conditional; unconditional guidance needs "
                         "SketchBank(conditional=False)")
    bank.check_query(F, Tq)
    phi = bank.feature_map(F, Tq)                            # (B, 2m)
    S, M = bank.sums
    loss = phi @ S.to(F.device, F.dtype)
    # grad_f sum_i c_i(f) = -(2 / sigma^2) (sum_i c_i f - sum_i c_i x_i), and
    # sum_i c_i x_i ~ M phi(u): noise O(1/sqrt(m)) on each kernel weight, not amplified by
    # the dimension D as d phi / du would be.
    mean_shift = phi @ M.to(F.device, F.dtype).T             # (B, D)
    grad = (-2.0 / bank.sigma_image ** 2) * (loss[:, None] * F - mean_shift)
    return loss, grad


def bank_loss_grad(bank, F: torch.Tensor, Tq: Optional[torch.Tensor], kernel: str = "gaussian",
                   sigma: Optional[float] = None, kernel_t: str = "gaussian",
                   sigma_t: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The row loss and its gradient over either bank kind (exact rows or a sketch)."""
    if bank.kind == "sketch":
        return sketch_bank_loss_grad(bank, F, Tq, kernel, sigma, kernel_t, sigma_t)
    return exact_bank_loss_grad(bank, F, Tq, kernel, sigma, kernel_t, sigma_t)


def peer_loss_grad(Fp: torch.Tensor, Tp: Optional[torch.Tensor], F: torch.Tensor,
                   Tq: Optional[torch.Tensor], start: int, kernel: str, sigma: float,
                   kernel_t: str = "gaussian", sigma_t: float = 1.0
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The row loss of queries ``F == Fp[start:start + B]`` over the round's samples ``Fp``
    (all processes), each sample's pair with itself left out."""
    w = torch.ones(Fp.shape[0], F.shape[0], device=F.device, dtype=F.dtype) if Tq is None \
        else prompt_weights(Tp, Tq, kernel_t, sigma_t)
    own = torch.arange(F.shape[0], device=F.device)
    # the self-pair (k = 1, zero gradient) gets weight 0: left in, its gradient would cancel
    # only to round-off, and the published normalisation would blow that noise up to a full
    # step for a sample with no similar neighbours
    w[start + own, own] = 0.0
    return kernel_row_loss_grad(Fp, F, kernel, sigma, w)


def kernel_mass(Xb: torch.Tensor, F: torch.Tensor, kernel: str, sigma: float,
                xb_sq: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``m_j = sum_i k(xb_i, f_j)^2`` (B,): the row loss with every prompt weight 1, the
    denominator of the prompt gate (:func:`prompt_gate`). One matrix product, O(n D B)."""
    if xb_sq is None:
        xb_sq = (Xb * Xb).sum(1)
    dots = Xb @ F.T
    if kernel == "gaussian":
        d2 = (xb_sq[:, None] + (F * F).sum(1)[None] - 2.0 * dots).clamp_min_(0.0)
        return torch.exp(d2 * (-1.0 / sigma ** 2)).sum(0)
    nx = xb_sq.clamp_min(1e-24).sqrt()
    nf = (F * F).sum(1).clamp_min(1e-24).sqrt()
    return ((dots / nx[:, None] / nf[None]) ** 2).sum(0)


def bank_kernel_mass(bank, F: torch.Tensor, kernel: str, sigma: float,
                     chunk: int = 65536) -> torch.Tensor:
    """:func:`kernel_mass` over the rows of an exact :class:`~.bank.MemoryBank` (in chunks)."""
    out = torch.zeros(F.shape[0], dtype=F.dtype, device=F.device)
    if len(bank) == 0:
        return out
    if bank.kind == "sketch":
        raise ValueError("normalize='gated' needs every row's kernel value: use an exact MemoryBank "
                         "(a SketchBank keeps only prompt-weighted sums)")
    X, sq = bank.features, bank.squared_norms
    for s in range(0, len(bank), chunk):
        e = min(s + chunk, len(bank))
        out += kernel_mass(X[s:e].to(F.device, F.dtype), F, kernel, sigma, sq[s:e].to(F.device, F.dtype))
    return out


def drop_roundoff(grad: torch.Tensor, loss: torch.Tensor, F: torch.Tensor, max_row_norm: float,
                  sigma: float, n_terms: int) -> torch.Tensor:
    """``grad`` with the rows that are round-off set to zero (Gaussian row loss).

    The gradient ``-(2 / sigma^2) (L f - sum_i c_i x_i)`` subtracts two sums of size up to
    ``(2 / sigma^2) L (|f| + R)`` (R: the largest row norm). Computed in floating point with
    unit round-off u over ``n_terms`` terms, its error is at most about
    ``(n_terms + 2) u (2 / sigma^2) L (|f| + R)`` (Higham's summation bound); a gradient below
    that is noise, and the published step would blow it up to a full step in a random
    direction (a tiny ``sigma_image`` or a near-duplicate bank row does it). Such rows get no
    step."""
    u = torch.finfo(grad.dtype).eps / 2
    fn = torch.linalg.vector_norm(F, dim=1)
    floor = (n_terms + 2) * u * (2.0 / sigma ** 2) * loss * (fn + max_row_norm)
    small = torch.linalg.vector_norm(grad, dim=1) <= floor
    return torch.where(small[:, None], torch.zeros_like(grad), grad)


def prompt_gate(weighted: torch.Tensor, unweighted: torch.Tensor) -> torch.Tensor:
    """The gate of ``normalize="gated"``: ``sum_i w_i k_i^2 / sum_i k_i^2`` per query, in
    [0, 1] (0 where nothing is near). The share of a sample's kernel neighbourhood that
    shares its prompt: 1 when every near row has the same prompt, ~0 when none is related,
    so an unrelated prompt gets (almost) no step instead of a full-length one in an
    arbitrary direction. Docs: docs/guidance.md ("step length")."""
    return torch.where(unweighted > 0, weighted / unweighted.clamp_min(1e-300),
                       torch.zeros_like(weighted)).clamp_(0.0, 1.0)


# ------------------------------------------------------------------ the Vendi objective
def vendi_loss_grad(X: torch.Tensor, T: Optional[torch.Tensor], first: int, count: int,
                    kernel: str, sigma: float, kernel_t: str = "gaussian", sigma_t: float = 1.0
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``-H_1`` of ``K / N`` over all rows ``X`` (N, D) (bank, reference and the round, float64)
    and its gradient w.r.t. the query rows ``first .. first + count - 1``; ``T`` (N, e) makes
    it conditional (``K = K_X o K_T``). Via ``dH/dA = V diag(-(log lam + 1)) V^T`` (stable
    for repeated eigenvalues). O(N^2 D + N^3). Returns ``(loss (count,), grad (count, D))``.
    """
    N, B = X.shape[0], int(count)
    KX = kernel_matrix(X, kernel=kernel, sigma=sigma)        # unit diagonal
    KT = None
    if T is not None:
        KT = prompt_weights(T, T, kernel_t, sigma_t).sqrt()
        KT.fill_diagonal_(1.0)
    K = KX if KT is None else KX * KT
    lam, V = torch.linalg.eigh(K / N)
    lam = lam.clamp_min(0.0)
    pos = lam > 1e-12
    H = -(lam[pos] * lam[pos].log()).sum()
    dlog = torch.where(pos, -(lam.clamp_min(1e-300).log() + 1.0), torch.zeros_like(lam))
    G = (V * dlog) @ V.T / N                                  # dH/dK
    rows = slice(first, first + B)
    C = G[rows] * (KX[rows] if KT is None else KX[rows] * KT[rows])  # (B, N)
    own = torch.arange(B, device=C.device)
    C[own, first + own] = 0.0   # k(f, f) = 1 has no gradient; avoid round-off cancellation
    Fb = X[rows]
    if kernel == "gaussian":
        # dH/df_b = 2 sum_j G_bj KT_bj dk/df_b,  dk/df_b = -k (f_b - x_j) / sigma^2
        dH = (-2.0 / sigma ** 2) * (C.sum(1, keepdim=True) * Fb - C @ X)
    else:
        nb = Fb.norm(dim=1, keepdim=True).clamp_min(1e-12)
        nx = X.norm(dim=1).clamp_min(1e-12)
        Gw = G[rows] * (1.0 if KT is None else KT[rows])
        Gw[own, first + own] = 0.0
        kb = KX[rows]
        dH = 2.0 * ((Gw / nx[None]) @ X / nb - (Gw * kb).sum(1, keepdim=True) * Fb / nb ** 2)
    return (-H).expand(B), -dH


# ------------------------------------------------------------------ features and the step
def sphere_features(z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(f, ||z||)`` with ``f = z / ||z||`` per row of ``z`` (B, D) (norm clamped at 1e-12)."""
    nz = torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(1e-12)
    return z / nz, nz


def sphere_pullback(g: torch.Tensor, f: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """``dL/dz`` from ``g = dL/df`` for ``f = z / ||z||``: ``(I - f f^T) g / ||z||`` (the
    component along ``z`` does not change ``f``)."""
    return (g - (g * f).sum(1, keepdim=True) * f) / norm


def published_step(direction: torch.Tensor, z: torch.Tensor, scale: float) -> torch.Tensor:
    """The published step (the official SPARKE code): length ``scale * ||z||`` along
    ``direction`` per row, whatever the direction's size; zero where the direction is zero."""
    dn = torch.linalg.vector_norm(direction, dim=1, keepdim=True)
    unit = torch.where(dn > 0, direction / dn.clamp_min(1e-30), torch.zeros_like(direction))
    return unit * (scale * torch.linalg.vector_norm(z, dim=1, keepdim=True))


def guidance_step(direction: torch.Tensor, z: torch.Tensor, scale: float,
                  normalize: str = "published", rows: int = 1,
                  gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The displacement of latents ``z`` (B, D) along ``direction`` (B, D): the
    :func:`published_step`; for ``normalize="gated"`` the published step times ``gate`` (B,)
    (:func:`prompt_gate`); or for ``normalize="none"`` the paper's plain form
    ``scale * direction / rows`` (a loss summed over ``rows`` rows, averaged)."""
    if normalize == "published":
        return published_step(direction, z, scale)
    if normalize == "gated":
        if gate is None:
            raise ValueError("normalize='gated' needs the prompt gate of every sample")
        return published_step(direction, z, scale) * gate.to(direction.dtype)[:, None]
    if normalize == "none":
        return scale * direction / max(rows, 1)
    raise ValueError(f"unknown normalize {normalize!r}; choose one of {NORMALIZATIONS}")
