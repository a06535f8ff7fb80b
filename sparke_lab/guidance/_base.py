"""The shared harness: one callback base class and one ``generate`` loop for every method.

Every guidance method (SPARKE, latent RKE, Vendi, Particle Guidance, CADS, interval guidance)
is a :class:`GuidanceCallback`, i.e. a ``diffusers.callbacks.PipelineCallback`` called after
each ``scheduler.step`` with ``(pipe, step_index, timestep, callback_kwargs)``. It may replace
``callback_kwargs["latents"]`` (and ``"prompt_embeds"``). The base class handles what every
method needs: how many steps this call has, which steps to act on, float32 maths with the
result cast back, and refusing NaN/Inf updates.

Taught in: 07_guided_sampling_2d (the callback), 08_guided_generation_digits (``generate``).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from diffusers.callbacks import PipelineCallback

from .pipelines import call_pipeline, encode_prompts


def total_steps(pipe) -> int:
    """Number of callback invocations of the current call (``step_index`` runs 0..total-1)."""
    for attr in ("num_timesteps", "_num_timesteps"):
        try:
            v = getattr(pipe, attr, None)
        except Exception:  # a property may fail outside a call
            v = None
        if isinstance(v, (int, np.integer)) and v > 0:
            return int(v)
    sched = getattr(pipe, "scheduler", None)
    ts = getattr(sched, "timesteps", None)
    if ts is not None and len(ts) > 0:
        return len(ts)
    raise RuntimeError("cannot tell the pipeline's step count (no num_timesteps and no "
                       "scheduler.timesteps)")


def check_window(window) -> Tuple[float, float]:
    """Validate a step window ``(start, end)`` given as fractions of the run, 0 <= start < end <= 1."""
    if window is None:
        return (0.0, 1.0)
    try:
        lo, hi = (float(w) for w in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be a pair (start, end) of fractions in [0, 1], got {window!r}") from None
    if not (0.0 <= lo < hi <= 1.0):
        raise ValueError(f"window must satisfy 0 <= start < end <= 1, got {window!r}")
    return (lo, hi)


def check_every(every) -> int:
    if not isinstance(every, (int, np.integer)) or int(every) < 1:
        raise ValueError(f"every must be a positive integer (guide every k-th step), got {every!r}")
    return int(every)


def check_scale(scale, name: str = "scale") -> float:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number >= 0, got {scale!r}") from None
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {scale!r}")
    return s


class GuidanceCallback(PipelineCallback):
    """Base class of all guidance methods: a ``PipelineCallback`` that acts on chosen steps.

    ``every``: act on step indices ``i`` with ``i % every == 0``; ``window``: only when
    ``start <= i / total < end`` (fractions of the run, so a window means the same for 25
    or 50 steps). Subclasses implement :meth:`apply`.
    """

    #: does this method need prompt features (``generate`` then computes them)?
    needs_prompt_features = False
    #: the processes of a multi-process job (:class:`sparke_lab.distributed.RankGroup`);
    #: None on one process. Methods that couple samples exchange them through it.
    group = None

    def __init__(self, every: int = 1, window=None):
        # PipelineCallback.__init__ registers cutoff settings we do not use; keep ConfigMixin happy.
        self.every = check_every(every)
        self.window = check_window(window)
        self._prompt_features: Optional[torch.Tensor] = None
        self.n_calls = 0

    # ---- diffusers interface
    @property
    def tensor_inputs(self) -> List[str]:
        return ["latents"]

    def acts_on(self, step_index: int, total: int) -> bool:
        """Whether step ``step_index`` of ``total`` is guided."""
        lo, hi = self.window
        frac = step_index / max(total, 1)
        return step_index % self.every == 0 and lo <= frac < hi

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> Dict[str, Any]:
        total = total_steps(pipeline)
        self._step = int(step_index)  # names the exchanges of this step on several processes
        if step_index == 0:
            self.n_calls += 1
            self.on_start(pipeline, callback_kwargs)
        out = self.apply(pipeline, int(step_index), total, timestep, callback_kwargs)
        return callback_kwargs if out is None else out

    def __call__(self, pipeline, step_index, timestep, callback_kwargs):
        return self.callback_fn(pipeline, step_index, timestep, callback_kwargs)

    # ---- several processes
    def gather_batch(self, F: Optional[torch.Tensor], T: Optional[torch.Tensor] = None, tag: str = "peers"):
        """The rows ``F`` (and prompt rows ``T``) of this round's samples on every process,
        in rank order, and where this process's rows start: ``(F_all, T_all, start)``.
        On one process ``(F, T, 0)``. A collective: every rank calls it equally often."""
        if self.group is None or not self.group.distributed:
            return F, T, 0
        return self.group.all_gather_rows(F, T, tag=tag, step=getattr(self, "_step", -1))

    def idle_round(self, total: int) -> None:
        """Take part in one round's collectives without samples (a rank whose share of the
        last round is empty). Methods that exchange nothing need not override it."""

    # ---- to override
    def on_start(self, pipeline, callback_kwargs) -> None:
        """Called at the first step of each pipeline call."""

    def apply(self, pipeline, step_index: int, total: int, timestep, callback_kwargs):
        raise NotImplementedError

    # ---- prompt features for the current call
    def set_prompt_features(self, T: Optional[torch.Tensor]) -> None:
        """Prompt features (B, e) of the next pipeline call's samples, in latent order.

        ``generate`` sets them per batch; set them yourself (or use :meth:`set_prompts`)
        when you call the pipeline directly.
        """
        if T is None:
            self._prompt_features = None
            return
        T = torch.as_tensor(T).detach().float()
        if T.ndim != 2:
            raise ValueError(f"prompt features must be (B, e), got shape {tuple(T.shape)}")
        if not bool(torch.isfinite(T).all()):
            raise ValueError("prompt features contain NaN/Inf")
        self._prompt_features = T

    def set_prompts(self, pipe, prompts, num_images_per_prompt: int = 1, encoder=None) -> torch.Tensor:
        """Encode ``prompts`` with ``pipe``'s text encoder for a direct ``pipe(...)`` call."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if encoder is None and hasattr(self, "prompt_encoder_for"):
            encoder = self.prompt_encoder_for(pipe)
        T = encode_prompts(pipe, prompts, encoder=encoder)
        T = T.repeat_interleave(int(num_images_per_prompt), dim=0)
        self.set_prompt_features(T)
        return T


def apply_update(latents: torch.Tensor, new32: torch.Tensor, what: str) -> torch.Tensor:
    """Cast float32 ``new32`` back to ``latents``' dtype; rows with NaN/Inf keep their old values."""
    new = new32.reshape(latents.shape)
    bad = ~torch.isfinite(new.reshape(new.shape[0], -1)).all(1)
    cast = new.to(latents.dtype)
    bad |= ~torch.isfinite(cast.reshape(cast.shape[0], -1)).all(1)
    if bool(bad.any()):
        warnings.warn(f"{what}: non-finite update for {int(bad.sum())} of {len(bad)} samples "
                      "skipped (latents left unchanged)", RuntimeWarning, stacklevel=3)
        cast = torch.where(bad.view(-1, *([1] * (latents.ndim - 1))), latents, cast)
    return cast


# ---------------------------------------------------------------------------- generate
def _as_prompt_list(prompts) -> list:
    if isinstance(prompts, (str, int, np.integer)):
        return [prompts]
    if isinstance(prompts, torch.Tensor):
        return [int(p) for p in prompts.reshape(-1)]
    return list(prompts)


def _collect(outputs: list, output_type: str):
    imgs = []
    for o in outputs:
        imgs.append(o.images if hasattr(o, "images") else o[0])
    if output_type == "pt" or (imgs and isinstance(imgs[0], torch.Tensor)):
        return torch.cat(imgs)
    if output_type == "np" or (imgs and isinstance(imgs[0], np.ndarray)):
        return np.concatenate(imgs)
    return [im for batch in imgs for im in batch]


def generate(pipe, prompts, callback: Optional[PipelineCallback] = None, *,
             batch_size: int = 8, num_inference_steps: int = 50,
             guidance_scale: Optional[float] = 7.5,
             generator: Union[torch.Generator, Sequence[torch.Generator], None] = None,
             num_images_per_prompt: int = 1, prompt_features=None, encoder=None,
             output_type: str = "pil", progress: bool = True, **kwargs):
    """Generate images for ``prompts`` with a guidance ``callback`` (or none), batch by batch.

    Prompt features are computed once for all prompts (pipeline's own text encoder, or
    ``encoder``, or given as ``prompt_features`` (n_prompts, e)) and handed to the callback
    batch by batch, so finished samples enter its bank with the right prompt. ``generator``:
    one generator (batches draw from it in turn) or one per image. Extra ``kwargs`` go to the
    pipeline. Returns PIL images (list), an array/tensor for ``output_type`` "np"/"pt" (the
    2-D toy's :class:`~sparke_lab.models.ToyPipeline`: (n, 2) points, ``prompts`` = class
    indices). A tqdm bar shows batches.

    Taught in: 07_guided_sampling_2d, 08_guided_generation_digits, 09_stable_diffusion_on_gpu.
    """
    from tqdm.auto import tqdm

    if isinstance(pipe, torch.nn.Module):
        raise TypeError(f"generate needs a pipeline, got the torch module {type(pipe).__name__} "
                        "(for the 2-D toy denoiser: models.ToyPipeline(model))")
    plist = _as_prompt_list(prompts)
    if not plist:
        raise ValueError("no prompts given")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    nipp = int(num_images_per_prompt)
    if nipp < 1:
        raise ValueError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
    T_all = None
    needs = callback is not None and getattr(callback, "needs_prompt_features", False)
    if prompt_features is not None:
        T_all = torch.as_tensor(prompt_features).float()
        if T_all.ndim != 2 or T_all.shape[0] != len(plist):
            raise ValueError(f"prompt_features must be ({len(plist)}, e), got {tuple(T_all.shape)}")
    elif needs:
        if encoder is None and hasattr(callback, "prompt_encoder_for"):
            encoder = callback.prompt_encoder_for(pipe)  # semantic guidance: its text tower
        T_all = encode_prompts(pipe, plist, encoder=encoder)
    gens = list(generator) if isinstance(generator, (list, tuple)) else None
    if gens is not None and len(gens) != len(plist) * nipp:
        raise ValueError(f"got {len(gens)} generators for {len(plist) * nipp} images")
    outputs = []
    starts = range(0, len(plist), int(batch_size))
    try:
        for s in tqdm(starts, desc="generate", disable=not progress):
            batch = plist[s:s + int(batch_size)]
            if callback is not None and hasattr(callback, "set_prompt_features"):
                callback.set_prompt_features(
                    None if T_all is None else
                    T_all[s:s + len(batch)].repeat_interleave(nipp, dim=0))
            gen = gens[s * nipp:(s + len(batch)) * nipp] if gens is not None else generator
            call = dict(prompt=batch, num_inference_steps=num_inference_steps, generator=gen,
                        output_type=output_type, num_images_per_prompt=nipp, **kwargs)
            if guidance_scale is not None:
                call["guidance_scale"] = guidance_scale
            if callback is not None and hasattr(callback, "prepare_call"):
                call = callback.prepare_call(pipe, call)
            outputs.append(call_pipeline(pipe, callback, **call))
    finally:
        if callback is not None and hasattr(callback, "set_prompt_features"):
            callback.set_prompt_features(None)
    return _collect(outputs, output_type)
