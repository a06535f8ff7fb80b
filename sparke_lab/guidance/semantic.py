"""Semantic ("ambient") features for guidance: an image-text model on the predicted clean image.

Latent repulsion mostly diversifies style: which digit (or object) appears is decided at high
noise, where a latent-space kernel sees mostly noise. The paper's other mode guides on
features of the predicted clean sample ``x0_hat`` decoded to an image, in the space of an
image-text model (its Table 5, "ambient" vs latent), with the prompt kernel on the same
model's text features. This module holds the differentiable pieces, for any
``transformers.CLIPModel`` (a real checkpoint with its processor's normalisation, or the
digits encoder of :mod:`sparke_lab.models.digits_clip`).

Used by :class:`sparke_lab.guidance.ClipFeatures` and in notebook 08_guided_generation_digits.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F


def clip_image_features(model, images: torch.Tensor, image_size: int,
                        mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """L2-normalised image embeddings of ``images`` (B, C, H, W) in [0, 1], differentiable.

    Resizes (bilinear, antialiased when shrinking) to ``image_size``, matches the channel
    count the vision tower expects (grey -> repeated, colour -> mean), normalises with the
    processor's ``mean``/``std`` and projects. Computed in float32.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    cfg = model.config.vision_config
    x = images.double() if images.dtype == torch.float64 else images.float()
    want = int(getattr(cfg, "num_channels", 3))
    if x.shape[1] != want:
        if x.shape[1] == 1:
            x = x.expand(-1, want, -1, -1)
        elif want == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise ValueError(f"the vision tower takes {want} channels, the images have {x.shape[1]}")
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > image_size)
    m = torch.as_tensor(list(mean), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(list(std), dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    dt = next(model.parameters()).dtype
    x = ((x - m) / s).to(dt)
    pooled = model.vision_model(pixel_values=x).pooler_output
    out = model.visual_projection(pooled)
    return F.normalize(out.double() if dt == torch.float64 else out.float(), dim=-1)


def clip_text_embeds(model, input_ids: torch.Tensor) -> torch.Tensor:
    """L2-normalised projected text embeddings (B, d) float32 of token ids (differentiable;
    the text tower's pooled output through ``text_projection``, as CLIP's own)."""
    pooled = model.text_model(input_ids=input_ids).pooler_output
    return F.normalize(model.text_projection(pooled).float(), dim=-1)


@torch.no_grad()
def clip_text_features(model, tokenizer, prompts: List[str]) -> torch.Tensor:
    """L2-normalised text embeddings (B, d) float32 of ``prompts`` (padded to the model's
    maximum length, truncated)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    n_pos = int(model.config.text_config.max_position_embeddings)
    dev = next(model.parameters()).device
    ids = tokenizer(list(prompts), padding="max_length", max_length=n_pos, truncation=True,
                    return_tensors="pt").input_ids.to(dev)
    return clip_text_embeds(model, ids)


class ClipFeatures:
    """Semantic guidance features: an image-text model on the decoded predicted clean image.

    Pass it as ``features=`` to :class:`~sparke_lab.guidance.SparkeGuidance` (and the
    baselines built on it). At a guided step the guidance predicts the clean latent
    ``x0_hat = (z - sqrt(1 - a) eps) / sqrt(a)`` with one extra denoiser call (eps held
    fixed, so ``d x0_hat / d z = 1 / sqrt(a)``), decodes it with the pipeline's VAE, and
    takes the L2-normalised image embedding of ``model``: differentiable end to end (VAE
    decoder and image tower), by autograd. Finished samples enter the bank with the
    embedding of their final image. Prompt features for the prompt kernel come from the same
    model's text tower (:meth:`encode_prompts`), as the paper uses CLIP text features.

    ``model``: a ``transformers.CLIPModel`` (frozen here); ``tokenizer``: its tokenizer;
    ``image_size``, ``image_mean``, ``image_std``: its processor's crop size and
    normalisation (for a hub checkpoint: ``CLIPImageProcessor.from_pretrained(path)``'s
    ``crop_size["height"]``, ``image_mean``, ``image_std``; :meth:`from_pretrained` reads
    them). :meth:`for_digits` gives the shipped digits encoder.

    Taught in: 08_guided_generation_digits (semantic vs latent guidance).
    """

    needs_x0 = True

    def __init__(self, model, tokenizer, image_size: int, image_mean: Sequence[float],
                 image_std: Sequence[float]):
        if int(image_size) < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if len(image_mean) != len(image_std) or any(float(s) <= 0 for s in image_std):
            raise ValueError(f"image_mean and image_std must have the same length and positive "
                             f"stds, got {image_mean} and {image_std}")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)

    def __repr__(self) -> str:
        return (f"ClipFeatures({type(self.model).__name__}, image_size={self.image_size}, "
                f"dim={self.dim})")

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @classmethod
    def for_digits(cls, device=None) -> "ClipFeatures":
        """The shipped digits image-text encoder (:func:`sparke_lab.models.load_digits_clip`)."""
        from ..models import load_digits_clip

        c = load_digits_clip(device=device)
        return cls(c.model, c.tokenizer, c.image_size, c.image_mean, c.image_std)

    @classmethod
    def from_pretrained(cls, path: str, device=None, dtype=None) -> "ClipFeatures":
        """A local ``CLIPModel`` folder (or a hub id already in the cache) with its tokenizer
        and image processor config; no download is attempted here."""
        import json
        from pathlib import Path

        from transformers import AutoTokenizer, CLIPModel

        from ..utils import pick_device

        model = CLIPModel.from_pretrained(path, local_files_only=True,
                                          **({} if dtype is None else {"torch_dtype": dtype}))
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        pre_path = Path(path) / "preprocessor_config.json"
        pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
        crop = pre.get("crop_size", model.config.vision_config.image_size)
        size = crop.get("height", crop) if isinstance(crop, dict) else crop
        mean = pre.get("image_mean", [0.48145466, 0.4578275, 0.40821073])
        std = pre.get("image_std", [0.26862954, 0.26130258, 0.27577711])
        return cls(model.to(pick_device(device)), tok, int(size), mean, std)

    # ------------------------------------------------------------------ features
    def encode_prompts(self, prompts) -> torch.Tensor:
        """(n, d) L2-normalised text features of ``prompts`` (for the prompt kernel).

        Each distinct prompt is encoded alone, so its features are the same bits whatever
        other prompts share the call (matrix products pick their round-off by batch size;
        a run on several processes must agree with one process)."""
        prompts = list(prompts)
        distinct = list(dict.fromkeys(prompts))
        rows = {p: clip_text_features(self.model, self.tokenizer, [p]).cpu() for p in distinct}
        if not prompts:
            return torch.zeros(0, self.dim)
        return torch.cat([rows[p] for p in prompts])

    def decode(self, pipe, x0: torch.Tensor) -> torch.Tensor:
        """The pipeline's VAE decode of clean latents ``x0`` to images in [0, 1] (B, C, H, W),
        differentiable (not clamped, so that the gradient never vanishes at the range's edge)."""
        vae = getattr(pipe, "vae", None)
        if vae is None:
            raise ValueError(f"semantic features need a latent pipeline with a VAE; "
                             f"{type(pipe).__name__} has none")
        sf = float(getattr(vae.config, "scaling_factor", 1.0))
        shift = getattr(vae.config, "shift_factor", None)
        z = x0.to(vae.dtype) / sf
        if shift is not None:
            z = z + float(shift)
        img = vae.decode(z).sample
        return (img.double() if img.dtype == torch.float64 else img.float()) / 2.0 + 0.5

    def image_features(self, pipe, x0: torch.Tensor) -> torch.Tensor:
        """(B, d) L2-normalised embeddings of the decoded ``x0`` latents (differentiable)."""
        img = self.decode(pipe, x0)
        dev = next(self.model.parameters()).device
        return clip_image_features(self.model, img.to(dev), self.image_size, self.image_mean,
                                   self.image_std).to(x0.device)


def semantic_features(features: "ClipFeatures", pipe, latents: torch.Tensor, x0_ctx=None):
    """``(F, pull)``: semantic features of ``latents`` and the pull-back ``dL/dF -> dL/dz``.

    ``x0_ctx`` is :func:`~sparke_lab.guidance.pipelines.predict_clean_latents`'s output at a
    guided step (None at the last step, where the latents are the clean sample). The chain
    rule through the VAE decoder and the image tower is autograd's; the predicted clean
    latent's derivative w.r.t. ``z`` is the scalar the context carries."""
    B = latents.shape[0]
    if x0_ctx is not None and x0_ctx[0].shape == latents.shape:
        x0, dz = x0_ctx
    else:
        x0, dz = latents, 1.0
    leaf = x0.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        if getattr(pipe, "sparke_lab_batch_invariant", False):
            # one row at a time, forward and backward (make_batch_invariant): a sample's
            # features and gradient do not depend on the batch it shares
            F = torch.cat([features.image_features(pipe, leaf[i:i + 1]) for i in range(B)])
        else:
            F = features.image_features(pipe, leaf)

    def pull(gF: torch.Tensor) -> torch.Tensor:
        (g,) = torch.autograd.grad(F, leaf, grad_outputs=gF.to(F.dtype), retain_graph=True)
        return g.reshape(B, -1).float() * dz
    return F.detach(), pull


def resolve_clip_features(features, pipe):
    """``features`` with the string ``"clip"`` turned into the digits pipeline's encoder
    (:meth:`ClipFeatures.for_digits`); any other pipeline needs an explicit
    :class:`ClipFeatures` (a clear error says so). Other values pass through."""
    if isinstance(features, str) and features == "clip":
        if getattr(pipe, "sparke_lab_model", None) != "digits":
            raise ValueError(
                f"features='clip' knows the image-text model of the digits pipeline only; for "
                f"{type(pipe).__name__} pass features=ClipFeatures.from_pretrained('path/to/clip') "
                "(a local transformers CLIPModel folder)")
        return ClipFeatures.for_digits(device=getattr(pipe, "device", None))
    return features

