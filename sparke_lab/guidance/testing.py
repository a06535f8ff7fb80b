"""Tiny random pipelines built from config (no weights, no network) for tests and demos.

``tiny_pipeline("sd" | "sdxl" | "pixart")`` returns a stock diffusers pipeline of that
family whose components are a few thousand parameters: enough to check that guidance hooks
in, moves latents, fills its bank and handles dtypes, in well under a second per call.
The images mean nothing. Taught in: 09_stable_diffusion_on_gpu (the same code on real weights).
"""
from __future__ import annotations

import torch

def tiny_clip_tokenizer(max_length: int = 16):
    """A character-level ``CLIPTokenizer`` (byte-level alphabet, no merges), built in memory."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = []  # character-level: enough for tests
    return CLIPTokenizer(vocab=vocab, merges=merges, unk_token="<|endoftext|>",
                         model_max_length=max_length)


def _clip_text(tok, hidden=32, projection=False, proj_dim=32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=tok.model_max_length, projection_dim=proj_dim,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1)
    torch.manual_seed(0)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()



def tiny_clip_model(tok, image_size: int = 16, proj_dim: int = 16):
    """A seeded ``transformers.CLIPModel`` (3-channel ViT, 4x4 patches, width 32) on ``tok``'s
    vocabulary: the semantic-guidance path of a real CLIP checkpoint, in miniature."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4,
                          max_position_embeddings=tok.model_max_length, projection_dim=proj_dim,
                          bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = CLIPVisionConfig(image_size=image_size, patch_size=4, num_channels=3, hidden_size=32,
                              intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              projection_dim=proj_dim)
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=proj_dim)
    return CLIPModel(cfg).eval()


def _tiny_unet(cls, **kw):
    """A seeded 8x8, 4-channel UNet of two small blocks; ``kw`` sets the family's blocks."""
    torch.manual_seed(0)
    return cls(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
               block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=4, **kw).eval()

def _vae(sample_size=16):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                         up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                         block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
                         norm_num_groups=8, sample_size=sample_size).eval()


def tiny_pipeline(family: str = "sd", scheduler: str = "ddim"):
    """A stock pipeline of ``family`` ("sd", "sdxl", "pixart") with tiny random components.

    Images are 16x16 (latents 4x8x8). ``scheduler``: "ddim", "euler", "dpm" or "heun".
    """
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                           HeunDiscreteScheduler)

    sched_cls = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler,
                 "dpm": DPMSolverMultistepScheduler, "heun": HeunDiscreteScheduler}[scheduler]
    extra = {"clip_sample": False, "steps_offset": 1} if scheduler == "ddim" else {"steps_offset": 1}
    sched = sched_cls(num_train_timesteps=1000, beta_schedule="scaled_linear",
                      beta_start=0.00085, beta_end=0.012, **extra)
    tok = tiny_clip_tokenizer()
    if family == "sd":
        from diffusers import StableDiffusionPipeline, UNet2DConditionModel

        unet = _tiny_unet(UNet2DConditionModel, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32)
        pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=_clip_text(tok), tokenizer=tok,
                                       unet=unet, scheduler=sched, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    elif family == "sdxl":
        from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

        unet = _tiny_unet(UNet2DConditionModel, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                          up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
                          addition_embed_type="text_time", addition_time_embed_dim=8,
                          projection_class_embeddings_input_dim=32 + 6 * 8,
                          transformer_layers_per_block=1)
        pipe = StableDiffusionXLPipeline(vae=_vae(), text_encoder=_clip_text(tok), tokenizer=tok,
                                         text_encoder_2=_clip_text(tok, projection=True),
                                         tokenizer_2=tok, unet=unet, scheduler=sched,
                                         force_zeros_for_empty_prompt=True)
    elif family == "pixart":
        from diffusers import PixArtSigmaPipeline, PixArtTransformer2DModel
        from transformers import T5Config, T5EncoderModel

        torch.manual_seed(0)
        te = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64,
                                     num_layers=2, num_heads=4, pad_token_id=1,
                                     decoder_start_token_id=0)).eval()
        tr = PixArtTransformer2DModel(sample_size=8, num_layers=1, patch_size=2,
                                      attention_head_dim=8, num_attention_heads=2,
                                      caption_channels=32, in_channels=4, out_channels=8,
                                      cross_attention_dim=16, norm_type="ada_norm_single",
                                      use_additional_conditions=False).eval()
        pipe = PixArtSigmaPipeline(tokenizer=tok, text_encoder=te, vae=_vae(), transformer=tr,
                                   scheduler=sched)
    else:
        raise ValueError(f"unknown family {family!r}; use 'sd', 'sdxl' or 'pixart'")
    pipe.set_progress_bar_config(disable=True)
    return pipe
