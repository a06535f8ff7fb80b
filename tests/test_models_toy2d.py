"""The 2-D toy: mixture generator, shipped denoiser, DDIM+CFG sampler, callbacks, training."""
import numpy as np
import pytest
import torch

from sparke_lab import models
from sparke_lab.models.toy2d import ToyMixture, load_toy2d, sample_toy2d, train_toy2d
from sparke_lab.utils import make_generator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    return load_toy2d(device="cpu")


@pytest.mark.parametrize("layout", ["contiguous", "interleaved"])
def test_mixture_partition_and_weights(layout):
    mix = ToyMixture(layout=layout)
    owned = np.concatenate([mix.class_modes(c) for c in range(3)])
    assert sorted(owned.tolist()) == list(range(9))
    assert (mix.mode_class()[mix.class_modes(1)] == 1).all()
    assert mix.mode_rank()[mix.class_modes(2)].tolist() == [0, 1, 2]
    x, lab, modes = mix.sample(6000, seed=1)
    assert x.shape == (6000, 2) and x.dtype == np.float32
    assert (mix.mode_of(x) == modes).mean() > 0.995
    assert mix.on_mode_fraction(x, lab) > 0.995
    np.testing.assert_allclose(mix.mode_weights(x, lab), np.tile([.6, .3, .1], (3, 1)), atol=0.04)


def test_mixture_off_mode_and_bad_input():
    mix = ToyMixture()
    assert mix.mode_of(np.zeros((1, 2)))[0] == -1
    assert mix.mode_of(mix.centers).tolist() == list(range(9))
    with pytest.raises(ValueError):
        ToyMixture(weights=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError):
        mix.on_mode_fraction(np.zeros((2, 2)), [0, 3])


def test_sample_shapes_and_determinism(toy):
    labels = [0, 1, 2, 0]
    a = sample_toy2d(toy, labels, num_steps=10, guidance_scale=3.0, generator=make_generator(0))
    b = sample_toy2d(toy, labels, num_steps=10, guidance_scale=3.0, generator=make_generator(0))
    c = sample_toy2d(toy, labels, num_steps=10, guidance_scale=3.0, generator=make_generator(1))
    assert a.shape == (4, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError):
        sample_toy2d(toy, [5], num_steps=2)


def test_callback_signature_and_latent_replacement(toy):
    calls = []

    def cb(pipe, i, t, kw):
        calls.append((i, int(t)))
        assert set(kw) >= {"latents"} and kw["latents"].shape == (3, 2)
        assert pipe.num_timesteps == 7 and pipe.guidance_scale == 2.0
        assert pipe.do_classifier_free_guidance and pipe.scheduler is not None
        if i == pipe.num_timesteps - 1:
            return {"latents": torch.zeros_like(kw["latents"])}
        return kw

    out = sample_toy2d(toy, [0, 1, 2], num_steps=7, guidance_scale=2.0,
                       generator=make_generator(0), callback_on_step_end=cb,
                       callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    assert [c[0] for c in calls] == list(range(7))
    assert calls[0][1] > calls[-1][1]
    assert torch.equal(out, torch.zeros(3, 2))
    x, traj = sample_toy2d(toy, [0], num_steps=5, return_trajectory=True)
    assert traj.shape == (6, 1, 2) and torch.equal(traj[-1], x)


def test_shipped_model_quality_and_cfg_collapse(toy):
    mix = toy.mixture
    labels = np.repeat(np.arange(3), 400)
    x1 = sample_toy2d(toy, labels, num_steps=50, guidance_scale=1.0, generator=make_generator(0))
    x3 = sample_toy2d(toy, labels, num_steps=50, guidance_scale=3.0, generator=make_generator(0))
    assert mix.on_mode_fraction(x1, labels) > 0.95
    assert mix.on_mode_fraction(x3, labels) > 0.95
    w1, w3 = mix.mode_weights(x1, labels), mix.mode_weights(x3, labels)
    np.testing.assert_allclose(w1, np.tile([.6, .3, .1], (3, 1)), atol=0.1)
    assert (w3[:, 0] > w1[:, 0] + 0.1).all()  # CFG collapses mass onto the dominant mode


def test_quick_training_roundtrip(tmp_path):
    rep = train_toy2d(tmp_path / "toy", quick=True, progress=False)
    assert {"cfg_1", "train_seconds", "true_weights"} <= set(rep)
    m = models.load_toy2d(path=tmp_path / "toy")
    assert sample_toy2d(m, [0, 1], num_steps=3).shape == (2, 2)


def test_missing_and_corrupted_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="sparke-lab train toy2d"):
        load_toy2d(path=tmp_path / "nowhere")
    train_toy2d(tmp_path / "t", quick=True, steps=5, progress=False, evaluate=False)
    (tmp_path / "t" / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=str(tmp_path / "t")):
        load_toy2d(path=tmp_path / "t")


def test_pipeline_matches_a_plain_ddim_cfg_loop(toy):
    """The pipeline (class embeddings as prompt embeddings) samples exactly what a DDIM loop
    over ``model(x, t, labels)`` with CFG gives: the same arithmetic, to the bit."""
    from diffusers import DDIMScheduler
    labels = torch.tensor([0, 2, 1, 1])
    sched = DDIMScheduler.from_config(toy.scheduler_config)
    sched.set_timesteps(12)
    x = torch.randn((4, 2), generator=make_generator(4)) * sched.init_noise_sigma
    null = torch.full_like(labels, toy.null_class)
    with torch.no_grad():
        for t in sched.timesteps:
            eps_u, eps_c = toy(torch.cat([x, x]), t, torch.cat([null, labels])).chunk(2)
            x = sched.step(eps_u + 2.5 * (eps_c - eps_u), t, x).prev_sample
    pipe = models.ToyPipeline(toy)
    out = pipe(labels, num_inference_steps=12, guidance_scale=2.5, generator=make_generator(4))
    assert torch.equal(out.images, x)
    assert pipe.num_timesteps == 12 and pipe.guidance_scale == 2.5
    pos, neg = pipe.encode_prompt([0, 2])
    assert torch.equal(pos, toy.class_emb(torch.tensor([0, 2])))
    assert torch.equal(neg, toy.class_emb(torch.tensor([toy.null_class] * 2)))
    assert pipe(labels, num_inference_steps=3, output_type="np").images.shape == (4, 2)
    assert pipe([1], num_inference_steps=3, num_images_per_prompt=3).images.shape == (3, 2)
