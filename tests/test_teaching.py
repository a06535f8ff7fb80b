"""Unit tests of sparke_lab.teaching and sparke_lab.embeddings (course helpers)."""
import math

import numpy as np
import pytest

import sparke_lab as sl
from sparke_lab import teaching


def test_block_kernel_scores_are_exact():
    K = teaching.block_kernel([2, 1, 1])
    assert K.shape == (4, 4) and np.allclose(np.diag(K), 1)
    assert abs(sl.score_from_kernel(K, order=2) - 8 / 3) < 1e-9
    assert abs(sl.score_from_kernel(K, order=1) - 2 * math.sqrt(2)) < 1e-9
    with pytest.raises(ValueError):
        teaching.block_kernel([2, 0])


def test_time_call_and_slope():
    calls = []
    t = teaching.time_call(lambda x: calls.append(x), 1, repeat=3, warmup=1)
    assert t >= 0 and len(calls) == 4
    ns = np.array([10, 20, 40, 80])
    assert abs(teaching.loglog_slope(ns, 1e-6 * ns**2.0) - 2.0) < 1e-9
    with pytest.raises(ValueError):
        teaching.loglog_slope([1, 2], [0.0, np.nan])


def test_digit_prompt_features_geometry():
    F = teaching.digit_prompt_features(["a handwritten three", "an odd digit", "any digit", "a handwritten two"])
    assert np.allclose(np.linalg.norm(F, axis=1), 1)
    cos = F @ F.T
    assert cos[1, 2] > cos[1, 0] > cos[1, 3] == 0.0      # odd~any > odd~three > odd~two
    noisy = teaching.digit_prompt_features(["any digit"] * 5, noise=0.05, seed=1)
    assert np.allclose(np.linalg.norm(noisy, axis=1), 1) and not np.allclose(noisy[0], noisy[1])
    with pytest.raises(KeyError):
        teaching.digit_prompt_features(["a cat"])


def test_prompted_digits_behaviours():
    labels = np.repeat(np.arange(10), 5)
    prompts = ["an odd digit", "a handwritten four"]
    idx, pid = teaching.prompted_digits(labels, prompts, per_prompt=10, behaviour="diverse", seed=0)
    assert len(idx) == len(pid) == 20
    assert set(labels[idx[pid == 0]]) == {1, 3, 5, 7, 9} and set(labels[idx[pid == 1]]) == {4}
    idx_c, pid_c = teaching.prompted_digits(labels, prompts, per_prompt=10, behaviour="collapsed", seed=0)
    assert set(labels[idx_c[pid_c == 0]]) == {1}
    with pytest.raises(ValueError):
        teaching.prompted_digits(labels, prompts, behaviour="greedy")


def test_assign_modes_recovers_groups():
    toy = sl.gaussian_mixture(90, [0.5, 0.3, 0.2], dim=3, separation=10.0, spread=0.1, seed=0)
    spec = sl.kernel_spectrum(toy.X, sigma=3.0, top_k=3)
    modes = teaching.assign_modes(spec, n_modes=3)
    # mode j is the group of weight rank j
    assert np.array_equal(modes, toy.labels)


def test_umap_embed_is_seeded():
    pytest.importorskip("umap")
    from sparke_lab.embeddings import umap_embed
    X = sl.gaussian_mixture(40, 2, dim=5, separation=10.0, spread=0.5, seed=0).X
    E1 = umap_embed(X, random_state=3, n_epochs=20)
    E2 = umap_embed(X, random_state=3, n_epochs=20)
    assert E1.shape == (40, 2) and E1.dtype == np.float32
    assert np.allclose(E1, E2)
    with pytest.raises(ValueError):
        umap_embed(X[:2])
    with pytest.raises(ValueError):
        umap_embed(np.full((5, 2), np.nan))


def test_feature_spaces_match_each_model_and_have_unit_rows(pipe):
    import torch
    from sparke_lab.guidance.semantic import ClipFeatures
    from sparke_lab.models import load_digits_judge

    judge, clip = load_digits_judge(), ClipFeatures.for_digits()
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(5, 1, 16, 16, generator=g)
    spaces = teaching.feature_spaces(imgs, pipe=pipe, clip=clip, judge=judge, batch_size=2)
    assert set(spaces) == {"latent", "semantic", "judge"}
    for F in spaces.values():
        assert F.shape[0] == 5 and F.dtype == np.float64
        np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1.0, rtol=1e-6)
    from sparke_lab.guidance.semantic import clip_image_features
    with torch.no_grad():   # the reference: one call of each model on the whole batch
        z = pipe.vae.encode(imgs * 2 - 1).latent_dist.mean.reshape(5, -1)
        ref = {"latent": (z / z.norm(dim=1, keepdim=True)).double().numpy(),
               "semantic": clip_image_features(clip.model, imgs, clip.image_size, clip.image_mean,
                                               clip.image_std).double().numpy(),
               "judge": judge.features(imgs, normalize=True)}
    # float32 models run in batches of 2 vs 5: only the summation order differs; sums of a few
    # hundred float32 terms (eps 6e-8) through a few layers stay well inside 1e-4 on unit rows
    for name in spaces:
        np.testing.assert_allclose(spaces[name], ref[name], atol=1e-4, err_msg=name)


def test_feature_spaces_bad_input():
    import torch
    with pytest.raises(ValueError, match="at least one"):
        teaching.feature_spaces(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        teaching.feature_spaces(torch.rand(2, 16, 16), judge=object())
    bad = torch.rand(2, 1, 16, 16)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        teaching.feature_spaces(bad, judge=object())
