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
    x = images.float()
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
    return F.normalize(model.visual_projection(pooled).float(), dim=-1)


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
