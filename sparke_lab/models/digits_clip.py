"""The digits image-text encoder: a tiny ``transformers.CLIPModel``, our stand-in for CLIP.

SPARKE guides either in the latent space or in an "ambient" semantic space (the paper's Table
5): features of the predicted clean image from an image-text model, with prompt features from
the same model's text tower. For the digits mini-SD that model is trained here:

- a real ``CLIPModel`` built from config: a ViT image tower (16x16 grey images, 4x4 patches,
  width 64, 3 layers) and a text tower (the caption tokenizer of the digits model, width 64,
  2 layers), both projected to 32-d and L2-normalised;
- trained contrastively on the training split of the digits with the captions: each image
  against every training caption (its six single-digit phrasings share most of the target,
  the broad captions it satisfies the rest), each caption against the batch's images it is
  true of. So images cluster by digit and a broad caption sits among its valid digits.

It is deliberately *not* the judge: another architecture (ViT vs CNN), objective
(contrastive vs classification) and seed, so guidance and evaluation do not share a feature
space. The same loading path serves a real CLIP checkpoint (``CLIPModel`` plus its
processor's normalisation): :class:`sparke_lab.guidance.ClipFeatures`.

Folder ``sparke_lab/data/digits-clip``: ``config.json`` + ``model.safetensors`` (a ``CLIPModel``
``save_pretrained`` layout), ``tokenizer/``, ``preprocessor_config.json`` (image size, mean,
std) and ``train_report.json``. Load with :func:`load_digits_clip`, rebuild with
``sparke-lab train clip``. Used in notebook 08_guided_generation_digits.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import pick_device, set_seed
from ._common import (PathLike, corrupted_checkpoint, missing_checkpoint, model_dir, torch_threads,
                      train_dir)
from .captions import BROAD_CLUSTERS, DIGIT_WORDS, all_prompts, training_captions
from .digits_data import IMAGE_SIZE, augment_digits, digits_arrays

#: Token length of the captions (the digits tokenizer's).
MAX_TOKENS = 16
#: Image normalisation of the tower's input (grey images in [0, 1]).
IMAGE_MEAN, IMAGE_STD = 0.5, 0.5
#: Share of each image's target on its single-digit captions (the rest: its broad captions).
SINGLE_SHARE = 0.8


@dataclass
class DigitsClip:
    """A loaded image-text encoder: the ``CLIPModel``, its tokenizer and image normalisation.

    ``image_features(images)`` takes (B,1,16,16) in [0,1] (differentiable), ``text_features(
    prompts)`` a list of strings; both return L2-normalised (B, 32) float32 tensors.
    """

    model: "torch.nn.Module"
    tokenizer: object
    image_size: int = IMAGE_SIZE
    image_mean: Sequence[float] = (IMAGE_MEAN,)
    image_std: Sequence[float] = (IMAGE_STD,)
    info: Optional[dict] = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        from ..guidance.semantic import clip_image_features

        return clip_image_features(self.model, images, self.image_size, self.image_mean,
                                   self.image_std)

    @torch.no_grad()
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        from ..guidance.semantic import clip_text_features

        return clip_text_features(self.model, self.tokenizer, list(prompts))

    @torch.no_grad()
    def zero_shot(self, images: torch.Tensor) -> np.ndarray:
        """The digit whose "a handwritten <digit>" caption is closest to each image."""
        T = self.text_features([f"a handwritten {w}" for w in DIGIT_WORDS])
        return (self.image_features(images.to(self.device)) @ T.T).argmax(1).cpu().numpy()


def _build_model(tokenizer, seed: int):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    torch.manual_seed(seed)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4,
                          max_position_embeddings=MAX_TOKENS, projection_dim=32,
                          bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=4, num_channels=1, hidden_size=64,
                              intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                              projection_dim=32)
    cfg = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    return CLIPModel(cfg)


def _targets(valid: np.ndarray, kinds: Sequence[str]) -> torch.Tensor:
    """(10, C) image->caption target distributions: for digit d, SINGLE_SHARE spread over its
    single-digit captions, the rest over the broad captions it satisfies."""
    C = len(kinds)
    tgt = np.zeros((10, C))
    single = np.array([k == "single" for k in kinds])
    for d in range(10):
        s = single & (valid[:, d] > 0)
        b = ~single & (valid[:, d] > 0)
        tgt[d, s] = SINGLE_SHARE / s.sum()
        tgt[d, b] = (1 - SINGLE_SHARE) / b.sum()
    return torch.from_numpy(tgt).float()


def train_digits_clip(out_dir: Optional[PathLike] = None, quick: bool = False, seed: int = 1,
                      epochs: Optional[int] = None, batch_size: int = 128,
                      progress: bool = True, threads: Optional[int] = 1) -> Dict:
    """Train the digits image-text encoder and save it (default: ``digits-clip`` under the user data
    folder, see :func:`sparke_lab.models._common.train_dir`).

    Contrastive training on the 1347 training digits (augmented: affine jitter and noise)
    against all 75 captions (the null caption excluded), symmetric: image->caption with soft
    targets (:data:`SINGLE_SHARE` on the image's single-digit captions, the rest on its broad
    ones) and caption->image with the batch's images the caption is true of as positives.
    ``quick``: two epochs (seconds, for tests). Returns a report with the zero-shot accuracy
    on the 450 held-out digits ("a handwritten <digit>" captions) and the training time. Run
    by ``sparke-lab train clip``; used in notebook 08_guided_generation_digits.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ..guidance.semantic import clip_text_embeds
    from .digits import _write_classic_tokenizer_files, build_tokenizer

    out = train_dir("digits-clip", out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    epochs = epochs or (2 if quick else 60)
    with torch_threads(threads):
        tokenizer = build_tokenizer()
        model = _build_model(tokenizer, seed)
        caps, valid = training_captions()
        caps, valid = caps[1:], valid[1:]  # no null caption
        kinds = [p.kind for p in all_prompts()]
        ids = tokenizer(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
        img_tgt = _targets(valid, kinds)
        valid_t = torch.from_numpy(valid)
        x_tr, y_tr = digits_arrays("train")
        x_te, y_te = digits_arrays("test")
        y_t = torch.from_numpy(y_tr)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
        steps = epochs * ((len(x_tr) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps,
                                                    pct_start=0.1)
        digits = DigitsClip(model, tokenizer)
        t0 = time.perf_counter()
        model.train()
        for _ in tqdm(range(epochs), desc="clip", disable=not progress):
            perm = torch.randperm(len(x_tr), generator=g)
            for s in range(0, len(x_tr), batch_size):
                idx = perm[s:s + batch_size]
                fi = digits.image_features(augment_digits(x_tr[idx], g))
                ft = clip_text_embeds(model, ids)
                logits = model.logit_scale.exp().clamp(max=100) * fi @ ft.T  # (B, C)
                y = y_t[idx]
                loss_i = -(img_tgt[y] * F.log_softmax(logits, 1)).sum(1).mean()
                pos = valid_t[:, y].T  # (B, C): caption c is true of image b
                has = pos.sum(0) > 0
                tgt_t = pos[:, has] / pos[:, has].sum(0, keepdim=True)
                loss_t = -(tgt_t * F.log_softmax(logits[:, has], 0)).sum(0).mean()
                loss = 0.5 * (loss_i + loss_t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        train_s = time.perf_counter() - t0
        model.eval().requires_grad_(False)
        acc = float((digits.zero_shot(x_te) == y_te).mean())
        # broad captions: does each sit closest to its valid digits?
        T = digits.text_features(caps)
        cent = torch.stack([F.normalize(digits.image_features(x_tr[y_tr == d]).mean(0), dim=0)
                            for d in range(10)])
        sims = (T @ cent.T).numpy()
        broad_ok = [bool(np.all(sims[i, valid[i] > 0].min() > sims[i, valid[i] == 0].max(initial=-np.inf)))
                    for i, k in enumerate(kinds) if k == "broad"]
    report = {"zero_shot_test_accuracy": round(acc, 4), "epochs": epochs, "seed": seed,
              "batch_size": batch_size, "quick": quick, "train_seconds": round(train_s, 1),
              "broad_captions_nearest_to_their_digits": round(float(np.mean(broad_ok)), 3),
              "final_loss": round(float(loss.item()), 4),
              "n_params": int(sum(p.numel() for p in model.parameters())),
              "image_size": IMAGE_SIZE, "embedding_dim": 32}
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    _write_classic_tokenizer_files(tokenizer, out / "tokenizer")
    (out / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "image_mean": [IMAGE_MEAN],
         "image_std": [IMAGE_STD], "do_convert_rgb": False}, indent=2) + "\n")
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    report["out_dir"] = str(out)
    return report


def load_digits_clip(device=None, path: Optional[PathLike] = None) -> DigitsClip:
    """Load the shipped digits image-text encoder (``digits-clip`` of :func:`data_dir`, or ``path``).

    Returns a :class:`DigitsClip` (``model`` is a ``transformers.CLIPModel`` in eval mode with
    frozen weights). A missing or corrupted folder raises FileNotFoundError / RuntimeError
    naming the path and ``sparke-lab train clip``. Used in notebook 08_guided_generation_digits.
    """
    from transformers import CLIPModel, CLIPTokenizer

    from .digits import _quiet_loading

    folder = model_dir("digits-clip", path)
    for name in ("config.json", "model.safetensors", "tokenizer", "preprocessor_config.json"):
        if not (folder / name).exists():
            raise missing_checkpoint("digits-clip", folder / name, f"image-text encoder part {name!r}")
    try:
        with _quiet_loading():
            model = CLIPModel.from_pretrained(str(folder), local_files_only=True)
            tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
        pre = json.loads((folder / "preprocessor_config.json").read_text())
        info = json.loads((folder / "train_report.json").read_text()) \
            if (folder / "train_report.json").is_file() else {}
    except Exception as exc:  # OSError, ValueError, JSON and safetensors errors
        raise corrupted_checkpoint("digits-clip", folder, exc) from exc
    model = model.to(pick_device(device)).eval().requires_grad_(False)
    size = pre.get("crop_size", {}).get("height", IMAGE_SIZE)
    return DigitsClip(model, tok, int(size), tuple(pre["image_mean"]), tuple(pre["image_std"]), info)


__all__ = ["DigitsClip", "train_digits_clip", "load_digits_clip", "BROAD_CLUSTERS"]
