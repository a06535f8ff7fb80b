"""Offline models shipped in ``sparke_lab/data/`` (package data): the 2-D toy, the digits mini-SD and its judge.

Nothing here downloads weights: every model is trained in this repository (from a Gaussian
mixture and from scikit-learn's bundled digits) and loaded from local folders.

- 2-D toy (notebook 07_guided_sampling_2d): :class:`ToyMixture`, :func:`load_toy2d`,
  :class:`ToyPipeline` (:func:`load_toy2d_pipeline`), :func:`sample_toy2d`,
  :func:`train_toy2d`, :func:`evaluate_toy2d`.
- digits mini-SD (notebook 08_guided_generation_digits): :func:`load_digits_pipeline`,
  :func:`generate_digits`, :func:`evaluate_digits_pipeline`, :func:`train_digits`,
  :func:`digits_real_images` (in :mod:`.digits_data`, the training images), :func:`load_prompt_set`.
- judge (notebooks 04_kernel_eigenspectra, 08): :func:`load_digits_judge`, :func:`train_judge`
  (:data:`REJECT` = -1 is its "not a digit").
- digits image-text encoder, a tiny CLIP (notebook 08, semantic guidance):
  :func:`load_digits_clip`, :func:`train_digits_clip`.
"""
from ._common import data_dir, shipped_data_dir, user_data_dir
from .captions import Prompt, load_prompt_set, write_prompt_files
from .digits import (digits_real_images, evaluate_digits_pipeline, generate_digits,
                     load_digits_pipeline, train_digits)
from .digits_clip import DigitsClip, load_digits_clip, train_digits_clip
from .judge import REJECT, DigitsJudge, load_digits_judge, train_judge
from .toy2d import (ToyDenoiser, ToyMixture, ToyPipeline, evaluate_toy2d, load_toy2d,
                    load_toy2d_pipeline, sample_toy2d, train_toy2d)

__all__ = [
    "data_dir", "shipped_data_dir", "user_data_dir", "Prompt", "load_prompt_set", "write_prompt_files",
    "digits_real_images", "evaluate_digits_pipeline", "generate_digits",
    "load_digits_pipeline", "train_digits", "DigitsJudge", "load_digits_judge", "train_judge",
    "REJECT", "DigitsClip", "load_digits_clip", "train_digits_clip",
    "ToyDenoiser", "ToyMixture", "ToyPipeline", "evaluate_toy2d", "load_toy2d",
    "load_toy2d_pipeline", "sample_toy2d", "train_toy2d",
]
