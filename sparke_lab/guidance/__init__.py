"""Diversity guidance for stock diffusers pipelines: SPARKE, its banks and the baselines.

Every method is a ``diffusers`` ``PipelineCallback`` passed as ``callback_on_step_end``:

* :class:`SparkeGuidance` - SPARKE (latent conditional RKE, default), latent RKE, Vendi and
  conditional Vendi guidance;
* :class:`MemoryBank` (exact rows) and :class:`SketchBank` (random-Fourier-feature sums);
* :mod:`.objectives`: the losses, gradients and the one step rule every method uses;
* baselines: :class:`ParticleGuidance`, :class:`CADS`, :class:`VendiGuidance` (c-VSG style,
  sliding window), :class:`IntervalGuidance` (CFG only inside a window);
* :func:`generate` runs any of them on SD 1.x/2.x, SDXL, PixArt-Sigma, the digits pipeline
  and the 2-D toy.

Taught in: 07_guided_sampling_2d, 08_guided_generation_digits, 09_stable_diffusion_on_gpu.
"""
from ._base import GuidanceCallback, generate, total_steps
from .bank import MemoryBank, SketchBank, load_bank
from .baselines import CADS, IntervalGuidance, ParticleGuidance, VendiGuidance
from .pipelines import call_pipeline, encode_prompts, pipeline_family
from .sparke import OBJECTIVES, RECOMMENDED, SparkeGuidance

__all__ = [
    "SparkeGuidance", "MemoryBank", "SketchBank", "load_bank",
    "ParticleGuidance", "CADS", "VendiGuidance", "IntervalGuidance",
    "GuidanceCallback", "generate", "total_steps", "call_pipeline", "encode_prompts",
    "pipeline_family", "OBJECTIVES", "RECOMMENDED",
]
