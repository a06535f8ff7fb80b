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


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory):
    """The wheel built, installed into a fresh venv and used outside the checkout, by
    benchmarks/install_check.py (once per session: tests/test_wheel_install.py checks it,
    tests/test_browser.py opens its compare report)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "install_check.py"
    spec = importlib.util.spec_from_file_location("sparke_lab_install_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check(tmp_path_factory.mktemp("wheel"))


# Property tests draw the same examples on every machine and run (CI must not fail on a new
# random draw); SPARKE_LAB_HYPOTHESIS_RANDOM=1 explores fresh examples while developing.
try:
    from hypothesis import settings as _hyp_settings
    _hyp_settings.register_profile("sparke-lab-fixed", derandomize=True)
    if os.environ.get("SPARKE_LAB_HYPOTHESIS_RANDOM") != "1":
        _hyp_settings.load_profile("sparke-lab-fixed")
except ImportError:  # hypothesis is a test extra
    pass
