"""The digits mini-SD: offline loading, generation, determinism, tokenizer, prompts, errors,
quick training end to end."""
import shutil

import numpy as np
import pytest
import torch

from sparke_lab import models
from sparke_lab.models import captions
from sparke_lab.models.digits import (generate_digits, load_digits_pipeline, train_digits,
                                      evaluate_digits_pipeline)
from sparke_lab.models._common import data_dir
from sparke_lab.utils import make_generator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        yield load_digits_pipeline(device="cpu")
    finally:
        mp.undo()


def test_pipeline_is_stock_and_small(pipe):
    from diffusers import StableDiffusionPipeline

    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.safety_checker is None
    folder = data_dir() / "digits-sd"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 15 * 2**20
    assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))


def test_generate_shapes_and_determinism(pipe):
    prompts = ["a handwritten three", "an odd digit", "the digit 7", "a handwritten digit"]
    kw = dict(num_inference_steps=5, guidance_scale=5.0, output_type="pt")
    a = pipe(prompts, generator=make_generator(0), **kw).images
    b = pipe(prompts, generator=make_generator(0), **kw).images
    c = pipe(prompts, generator=make_generator(1), **kw).images
    assert a.shape == (4, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    pil = pipe(prompts[:1], generator=make_generator(0), num_inference_steps=3).images
    assert pil[0].size == (16, 16) and pil[0].mode == "L"


def test_tokenizer_unknown_words_do_not_crash(pipe):
    tok = pipe.tokenizer
    assert tok.model_max_length == 16
    for text in ["a purple elephant ∑ 42 !!", "", "A HANDWRITTEN THREE",
                 "a very long prompt " * 10]:
        ids = tok(text, padding="max_length", max_length=16, truncation=True).input_ids
        assert len(ids) == 16 and max(ids) < len(tok)
    ids = tok("a handwritten three").input_ids
    assert len(ids) == 5  # bos + three whole-word tokens + eos
    img = pipe("a purple elephant ∑", num_inference_steps=3, output_type="pt",
               generator=make_generator(0)).images
    assert torch.isfinite(img).all()


def test_prompt_sets_and_files():
    single, broad = models.load_prompt_set("single"), models.load_prompt_set("broad")
    assert len(single) == 10 * len(captions.SINGLE_TEMPLATES) and len(broad) == 15
    assert len(models.load_prompt_set("all")) == len(single) + len(broad)
    assert all(len(p.valid_digits) == 1 and p.cluster == p.valid_digits[0] for p in single)
    assert all(len(p.valid_digits) >= 5 and p.cluster >= 10 for p in broad)
    # the shipped CSV matches the grammar in code
    assert models.load_prompt_set("all") == captions.all_prompts()
    # every broad prompt carries its designed class distribution: skewed, each cluster its
    # own dominant digit, the same for every phrasing of a cluster
    dominant = {}
    for p in broad:
        q = p.class_distribution()
        assert q.sum() == pytest.approx(1.0) and (q[list(p.valid_digits)] > 0).all()
        assert q.max() >= 0.3 and np.count_nonzero(q) == len(p.valid_digits)
        assert dominant.setdefault(p.cluster, int(q.argmax())) == int(q.argmax())
    assert len(set(dominant.values())) == len(dominant)
    assert all(p.class_weights == (1.0,) for p in single)
    with pytest.raises(ValueError, match="no class distribution"):
        captions.Prompt("a cat", (1, 2), -1, "", "custom").class_distribution()
    assert (data_dir() / "prompts" / "grammar.json").is_file()
    with pytest.raises(ValueError):
        models.load_prompt_set("nope")


def test_quality_floor_smoke(pipe):
    judge = models.load_digits_judge()
    ps = models.load_prompt_set("mini")
    imgs = generate_digits(pipe, [p.prompt for p in ps], 4, num_inference_steps=25,
                           guidance_scale=5.0, seed=0)
    pred = judge.predict(imgs).reshape(len(ps), 4)
    ok = np.array([[d in p.valid_digits for d in row] for p, row in zip(ps, pred)])
    assert ok.mean() >= 0.85, ok.mean()


def test_evaluate_report_keys(pipe):
    judge = models.load_digits_judge()
    rep = evaluate_digits_pipeline(pipe, judge, guidance_scales=(5.0,), num_inference_steps=4,
                                   single_per_prompt=1, broad_per_prompt=2)
    r = rep["cfg_5"]
    assert {"single_accuracy", "broad_valid", "broad_spread", "broad_tv", "broad_clusters"} <= set(r)
    odd = r["broad_clusters"]["odd"]
    assert odd["n"] == 3 * 2 and set(odd["caption_distribution"]) == {"1", "3", "5", "7", "9"}
    assert 0 <= odd["validity"] <= 1


def test_fp16_on_cpu_falls_back_with_warning():
    with pytest.warns(RuntimeWarning, match="float32"):
        p = load_digits_pipeline(device="cpu", dtype=torch.float16)
    assert p.unet.dtype == torch.float32


def test_missing_and_corrupted_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="sparke-lab train digits"):
        load_digits_pipeline(path=tmp_path / "nowhere")
    bad = tmp_path / "bad"
    shutil.copytree(data_dir() / "digits-sd", bad)
    (bad / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="sparke-lab train digits"):
        load_digits_pipeline(path=bad)
    shutil.rmtree(bad / "vae")
    with pytest.raises(FileNotFoundError, match="vae"):
        load_digits_pipeline(path=bad)


def test_real_images():
    x = models.digits_real_images("test")
    assert x.shape == (450, 1, 16, 16) and x.dtype == torch.float32
    xt, yt = models.digits_real_images("train", return_labels=True)
    assert len(xt) == len(yt) == 1347
    with pytest.raises(ValueError):
        models.digits_real_images("val")


def test_quick_training_end_to_end(tmp_path):
    rep = train_digits(tmp_path / "sd", quick=True, progress=False)
    for part in ("model_index.json", "tokenizer/tokenizer.json", "tokenizer/merges.txt",
                 "text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"):
        assert (tmp_path / "sd" / part).exists(), part
    assert rep["quick"] and rep["unet_steps"] == 40 and rep["vae_steps"] == 30  # no timing asserts
    p = load_digits_pipeline(path=tmp_path / "sd")
    out = p(["a handwritten five", "an even digit"], num_inference_steps=3, output_type="pt",
            generator=make_generator(0)).images
    assert out.shape == (2, 1, 16, 16)


def test_training_pairs_follow_the_designed_distribution():
    """Broad captions are drawn caption first, so P(digit | caption) is the designed skew.

    120,000 pairs: each cluster gets ~7,200 broad draws; a share q has sd sqrt(q(1-q)/7200)
    <= 0.006, and we allow 5 sd (0.03). Single captions always name the image's digit.
    """
    caps, valid = captions.training_captions()
    labels = np.repeat(np.arange(10), 50)
    pool = [np.flatnonzero(labels == d) for d in range(10)]
    img, cap = captions.sample_training_pairs(pool, 120_000, np.random.default_rng(0))
    digit = labels[img]
    n_single = len(captions.SINGLE_TEMPLATES)
    single = (cap >= 1) & (cap <= 10 * n_single)
    assert np.array_equal((cap[single] - 1) // n_single, digit[single])
    assert abs((cap == 0).mean() - 0.1) < 0.01 and abs(single.mean() - 0.6) < 0.01
    assert valid[cap, digit].all()  # every caption is true of its image
    for name, (_, _, phrasings) in captions.BROAD_CLUSTERS.items():
        sel = np.isin(cap, [caps.index(t) for t in phrasings])
        share = np.bincount(digit[sel], minlength=10) / sel.sum()
        for d, w in captions.BROAD_CLASS_WEIGHTS[name]:
            assert abs(share[d] - w) < 0.03, (name, d, share[d], w)
