"""The digits judge: held-out accuracy, input formats, features, training, errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from sparke_lab import models
from sparke_lab.models.judge import load_digits_judge, train_judge, to_judge_input


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def judge():
    return load_digits_judge(device="cpu")


@pytest.fixture(scope="module")
def test_split():
    return models.digits_real_images("test", return_labels=True)


def test_heldout_accuracy(judge, test_split):
    x, y = test_split
    assert x.shape == (450, 1, 16, 16) and 0 <= x.min() and x.max() <= 1
    acc = (judge.predict(x) == y).mean()
    assert acc >= 0.97, acc


def test_input_formats_agree(judge, test_split):
    x, _ = test_split
    x = x[:32]
    ref = judge.predict(x)
    np.testing.assert_array_equal(judge.predict(x * 2 - 1, value_range=(-1, 1)), ref)
    np.testing.assert_array_equal(judge.predict(x[:, 0]), ref)                  # (B,H,W)
    np.testing.assert_array_equal(judge.predict(x.repeat(1, 3, 1, 1)), ref)     # RGB
    hwc = x.permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(judge.predict(hwc), ref)                      # numpy HWC
    u8 = (hwc * 255).round().astype(np.uint8)
    pil = [Image.fromarray(im[..., 0], mode="L") for im in u8]
    assert (judge.predict(u8) == ref).mean() > 0.95
    assert (judge.predict(pil) == ref).mean() > 0.95
    big = torch.nn.functional.interpolate(x, size=32, mode="bilinear")          # resized
    assert (judge.predict(big) == ref).mean() > 0.9


def test_features_and_proba(judge, test_split):
    x, _ = test_split
    f = judge.features(x[:10])
    assert f.shape == (10, judge.feature_dim) and f.dtype == np.float32
    np.testing.assert_array_equal(f, judge.features(x[:10]))
    fn = judge.features(x[:10], normalize=True)
    np.testing.assert_allclose(np.linalg.norm(fn, axis=1), 1, rtol=1e-5)
    p = judge.predict_proba(x[:10])
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(p.argmax(1), judge.predict(x[:10]))


def test_bad_inputs(judge):
    with pytest.raises(ValueError):
        to_judge_input(torch.zeros(2, 5, 16, 16))
    with pytest.raises(TypeError):
        judge.predict("an image")
    with pytest.raises(ValueError):
        judge.predict([])


def test_quick_training_and_errors(tmp_path):
    rep = train_judge(tmp_path / "j", quick=True, progress=False)
    assert 0 <= rep["test_accuracy"] <= 1 and rep["n_test"] == 450
    j = load_digits_judge(path=tmp_path / "j")
    assert j.predict(torch.zeros(2, 1, 16, 16)).shape == (2,)
    with pytest.raises(FileNotFoundError, match="sparke-lab train judge"):
        load_digits_judge(path=tmp_path / "missing")
    (tmp_path / "j" / "judge.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(RuntimeError, match="sparke-lab train judge"):
        load_digits_judge(path=tmp_path / "j")
