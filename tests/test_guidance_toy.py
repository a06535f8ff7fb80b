"""SPARKE on the shipped 2-D toy (CFG collapse) and the digits pipeline, small sizes."""
import numpy as np
import pytest
import torch

from sparke_lab.guidance import CADS, IntervalGuidance, SparkeGuidance, generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread


def _toy():
    try:
        from sparke_lab.models import load_toy2d_pipeline
        return load_toy2d_pipeline()
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"toy model unavailable: {exc}")


def test_sparke_undoes_cfg_collapse_on_toy():
    pipe = _toy()
    mix = pipe.mixture
    truth = np.asarray(mix.weights)
    labels = np.concatenate([np.full(50, c) for _ in range(2) for c in range(3)])

    def run(cb):
        x = generate(pipe, labels, cb, batch_size=50, num_inference_steps=50,
                     guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
                     progress=False)
        W = mix.mode_weights(x, labels)
        return mix.on_mode_fraction(x, labels), float((0.5 * np.abs(W - truth).sum(1)).mean())

    on0, tv0 = run(None)
    g = SparkeGuidance.recommended("toy2d")
    on1, tv1 = run(g)
    assert len(g.bank) == len(labels)
    assert tv1 <= 0.5 * tv0, (tv0, tv1)
    assert on1 >= 0.85


def test_toy_callback_sees_one_hot_prompts():
    pipe = _toy()
    g = SparkeGuidance(features="raw", sigma_image=1.0, scale=0.0)
    generate(pipe, [0, 1, 2], g, num_inference_steps=5, guidance_scale=3.0, progress=False)
    assert torch.equal(g.bank.prompt_features, torch.eye(pipe.n_classes))


def test_generate_refuses_the_bare_toy_denoiser():
    pipe = _toy()
    with pytest.raises(TypeError, match="ToyPipeline"):
        generate(pipe.model, [0, 1], None, num_inference_steps=2, progress=False)


class _RecordingCADS(CADS):
    """CADS that keeps the prompt embeddings it hands back at each step."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def apply(self, pipeline, step_index, total, timestep, callback_kwargs):
        out = super().apply(pipeline, step_index, total, timestep, callback_kwargs)
        self.seen.append(out["prompt_embeds"].clone())
        return out


def test_cads_runs_on_the_toy_prompt_embedding():
    """CADS acts on the toy like on SD: the positive half of the CFG batch (the class
    embeddings) is noised early, the null half never, and the late steps run clean."""
    pipe = _toy()
    labels = [0, 1, 2, 0]
    cads = _RecordingCADS(seed=3)
    kw = dict(num_inference_steps=20, guidance_scale=3.0, progress=False)
    x = generate(pipe, labels, cads, generator=torch.Generator().manual_seed(0), **kw)
    ref = generate(pipe, labels, None, generator=torch.Generator().manual_seed(0), **kw)
    pos, neg = pipe.encode_prompt(labels)
    clean = torch.cat([neg, pos])
    assert len(cads.seen) == 20 and cads.seen[0].shape == clean.shape == (8, pipe.model.emb)
    for i, emb in enumerate(cads.seen):
        assert torch.equal(emb[:4], clean[:4])                   # the null class stays clean
        s = 1.0 - (i + 1) / 20
        if s <= cads.tau1 or i == 19:                           # gamma = 1: the clean condition
            assert torch.equal(emb[4:], clean[4:]), i
        else:
            assert not torch.allclose(emb[4:], clean[4:]), i
    assert not torch.equal(x, ref)


def test_interval_guidance_runs_on_the_toy(scale_spy):
    pipe = _toy()
    labels = [0, 1, 2] * 4
    kw = dict(num_inference_steps=20, progress=False)

    def run(cb, cfg):
        return generate(pipe, labels, cb, guidance_scale=cfg, batch_size=len(labels),
                        generator=torch.Generator().manual_seed(1), **kw)

    cfg3 = run(None, 3.0)
    # CFG over the whole run is plain CFG, to the bit
    assert torch.equal(run(IntervalGuidance(guidance_scale=3.0, interval=(0.0, 1.0)), 3.0), cfg3)
    # no CFG in the first half: the pipeline's scale is switched per step
    spy = scale_spy(IntervalGuidance(guidance_scale=3.0, interval=(0.5, 1.0)))
    out = run(spy, 3.0)
    assert spy.scales[:10] == [1.0 + 1e-6] * 10 and spy.scales[10:] == [3.0] * 10   # 1 + 1e-6: CFG off
    assert not torch.equal(out, cfg3)


def test_toy_noise_per_sample_generator_does_not_depend_on_the_batch():
    pipe = _toy()
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]
    together = pipe.prepare_latents(3, gens([5, 6, 7]))
    assert torch.equal(together[1], pipe.prepare_latents(1, gens([6]))[0])
    with pytest.raises(ValueError, match="2 generators for 3"):
        pipe.prepare_latents(3, gens([5, 6]))
