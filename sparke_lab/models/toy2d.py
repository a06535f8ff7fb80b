"""The 2-D toy of the SPARKE paper: a class-conditional diffusion model on a Gaussian mixture.

Data: 9 Gaussian modes on a circle, 3 prompt classes; each class owns 3 modes with weights
.6/.3/.1. By default (``layout="contiguous"``) class ``c`` owns the arc of modes
``3c, 3c+1, 3c+2`` with its dominant mode in the middle (weights .3/.6/.1 along the arc);
``layout="interleaved"`` gives class ``c`` the modes ``c, c+3, c+6`` instead. Model: a small MLP denoiser
(epsilon prediction) conditioned on the time step and the class, trained with
classifier-free-guidance (CFG) dropout. :class:`ToyPipeline` samples it like a diffusers
text-to-image pipeline (a stock ``DDIMScheduler``, CFG, the class embedding as the prompt
embedding, ``callback_on_step_end``), so diversity guidance (SPARKE and the baselines) runs
on it exactly as on the image pipelines.

CFG sharpens the conditional: it moves mass toward each class's dominant mode, which is the
collapse that diversity guidance has to undo.

Used in notebook 07_guided_sampling_2d.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..utils import make_generator, pick_device, set_seed, torch_threads
from ._common import (PathLike, corrupted_checkpoint, load_safetensors, model_dir, read_json,
                      train_dir)

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


# ---------------------------------------------------------------------------- data
@dataclass
class ToyMixture:
    """A class-conditional Gaussian mixture: ``n_modes`` modes on a circle, ``n_classes`` classes.

    Mode ``m`` sits at angle ``2*pi*m/n_modes`` on a circle of radius ``radius`` with isotropic
    standard deviation ``std``. Each class owns ``n_modes // n_classes`` modes with the given
    ``weights`` (dominant first). ``layout="contiguous"``: class ``c`` owns a contiguous arc of
    modes, the dominant one in the middle; ``layout="interleaved"``: class ``c`` owns modes
    ``c, c + n_classes, ...``. :meth:`class_modes` lists a class's modes, dominant first.
    Used in notebook 07_guided_sampling_2d.
    """

    n_modes: int = 9
    n_classes: int = 3
    radius: float = 2.0
    std: float = 0.12
    weights: Tuple[float, ...] = (0.6, 0.3, 0.1)
    layout: str = "contiguous"

    def __post_init__(self):
        if self.layout not in ("contiguous", "interleaved"):
            raise ValueError("layout must be 'contiguous' or 'interleaved'")
        self.weights = tuple(float(w) for w in self.weights)
        if self.n_modes % self.n_classes:
            raise ValueError("n_modes must be a multiple of n_classes")
        if len(self.weights) != self.n_modes // self.n_classes:
            raise ValueError(f"need {self.n_modes // self.n_classes} weights per class, "
                             f"got {len(self.weights)}")
        if abs(sum(self.weights) - 1) > 1e-6 or min(self.weights) <= 0:
            raise ValueError("weights must be positive and sum to 1")

    @property
    def modes_per_class(self) -> int:
        return self.n_modes // self.n_classes

    @property
    def centers(self) -> np.ndarray:
        """(n_modes, 2) mode centres."""
        ang = 2 * np.pi * np.arange(self.n_modes) / self.n_modes
        return self.radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)

    def _arc_order(self) -> np.ndarray:
        """Positions along a class's arc, in rank order (middle first, then outward)."""
        k = self.modes_per_class
        return np.argsort(np.abs(np.arange(k) - (k - 1) / 2), kind="stable")

    def class_modes(self, c: int) -> np.ndarray:
        """Mode indices owned by class ``c``, dominant first."""
        if not 0 <= int(c) < self.n_classes:
            raise ValueError(f"class {c} out of range 0..{self.n_classes - 1}")
        k = self.modes_per_class
        if self.layout == "interleaved":
            return int(c) + self.n_classes * np.arange(k)
        return int(c) * k + self._arc_order()

    def mode_class(self) -> np.ndarray:
        """(n_modes,) the class owning each mode."""
        out = np.empty(self.n_modes, dtype=np.int64)
        for c in range(self.n_classes):
            out[self.class_modes(c)] = c
        return out

    def mode_rank(self) -> np.ndarray:
        """(n_modes,) the rank of each mode inside its class (0 = dominant)."""
        out = np.empty(self.n_modes, dtype=np.int64)
        for c in range(self.n_classes):
            out[self.class_modes(c)] = np.arange(self.modes_per_class)
        return out

    def sample(self, n: int, labels: Optional[ArrayLike] = None, seed: Optional[int] = 0
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw ``n`` points; returns ``(points (n,2), labels (n,), modes (n,))``.

        ``labels`` fixes the class of each point (default: uniform over classes).
        """
        rng = np.random.default_rng(seed)
        if labels is None:
            labels = rng.integers(self.n_classes, size=n)
        labels = _as_labels(labels, n, self.n_classes)
        rank = rng.choice(self.modes_per_class, size=n, p=np.asarray(self.weights))
        table = np.stack([self.class_modes(c) for c in range(self.n_classes)])
        modes = table[labels, rank]
        pts = self.centers[modes] + self.std * rng.standard_normal((n, 2))
        return pts.astype(np.float32), labels, modes

    def mode_of(self, points: ArrayLike, tol: float = 4.0) -> np.ndarray:
        """Index of the mode each point lies on, or -1 when it is off every mode.

        A point is on mode ``m`` when it is within ``tol`` standard deviations of its centre
        (mode centres are ~11 std apart with the defaults).
        """
        p = _to_numpy(points).reshape(-1, 2)
        d = np.linalg.norm(p[:, None, :] - self.centers[None], axis=-1)
        m = d.argmin(1)
        m[d[np.arange(len(p)), m] > tol * self.std] = -1
        return m

    def on_mode_fraction(self, points: ArrayLike, labels: ArrayLike, tol: float = 4.0) -> float:
        """Fraction of points lying on a mode owned by their requested class."""
        m = self.mode_of(points, tol)
        lab = _as_labels(labels, len(m), self.n_classes)
        ok = (m >= 0) & (self.mode_class()[np.maximum(m, 0)] == lab)
        return float(ok.mean()) if len(m) else float("nan")

    def mode_weights(self, points: ArrayLike, labels: ArrayLike, tol: float = 4.0) -> np.ndarray:
        """(n_classes, modes_per_class) empirical weights of each class's modes, dominant first.

        Row ``c`` counts the class-``c`` points that lie on class-``c`` modes, normalised to sum
        to 1 (NaN when a class has no such point). Compare with ``weights``.
        """
        m = self.mode_of(points, tol)
        lab = _as_labels(labels, len(m), self.n_classes)
        out = np.full((self.n_classes, self.modes_per_class), np.nan)
        for c in range(self.n_classes):
            counts = np.array([np.sum((lab == c) & (m == k)) for k in self.class_modes(c)],
                              dtype=float)
            if counts.sum() > 0:
                out[c] = counts / counts.sum()
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = list(self.weights)
        return d


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_labels(labels, n: int, n_classes: int) -> np.ndarray:
    lab = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    lab = np.broadcast_to(lab, (n,)).astype(np.int64) if lab.ndim == 0 else lab.astype(np.int64)
    if lab.shape != (n,):
        raise ValueError(f"expected {n} labels, got shape {lab.shape}")
    if n and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return lab


# ---------------------------------------------------------------------------- model
def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ToyDenoiser(nn.Module):
    """Conditional MLP epsilon-predictor ``eps(x_t, t, class)`` for the 2-D toy.

    Class index ``n_classes`` is the null (unconditional) class used for CFG. After
    :func:`load_toy2d` the model carries ``.mixture`` (the :class:`ToyMixture`) and
    ``.scheduler_config`` (a diffusers scheduler config dict). Used in notebook
    07_guided_sampling_2d.
    """

    def __init__(self, n_classes: int = 3, hidden: int = 256, depth: int = 3, emb: int = 64):
        super().__init__()
        self.n_classes = n_classes
        self.config = {"n_classes": n_classes, "hidden": hidden, "depth": depth, "emb": emb}
        self.emb = emb
        self.t_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.class_emb = nn.Embedding(n_classes + 1, emb)
        layers, d_in = [], 2 + 2 * emb
        for _ in range(depth):
            layers += [nn.Linear(d_in, hidden), nn.SiLU()]
            d_in = hidden
        layers.append(nn.Linear(hidden, 2))
        self.net = nn.Sequential(*layers)
        self.mixture: Optional[ToyMixture] = None
        self.scheduler_config: Optional[dict] = None

    @property
    def null_class(self) -> int:
        return self.n_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.denoise(x, t, self.class_emb(labels))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``eps(x_t, t)`` given the condition's embedding ``cond`` (B, emb), e.g. a class
        embedding that CADS has annealed (the pipeline's ``prompt_embeds``)."""
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        h = torch.cat([x, self.t_mlp(_timestep_embedding(t, self.emb)), cond], -1)
        return self.net(h)

    def sample(self, labels, **kwargs) -> torch.Tensor:
        """Shortcut for :func:`sample_toy2d` with this model."""
        return sample_toy2d(self, labels, **kwargs)


def _scheduler_config() -> dict:
    return {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "epsilon", "clip_sample": False, "set_alpha_to_one": False,
            "steps_offset": 1, "timestep_spacing": "leading"}


# ---------------------------------------------------------------------------- sampling
@dataclass
class ToyPipelineOutput:
    """What a :class:`ToyPipeline` call returns: ``images``, the (B, 2) points (a tensor, an
    array for ``output_type="np"``), and ``trajectory`` (steps + 1, B, 2) when asked for."""

    images: Union[torch.Tensor, np.ndarray]
    trajectory: Optional[torch.Tensor] = None


class ToyPipeline:
    """The 2-D toy as a text-to-image pipeline: "prompts" are class indices, "images" points.

    ``pipe(prompt, num_inference_steps, guidance_scale, generator, callback_on_step_end, ...)``
    samples with a stock diffusers ``DDIMScheduler`` and classifier-free guidance exactly as
    the SD pipelines do: the prompt embedding is the denoiser's class embedding
    (:meth:`encode_prompt`; the null class is the negative prompt), stacked
    ``[negative, positive]`` under CFG, and a step-end callback may replace ``latents`` and
    ``prompt_embeds``. So every guidance method (SPARKE, Particle Guidance, CADS on the
    prompt embedding, interval CFG through ``_guidance_scale``) runs on it like on any
    pipeline. Returns a :class:`ToyPipelineOutput` with ``.images`` (B, 2).
    :meth:`prompt_features` gives the one-hot class vectors guidance uses as prompt features.
    Taught in: 07_guided_sampling_2d.
    """

    _callback_tensor_inputs = ["latents", "prompt_embeds", "labels"]

    def __init__(self, model: ToyDenoiser, scheduler=None):
        from diffusers import DDIMScheduler

        self.model = model
        self.scheduler = scheduler if scheduler is not None else \
            DDIMScheduler.from_config(model.scheduler_config or _scheduler_config())
        self.mixture: Optional[ToyMixture] = getattr(model, "mixture", None)
        self._guidance_scale = 1.0
        self._num_timesteps = 0
        self._interrupt = False

    def __repr__(self) -> str:
        return f"ToyPipeline(n_classes={self.n_classes}, scheduler={type(self.scheduler).__name__})"

    # ---- what callbacks read from a pipeline
    @property
    def n_classes(self) -> int:
        return self.model.n_classes

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def _execution_device(self) -> torch.device:
        return self.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ---- prompts
    def class_indices(self, prompt) -> torch.Tensor:
        """The prompt(s) as a (B,) long tensor of class indices (an int is one prompt)."""
        if isinstance(prompt, (int, np.integer)):
            prompt = [int(prompt)]
        lab = torch.as_tensor(np.asarray(prompt.cpu() if isinstance(prompt, torch.Tensor)
                                         else prompt), dtype=torch.long).reshape(-1)
        if lab.numel() == 0:
            raise ValueError("labels is empty")
        if lab.min() < 0 or lab.max() >= self.n_classes:
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1} (toy prompts are class "
                             "indices)")
        return lab

    def prompt_features(self, prompts) -> torch.Tensor:
        """One-hot class vectors (n, n_classes): the toy's pooled prompt features, used by
        :func:`sparke_lab.guidance.encode_prompts` (two prompts are alike only when equal)."""
        return torch.nn.functional.one_hot(self.class_indices(prompts), self.n_classes).float()

    def encode_prompt(self, prompt, device=None, num_images_per_prompt: int = 1,
                      do_classifier_free_guidance: bool = True):
        """``(prompt_embeds, negative_prompt_embeds)``: the denoiser's class embeddings of the
        prompts (B, emb) and of the null class (None without CFG), as SD pipelines return
        their text embeddings."""
        lab = self.class_indices(prompt).to(device or self.device)
        lab = lab.repeat_interleave(int(num_images_per_prompt))
        pos = self.model.class_emb(lab)
        neg = self.model.class_emb(torch.full_like(lab, self.model.null_class)) \
            if do_classifier_free_guidance else None
        return pos, neg

    def prepare_latents(self, batch: int, generator=None, latents=None, device=None) -> torch.Tensor:
        """Initial noise (batch, 2): from ``generator`` (draws on its device), one generator
        per sample (a list), or the given ``latents``; scaled by the scheduler's sigma."""
        device = device or self.device
        if latents is not None:
            latents = latents.to(device=device, dtype=torch.float32).reshape(batch, 2)
        elif isinstance(generator, (list, tuple)):
            if len(generator) != batch:
                raise ValueError(f"got {len(generator)} generators for {batch} samples")
            latents = torch.cat([torch.randn((1, 2), generator=g, device=g.device).to(device)
                                 for g in generator])
        else:
            gdev = generator.device if generator is not None else torch.device("cpu")
            latents = torch.randn((batch, 2), generator=generator, device=gdev).to(device)
        return latents * self.scheduler.init_noise_sigma

    # ---- sampling
    def __call__(self, prompt, num_inference_steps: int = 50, guidance_scale: float = 1.0,
                 generator=None, latents: Optional[torch.Tensor] = None, eta: float = 0.0,
                 num_images_per_prompt: int = 1, output_type: str = "pt", return_dict: bool = True,
                 callback_on_step_end: Optional[Callable] = None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
                 return_trajectory: bool = False):
        """Sample points of the classes ``prompt`` with DDIM and CFG ``guidance_scale``.

        ``guidance_scale`` 1 is the plain conditional model; larger values extrapolate
        ``eps_u + w (eps_c - eps_u)`` (read from ``_guidance_scale`` at every step).
        ``callback_on_step_end(pipe, step_index, timestep, callback_kwargs) -> dict`` runs
        after every ``scheduler.step``; ``callback_kwargs`` holds ``latents`` (B, 2),
        ``prompt_embeds`` (the class embeddings, ``[null; classes]`` under CFG) and
        ``labels`` (B,); returned ``latents`` / ``prompt_embeds`` replace the current ones.
        ``output_type="np"`` gives an array, anything else a tensor (points have no PIL form).
        """
        with torch_threads(1), torch.no_grad():
            return self._sample(prompt, int(num_inference_steps), guidance_scale, generator,
                                latents, eta, int(num_images_per_prompt), output_type,
                                return_dict, callback_on_step_end,
                                callback_on_step_end_tensor_inputs, return_trajectory)

    def _sample(self, prompt, num_steps, guidance_scale, generator, latents, eta, nipp,
                output_type, return_dict, callback, callback_inputs, return_trajectory):
        if num_steps < 1:
            raise ValueError("num_steps must be >= 1")
        if nipp < 1:
            raise ValueError(f"num_images_per_prompt must be >= 1, got {nipp}")
        device = self.device
        lab = self.class_indices(prompt).to(device).repeat_interleave(nipp)
        B = lab.numel()
        self._guidance_scale = float(guidance_scale)
        self._interrupt = False
        self.scheduler.set_timesteps(num_steps, device=device)
        self._num_timesteps = len(self.scheduler.timesteps)
        latents = self.prepare_latents(B, generator, latents, device)
        pos, neg = self.encode_prompt(lab, device, 1, self.do_classifier_free_guidance)
        prompt_embeds = pos if neg is None else torch.cat([neg, pos])
        traj = [latents.clone()] if return_trajectory else None
        for i, t in enumerate(self.scheduler.timesteps):
            if prompt_embeds.shape[0] == 2 * B:      # the CFG batch [unconditional, conditional]
                eps = self.model.denoise(torch.cat([latents, latents]), t, prompt_embeds)
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + self._guidance_scale * (eps_c - eps_u)
            else:
                eps = self.model.denoise(latents, t, prompt_embeds)
            latents = self.scheduler.step(eps, t, latents, eta=eta, generator=generator).prev_sample
            if callback is not None:
                names = getattr(callback, "tensor_inputs", None) or callback_inputs
                avail = {"latents": latents, "prompt_embeds": prompt_embeds, "labels": lab}
                kwargs = {k: avail[k] for k in set(names) | {"latents"} if k in avail}
                out = callback(self, i, t, kwargs) or {}
                latents = out.pop("latents", latents)
                prompt_embeds = out.pop("prompt_embeds", prompt_embeds)
            if return_trajectory:
                traj.append(latents.clone())
        images = latents.cpu().numpy() if output_type == "np" else latents
        trajectory = torch.stack(traj) if return_trajectory else None
        if not return_dict:
            return (images,) if trajectory is None else (images, trajectory)
        return ToyPipelineOutput(images=images, trajectory=trajectory)


def sample_toy2d(model: ToyDenoiser, labels: ArrayLike, num_steps: int = 50,
                 guidance_scale: float = 1.0, generator: Optional[torch.Generator] = None,
                 callback_on_step_end: Optional[Callable] = None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
                 latents: Optional[torch.Tensor] = None, eta: float = 0.0,
                 return_trajectory: bool = False):
    """Sample the 2-D toy with DDIM and classifier-free guidance: a :class:`ToyPipeline`
    call that returns the points.

    ``labels``: (B,) class indices (or an int, giving one sample). ``guidance_scale`` 1 is the
    plain conditional model (no CFG). ``generator`` makes the initial noise reproducible.
    ``callback_on_step_end`` as in :meth:`ToyPipeline.__call__`. Returns the (B,2) samples,
    or ``(samples, trajectory)`` with the trajectory (num_steps+1, B, 2) when
    ``return_trajectory``. Used in notebook 07_guided_sampling_2d.
    """
    out = ToyPipeline(model)(labels, num_inference_steps=num_steps, guidance_scale=guidance_scale,
                             generator=generator, latents=latents, eta=eta,
                             callback_on_step_end=callback_on_step_end,
                             callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                             return_trajectory=return_trajectory)
    return (out.images, out.trajectory) if return_trajectory else out.images


# ---------------------------------------------------------------------------- train / load
def train_toy2d(out_dir: Optional[PathLike] = None, quick: bool = False, seed: int = 0,
                steps: Optional[int] = None, device=None, progress: bool = True,
                evaluate: bool = True) -> Dict:
    """Train the 2-D toy denoiser from scratch and save it to ``out_dir``
    (default: ``toy2d`` under the user data folder, see :func:`sparke_lab.models._common.train_dir`).

    Writes ``config.json`` and ``model.safetensors``. ``quick`` trains a few hundred steps
    (seconds, for tests). ``evaluate=False`` skips the report's sampling. Returns a report dict: training time, on-mode fraction and
    per-class mode weights at guidance scales 1 (no CFG), 3 and 7.5, and the true weights.
    Run by ``sparke-lab train toy2d``; the model is used in notebook 07_guided_sampling_2d.
    """
    from diffusers import DDPMScheduler
    from safetensors.torch import save_file

    out = train_dir("toy2d", out_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    dev = pick_device(device)
    mix = ToyMixture()
    steps = steps or (300 if quick else 4000)
    batch = 1024
    model = ToyDenoiser().to(dev)
    sched = DDPMScheduler(**{k: v for k, v in _scheduler_config().items()
                             if k not in ("set_alpha_to_one", "steps_offset", "timestep_spacing")})
    abar = sched.alphas_cumprod.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps,
                                                   pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    pts, labs, _ = mix.sample(200_000, seed=seed)
    pts_t, labs_t = torch.from_numpy(pts), torch.from_numpy(labs)
    t0 = time.perf_counter()
    model.train()
    with torch_threads(1):  # a tiny MLP: one thread is fastest, and robust to a busy CPU
        _train_loop(model, opt, lr_sched, pts_t, labs_t, abar, g, dev, steps, batch, progress)
    train_s = time.perf_counter() - t0
    model.eval().cpu()
    cfg = {"model": model.config, "mixture": mix.to_dict(), "scheduler": _scheduler_config(),
           "seed": seed, "steps": steps, "quick": quick}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    model.mixture, model.scheduler_config = mix, _scheduler_config()
    rep = evaluate_toy2d(model, n_per_class=100 if quick else 2000) if evaluate else {}
    rep.update({"train_seconds": round(train_s, 2), "steps": steps, "out_dir": str(out)})
    (out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    return rep


def _train_loop(model, opt, lr_sched, pts_t, labs_t, abar, g, dev, steps, batch, progress):
    from tqdm.auto import tqdm

    for _ in tqdm(range(steps), desc="toy2d", disable=not progress):
        idx = torch.randint(len(pts_t), (batch,), generator=g)
        x0, y = pts_t[idx].to(dev), labs_t[idx].to(dev)
        y = torch.where(torch.rand(batch, generator=g).to(dev) < 0.1,
                        torch.full_like(y, model.null_class), y)
        t = torch.randint(0, 1000, (batch,), generator=g).to(dev)
        noise = torch.randn(batch, 2, generator=g).to(dev)
        a = abar[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = ((model(xt, t, y) - noise) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_sched.step()


def evaluate_toy2d(model: ToyDenoiser, guidance_scales: Sequence[float] = (1.0, 3.0, 7.5),
                   n_per_class: int = 2000, num_steps: int = 50, seed: int = 0) -> Dict:
    """Report, per guidance scale, the on-mode fraction and per-class mode weights.

    The weights of each class (dominant mode first) are compared with the data's
    ``ToyMixture.weights``; CFG (scale > 1) shifts them toward the dominant mode. Used in
    notebook 07_guided_sampling_2d.
    """
    mix = model.mixture or ToyMixture()
    labels = np.repeat(np.arange(mix.n_classes), n_per_class)
    rep = {"true_weights": list(mix.weights), "n_per_class": n_per_class}
    for w in guidance_scales:
        x = sample_toy2d(model, labels, num_steps=num_steps, guidance_scale=w,
                         generator=make_generator(seed, "cpu"))
        rep[f"cfg_{w:g}"] = {
            "on_mode_fraction": round(mix.on_mode_fraction(x, labels), 4),
            "mode_weights": np.round(mix.mode_weights(x, labels), 4).tolist(),
        }
    return rep


def load_toy2d(device=None, path: Optional[PathLike] = None) -> ToyDenoiser:
    """Load the shipped 2-D toy denoiser (``toy2d`` of :func:`data_dir`, or ``path``) in eval mode.

    The returned :class:`ToyDenoiser` carries ``.mixture`` and ``.scheduler_config``; sample it
    with :func:`sample_toy2d` (or ``model.sample(labels, ...)``). A missing or corrupted
    checkpoint raises FileNotFoundError / RuntimeError naming the path and
    ``sparke-lab train toy2d``. Used in notebook 07_guided_sampling_2d.
    """
    folder = model_dir("toy2d", path)
    cfg = read_json(folder / "config.json", "toy2d")
    state = load_safetensors(folder / "model.safetensors", "toy2d")
    try:
        model = ToyDenoiser(**cfg["model"])
        model.load_state_dict(state)
        model.mixture = ToyMixture(**cfg["mixture"])
        model.scheduler_config = dict(cfg.get("scheduler") or _scheduler_config())
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise corrupted_checkpoint("toy2d", folder, exc) from exc
    return model.to(pick_device(device)).eval()


def load_toy2d_pipeline(device=None, path: Optional[PathLike] = None) -> ToyPipeline:
    """The shipped 2-D toy denoiser (:func:`load_toy2d`) as a :class:`ToyPipeline`, ready
    for :func:`sparke_lab.guidance.generate`. Used in notebook 07_guided_sampling_2d."""
    return ToyPipeline(load_toy2d(device=device, path=path))
