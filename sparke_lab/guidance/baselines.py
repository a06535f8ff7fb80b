"""Baselines SPARKE is compared with, in the same step-end callback form.

* :class:`ParticleGuidance` (Corso et al. 2023): samples of one batch repel each other
  (Gaussian kernel on flattened latents, median-heuristic bandwidth); no memory of earlier
  batches.
* :class:`CADS` (Sadat et al. 2024): condition-annealed sampling, noise added to the prompt
  embedding early in sampling (paper settings tau1 0.6, tau2 0.9, noise 0.25, psi 1).
* :class:`VendiGuidance` (c-VSG style, Hemmat et al. 2024): conditional Vendi guidance over a
  sliding window of the last 150 samples, every 5 steps. O(n^3) per guided step.
* :class:`IntervalGuidance` (Kynkaanniemi et al. 2024): classifier-free guidance only inside
  a window of the run; none at the highest noise levels, where it costs the most diversity.

Taught in: 07_guided_sampling_2d and 08_guided_generation_digits (the comparisons).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ..kernels import check_sigma
from ._base import GuidanceCallback, apply_update, check_scale, generate as _generate
from .objectives import guidance_step, sphere_features, sphere_pullback
from .pipelines import predict_clean_latents
from .semantic import ClipFeatures, resolve_clip_features, semantic_features
from .sparke import SparkeGuidance


class _GenerateMixin:
    def generate(self, pipe, prompts, **kwargs):
        """Generate with this method (see :func:`sparke_lab.guidance.generate`)."""
        return _generate(pipe, prompts, self, **kwargs)


# ----------------------------------------------------------------------- particle guidance
class ParticleGuidance(_GenerateMixin, GuidanceCallback):
    """In-batch repulsion (Particle Guidance) on flattened latents.

    At each guided step every sample moves along ``-grad_{z_i} sum_j k(z_i, z_j)`` with
    ``k = exp(-||z_i - z_j||^2 / h)`` and ``h = median(||z_i - z_j||^2) / log(B)`` (the
    median heuristic of the PG paper). ``normalize="published"`` gives a step of length
    ``scale * ||z||`` (comparable with SPARKE); ``"none"`` the raw ``scale * force``.
    ``features="raw"`` uses the latents as they are (the 2-D toy), ``"latent"`` normalised,
    ``"clip"`` or a :class:`~sparke_lab.guidance.semantic.ClipFeatures` the semantic features
    of the predicted clean image (the force is pulled back to the latent through the VAE
    decoder and the image tower, as for SPARKE). A batch of one has nothing to repel.
    Taught in: 07_guided_sampling_2d.
    """

    def __init__(self, scale: float = 0.03, every: int = 1, window=None,
                 normalize: str = "published", features="latent",
                 bandwidth: Optional[float] = None):
        super().__init__(every=every, window=window)
        if normalize not in ("published", "none"):
            raise ValueError(f"normalize must be 'published' or 'none', got {normalize!r}")
        if not isinstance(features, ClipFeatures) and features not in ("latent", "raw", "clip"):
            raise ValueError(f"features must be 'latent', 'raw', 'clip' or a ClipFeatures, got {features!r}")
        self.scale = check_scale(scale)
        self.normalize = normalize
        self.features = features
        self.bandwidth = None if bandwidth is None else check_sigma(bandwidth, "bandwidth")

    @property
    def tensor_inputs(self):
        return ["latents", "prompt_embeds"] if self.semantic else ["latents"]

    @property
    def semantic(self) -> bool:
        return isinstance(self.features, ClipFeatures) or self.features == "clip"

    def apply(self, pipeline, step_index, total, timestep, callback_kwargs):
        latents = callback_kwargs["latents"]
        B = latents.shape[0]
        if self.scale == 0 or not self.acts_on(step_index, total):
            return callback_kwargs
        z = latents.detach().float().reshape(B, -1)
        pull = None
        if self.semantic:
            self.features = resolve_clip_features(self.features, pipeline)
            ctx = predict_clean_latents(pipeline, step_index, latents, callback_kwargs)
            f, pull = semantic_features(self.features, pipeline, latents, ctx)
        else:
            f, nz = sphere_features(z)
            if self.features == "raw":
                f = z
        fa, _, start = self.gather_batch(f)          # the round's particles on every process
        n = fa.shape[0]
        if n < 2:
            return callback_kwargs
        d2 = torch.cdist(fa, fa).pow(2)
        if self.bandwidth is not None:
            h = 2 * self.bandwidth ** 2
        else:
            off = d2[~torch.eye(n, dtype=torch.bool, device=d2.device)]
            h = float(off.median()) / math.log(n) if n > 2 else float(off.median())
            h = max(h, 1e-12)
        K = torch.exp(-d2 / h)
        K.fill_diagonal_(0.0)                       # no self-repulsion
        # repulsive force = -grad_{f_i} sum_j k_ij = (2 / h) sum_j k_ij (f_i - f_j), for the
        # whole round on every rank (one process's shapes), this process's rows kept
        force = ((2.0 / h) * (K.sum(1, keepdim=True) * fa - K @ fa))[start:start + B]
        if pull is not None:
            force = pull(force)                     # through the decoder and image tower
        elif self.features == "latent":
            force = sphere_pullback(force, f, nz)   # tangent to the sphere, in latent units
        step = guidance_step(force, z, self.scale, self.normalize)
        callback_kwargs["latents"] = apply_update(latents, z + step, "ParticleGuidance")
        return callback_kwargs

    def idle_round(self, total: int) -> None:
        """The particle exchanges of one round, without particles on this rank."""
        if self.group is None or not self.group.distributed or self.scale == 0:
            return
        for i in range(int(total)):
            self._step = i
            if self.acts_on(i, total):
                self.gather_batch(None)


# ----------------------------------------------------------------------------- CADS
class CADS(_GenerateMixin, GuidanceCallback):
    """Condition-annealed diffusion sampling: noise on the prompt embedding early on.

    With ``s = 1 - (i + 1) / total`` the normalised time of the next step (1 = pure noise),
    ``gamma(s)`` is 1 for ``s <= tau1``, 0 for ``s >= tau2`` and linear between; the positive
    prompt embedding ``y`` becomes ``sqrt(gamma) y + noise_scale sqrt(1 - gamma) eps``, then
    (``rescale`` psi) its mean and std are restored: ``psi * rescaled + (1 - psi) * noisy``.
    The negative (unconditional) half of a CFG batch is left clean. Paper settings: tau1 0.6,
    tau2 0.9, noise 0.25, psi 1. The first step runs with the clean condition (a step-end
    callback acts from step 1 on). Needs ``prompt_embeds`` in the callback inputs (SD, SDXL).
    Taught in: 08_guided_generation_digits.
    """

    def __init__(self, tau1: float = 0.6, tau2: float = 0.9, noise_scale: float = 0.25,
                 rescale: float = 1.0, seed: int = 0):
        super().__init__(every=1)
        if not (0.0 <= tau1 < tau2 <= 1.0):
            raise ValueError(f"need 0 <= tau1 < tau2 <= 1, got tau1={tau1}, tau2={tau2}")
        self.tau1, self.tau2 = float(tau1), float(tau2)
        self.noise_scale = check_scale(noise_scale, "noise_scale")
        self.rescale = float(rescale)
        if not 0.0 <= self.rescale <= 1.0:
            raise ValueError(f"rescale (psi) must lie in [0, 1], got {rescale}")
        self.seed = int(seed)
        self._gen: Optional[torch.Generator] = None
        self._sample_seeds: Optional[list] = None
        self._sample_gens: Optional[list] = None
        self._clean: Optional[torch.Tensor] = None

    def set_sample_seeds(self, seeds) -> None:
        """One noise stream per sample of the next pipeline call (e.g. seeded by its image
        index), so a sample's noise does not depend on the batch it shares, the process it
        runs on, or a resume. ``None``: one stream for all (seeded by ``seed``)."""
        self._sample_seeds = None if seeds is None else [int(x) for x in seeds]

    @property
    def tensor_inputs(self):
        return ["latents", "prompt_embeds"]

    def gamma(self, s: float) -> float:
        """Condition weight at normalised time ``s`` (1 = noise, 0 = data)."""
        if s <= self.tau1:
            return 1.0
        if s >= self.tau2:
            return 0.0
        return (self.tau2 - s) / (self.tau2 - self.tau1)

    def on_start(self, pipeline, callback_kwargs):
        emb = callback_kwargs.get("prompt_embeds")
        self._clean = None if emb is None else emb.detach().clone()
        dev = emb.device if emb is not None else torch.device("cpu")
        if self._sample_seeds is not None:
            self._sample_gens = [torch.Generator(device=dev).manual_seed(x) for x in self._sample_seeds]
        elif self._gen is None:
            self._gen = torch.Generator(device=dev).manual_seed(self.seed)

    def apply(self, pipeline, step_index, total, timestep, callback_kwargs):
        emb = callback_kwargs.get("prompt_embeds")
        if emb is None or self._clean is None or step_index >= total - 1:
            return callback_kwargs
        if emb.shape != self._clean.shape:  # another callback changed the batch layout
            return callback_kwargs
        B = callback_kwargs["latents"].shape[0]
        y = self._clean.float()
        start = B if y.shape[0] == 2 * B else 0                 # positive half under CFG
        yc = y[start:]
        s = 1.0 - (step_index + 1) / total
        g = self.gamma(s)
        if g >= 1.0:
            new = yc
        else:
            if self._sample_seeds is not None:
                if len(self._sample_gens) != yc.shape[0]:
                    raise ValueError(f"CADS: {len(self._sample_gens)} sample seeds for a batch of {yc.shape[0]}")
                eps = torch.stack([torch.randn(yc.shape[1:], generator=q, device=q.device)
                                   for q in self._sample_gens]).to(yc.device)
            else:
                eps = torch.randn(yc.shape, generator=self._gen, device=self._gen.device).to(yc.device)
            noisy = math.sqrt(g) * yc + self.noise_scale * math.sqrt(1.0 - g) * eps
            if self.rescale > 0:
                dims = tuple(range(1, yc.ndim))
                mu, sd = yc.mean(dims, keepdim=True), yc.std(dims, keepdim=True)
                nmu, nsd = noisy.mean(dims, keepdim=True), noisy.std(dims, keepdim=True)
                rescaled = (noisy - nmu) / nsd.clamp_min(1e-12) * sd + mu
                noisy = self.rescale * rescaled + (1.0 - self.rescale) * noisy
            new = noisy
        out = torch.cat([y[:start], new]) if start else new
        callback_kwargs["prompt_embeds"] = apply_update(emb, out, "CADS")
        return callback_kwargs


# ------------------------------------------------------------------------ c-VSG style
class VendiGuidance(SparkeGuidance):
    """c-VSG-style Vendi guidance: order-1 (conditional) Vendi of a sliding window + batch.

    A :class:`SparkeGuidance` with ``objective="cond-vendi"``, a window of the newest
    ``window_size`` (150) bank samples, guidance every 5 steps. Each guided step
    eigendecomposes the (window + batch)^2 kernel: O(n^3), which is why c-VSG needs the window.
    Taught in: 08_guided_generation_digits (cost comparison).
    """

    def __init__(self, objective: str = "cond-vendi", scale: float = 0.05, every: int = 5,
                 window_size: int = 150, **kwargs):
        if objective not in ("vendi", "cond-vendi"):
            raise ValueError("VendiGuidance objectives are 'vendi' and 'cond-vendi'")
        kwargs.setdefault("max_bank_size", window_size)
        super().__init__(objective=objective, scale=scale, every=every, **kwargs)


# ------------------------------------------------------------------- interval guidance
#: classifier-free guidance "off" that keeps the pipeline's doubled CFG batch layout
_CFG_OFF = 1.0 + 1e-6


class IntervalGuidance(_GenerateMixin, GuidanceCallback):
    """Classifier-free guidance only for steps with ``start <= i / total < end``.

    Outside the interval the pipeline's guidance scale is set to ``1 + 1e-6`` (the conditional
    prediction; the batch layout of CFG stays valid). ``interval`` default (0.2, 1.0): no CFG
    during the first 20 % of the steps (highest noise), where it reduces diversity most.
    Works on pipelines that read ``_guidance_scale`` each step (SD, SDXL); use it through
    :func:`~sparke_lab.guidance.generate` so the first step is set up too.
    Taught in: 08_guided_generation_digits.
    """

    def __init__(self, guidance_scale: float = 7.5, interval: Tuple[float, float] = (0.2, 1.0)):
        super().__init__(every=1, window=interval)
        self.guidance_scale = check_scale(guidance_scale, "guidance_scale")
        if self.guidance_scale <= 1.0:
            raise ValueError("interval guidance needs a guidance_scale > 1")

    def scale_at(self, step_index: int, total: int) -> float:
        lo, hi = self.window
        return self.guidance_scale if lo <= step_index / max(total, 1) < hi else _CFG_OFF

    def prepare_call(self, pipe, call: dict) -> dict:
        steps = int(call.get("num_inference_steps", 50))
        call["guidance_scale"] = self.scale_at(0, steps)
        return call

    def apply(self, pipeline, step_index, total, timestep, callback_kwargs):
        if step_index < total - 1 and hasattr(pipeline, "_guidance_scale"):
            pipeline._guidance_scale = self.scale_at(step_index + 1, total)
        return callback_kwargs
