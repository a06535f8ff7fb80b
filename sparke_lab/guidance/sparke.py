"""SPARKE: prompt-aware diversity guidance (latent conditional RKE) for stock diffusers pipelines.

After selected scheduler steps the current latent ``z`` of each sample in the batch is moved
down the gradient of the conditional inverse RKE of ``bank + batch + sample``, which (bank
fixed, one row per sample; maths.md) is

    L(f) = sum_i k_T(t_i, t)^2 k_X(x_i, f)^2,   f = feature(z)  (flattened z / ||z||)

so each sample is pushed away from earlier samples *of similar prompts* (k_T^2 weight);
unrelated prompts barely repel. A sample enters the bank when it is finished (the last step
of its run), whatever the step count, scheduler or batch size.

Objectives: ``cond-rke`` (SPARKE, default), ``rke`` (unconditional latent RKE), ``vendi`` and
``cond-vendi`` (order-1 entropy of bank + batch, an eigendecomposition per guided step,
O(n^3): for comparison). Step forms: ``normalize="published"`` (the official code: the
step moves ``z`` by exactly ``scale * ||z||`` along the negative gradient) or ``"none"``
(the paper's plain form ``z <- z - scale * grad``, with the loss averaged over the bank rows).

Taught in: 07_guided_sampling_2d (the objective and its gradient on 2-D points),
08_guided_generation_digits (on a real pipeline, banks, settings),
09_stable_diffusion_on_gpu (SD/SDXL/PixArt-Sigma, sketch bank).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from ..kernels import check_kernel, check_sigma
from ._base import (GuidanceCallback, apply_update, check_scale, generate as _generate)
from .bank import MemoryBank, SketchBank
from .objectives import (NORMALIZATIONS, bank_kernel_mass, bank_loss_grad, drop_roundoff,
                         guidance_step, kernel_mass, peer_loss_grad, prompt_gate, sphere_features,
                         sphere_pullback, vendi_loss_grad)
from .pipelines import pool_prompt_embeds, predict_clean_latents
from .semantic import ClipFeatures, resolve_clip_features, semantic_features

OBJECTIVES = ("cond-rke", "rke", "vendi", "cond-vendi")
FEATURES = ("latent", "raw", "x0", "clip")

#: Recommended settings per model family (measured; see docs/guidance.md). ``digits`` is the
#: best measured variant: semantic features at the scale that keeps validity within 3 points of
#: no guidance on the frontier; ``digits-latent`` / ``digits-clip`` are the variants' centres
#: (``sparke-lab compare --sweep`` scales them by 0.25-2).
RECOMMENDED = {
    "toy2d": dict(features="raw", sigma_image=1.0, sigma_text=0.3, scale=1.0, every=5,
                  window=(0.0, 0.8), normalize="none"),
    "digits": dict(features="clip", sigma_image=0.8, sigma_text=0.3, scale=2.0, every=2,
                   window=(0.0, 0.4), normalize="none"),
    "digits-latent": dict(features="latent", sigma_image=0.5, sigma_text=0.3, scale=0.1, every=10,
                          normalize="published"),
    "digits-clip": dict(features="clip", sigma_image=0.8, sigma_text=0.3, scale=4.0, every=2,
                        window=(0.0, 0.4), normalize="none"),
    "stable-diffusion": dict(features="latent", sigma_image=0.8, sigma_text=0.3, scale=0.03,
                             every=10, normalize="published"),
}


class SparkeGuidance(GuidanceCallback):
    """Prompt-aware diversity guidance as a diffusers ``callback_on_step_end``.

    Parameters
    ----------
    objective: ``"cond-rke"`` (SPARKE), ``"rke"``, ``"vendi"`` or ``"cond-vendi"``.
    sigma_image, sigma_text: Gaussian bandwidths of the image-feature and prompt kernels
        (``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))``); paper settings 0.8 and 0.3.
    scale: step size eta (0 = no guidance; the images are then exactly the unguided ones).
    every: guide every k-th step (step indices 0, k, 2k, ...); paper: 10 of 50.
    window: optional ``(start, end)`` fractions of the run in which guidance acts.
    kernel, kernel_text: ``"gaussian"`` or ``"cosine"``.
    normalize: ``"published"`` (default; step length ``scale * ||z||``, the official code),
        ``"gated"`` (that length times the share of the sample's kernel neighbourhood whose
        prompts are related, ``sum w k^2 / sum k^2``: a prompt unrelated to everything in the
        bank gets no step; exact banks and RKE objectives) or ``"none"`` (``scale`` times the
        gradient averaged over rows).
    features: ``"latent"`` (flattened latent / its norm, default), ``"raw"`` (flattened
        latent as is: for the 2-D toy, sigma on the data scale), ``"x0"`` (the normalised
        predicted clean latent, one extra denoiser call per guided step; SD-family pipelines
        with DDIM/DDPM/PNDM/DPM-Solver), semantic features (the paper's "ambient" mode: a
        :class:`~sparke_lab.guidance.semantic.ClipFeatures`, an image-text model on the
        VAE-decoded predicted clean image, with prompt features from its text tower;
        ``"clip"`` is the shipped digits encoder on the digits pipeline), or a differentiable
        callable
        ``f(latents) -> (B, d)`` (e.g. a feature of the predicted clean sample); its
        gradient is taken with autograd.
    bank: a :class:`MemoryBank` (default, created empty), a :class:`SketchBank`, or
        ``"sketch"`` for a new sketch with ``n_features`` random features. The bank persists
        across pipeline calls; :meth:`reset` empties it in place.
    max_bank_size: keep only the newest rows (a sliding window); default: full history.
    reference: a bank of given features to repel from (novelty guidance); never updated.
    in_batch: whether samples of one batch also repel each other (default True).
    update_bank: add finished samples to the bank (default True).

    Example::

        g = SparkeGuidance(objective="cond-rke", sigma_image=0.8, sigma_text=0.3, scale=0.03, every=10)
        images = g.generate(pipe, prompts, num_inference_steps=50, guidance_scale=7.5, generator=gen)

    Taught in: 07_guided_sampling_2d, 08_guided_generation_digits, 09_stable_diffusion_on_gpu.
    """

    def __init__(self, objective: str = "cond-rke", sigma_image: float = 0.8,
                 sigma_text: float = 0.3, scale: float = 0.03, every: int = 10, window=None,
                 kernel: str = "gaussian", kernel_text: str = "gaussian",
                 normalize: str = "published", features: Union[str, Callable] = "latent",
                 bank: Union[MemoryBank, SketchBank, str, None] = None,
                 max_bank_size: Optional[int] = None, n_features: int = 2048, seed: int = 0,
                 reference: Union[MemoryBank, SketchBank, None] = None,
                 in_batch: bool = True, update_bank: bool = True):
        super().__init__(every=every, window=window)
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalize {normalize!r}; choose one of {NORMALIZATIONS}")
        if normalize == "gated" and objective in ("vendi", "cond-vendi"):
            raise ValueError("normalize='gated' gates the RKE row loss; use 'published' or 'none' "
                             f"with objective {objective!r}")
        if not callable(features) and not isinstance(features, ClipFeatures) and features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, a ClipFeatures or a callable, "
                             f"got {features!r}")
        self.objective = objective
        self.kernel = check_kernel(kernel)
        self.kernel_text = check_kernel(kernel_text)
        self.sigma_image = check_sigma(sigma_image, "sigma_image")
        self.sigma_text = check_sigma(sigma_text, "sigma_text")
        self.scale = check_scale(scale)
        self.normalize = normalize
        self.features = features
        self.in_batch = bool(in_batch)
        self.update_bank = bool(update_bank)
        if bank == "sketch":
            bank = SketchBank(self.sigma_image, self.sigma_text, conditional=self.conditional,
                              n_features=n_features, seed=seed)
        elif bank is None:
            bank = MemoryBank(max_size=max_bank_size)
        elif isinstance(bank, str):
            raise ValueError(f"bank must be a MemoryBank, a SketchBank or 'sketch', got {bank!r}")
        if not isinstance(bank, (MemoryBank, SketchBank)):
            raise TypeError(f"bank must be a MemoryBank or SketchBank, got {type(bank).__name__}")
        for b, name in ((bank, "bank"), (reference, "reference")):
            if isinstance(b, SketchBank):
                if self.objective in ("vendi", "cond-vendi"):
                    raise ValueError(f"Vendi objectives need every row: use an exact MemoryBank as {name}")
                if self.kernel != "gaussian" or (self.conditional and self.kernel_text != "gaussian"):
                    raise ValueError(f"a SketchBank {name} supports Gaussian kernels only")
                if abs(b.sigma_image - self.sigma_image) > 1e-12 or \
                        (self.conditional and abs(b.sigma_text - self.sigma_text) > 1e-12):
                    raise ValueError(f"the SketchBank {name} was built for sigma_image="
                                     f"{b.sigma_image}, sigma_text={b.sigma_text}")
                if b.conditional != self.conditional:
                    raise ValueError(f"the SketchBank {name} is "
                                     f"{'conditional' if b.conditional else 'unconditional'} but "
                                     f"objective {objective!r} is not")
        if reference is not None and not isinstance(reference, (MemoryBank, SketchBank)):
            raise TypeError("reference must be a MemoryBank or SketchBank")
        self.bank = bank
        self.reference = reference
        self.last_stats: Dict[str, float] = {}
        self.n_skipped = 0
        self._gate = None  # the prompt gate of the last RKE loss (normalize="gated")
        self._x0_ctx = None
        self._pipe = None
        self.register_to_config(objective=objective, sigma_image=self.sigma_image,
                                sigma_text=self.sigma_text, scale=self.scale, every=self.every,
                                window=list(self.window), kernel=self.kernel,
                                kernel_text=self.kernel_text, normalize=normalize,
                                in_batch=self.in_batch)

    # ---------------------------------------------------------------- properties
    @property
    def conditional(self) -> bool:
        return self.objective.startswith("cond-")

    @property
    def needs_prompt_features(self) -> bool:  # generate() computes them
        return True

    @property
    def exchanges_peers(self) -> bool:
        """Whether samples of one round interact (in-batch term or a Vendi objective). On
        several processes the round's features are gathered at every guided step anyway:
        every rank computes the whole round's objective and keeps its own rows, so the result
        does not depend on how the round is split."""
        return self.in_batch or self.objective in ("vendi", "cond-vendi")

    @property
    def semantic(self) -> bool:
        """Whether the features are semantic (an image-text model on the decoded predicted
        clean image, :class:`~sparke_lab.guidance.semantic.ClipFeatures`)."""
        return isinstance(self.features, ClipFeatures) or \
            (isinstance(self.features, str) and self.features == "clip")

    @property
    def needs_x0(self) -> bool:
        return self.semantic or (isinstance(self.features, str) and self.features == "x0")

    @property
    def tensor_inputs(self):
        # Without prompt features set in advance, pool them from the pipeline's embeddings;
        # features on x0 run the denoiser with the pipeline's prompt embeddings.
        if (self._prompt_features is None and self.conditional) or self.needs_x0:
            return ["latents", "prompt_embeds"]
        return ["latents"]

    def resolve_features(self, pipe) -> None:
        """Turn ``features="clip"`` into the image-text model of ``pipe``: the shipped digits
        encoder for the digits pipeline; for any other pipeline pass
        ``features=ClipFeatures.from_pretrained(path)`` (a local CLIP checkpoint)."""
        self.features = resolve_clip_features(self.features, pipe)

    def prompt_encoder_for(self, pipe):
        """The prompt encoder guidance needs for ``pipe``: the image-text model's text tower
        with semantic features (the prompt kernel lives in the same model), else None (the
        pipeline's own text encoder)."""
        if not self.semantic:
            return None
        self.resolve_features(pipe)
        return self.features.encode_prompts

    def __repr__(self) -> str:
        return (f"SparkeGuidance(objective={self.objective!r}, sigma_image={self.sigma_image}, "
                f"sigma_text={self.sigma_text}, scale={self.scale}, every={self.every}, "
                f"window={self.window}, normalize={self.normalize!r}, bank={self.bank!r})")

    @classmethod
    def recommended(cls, family: str, **overrides) -> "SparkeGuidance":
        """Guidance with the measured settings for ``family`` ("toy2d", "digits",
        "stable-diffusion"); keyword ``overrides`` win. See docs/guidance.md."""
        if family not in RECOMMENDED:
            raise ValueError(f"no recommended settings for {family!r}; known: {sorted(RECOMMENDED)}")
        return cls(**{**RECOMMENDED[family], **overrides})

    def reset(self) -> None:
        """Empty the bank in place (the same object the guidance holds)."""
        self.bank.clear()

    def generate(self, pipe, prompts, **kwargs):
        """Generate with this guidance (see :func:`sparke_lab.guidance.generate`)."""
        return _generate(pipe, prompts, self, **kwargs)

    # ---------------------------------------------------------------- features
    def featurize(self, latents: torch.Tensor) -> Tuple[torch.Tensor, Callable]:
        """Features ``F`` (B, D) float32 of ``latents`` and the pull-back ``dL/dF -> dL/dz``."""
        z = latents.detach().float().reshape(latents.shape[0], -1)
        if self.semantic:
            if self._pipe is None or not isinstance(self.features, ClipFeatures):
                raise ValueError("semantic features are computed inside a pipeline call (they decode "
                                 "the predicted clean sample with its VAE): use generate() or "
                                 "pipe(..., callback_on_step_end=guidance)")
            ctx, self._x0_ctx = self._x0_ctx, None
            return semantic_features(self.features, self._pipe, latents, ctx)
        if callable(self.features):
            zz = latents.detach().float().clone().requires_grad_(True)
            with torch.enable_grad():
                F = self.features(zz)
                F = F.reshape(F.shape[0], -1).float()

            def pull(gF):
                (g,) = torch.autograd.grad(F, zz, grad_outputs=gF.to(F.dtype))
                return g.reshape(z.shape)
            return F.detach(), pull
        if self.features == "raw":
            return z, (lambda gF: gF)
        ctx, self._x0_ctx = self._x0_ctx, None
        if ctx is not None and ctx[0].shape == latents.shape:
            # predicted clean sample x0 ~ (z - sqrt(1 - a) eps) / sqrt(a), eps held fixed:
            # d f / d z = (I - f f^T) / (|x0| sqrt(a))
            dz = ctx[1]
            f0, n0 = sphere_features(ctx[0].reshape(z.shape))
            return f0, (lambda gF: sphere_pullback(gF, f0, n0) * dz)
        f, nz = sphere_features(z)
        return f, (lambda gF: sphere_pullback(gF, f, nz))

    # ---------------------------------------------------------------- objectives
    def _rke_loss_grad(self, F: torch.Tensor, T: Optional[torch.Tensor], peers=None):
        Tq = T if self.conditional else None
        kw = dict(kernel=self.kernel, sigma=self.sigma_image, kernel_t=self.kernel_text,
                  sigma_t=self.sigma_text)
        loss, grad = bank_loss_grad(self.bank, F, Tq, **kw)
        rows = len(self.bank)
        if self.reference is not None and len(self.reference):
            l2, g2 = bank_loss_grad(self.reference, F, Tq, **kw)
            loss, grad, rows = loss + l2, grad + g2, rows + len(self.reference)
        Fp, Tp, start = peers if peers is not None else (F, Tq, 0)  # the whole round's samples
        if self.in_batch and Fp.shape[0] > 1:
            l3, g3 = peer_loss_grad(Fp, Tp, F, Tq, start, **kw)
            loss, grad = loss + l3, grad + g3
            rows += Fp.shape[0] - 1
        if self.kernel == "gaussian" and rows > 0:
            R = max([float(b.squared_norms.max().sqrt()) for b in (self.bank, self.reference)
                     if b is not None and len(b) and b.kind == "exact"]
                    + [float(torch.linalg.vector_norm(Fp, dim=1).max())])
            grad = drop_roundoff(grad, loss, F, R, self.sigma_image, max(rows, 1))
        self._gate = None
        if self.normalize == "gated":
            self._gate = torch.ones_like(loss) if Tq is None else prompt_gate(loss, self._mass(F, Fp))
        return loss, grad, rows

    def _mass(self, F: torch.Tensor, Fp: torch.Tensor) -> torch.Tensor:
        """``sum_i k_X(x_i, f)^2`` over every row the loss sums (bank, reference, peers without
        the self-pair): the loss with all prompt weights 1."""
        m = bank_kernel_mass(self.bank, F, self.kernel, self.sigma_image)
        if self.reference is not None and len(self.reference):
            m = m + bank_kernel_mass(self.reference, F, self.kernel, self.sigma_image)
        if self.in_batch and Fp.shape[0] > 1:
            m = m + kernel_mass(Fp, F, self.kernel, self.sigma_image) - 1.0  # k(f, f)^2 = 1
        return m

    def _vendi_loss_grad(self, F: torch.Tensor, T: Optional[torch.Tensor], peers=None):
        """``-H_1`` of the (joint) kernel of bank + reference + batch and its gradient w.r.t.
        the batch rows (:func:`~.objectives.vendi_loss_grad`). O(N^2 D + N^3)."""
        Xs, Ts = [], []
        for b in (self.bank, self.reference):
            if b is not None and len(b):
                Xs.append(b.features.to(F.device, F.dtype))
                if self.conditional:
                    Ts.append(b.prompt_features.to(F.device, F.dtype))
        Fp, Tp, start = peers if peers is not None else (F, T, 0)  # the whole round's samples
        Xs.append(Fp)
        if self.conditional:
            Ts.append(Tp)
        X = torch.cat(Xs).double()
        N = X.shape[0]
        first = N - Fp.shape[0] + start                          # this process's rows
        loss, grad = vendi_loss_grad(X, torch.cat(Ts).double() if self.conditional else None,
                                     first, F.shape[0], self.kernel, self.sigma_image,
                                     self.kernel_text, self.sigma_text)
        return loss.to(F.dtype), grad.to(F.dtype), N - 1

    def loss_and_grad(self, F: torch.Tensor, T: Optional[torch.Tensor] = None, peers=None):
        """Per-sample loss and its gradient w.r.t. the features ``F`` (B, D), plus the row count.

        ``peers``: ``(F_all, T_all, start)``, the round's samples on all processes (see
        :meth:`gather_batch`) with ``F == F_all[start:start + B]``; default: ``F`` itself."""
        if self.conditional and T is None:
            raise ValueError(f"objective {self.objective!r} needs prompt features: use "
                             "generate(), set_prompts(pipe, prompts) or set_prompt_features(T)")
        if self.objective in ("vendi", "cond-vendi"):
            return self._vendi_loss_grad(F, T, peers)
        return self._rke_loss_grad(F, T, peers)

    # ---------------------------------------------------------------- the step
    def guide_latents(self, latents: torch.Tensor, T: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One guidance update of ``latents`` (B, ...) in float32, cast back to their dtype.

        Samples whose gradient is NaN/Inf are left unchanged (with a warning).
        """
        B = latents.shape[0]
        z = latents.detach().float().reshape(B, -1)
        self._gate = None
        F, pull = self.featurize(latents)
        if T is not None:
            T = T.to(F.device, torch.float32)
        # rows with NaN/Inf features neither move nor repel the others
        valid = torch.isfinite(F).all(1)
        nv = int(valid.sum())
        Tv = None if T is None else T[valid]
        loss = torch.full((B,), float("nan"), device=F.device)
        gF = torch.full_like(F, float("nan"))
        rows = 0
        if self.group is not None and self.group.distributed:
            # every rank computes the objective of the whole round (the same shapes and
            # reduction order as one process holding the round) and keeps its own rows
            Fa, Ta, start = self.gather_batch(F[valid], Tv if self.conditional else None)
            if nv:
                la, ga, rows = self.loss_and_grad(Fa, Ta, (Fa, Ta, 0))
                loss[valid], gF[valid] = la[start:start + nv], ga[start:start + nv]
        elif nv:
            loss[valid], gF[valid], rows = self.loss_and_grad(F[valid], Tv)
        if rows == 0 or self.scale == 0.0:
            return latents
        g = pull(torch.nan_to_num(gF, nan=0.0, posinf=0.0, neginf=0.0)).reshape(B, -1)
        g = torch.where(valid[:, None], g, torch.full_like(g, float("nan")))
        ok = torch.isfinite(g).all(1) & torch.isfinite(loss)
        if not bool(ok.all()):
            self.n_skipped += int((~ok).sum())
            warnings.warn(f"SPARKE: non-finite gradient for {int((~ok).sum())} of {B} samples; "
                          "their guidance step is skipped", RuntimeWarning, stacklevel=2)
            g = torch.where(ok[:, None], g, torch.zeros_like(g))
        gate = self._gate
        if gate is not None and not bool(valid.all()):
            full = torch.zeros(B, device=gate.device, dtype=gate.dtype)
            full[valid] = gate
            gate = full
        step = guidance_step(g, z, self.scale, self.normalize, rows, gate=gate)
        self.last_stats = {"loss": float(loss.mean()), "step_norm": float(step.norm(dim=1).mean()),
                           "rows": float(rows)}
        if gate is not None:
            self.last_stats["gate"] = float(gate.mean())
        return apply_update(latents, z - step, "SPARKE")

    def _prompts_for(self, latents: torch.Tensor, callback_kwargs: Dict[str, Any]) -> Optional[torch.Tensor]:
        B = latents.shape[0]
        T = self._prompt_features
        if T is not None:
            if T.shape[0] != B:
                if B % T.shape[0] == 0:
                    T = T.repeat_interleave(B // T.shape[0], dim=0)
                else:
                    raise ValueError(f"{T.shape[0]} prompt features for a batch of {B} latents")
            return T.to(latents.device)
        emb = callback_kwargs.get("prompt_embeds")
        if self.semantic:  # the prompt kernel lives in the image-text model: set_prompts() gives it
            return None
        if emb is not None and (self.conditional or self.bank.has_prompts or len(self.bank) == 0):
            return pool_prompt_embeds(emb, B).to(latents.device)
        return None

    def apply(self, pipeline, step_index, total, timestep, callback_kwargs):
        latents = callback_kwargs["latents"]
        self._pipe = pipeline
        self.resolve_features(pipeline)
        T = self._prompts_for(latents, callback_kwargs)
        if self.scale > 0 and self.acts_on(step_index, total):
            has_rows = len(self.bank) > 0 or (self.reference is not None and len(self.reference) > 0) \
                or (self.in_batch and latents.shape[0] > 1) or (self.group is not None and self.group.distributed)
            if self.needs_x0 and has_rows:
                self._x0_ctx = self._predict_x0(pipeline, step_index, latents, callback_kwargs)
            latents = self.guide_latents(latents, T)
            callback_kwargs["latents"] = latents
        if step_index == total - 1 and self.update_bank:
            self._add_finished(latents, T)
        return callback_kwargs

    def _predict_x0(self, pipe, step_index, latents, callback_kwargs):
        """:func:`~sparke_lab.guidance.pipelines.predict_clean_latents` (one extra denoiser call)."""
        return predict_clean_latents(pipe, step_index, latents, callback_kwargs)

    def _add_finished(self, latents: Optional[torch.Tensor], T: Optional[torch.Tensor]) -> None:
        """Add the finished samples to the bank; on several processes every rank's finished
        samples, in rank order (``latents`` None: this rank finished none this round)."""
        F = None
        if latents is not None:
            F, _ = self.featurize(latents)
            ok = torch.isfinite(F).all(1)
            if not bool(ok.all()):
                warnings.warn(f"SPARKE: {int((~ok).sum())} finished samples have NaN/Inf features "
                              "and are not added to the bank", RuntimeWarning, stacklevel=2)
                F = F[ok]
                T = None if T is None else T[ok]
        bank = self.bank
        # the prompt features the bank takes: decided by the bank, so the same on every rank
        if isinstance(bank, SketchBank):
            keep_T = bank.conditional
        else:
            keep_T = len(bank) == 0 or bank.has_prompts
            if len(bank) > 0 and keep_T and T is None and F is not None:
                raise ValueError("the bank stores prompt features but none are known for these "
                                 "samples: use generate() or set_prompts()")
        T = T.detach().float() if (keep_T and T is not None) else None
        if self.group is not None and self.group.distributed:
            if isinstance(bank, SketchBank) and self.group.sketch_sync == "sum":
                bank.add_all_ranks(F, T, self.group)
                return
            F, T, _ = self.gather_batch(F, T, tag="bank")
        if F is None or F.shape[0] == 0:
            return
        bank.add(F.detach(), T)

    def idle_round(self, total: int) -> None:
        """The collectives of one round of ``total`` steps, without samples on this rank."""
        if self.group is None or not self.group.distributed:
            return
        for i in range(int(total)):
            self._step = i
            if self.scale > 0 and self.acts_on(i, total):  # guide_latents gathers the round
                self.gather_batch(None, None)
        if self.update_bank:
            self._add_finished(None, None)
