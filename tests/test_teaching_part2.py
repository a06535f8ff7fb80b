"""Unit tests of the sparke_lab.teaching helpers for notebooks 07-10 (guided sampling, own images)."""
import numpy as np
import pytest
import torch

from sparke_lab import teaching
from sparke_lab.models import ToyMixture


def test_toy_mode_tv_is_zero_for_exact_weights_and_one_for_wrong_class():
    mix = ToyMixture()
    counts = (np.asarray(mix.weights) * 10).astype(int)          # 6, 3, 1
    pts, lab = [], []
    for c in range(mix.n_classes):
        for m, k in zip(mix.class_modes(c), counts):
            pts += [mix.centers[m]] * k
            lab += [c] * k
    tv = teaching.toy_mode_tv(mix, np.array(pts), np.array(lab))
    assert tv.shape == (mix.n_classes,) and np.allclose(tv, 0)
    only_dominant = np.array([mix.centers[mix.class_modes(0)[0]]] * 5)
    assert np.isclose(teaching.toy_mode_tv(mix, only_dominant, np.zeros(5, int))[0], 0.4)


def test_rke_guidance_field_points_away_and_ignores_other_prompts():
    bank = np.array([[0.0, 0.0], [2.5, 2.5]])
    gx, gy, U, V, L = teaching.rke_guidance_field(bank, [0, 1], query_class=0, n_classes=2,
                                                  sigma_image=1.0, lim=1.0, n=3)
    assert gx.shape == U.shape == L.shape == (3, 3)
    # at (1, 0) the push from the class-0 point at the origin is along +x
    assert U[1, 2] > 0 and abs(V[1, 2]) < 1e-6
    only0 = teaching.rke_guidance_field(bank[:1], [0], 0, 2, sigma_image=1.0, lim=1.0, n=3,
                                        conditional=False)
    assert np.allclose(U, only0[2], atol=1e-6) and np.allclose(L, only0[4], atol=1e-6)
    uncond = teaching.rke_guidance_field(bank, [0, 1], 0, 2, sigma_image=1.0, lim=1.0, n=3,
                                         conditional=False)
    assert np.all(uncond[4] >= L - 1e-9) and not np.allclose(uncond[4], L)


def test_tile_images_layout():
    imgs = np.stack([np.full((2, 3), v) for v in (0.0, 1.0, 0.25)])
    t = teaching.tile_images(imgs, nrow=2, pad=1, value=0.5)
    assert t.shape == (2 * 3 - 1, 2 * 4 - 1)
    assert t[0, 0] == 0.0 and t[0, 4] == 1.0 and t[3, 0] == 0.25 and t[2, 0] == 0.5
    assert teaching.tile_images(torch.zeros(3, 1, 2, 2), nrow=3).shape == (2, 8)
    with pytest.raises(ValueError):
        teaching.tile_images(np.zeros((0, 2, 2)))


@pytest.mark.parametrize("csv", [False, True])
def test_image_folder_roundtrip(tmp_path, csv):
    rng = np.random.default_rng(0)
    imgs = rng.random((4, 8, 8))
    prompts = ["a cat", "a dog", "a cat", "an odd digit"]
    teaching.write_demo_image_folder(tmp_path, imgs, prompts, csv=csv)
    back, got = teaching.load_image_folder(tmp_path)
    assert back.shape == (4, 8, 8) and got == prompts
    assert np.abs(back - imgs).max() <= 0.5 / 255 + 1e-6       # 8-bit rounding only
    small, _ = teaching.load_image_folder(tmp_path, size=4)
    assert small.shape == (4, 4, 4)


def test_load_image_folder_without_prompts_and_empty(tmp_path):
    from PIL import Image
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "x.png")
    imgs, prompts = teaching.load_image_folder(tmp_path)
    assert imgs.shape == (1, 5, 5) and prompts == [None]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        teaching.load_image_folder(empty)


def test_downsampled_pixels():
    x = np.zeros((2, 16, 16))
    x[1, :8, :8] = 1.0
    F = teaching.downsampled_pixels(x, size=2)
    assert F.shape == (2, 4) and np.allclose(F[0], 0) and np.allclose(F[1], [1, 0, 0, 0])
    with pytest.raises(ValueError):
        teaching.downsampled_pixels(np.zeros((2, 3, 4, 4)))
