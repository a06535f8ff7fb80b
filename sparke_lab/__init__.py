"""sparke-lab: prompt-aware diversity in diffusion models.

Kernel-entropy scores (RKE, Vendi, order-alpha, conditional), spectra, SPARKE guidance
for stock diffusers pipelines, offline models and the course notebooks.
"""
import os as _os

# Idle OpenMP threads sleep instead of spinning: on a small, shared CPU spinning threads
# starve the other process (measured: notebooks 2-3x slower). Effective only if torch is
# not imported yet; the Makefile sets it for tests too.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .kernels import (cosine_kernel, gaussian_kernel, kernel_matrix,
                      median_heuristic_bandwidth)
from .rff import FourierFeatures
from .scores import (conditional_entropy, conditional_rke_score, conditional_vendi_score,
                     entropy, information_vendi_score, joint_kernel_eigenvalues,
                     kernel_eigenvalues, renyi_entropy, rke_score, rrke, score_from_kernel,
                     vendi_score)
from .spectra import Mode, Spectrum, find_modes, kernel_spectrum
from .synthetic import Mixture, gaussian_mixture
from .utils import full_size, make_generator, pick_device, pick_dtype, set_seed

__version__ = "0.1.0"

__all__ = [
    "cosine_kernel", "gaussian_kernel", "kernel_matrix", "median_heuristic_bandwidth",
    "FourierFeatures",
    "entropy", "score_from_kernel", "kernel_eigenvalues", "joint_kernel_eigenvalues",
    "renyi_entropy", "vendi_score", "rke_score", "conditional_entropy",
    "conditional_rke_score", "conditional_vendi_score", "information_vendi_score", "rrke",
    "Spectrum", "Mode", "kernel_spectrum", "find_modes",
    "Mixture", "gaussian_mixture",
    "full_size", "make_generator", "pick_device", "pick_dtype", "set_seed",
]


_LAZY_GUIDANCE = {"SparkeGuidance", "MemoryBank", "SketchBank", "load_bank", "ParticleGuidance",
                  "CADS", "VendiGuidance", "IntervalGuidance", "generate"}


def __getattr__(name):
    # Heavy submodules (diffusers, UMAP) load on first use so `import sparke_lab` stays fast.
    import importlib
    if name in {"models", "guidance", "metrics", "plotting", "widgets", "experiments", "report",
                "embeddings", "teaching"}:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_GUIDANCE:
        return getattr(importlib.import_module(".guidance", __name__), name)
    raise AttributeError(f"module 'sparke_lab' has no attribute {name!r}")
