"""The digits mini-SD: a real diffusers ``StableDiffusionPipeline`` made of tiny components.

Components (all trained here, from scikit-learn's bundled handwritten digits, upsampled from
8x8 to 16x16, white strokes on black):

- tokenizer: a CLIP-style byte-level BPE (``CLIPTokenizer``) whose vocabulary holds every
  caption word as one token; unknown words fall back to byte-level characters (never a
  crash), max length 16;
- text encoder: a 2-layer ``CLIPTextModel`` (width 64), trained jointly with the UNet;
- VAE: an ``AutoencoderKL``, 1x16x16 images <-> 4x8x8 latents;
- UNet: a ``UNet2DConditionModel`` on 4x8x8 latents with cross-attention to the text;
- scheduler: ``DDIMScheduler`` (cosine betas, "leading" spacing, steps_offset 1).

The folder ``sparke_lab/data/digits-sd`` is a standard diffusers layout (model_index.json, tokenizer/,
text_encoder/, vae/, unet/, scheduler/, safetensors weights) loaded offline by
:func:`load_digits_pipeline`. ``sparke-lab train digits`` rebuilds it with
:func:`train_digits`. Used in notebook 08_guided_generation_digits.
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..utils import make_generator, pick_device, pick_dtype, set_seed
from ._common import (PathLike, corrupted_checkpoint, dir_size_bytes, missing_checkpoint,
                      model_dir, torch_threads, train_dir)
from .captions import (Prompt, all_prompts, load_prompt_set, sample_training_pairs,
                       training_captions)
from .digits_data import IMAGE_SIZE, digits_arrays, digits_real_images, random_shift

#: Token length of every prompt (padded / truncated).
MAX_TOKENS = 16

_REQUIRED = ("model_index.json", "tokenizer", "text_encoder", "vae", "unet", "scheduler")


# ---------------------------------------------------------------------------- components
def build_tokenizer(out_dir: Optional[PathLike] = None):
    """Build the caption tokenizer: byte-level BPE with every caption word as one token.

    Returns a ``transformers.CLIPTokenizer`` (max length 16, unknown token ``<|unk|>``, pad =
    ``<|endoftext|>``); with ``out_dir`` it is saved there (tokenizer.json, vocab.json,
    merges.txt) so that ``CLIPTokenizer.from_pretrained(out_dir)`` loads it.
    """
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import CLIPTokenizer

    caps = [p.prompt for p in all_prompts()]
    tok = Tokenizer(BPE(unk_token="<|unk|>", end_of_word_suffix="</w>",
                        continuing_subword_prefix=""))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(),
                                           normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|"""
                                   r"""[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(vocab_size=4000, min_frequency=1, show_progress=False,
                                  special_tokens=["<|startoftext|>", "<|endoftext|>", "<|unk|>"],
                                  initial_alphabet=alphabet, end_of_word_suffix="</w>")
    tok.train_from_iterator(caps * 3, trainer)
    vocab = dict(sorted(tok.get_vocab().items(), key=lambda kv: kv[1]))
    for c in alphabet:  # a word ending in any byte never needs the unknown token
        vocab.setdefault(c + "</w>", len(vocab))
    with contextlib.ExitStack() as stack:
        import tempfile

        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        tok.model.save(tmp)
        merges = [tuple(line.split()) for line in Path(tmp, "merges.txt").read_text().splitlines()
                  if line and not line.startswith("#")]
    ct = CLIPTokenizer(vocab=vocab, merges=merges, unk_token="<|unk|>",
                       model_max_length=MAX_TOKENS)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        ct.save_pretrained(str(out_dir))
        _write_classic_tokenizer_files(ct, out_dir)
    return ct


def _write_classic_tokenizer_files(tokenizer, out_dir: PathLike) -> None:
    """Also write vocab.json / merges.txt (what older transformers' CLIPTokenizer reads)."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    out = Path(out_dir)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def _text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=MAX_TOKENS, projection_dim=64,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(cfg)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=1, out_channels=1,
                         down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                         up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
                         block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
                         norm_num_groups=8, sample_size=IMAGE_SIZE)


def _unet(cross_dim: int = 64):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=8)


def _scheduler_kwargs() -> dict:
    return dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                prediction_type="epsilon", clip_sample=False)


def _inference_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**_scheduler_kwargs(), set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="leading")


# ---------------------------------------------------------------------------- training
def _train_vae(vae, x_train, steps, seed, progress, kl_weight=1e-3):
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps,
                                                pct_start=0.05)
    vae.train()
    bar = tqdm(range(steps), desc="vae", disable=not progress)
    for _ in bar:
        idx = torch.randint(len(x_train), (64,), generator=g)
        x = random_shift(x_train[idx], g) * 2 - 1
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        kl = 0.5 * (post.mean ** 2 + post.var - 1 - post.logvar).mean()
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    vae.eval()
    return float(loss.item())


@torch.no_grad()
def _encode_all(vae, x, g, copies: int):
    """Posterior means and stds of ``copies`` shifted copies of ``x`` (the first unshifted)."""
    means, stds = [], []
    for c in range(copies):
        xs = x if c == 0 else random_shift(x, g)
        for chunk in torch.split(xs * 2 - 1, 256):
            post = vae.encode(chunk).latent_dist
            means.append(post.mean)
            stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def train_digits(out_dir: Optional[PathLike] = None, quick: bool = False, seed: int = 0,
                 vae_steps: Optional[int] = None, unet_steps: Optional[int] = None,
                 batch_size: Optional[int] = None, threads: Optional[int] = 1,
                 progress: bool = True, evaluate: Optional[bool] = None) -> Dict:
    """Train the digits mini-SD from scratch and save a diffusers folder to ``out_dir``.

    Builds the tokenizer, trains the VAE (reconstruction + small KL), then the UNet and the
    text encoder jointly (epsilon loss, 10 % null captions for CFG, an auxiliary head that
    makes the pooled text feature predict the valid digits), keeping an EMA of the weights.
    Writes ``model_index.json``, ``tokenizer/``, ``text_encoder/``, ``vae/``, ``unet/``,
    ``scheduler/`` (safetensors) and ``train_report.json``. Training runs on the CPU with
    ``threads`` torch threads (1 by default: on a small shared CPU one thread is faster than
    two; ``None`` keeps torch's setting). ``quick`` shrinks every stage
    (well under a minute, for tests; the images are then poor). Returns a report dict with
    the stage times, checkpoint size and, with ``evaluate``, a quick quality check when a
    judge is available. Run by ``sparke-lab train digits``; the model is used in notebook
    08_guided_generation_digits.
    """
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from tqdm.auto import tqdm

    out = train_dir("digits-sd", out_dir)
    set_seed(seed)
    vae_steps = vae_steps or (30 if quick else 800)
    unet_steps = unet_steps or (40 if quick else 2500)
    batch_size = batch_size or (32 if quick else 64)
    evaluate = (not quick) if evaluate is None else evaluate
    report: Dict = {"seed": seed, "quick": quick, "vae_steps": vae_steps,
                    "unet_steps": unet_steps, "batch_size": batch_size}
    t_all = time.perf_counter()
    with torch_threads(threads):
        tokenizer = build_tokenizer()
        x_train, y_train = digits_arrays("train")

        # --- VAE
        t0 = time.perf_counter()
        vae = _vae()
        report["vae_final_loss"] = round(_train_vae(vae, x_train, vae_steps, seed, progress), 5)
        g = torch.Generator().manual_seed(seed + 1)
        copies = 1 if quick else 4
        mean, std = _encode_all(vae, x_train, g, copies)
        labels = torch.from_numpy(np.tile(y_train, copies))
        scaling = float(1.0 / mean.std())
        vae.register_to_config(scaling_factor=scaling)
        with torch.no_grad():
            x_test, _ = digits_arrays("test")
            rec = vae.decode(vae.encode(x_test * 2 - 1).latent_dist.mean).sample
            report["vae_test_mse_01"] = round(float(((rec.clamp(-1, 1) + 1) / 2 - x_test)
                                                    .pow(2).mean()), 5)
        report["vae_seconds"] = round(time.perf_counter() - t0, 1)
        report["latent_scaling_factor"] = round(scaling, 4)

        # --- UNet + text encoder
        t0 = time.perf_counter()
        text_encoder, unet = _text_encoder(tokenizer), _unet()
        aux_head = torch.nn.Linear(text_encoder.config.hidden_size, 10)
        caps, valid = training_captions()
        ids = tokenizer(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
        valid_t = torch.from_numpy(valid)
        target_dist = valid_t / valid_t.sum(1, keepdim=True)
        ddpm = DDPMScheduler(**_scheduler_kwargs())
        abar = ddpm.alphas_cumprod
        params = list(unet.parameters()) + list(text_encoder.parameters()) + \
            list(aux_head.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
        lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=unet_steps,
                                                       pct_start=0.05)
        ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
        for p in list(ema_unet.parameters()) + list(ema_te.parameters()):
            p.requires_grad_(False)
        rng = np.random.default_rng(seed)
        pool = [np.flatnonzero(labels.numpy() == d) for d in range(10)]
        unet.train()
        text_encoder.train()
        bar = tqdm(range(unet_steps), desc="unet", disable=not progress)
        for step in bar:
            img_idx, cap_idx = sample_training_pairs(pool, batch_size, rng)
            idx, cap_idx = torch.from_numpy(img_idx), torch.from_numpy(cap_idx)
            z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * scaling
            t = torch.randint(0, 1000, (batch_size,), generator=g)
            noise = torch.randn(z0.shape, generator=g)
            a = abar[t].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
            enc = text_encoder(ids[cap_idx])
            pred = unet(zt, t, encoder_hidden_states=enc.last_hidden_state).sample
            loss_eps = F.mse_loss(pred, noise)
            logp = F.log_softmax(aux_head(enc.pooler_output), -1)
            loss_aux = -(target_dist[cap_idx] * logp).sum(-1).mean()
            loss = loss_eps + 0.05 * loss_aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            lr_sched.step()
            decay = min(0.999, (1 + step) / (10 + step))
            with torch.no_grad():
                for src, dst in ((unet, ema_unet), (text_encoder, ema_te)):
                    for ps, pd in zip(src.parameters(), dst.parameters()):
                        pd.lerp_(ps, 1 - decay)
            if step % 10 == 0:
                bar.set_postfix(eps=f"{loss_eps.item():.4f}", aux=f"{loss_aux.item():.3f}",
                                refresh=False)
        report["unet_final_eps_loss"] = round(float(loss_eps.item()), 5)
        report["unet_seconds"] = round(time.perf_counter() - t0, 1)

        # --- save
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=ema_te, tokenizer=tokenizer,
                                       unet=ema_unet, scheduler=_inference_scheduler(),
                                       safety_checker=None, feature_extractor=None,
                                       image_encoder=None, requires_safety_checker=False)
        out.mkdir(parents=True, exist_ok=True)
        pipe.save_pretrained(str(out), safe_serialization=True)
        _write_classic_tokenizer_files(tokenizer, out / "tokenizer")
        report["train_seconds"] = round(time.perf_counter() - t_all, 1)
        report["checkpoint_mb"] = round(dir_size_bytes(out) / 2**20, 2)
        report["n_params"] = {k: sum(p.numel() for p in m.parameters()) for k, m in
                              (("text_encoder", ema_te), ("vae", vae), ("unet", ema_unet))}
        report["out_dir"] = str(out)
    if evaluate:
        try:
            from .judge import load_digits_judge

            judge = load_digits_judge()
        except (FileNotFoundError, RuntimeError) as exc:
            report["evaluation"] = f"skipped: {exc}"
        else:
            pipe = load_digits_pipeline(path=out)
            report["evaluation"] = evaluate_digits_pipeline(
                pipe, judge, guidance_scales=(5.0,), single_per_prompt=4, broad_per_prompt=8,
                seed=seed)
            for key in ("single_per_prompt", "broad_per_prompt"):
                report["evaluation"].pop(key, None)
            report["evaluation"]["cfg_5"].pop("broad_per_prompt", None)
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# ---------------------------------------------------------------------------- loading
def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise missing_checkpoint("digits-sd", folder, "pipeline folder")
    for name in _REQUIRED:
        if not (folder / name).exists():
            raise missing_checkpoint("digits-sd", folder / name, f"pipeline part {name!r}")


@contextlib.contextmanager
def _quiet_loading():
    """Silence the 'Loading ...' progress bars and info logs of diffusers/transformers."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    d_on, t_on = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    d_level, t_level = dlog.get_verbosity(), tlog.get_verbosity()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        if d_on:
            dlog.enable_progress_bar()
        if t_on:
            tlog.enable_progress_bar()
        dlog.set_verbosity(d_level)
        tlog.set_verbosity(t_level)


def load_digits_pipeline(device=None, dtype=None, path: Optional[PathLike] = None,
                         progress_bar: bool = False):
    """Load the shipped digits mini-SD as a stock diffusers ``StableDiffusionPipeline``.

    Reads ``digits-sd`` of :func:`data_dir` (or ``path``) with ``from_pretrained`` on the local folder
    (safetensors, ``local_files_only``, no network), without a safety checker, on ``device``
    (default: :func:`sparke_lab.utils.pick_device`) in ``dtype`` (default float32 on the CPU;
    float16 on the CPU warns and falls back to float32). Images are 1x16x16, white on black:
    ``output_type="pt"`` gives (B,1,16,16) in [0,1], ``"pil"`` gives mode-"L" images.
    The progress bar is off unless ``progress_bar``. A missing or corrupted folder raises
    FileNotFoundError / RuntimeError naming the path and ``sparke-lab train digits``.
    Used in notebook 08_guided_generation_digits.
    """
    from diffusers import StableDiffusionPipeline

    folder = model_dir("digits-sd", path)
    _check_folder(folder)
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype if dtype is not None else torch.float32)
    extra = {} if dt == torch.float32 else {"torch_dtype": dt}
    with warnings.catch_warnings(), _quiet_loading():
        warnings.filterwarnings("ignore", message=".*safety.?checker.*")
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        try:
            pipe = StableDiffusionPipeline.from_pretrained(
                str(folder), safety_checker=None, feature_extractor=None,
                requires_safety_checker=False, local_files_only=True, **extra)
        except Exception as exc:  # OSError, ValueError, safetensors' SafetensorError, ...
            if isinstance(exc, FileNotFoundError):
                raise missing_checkpoint("digits-sd", folder, "pipeline file") from exc
            raise corrupted_checkpoint("digits-sd", folder, exc) from exc
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=not progress_bar)
    pipe.sparke_lab_model = "digits"  # guidance's features="clip" finds the digits encoder by it
    return pipe


# ---------------------------------------------------------------------------- evaluation
@torch.no_grad()
def generate_digits(pipe, prompts: Sequence[str], images_per_prompt: int = 1,
                    num_inference_steps: int = 25, guidance_scale: float = 5.0, seed: int = 0,
                    batch_size: int = 256, **kwargs) -> torch.Tensor:
    """Generate ``images_per_prompt`` images for each prompt, in batches; (N,1,16,16) in [0,1].

    Image ``k`` of prompt ``i`` is at row ``i * images_per_prompt + k``. One CPU generator
    seeded with ``seed`` drives all batches, so the result is reproducible. Extra ``kwargs``
    go to the pipeline call (e.g. ``callback_on_step_end``). Used in notebook
    08_guided_generation_digits.
    """
    flat = [p for p in prompts for _ in range(images_per_prompt)]
    gen = make_generator(seed, "cpu")
    outs = []
    for s in range(0, len(flat), batch_size):
        outs.append(pipe(flat[s:s + batch_size], num_inference_steps=num_inference_steps,
                         guidance_scale=guidance_scale, generator=gen, output_type="pt",
                         **kwargs).images.float().cpu())
    return torch.cat(outs)


def evaluate_digits_pipeline(pipe, judge, guidance_scales: Sequence[float] = (3.0, 5.0, 7.0),
                             num_inference_steps: int = 25, single_per_prompt: int = 8,
                             broad_per_prompt: int = 32, seed: int = 0,
                             prompt_sets: Sequence[str] = ("single", "broad"),
                             batch_size: int = 256) -> Dict:
    """The quality report of a digits pipeline, judged by ``judge``.

    For each guidance scale ``w`` (key ``cfg_{w}``): ``single_accuracy`` (share of the
    single-digit prompts' images the judge reads as the named digit; a rejected image counts
    as wrong) and ``single_per_digit``; ``broad_valid`` (share of broad prompts' images that
    show a valid digit); and per broad cluster (``clusters``, pooled over its phrasings):
    ``validity``, ``spread`` (order-2 effective number of valid digits), ``tv`` (total
    variation between the class distribution of its valid images and the designed caption
    distribution) and the two distributions, from
    :func:`sparke_lab.metrics.cluster_class_metrics`; ``broad_spread`` and ``broad_tv`` are
    their means over clusters. CFG is expected to pull the distribution towards each
    cluster's dominant digit (TV up, spread down): the collapse diversity guidance must undo.
    Also the sampling time. Used by ``benchmarks/digits_collapse.py`` and in notebook
    08_guided_generation_digits.
    """
    from ..metrics import cluster_class_metrics

    rep: Dict = {"num_inference_steps": num_inference_steps, "seed": seed,
                 "single_per_prompt": single_per_prompt, "broad_per_prompt": broad_per_prompt}
    for w in guidance_scales:
        r: Dict = {}
        t0 = time.perf_counter()
        n_img = 0
        for name in prompt_sets:
            ps = load_prompt_set(name)
            k = single_per_prompt if name == "single" else broad_per_prompt
            imgs = generate_digits(pipe, [p.prompt for p in ps], k, num_inference_steps, w,
                                   seed=seed, batch_size=batch_size)
            n_img += len(imgs)
            pred = judge.predict(imgs).reshape(len(ps), k)
            ok = np.array([[d in p.valid_digits for d in row] for p, row in zip(ps, pred)])
            if name == "single":
                r["single_accuracy"] = round(float(ok.mean()), 4)
                r["single_rejected"] = round(float((pred == -1).mean()), 4)
                r["single_per_digit"] = {str(d): round(float(ok[[p.cluster == d for p in ps]]
                                                                .mean()), 3) for d in range(10)}
                continue
            r[f"{name}_valid"] = round(float(ok.mean()), 4)
            r[f"{name}_rejected"] = round(float((pred == -1).mean()), 4)
            clusters: Dict[str, Dict] = {}
            for c in sorted({p.cluster for p in ps}):
                rows = [i for i, p in enumerate(ps) if p.cluster == c]
                p0 = ps[rows[0]]
                m = cluster_class_metrics(pred[rows].ravel(), p0.valid_digits,
                                          p0.class_weights or None)
                clusters[p0.cluster_name] = {
                    "n": m["n"], "validity": round(m["validity"], 4),
                    "spread": round(m["spread"], 4), "tv": round(m["tv"], 4),
                    "distribution": {str(d): round(float(v), 4)
                                     for d, v in zip(p0.valid_digits, m["distribution"])},
                    "caption_distribution": {str(d): v for d, v in
                                             zip(p0.valid_digits, p0.class_weights)}}
            r[f"{name}_clusters"] = clusters
            r[f"{name}_spread"] = round(float(np.nanmean([v["spread"] for v in clusters.values()])), 4)
            r[f"{name}_tv"] = round(float(np.nanmean([v["tv"] for v in clusters.values()])), 4)
        r["seconds"] = round(time.perf_counter() - t0, 2)
        r["images"] = n_img
        rep[f"cfg_{w:g}"] = r
    return rep


def save_digits_grid(pipe, path: PathLike, prompts: Optional[Sequence[str]] = None,
                     images_per_prompt: int = 8, guidance_scale: float = 5.0,
                     num_inference_steps: int = 25, seed: int = 0, judge=None) -> Path:
    """Draw a grid (one row per prompt) of generated digits and save it as a PNG.

    Defaults to the ``"mini"`` prompt set. With a ``judge`` each image is titled with its
    predicted digit (red when the prediction is not a valid digit of the prompt). Used for
    ``docs/figures/digits_grid.png`` and in notebook 08_guided_generation_digits.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..plotting import plot_image_rows

    ps = load_prompt_set("mini") if prompts is None else \
        [Prompt(p, tuple(range(10)), -1, "", "custom") for p in prompts]
    imgs = generate_digits(pipe, [p.prompt for p in ps], images_per_prompt, num_inference_steps,
                           guidance_scale, seed=seed)
    pred = judge.predict(imgs) if judge is not None else None
    n, k = len(ps), images_per_prompt
    rows = [[imgs[i * k + j, 0].numpy() for j in range(k)] for i in range(n)]
    titles = None if pred is None else \
        [[(str(int(d)), "black" if int(d) in p.valid_digits else "red") for d in pred[i * k:(i + 1) * k]]
         for i, p in enumerate(ps)]
    fig = plot_image_rows(rows, (0.75 * k + 2.2, 0.8 * n), row_labels=[p.prompt for p in ps],
                          cell_titles=titles, frame=True, interpolation="nearest",
                          title=f"digits mini-SD: {num_inference_steps} DDIM steps, CFG "
                                f"{guidance_scale:g}, seed {seed}", title_size=9,
                          cell_title_kw=dict(fontsize=7, pad=1))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
