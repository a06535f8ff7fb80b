import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# one thread per xdist worker: the repository's conftest.py


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


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory):
    """The wheel built, installed into a fresh venv and used outside the checkout, by
    benchmarks/install_check.py (once per session: tests/test_wheel_install.py checks it,
    tests/test_browser.py opens its compare report)."""
    import importlib.util
    import json
    from pathlib import Path

    from filelock import FileLock

    def build():
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "install_check.py"
        spec = importlib.util.spec_from_file_location("sparke_lab_install_check", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.check(tmp_path_factory.mktemp("wheel"))

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build()
    # under pytest-xdist: the first worker builds, the others read its result (one shared folder)
    shared = tmp_path_factory.getbasetemp().parent / "installed_wheel.json"
    with FileLock(str(shared) + ".lock"):
        if shared.is_file():
            return json.loads(shared.read_text())
        out = build()
        shared.write_text(json.dumps(out))
        return out


# Property tests draw the same examples on every machine and run (CI must not fail on a new
# random draw); SPARKE_LAB_HYPOTHESIS_RANDOM=1 explores fresh examples while developing.
try:
    from hypothesis import settings as _hyp_settings
    _hyp_settings.register_profile("sparke-lab-fixed", derandomize=True)
    if os.environ.get("SPARKE_LAB_HYPOTHESIS_RANDOM") != "1":
        _hyp_settings.load_profile("sparke-lab-fixed")
except ImportError:  # hypothesis is a test extra
    pass
