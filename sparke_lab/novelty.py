"""Novelty guidance against a fixed reference set, and what the official code's reference term does.

In sparke-lab a reference bank is passed as ``SparkeGuidance(reference=bank)``: its rows join the
rows a sample is repelled from, so the row loss becomes

    L(f) = sum_{i in bank} w_i k_X(x_i, f)^2 + sum_{j in reference} w_j k_X(r_j, f)^2,
    w = k_T(t, .)^2,

and a descent step moves ``f`` *away* from reference samples of similar prompts (novelty with
respect to the reference). Novelty is measured with RRKE (:func:`sparke_lab.scores.rrke`).

The official SPARKE code (``RKEGuidedSampling.cond_fn`` in mjalali/sparke-diffusers) has a
reference term too: with ``R(S)`` its RKE estimate of a set ``S`` it *ascends*
``R(bank + f) - beta * R(reference + f)``. On its fast path (more than 20 rows, or 10 with
prompts) ``R(reference + f) = 1 / m(f)`` with ``m(f)`` the mean of ``k(r_j, f)`` over the
reference rows and ``f`` itself (``k``, not ``k^2``), so the reference part of the ascent
direction is ``beta * grad m / m^2``: along the gradient of the mean similarity to the
reference, i.e. **towards** it. The small-set path (``1 / ||K/N||_F^2`` of reference + f) has
the same sign. The term attracts; it is not novelty guidance. :func:`official_reference_rke`
re-implements that score as a differentiable function and :func:`official_reference_direction`
the direction of the step it produces, so the sign can be checked numerically.

Taught in: 12_novelty_guidance (derivation: docs/maths.md, "Novelty guidance").
"""
from __future__ import annotations

from typing import Optional

import torch

from .kernels import ArrayLike, as_features, check_sigma

#: Sizes (reference rows + the query) above which the official code switches from the
#: Frobenius route to the mean-similarity route: unconditional, conditional.
OFFICIAL_FAST_PATH_ABOVE = {"rke": 20, "cond-rke": 10}


def _gauss_column(A: torch.Tensor, f: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.exp(-((A - f) ** 2).sum(1) / (2.0 * sigma ** 2))


def official_reference_rke(f: torch.Tensor, reference: ArrayLike, sigma: float,
                           t: Optional[torch.Tensor] = None, reference_prompts: Optional[ArrayLike] = None,
                           sigma_t: float = 1.0) -> torch.Tensor:
    """The official code's RKE estimate of ``reference + f`` (Gaussian kernels), differentiable in ``f``.

    ``f`` (D,) is the query feature; ``reference`` (N, D) the reference rows. With prompts
    (``t`` (e,) and ``reference_prompts`` (N, e)) the kernel is the product of the image and
    prompt kernels, as in the code's ``cond-rke`` branch. Above
    :data:`OFFICIAL_FAST_PATH_ABOVE` rows the code returns ``1 / mean_j k(s_j, f)`` over the
    N + 1 rows ``s`` (``f`` included, ``k`` not squared); otherwise ``1 / ||K/(N+1)||_F^2`` of
    the full (N + 1) x (N + 1) matrix. Written from the published code's formulas to check the
    sign of its reference term; not used for guidance. Taught in: 12_novelty_guidance.
    """
    sigma = check_sigma(sigma)
    f = torch.as_tensor(f)
    if f.ndim != 1:
        raise ValueError(f"f must be one feature vector (D,), got shape {tuple(f.shape)}")
    R = as_features(reference, "reference").to(f.device, f.dtype)
    if R.shape[1] != f.shape[0]:
        raise ValueError(f"reference rows have {R.shape[1]} features but f has {f.shape[0]}")
    conditional = t is not None or reference_prompts is not None
    S = torch.cat([R, f[None]])
    col = _gauss_column(S, f, sigma)
    if conditional:
        if t is None or reference_prompts is None:
            raise ValueError("a conditional check needs both t and reference_prompts")
        t = torch.as_tensor(t).to(f.device, f.dtype)
        TR = as_features(reference_prompts, "reference_prompts").to(f.device, f.dtype)
        if TR.shape[0] != R.shape[0] or TR.shape[1] != t.shape[0]:
            raise ValueError("reference_prompts must be (N, e) with e = len(t)")
        col = col * _gauss_column(torch.cat([TR, t[None]]), t, check_sigma(sigma_t, "sigma_t"))
    n = S.shape[0]
    if n > OFFICIAL_FAST_PATH_ABOVE["cond-rke" if conditional else "rke"]:
        return 1.0 / col.mean()
    K = torch.exp(-((S[:, None] - S[None]) ** 2).sum(-1) / (2.0 * sigma ** 2))
    if conditional:
        TS = torch.cat([TR, t[None]])
        K = K * torch.exp(-((TS[:, None] - TS[None]) ** 2).sum(-1) / (2.0 * sigma_t ** 2))
    return 1.0 / ((K / n) ** 2).sum()


def official_reference_direction(f: ArrayLike, reference: ArrayLike, sigma: float, beta: float = 1.0,
                                 **prompts) -> torch.Tensor:
    """Unit direction in which the official code's reference term moves ``f``.

    The code ascends ``-beta * R(reference + f)`` (plus the bank term) and normalises the
    gradient (its step is ``scale * ||z|| * g / ||g||``); this returns ``g / ||g||`` for the
    reference term alone, in float64. ``prompts``: ``t``, ``reference_prompts``, ``sigma_t``
    as in :func:`official_reference_rke`. Taught in: 12_novelty_guidance.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (the code's weight of the reference term), got {beta}")
    x = torch.as_tensor(f, dtype=torch.float64).detach().clone().requires_grad_(True)
    ref = torch.as_tensor(reference, dtype=torch.float64)
    kw = {k: (torch.as_tensor(v, dtype=torch.float64) if k != "sigma_t" else v) for k, v in prompts.items()}
    with torch.enable_grad():
        objective = -float(beta) * official_reference_rke(x, ref, sigma, **kw)
        (g,) = torch.autograd.grad(objective, x)
    norm = torch.linalg.vector_norm(g)
    if not bool(norm > 0):
        raise ValueError("the reference term has zero gradient at f (f far from every reference row?)")
    return g / norm
