import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models on a small shared CPU run several times faster on one thread."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def scale_spy():
    """Wraps a step-end callback; records the pipeline's guidance scale at each step."""
    class ScaleSpy:
        tensor_inputs = ["latents"]

        def __init__(self, inner):
            self.inner, self.scales = inner, []
            if hasattr(inner, "prepare_call"):
                self.prepare_call = inner.prepare_call

        def __call__(self, pipe, i, t, kwargs):
            self.scales.append(pipe.guidance_scale)
            return self.inner(pipe, i, t, kwargs)
    return ScaleSpy


@pytest.fixture(scope="session")
def pipe():
    """The shipped digits pipeline, loaded once per session (the comparison runner's tests)."""
    from sparke_lab.models import load_digits_pipeline
    return load_digits_pipeline()


@pytest.fixture(scope="session")
def run_config():
    """A small comparison-run configuration on the digits model; keywords override."""
    from sparke_lab.experiments import RunConfig

    def make(**kw):
        base = dict(model="digits", prompts=[dict(prompt="an odd digit", cluster=0, valid=[1, 3, 5, 7, 9]),
                                             dict(prompt="a handwritten three", cluster=1, valid=[3])],
                    methods=["none", "sparke@0.3"], per_prompt=3, steps=4, cfg=5.0, seed=1, batch_size=2,
                    device="cpu", dtype="auto")
        base.update(kw)
        return RunConfig(**base)
    return make
