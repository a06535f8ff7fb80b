"""SPARKE and the baselines on stock diffusers pipelines built from tiny random configs."""
import warnings

import numpy as np
import pytest
import torch

from sparke_lab.guidance import (CADS, IntervalGuidance, MemoryBank, ParticleGuidance,
                                 SparkeGuidance, VendiGuidance, encode_prompts, generate,
                                 pipeline_family)
from sparke_lab.guidance.testing import tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread

warnings.filterwarnings("ignore", category=FutureWarning)
PROMPTS = ["a cat", "a dog", "a red car"]


@pytest.fixture(scope="module")
def sd():
    return tiny_pipeline("sd")


def _kw(fam, steps=3, seed=0, **extra):
    kw = dict(num_inference_steps=steps, guidance_scale=5.0, output_type="pt", progress=False,
              generator=torch.Generator().manual_seed(seed))
    if fam == "pixart":
        kw.update(clean_caption=False, use_resolution_binning=False, height=16, width=16)
    if fam == "sdxl":
        kw.update(height=16, width=16)
    kw.update(extra)
    return kw


def test_scale_zero_reproduces_unguided_images_exactly(sd):
    ref = generate(sd, PROMPTS, None, **_kw("sd"))
    g = SparkeGuidance(scale=0.0, every=1)
    out = g.generate(sd, PROMPTS, **_kw("sd"))
    assert torch.equal(ref, out)
    assert len(g.bank) == 3          # samples still enter the bank
    g2 = SparkeGuidance(scale=0.2, every=1)
    g2.generate(sd, PROMPTS, **_kw("sd"))
    out2 = g2.generate(sd, PROMPTS, **_kw("sd"))
    assert not torch.equal(ref, out2) and len(g2.bank) == 6


@pytest.mark.parametrize("scheduler,steps,batch", [("ddim", 4, 1), ("euler", 3, 2),
                                                     ("dpm", 5, 3), ("heun", 2, 2)])
def test_bank_fills_for_any_scheduler_step_count_and_batch(scheduler, steps, batch):
    pipe = tiny_pipeline("sd", scheduler=scheduler)
    g = SparkeGuidance(scale=0.1, every=2)
    g.generate(pipe, PROMPTS, batch_size=batch, **_kw("sd", steps=steps))
    assert len(g.bank) == 3 and g.bank.prompt_features.shape[0] == 3
    assert g.n_calls == -(-3 // batch)


@pytest.mark.parametrize("family", ["sd", "sdxl", "pixart"])
def test_every_family_guides_and_fills_bank(family):
    pipe = pipe_ = tiny_pipeline(family)
    assert pipeline_family(pipe) == family
    T = encode_prompts(pipe, PROMPTS)
    assert T.shape[0] == 3 and torch.allclose(T.norm(dim=1), torch.ones(3))
    ref = generate(pipe, PROMPTS, None, batch_size=3, **_kw(family))
    g = SparkeGuidance(scale=0.2, every=1)
    out = g.generate(pipe, PROMPTS, batch_size=3, num_images_per_prompt=2, **_kw(family))
    assert out.shape[0] == 6 and len(g.bank) == 6
    assert torch.isfinite(out).all()
    g0 = SparkeGuidance(scale=0.0)
    assert torch.equal(g0.generate(pipe, PROMPTS, batch_size=3, **_kw(family)), ref)


def test_direct_pipeline_call_with_callback(sd):
    g = SparkeGuidance(scale=0.1, every=1)
    g.set_prompts(sd, ["a cat", "a dog"])
    sd(["a cat", "a dog"], num_inference_steps=3, callback_on_step_end=g, output_type="pt",
       generator=torch.Generator().manual_seed(0))
    assert len(g.bank) == 2
    # without set_prompts, features are pooled from the pipeline's prompt_embeds
    g2 = SparkeGuidance(scale=0.1, every=1)
    assert "prompt_embeds" in g2.tensor_inputs
    sd(["a cat"], num_inference_steps=2, callback_on_step_end=g2, output_type="pt")
    assert len(g2.bank) == 1 and g2.bank.prompt_features.shape == (1, 32)


def test_bank_persists_and_saves_across_calls(sd, tmp_path):
    g = SparkeGuidance(scale=0.05)
    for s in range(2):
        g.generate(sd, PROMPTS[:2], **_kw("sd", seed=s))
    assert len(g.bank) == 4
    p = tmp_path / "b.safetensors"
    g.bank.save(p)
    g2 = SparkeGuidance(scale=0.05, bank=MemoryBank.load(p))
    g2.generate(sd, PROMPTS[:1], **_kw("sd"))
    assert len(g2.bank) == 5
    bank = g.bank
    g.reset()
    assert g.bank is bank and len(bank) == 0


def test_sketch_bank_on_pipeline(sd):
    g = SparkeGuidance(scale=0.1, every=1, bank="sketch", n_features=64)
    g.generate(sd, PROMPTS, batch_size=2, **_kw("sd"))
    assert len(g.bank) == 3
    out = g.generate(sd, PROMPTS[:1], **_kw("sd"))
    assert torch.isfinite(out).all() and g.last_stats["rows"] == 3


def test_objectives_run(sd):
    for obj in ("rke", "vendi", "cond-vendi"):
        g = SparkeGuidance(objective=obj, scale=0.1, every=1)
        g.generate(sd, PROMPTS, batch_size=2, **_kw("sd"))
        assert len(g.bank) == 3


def test_particle_guidance_moves_batch_only(sd):
    ref = generate(sd, PROMPTS, None, batch_size=3, **_kw("sd"))
    pg = ParticleGuidance(scale=0.1)
    out = pg.generate(sd, PROMPTS, batch_size=3, **_kw("sd"))
    assert not torch.equal(out, ref)
    single = pg.generate(sd, PROMPTS[:1], batch_size=1, **_kw("sd"))
    assert torch.equal(single, generate(sd, PROMPTS[:1], None, batch_size=1, **_kw("sd")))


def test_cads_noises_condition_early_only():
    c = CADS()
    assert c.gamma(0.95) == 0.0 and c.gamma(0.3) == 1.0 and abs(c.gamma(0.75) - 0.5) < 1e-12
    seen = []

    class Spy:
        tensor_inputs = ["latents", "prompt_embeds"]

        def __call__(self, pipe, i, t, kw):
            kw = c(pipe, i, t, kw)
            seen.append(kw["prompt_embeds"].clone())
            return kw

    pipe = tiny_pipeline("sd")
    from sparke_lab.guidance import call_pipeline
    call_pipeline(pipe, Spy(), prompt=["a cat"], num_inference_steps=10, output_type="pt",
                  guidance_scale=5.0)
    clean = c._clean
    # early steps: condition replaced by noise; late steps: clean again
    assert not torch.allclose(seen[0][1:], clean[1:])
    assert torch.equal(seen[-2][1:], clean[1:].to(seen[-2].dtype))
    assert torch.equal(seen[0][:1], clean[:1])     # negative half untouched


def test_vendi_guidance_window(sd):
    v = VendiGuidance(window_size=4, every=1, scale=0.1)
    for s in range(3):
        v.generate(sd, PROMPTS, batch_size=3, **_kw("sd", seed=s))
    assert len(v.bank) == 4 and v.bank.total_added == 9


def test_interval_guidance_sets_scale_per_step(sd, scale_spy):
    ig = IntervalGuidance(guidance_scale=5.0, interval=(0.5, 1.0))
    spy = scale_spy(ig)
    generate(sd, ["a cat"], spy, **_kw("sd", steps=4))
    scales = spy.scales
    assert scales[0] < 1.01 and scales[1] < 1.01 and scales[2] == 5.0 and scales[3] == 5.0
    out = ig.generate(sd, ["a cat"], **_kw("sd", steps=4))
    assert torch.isfinite(out).all()


def test_prompt_awareness_unrelated_prompts_do_not_repel():
    """cond-rke: a bank of another prompt exerts (almost) no force; rke pushes regardless."""
    torch.manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(30, 64), dim=1)
    z = (X[0] + 0.02 * torch.randn(64)).reshape(1, 64) * 4
    T_other = torch.tensor([[1.0, 0.0]]).repeat(30, 1)
    t_me = torch.tensor([[0.0, 1.0]])
    cond = SparkeGuidance(objective="cond-rke", scale=0.1, normalize="none", sigma_image=0.5)
    unc = SparkeGuidance(objective="rke", scale=0.1, normalize="none", sigma_image=0.5)
    for g in (cond, unc):
        g.bank.add(X, T_other)
    d_cond = (cond.guide_latents(z, t_me) - z).norm()
    d_unc = (unc.guide_latents(z, t_me) - z).norm()
    assert d_cond < 1e-3 * d_unc


def test_x0_features_on_ddim_and_refused_on_euler():
    pipe = tiny_pipeline("sd")
    g = SparkeGuidance(features="x0", scale=0.1, every=1)
    assert "prompt_embeds" in g.tensor_inputs
    g.generate(pipe, PROMPTS[:2], **_kw("sd"))
    out = g.generate(pipe, PROMPTS[:2], **_kw("sd"))
    assert torch.isfinite(out).all() and len(g.bank) == 4
    euler = tiny_pipeline("sd", scheduler="euler")
    g2 = SparkeGuidance(features="x0", scale=0.1, every=1)
    with pytest.raises(ValueError, match="variance-preserving"):
        g2.generate(euler, PROMPTS[:2], batch_size=2, **_kw("sd"))


@pytest.mark.parametrize("family", ["sd", "sdxl", "pixart"])
def test_batch_invariant_pipeline_gives_each_image_whatever_its_batch(family):
    """make_batch_invariant: a sample's image does not depend on the batch it shares, to the
    bit (the model components run per row; their outputs are stacked back)."""
    from sparke_lab.guidance.pipelines import make_batch_invariant
    pipe = make_batch_invariant(make_batch_invariant(tiny_pipeline(family)))  # twice: no double wrap
    assert getattr(pipe.vae.decode, "rowwise", False)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]
    kw = _kw(family)
    kw.pop("generator")
    together = generate(pipe, PROMPTS, None, batch_size=3, generator=gens([4, 5, 6]), **kw)
    for i, seed in enumerate([4, 5, 6]):
        alone = generate(pipe, PROMPTS[i:i + 1], None, batch_size=1, generator=gens([seed]), **kw)
        assert torch.equal(together[i], alone[0]), (family, i)
