"""The digits image-text encoder: a real transformers CLIPModel, zero-shot accuracy, broad
captions among their digits, differentiable image features, not the judge, errors."""
import numpy as np
import pytest
import torch

from sparke_lab import models
from sparke_lab.models.digits_clip import load_digits_clip, train_digits_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip():
    return load_digits_clip(device="cpu")


def test_is_a_stock_clip_model_and_small(clip):
    from transformers import CLIPModel

    assert isinstance(clip.model, CLIPModel)
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert sum(p.numel() for p in clip.model.parameters()) < 500_000
    assert clip.image_size == 16 and clip.model.config.vision_config.num_channels == 1


def test_zero_shot_accuracy_and_broad_captions(clip):
    x, y = models.digits_real_images("test", return_labels=True)
    acc = (clip.zero_shot(x) == y).mean()
    assert acc >= 0.95, acc
    # every broad caption is closer to each of its valid digits' mean image than to any other
    xt, yt = models.digits_real_images("train", return_labels=True)
    with torch.no_grad():
        cent = torch.nn.functional.normalize(torch.stack(
            [clip.image_features(xt[yt == d]).mean(0) for d in range(10)]), dim=1)
    for p in models.load_prompt_set("broad"):
        sims = (clip.text_features([p.prompt]) @ cent.T)[0].numpy()
        inside = sims[list(p.valid_digits)]
        outside = np.delete(sims, list(p.valid_digits))
        assert outside.size == 0 or inside.min() > outside.max(), p.prompt


def test_features_are_unit_and_differentiable(clip):
    x = models.digits_real_images("test")[:6].clone().requires_grad_(True)
    f = clip.image_features(x)
    assert f.shape == (6, 32)
    np.testing.assert_allclose(f.norm(dim=1).detach().numpy(), 1, rtol=1e-5)
    (g,) = torch.autograd.grad(f[:, 0].sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    t = clip.text_features(["an odd digit", "the digit 3"])
    assert t.shape == (2, 32) and torch.allclose(t.norm(dim=1), torch.ones(2), atol=1e-5)
    # grey, colour and larger inputs give the same features (the tower's own preprocessing)
    xx = x.detach()
    rgb = clip.image_features(xx.repeat(1, 3, 1, 1))
    assert torch.allclose(rgb, clip.image_features(xx), atol=1e-6)


def test_not_the_judge(clip):
    """Guidance and evaluation must not share a feature space: another network family and
    feature size than the judge, and features that are not a linear copy of the judge's."""
    judge = models.load_digits_judge()
    assert type(clip.model).__name__ == "CLIPModel" and judge.feature_dim != 32
    x = models.digits_real_images("test")
    A = np.c_[judge.features(x), np.ones(len(x))]
    B = clip.image_features(x).detach().numpy()
    coef = np.linalg.lstsq(A[:300], B[:300], rcond=None)[0]  # fit on 300, predict 150
    res = B[300:] - A[300:] @ coef
    r2 = 1 - (res ** 2).sum() / ((B[300:] - B[300:].mean(0)) ** 2).sum()
    assert r2 < 0.95, r2


def test_quick_training_and_errors(tmp_path):
    rep = train_digits_clip(tmp_path / "c", quick=True, progress=False)
    assert 0 <= rep["zero_shot_test_accuracy"] <= 1 and rep["seed"] == 1
    c = load_digits_clip(path=tmp_path / "c")
    assert c.image_features(torch.zeros(2, 1, 16, 16)).shape == (2, 32)
    with pytest.raises(FileNotFoundError, match="sparke-lab train clip"):
        load_digits_clip(path=tmp_path / "missing")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="sparke-lab train clip"):
        load_digits_clip(path=tmp_path / "c")
