"""What guidance needs to know about each pipeline family: prompt features and how to hook in.

* Prompt features come from the pipeline's own text encoder, pooled and L2-normalised:
  SD 1.x/2.x use the CLIP text model's pooled output (``pooler_output`` or ``text_embeds``),
  SDXL the projected pooled output of ``text_encoder_2``, PixArt-Sigma (T5) the mean of the
  token states under the attention mask. A pipeline with a ``prompt_features(prompts)``
  method gives its own (the 2-D toy's :class:`~sparke_lab.models.ToyPipeline`: one-hot
  classes). A user may pass ``encoder=callable(list_of_prompts) -> (n, e) tensor`` instead.
* Hooking in: diffusers 0.42 pipelines call ``callback_on_step_end`` after each
  ``scheduler.step``. PixArt-Sigma in 0.42 only has the legacy ``callback(step, t, latents)``:
  :func:`call_pipeline` adapts a step-end callback to it by writing the new latents *in
  place* into the tensor the pipeline keeps (a thin wrapper, no forked pipeline).

Taught in: 08_guided_generation_digits (prompt features) and 09_stable_diffusion_on_gpu
(SDXL, PixArt-Sigma).
"""
from __future__ import annotations

import inspect
from typing import Callable, List, Optional, Sequence

import torch

FAMILIES = ("sd", "sdxl", "pixart", "toy2d", "generic")


def pipeline_family(pipe) -> str:
    """One of ``sd``, ``sdxl``, ``pixart``, ``toy2d``, ``generic``, from the class and components."""
    name = type(pipe).__name__.lower()
    if "toy" in name:
        return "toy2d"
    if "pixart" in name:
        return "pixart"
    if "xl" in name or getattr(pipe, "text_encoder_2", None) is not None:
        return "sdxl"
    if "stablediffusion" in name or "latentconsistency" in name:
        return "sd"
    return "generic"


def supports_step_end_callback(pipe) -> bool:
    """Whether ``pipe(...)`` accepts ``callback_on_step_end``."""
    try:
        return "callback_on_step_end" in inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        return False


def _device_of(module) -> torch.device:
    try:
        return next(module.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _normalise(T: torch.Tensor) -> torch.Tensor:
    T = T.float()
    return T / torch.linalg.vector_norm(T, dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def _clip_pooled(tokenizer, text_encoder, prompts: List[str]) -> torch.Tensor:
    dev = _device_of(text_encoder)
    max_len = getattr(tokenizer, "model_max_length", 77) or 77
    max_len = min(int(max_len), 512)
    ids = tokenizer(prompts, padding="max_length", max_length=max_len, truncation=True,
                    return_tensors="pt").input_ids.to(dev)
    out = text_encoder(ids)
    for key in ("text_embeds", "pooler_output"):
        v = getattr(out, key, None)
        if v is not None:
            return v.float()
    return out[0].float().mean(1)


@torch.no_grad()
def _t5_mean(tokenizer, text_encoder, prompts: List[str]) -> torch.Tensor:
    dev = _device_of(text_encoder)
    max_len = min(int(getattr(tokenizer, "model_max_length", 300) or 300), 300)
    tok = tokenizer(prompts, padding="max_length", max_length=max_len, truncation=True,
                    return_tensors="pt")
    mask = tok.attention_mask.to(dev)
    h = text_encoder(tok.input_ids.to(dev), attention_mask=mask)[0].float()
    m = mask[..., None].float()
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def encode_prompts(pipe, prompts: Sequence, encoder: Optional[Callable] = None,
                   batch_size: int = 64) -> torch.Tensor:
    """L2-normalised pooled prompt features (n, e), float32, from the pipeline's own encoder.

    ``prompts``: strings (class indices for the 2-D toy). ``encoder``: a callable mapping a
    list of prompts to an (n, e) tensor or array, overriding the pipeline's encoder; a
    pipeline's own ``prompt_features(prompts)`` method comes next.
    Computed once per :func:`~sparke_lab.guidance.generate` call.
    Taught in: 08_guided_generation_digits.
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts given")
    if encoder is not None:
        T = encoder(prompts)
        T = torch.as_tensor(T.detach().cpu() if isinstance(T, torch.Tensor) else T).float()
        if T.ndim != 2 or T.shape[0] != len(prompts):
            raise ValueError(f"encoder must return an (n, e) array for n={len(prompts)} prompts, "
                             f"got shape {tuple(T.shape)}")
        if not bool(torch.isfinite(T).all()):
            raise ValueError("encoder returned NaN/Inf prompt features")
        return _normalise(T)
    own = getattr(pipe, "prompt_features", None)
    if callable(own):  # a pipeline that knows its prompt features (the 2-D toy)
        return _normalise(torch.as_tensor(own(prompts)).cpu())
    fam = pipeline_family(pipe)
    if not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be strings")
    out = []
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s:s + batch_size]
        if fam == "sdxl" and getattr(pipe, "text_encoder_2", None) is not None:
            out.append(_clip_pooled(pipe.tokenizer_2, pipe.text_encoder_2, chunk))
        elif fam == "pixart":
            out.append(_t5_mean(pipe.tokenizer, pipe.text_encoder, chunk))
        elif getattr(pipe, "tokenizer", None) is not None and getattr(pipe, "text_encoder", None) is not None:
            out.append(_clip_pooled(pipe.tokenizer, pipe.text_encoder, chunk))
        else:
            raise ValueError(f"cannot find a text encoder on {type(pipe).__name__}; pass "
                             "encoder=callable or prompt_features=")
    return _normalise(torch.cat(out).cpu())


def pool_prompt_embeds(embeds: torch.Tensor, batch: int) -> torch.Tensor:
    """Prompt features from a pipeline's ``prompt_embeds`` seen in a callback (fallback path).

    With classifier-free guidance the pipeline stacks ``[negative, positive]``: the positive
    half is used. Token states (B, L, H) are mean-pooled; the result is L2-normalised.
    Prefer :func:`encode_prompts` (pooled output), which ``generate`` uses.
    """
    E = embeds.detach().float()
    if E.shape[0] == 2 * batch:
        E = E[batch:]
    if E.shape[0] != batch:
        raise ValueError(f"prompt_embeds has {embeds.shape[0]} rows for {batch} latents")
    if E.ndim == 3:
        E = E.mean(1)
    return _normalise(E.reshape(batch, -1))


def call_pipeline(pipe, callback=None, **kwargs):
    """Call ``pipe(**kwargs)`` with a step-end ``callback`` on any supported family.

    Pipelines with ``callback_on_step_end`` get it directly. Others (PixArt-Sigma in diffusers
    0.42) get the legacy ``callback(step, t, latents)`` whose new latents are copied in place.
    """
    if callback is None:
        return pipe(**kwargs)
    if supports_step_end_callback(pipe):
        names = getattr(callback, "tensor_inputs", None) or ["latents"]
        allowed = getattr(pipe, "_callback_tensor_inputs", None) or ["latents"]
        names = [n for n in dict.fromkeys(names) if n in allowed] or ["latents"]
        return pipe(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=names, **kwargs)
    params = inspect.signature(pipe.__call__).parameters
    if "callback" not in params:
        raise TypeError(f"{type(pipe).__name__} has neither callback_on_step_end nor a legacy "
                        "callback; guidance cannot hook into it")
    adapter = LegacyCallbackAdapter(pipe, callback)
    return pipe(callback=adapter, callback_steps=1, **kwargs)


class LegacyCallbackAdapter:
    """Turns a step-end callback into the legacy ``callback(step, t, latents)`` of older
    pipelines, writing returned latents in place. Used for PixArt-Sigma in diffusers 0.42.
    Taught in: 09_stable_diffusion_on_gpu.
    """

    def __init__(self, pipe, callback):
        self.pipe, self.callback = pipe, callback

    def __call__(self, step, t, latents):
        out = self.callback(self.pipe, step, t, {"latents": latents}) or {}
        new = out.get("latents", latents)
        if new is not latents:
            latents.copy_(new.to(latents.dtype))


@torch.no_grad()
def predict_clean_latents(pipe, step_index: int, latents: torch.Tensor, callback_kwargs):
    """``(x0_hat, d x0_hat / d z)`` of the latents after step ``step_index``: one extra
    denoiser call (with the pipeline's CFG), eps (or v) held fixed, so the derivative is the
    scalar ``1 / sqrt(alpha_bar)`` (``sqrt(alpha_bar)`` for v prediction); None at the last
    step (x0 = z). SD-family pipelines (``unet`` + ``prompt_embeds``) with a
    variance-preserving scheduler (DDIM, DDPM, PNDM, DPM-Solver; not Euler/Heun's
    sigma-scaled latents). Used by the ``x0`` and semantic guidance features."""
    sched = pipe.scheduler
    ts = sched.timesteps
    if step_index + 1 >= len(ts):
        return None
    emb = callback_kwargs.get("prompt_embeds")
    unet = getattr(pipe, "unet", None)
    if emb is None or unet is None:
        raise ValueError("features on the predicted clean sample need an SD-family pipeline (a unet "
                         "and prompt_embeds in the callback inputs)")
    pred = getattr(sched.config, "prediction_type", "epsilon")
    if float(getattr(sched, "init_noise_sigma", 1.0)) != 1.0 or \
            getattr(sched, "alphas_cumprod", None) is None or pred not in ("epsilon", "v_prediction"):
        raise ValueError(f"features on the predicted clean sample support variance-preserving "
                         f"schedulers with epsilon or v prediction, not {type(sched).__name__} ({pred})")
    t = ts[step_index + 1]
    B = latents.shape[0]
    cfg = emb.shape[0] == 2 * B
    inp = torch.cat([latents, latents]) if cfg else latents
    inp = sched.scale_model_input(inp, t)
    kw = {}
    if getattr(pipe, "_added_cond_kwargs", None):
        kw["added_cond_kwargs"] = pipe._added_cond_kwargs
    out = unet(inp, t, encoder_hidden_states=emb, return_dict=False, **kw)[0].float()
    if cfg:
        u, c = out.chunk(2)
        out = u + float(getattr(pipe, "guidance_scale", 1.0)) * (c - u)
    a = sched.alphas_cumprod[int(t)].to(latents.device).float()
    z = latents.float()
    if pred == "epsilon":
        return (z - (1 - a).sqrt() * out) / a.sqrt(), float(1.0 / a.sqrt())
    return a.sqrt() * z - (1 - a).sqrt() * out, float(a.sqrt())

# ------------------------------------------------------------------ one sample at a time
#: the model components whose calls :func:`make_batch_invariant` splits, and the method split
_ROWWISE = (("unet", "forward"), ("transformer", "forward"), ("text_encoder", "forward"),
            ("text_encoder_2", "forward"), ("text_encoder_3", "forward"), ("vae", "decode"))


def _row(value, n: int, i: int):
    """Row ``i`` of a batched argument (a tensor, or a dict of them, with ``n`` rows)."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n:
        return value[i:i + 1]
    if isinstance(value, dict):
        return {k: _row(v, n, i) for k, v in value.items()}
    return value


def _stack_rows(parts: list):
    """The outputs of the per-row calls put back together (tensors, tuples, model outputs)."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, dict):  # diffusers BaseOutput, transformers ModelOutput
        return type(first)(**{k: _stack_rows([p[k] for p in parts]) for k in first.keys()})
    if isinstance(first, (tuple, list)):
        return type(first)(_stack_rows(list(z)) for z in zip(*parts))
    return first


def _rowwise(fn: Callable) -> Callable:
    def call(*args, **kwargs):
        batch = args[0] if args else next(iter(kwargs.values()), None)
        n = batch.shape[0] if isinstance(batch, torch.Tensor) and batch.ndim > 0 else 1
        if n <= 1:
            return fn(*args, **kwargs)
        return _stack_rows([fn(*[_row(a, n, i) for a in args],
                               **{k: _row(v, n, i) for k, v in kwargs.items()}) for i in range(n)])
    call.rowwise = True
    return call


def make_batch_invariant(pipe):
    """Make every model call of ``pipe`` run one sample (one row) at a time, in place.

    Convolutions and matrix products choose their algorithm, and so their round-off, by
    batch size (oneDNN, BLAS), so the same sample computed in a batch of 2 or of 1 can differ
    in the last bits, and denoising amplifies that (the digits model: 2e-6 per UNet call,
    2e-5 on the final latents). Split into rows, a sample's arithmetic is the same whatever
    batch or process it shares, so a run on W processes is bit-identical to one process with
    W times the batch. Slower (the digits UNet 6.5x on 2 CPU cores); the denoiser
    (``unet`` / ``transformer``), the text encoders and ``vae.decode`` are split, and
    semantic guidance features (:class:`~sparke_lab.guidance.semantic.ClipFeatures`) run
    their image tower one row at a time on such a pipeline. Returns
    ``pipe``. Used by ``sparke-lab compare --batch-invariant``.
    """
    for name, method in _ROWWISE:
        module = getattr(pipe, name, None)
        fn = getattr(module, method, None) if module is not None else None
        if fn is not None and not getattr(fn, "rowwise", False):
            setattr(module, method, _rowwise(fn))
    # guidance models outside the pipeline (semantic features) read this and go row by row too
    pipe.sparke_lab_batch_invariant = True
    return pipe
