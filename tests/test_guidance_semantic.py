"""Semantic ("ambient") guidance features and the prompt-gated step.

- a tiny transformers CLIPModel from config on a tiny SD pipeline: the path of a real CLIP
  checkpoint (its processor's normalisation), the gradient against finite differences, the
  bank holds image embeddings and the prompt kernel uses the same model's text tower;
- the digits pipeline's ``features="clip"`` resolves to the shipped digits encoder;
- ``normalize="gated"``: a prompt unrelated to every bank row gets <= 1 % of the published
  step, a related one the full step.
"""
import numpy as np
import pytest
import torch

from sparke_lab.guidance import MemoryBank, SketchBank, SparkeGuidance, generate
from sparke_lab.guidance.objectives import prompt_gate
from sparke_lab.guidance.semantic import ClipFeatures, semantic_features
from sparke_lab.guidance.testing import tiny_clip_model, tiny_clip_tokenizer, tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(scope="module")
def sd():
    return tiny_pipeline("sd")


@pytest.fixture(scope="module")
def clip():
    tok = tiny_clip_tokenizer()
    return ClipFeatures(tiny_clip_model(tok), tok, 16, MEAN, STD)


def test_semantic_guidance_on_a_tiny_sd_pipeline(sd, clip):
    prompts = ["a red cube", "a blue ball", "a red cube", "a green cone"]
    kw = dict(batch_size=2, num_inference_steps=4, guidance_scale=5.0, output_type="pt", progress=False)
    g = SparkeGuidance(features=clip, sigma_image=0.5, sigma_text=0.5, scale=0.2, every=1)
    a = g.generate(sd, prompts, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kw)
    b = generate(sd, prompts, None, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kw)
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
    assert len(g.bank) == 4 and g.bank.features.shape == (4, clip.dim)
    np.testing.assert_allclose(g.bank.features.norm(dim=1).numpy(), 1, rtol=1e-5)
    # the prompt kernel uses the image-text model's text tower, not the pipeline's encoder
    T = clip.encode_prompts(prompts)
    assert torch.allclose(g.bank.prompt_features, T, atol=1e-6)
    assert g.prompt_encoder_for(sd) is not None and g.last_stats["rows"] > 0
    # scale 0 is exactly the unguided run
    g0 = SparkeGuidance(features=clip, scale=0.0)
    c = g0.generate(sd, prompts, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kw)
    assert torch.equal(c, b)


def test_semantic_pullback_matches_finite_differences(sd, clip):
    """d<gF, F(z)>/dz by autograd against central differences, all in float64.

    With step h the central difference's truncation error is O(h^2) times the third
    derivative (here ~1e-8 for h = 1e-4 on these O(1) functions) and its round-off
    ~1e-16 / h = 1e-12: a relative tolerance of 1e-5 leaves two orders of margin."""
    vae64 = sd.vae.to(torch.float64)
    model64 = clip.model.to(torch.float64)
    try:
        cf = ClipFeatures(model64, clip.tokenizer, 16, MEAN, STD)
        torch.manual_seed(3)
        z = torch.randn(2, 4, 8, 8, dtype=torch.float64)
        F, pull = semantic_features(cf, sd, z, None)
        gF = torch.randn_like(F)
        v = torch.randn_like(z)
        analytic = float((pull(gF).reshape(z.shape) * v).sum())
        h = 1e-4
        with torch.no_grad():
            fp = (cf.image_features(sd, z + h * v) * gF).sum()
            fm = (cf.image_features(sd, z - h * v) * gF).sum()
        numeric = float((fp - fm) / (2 * h))
        assert abs(analytic - numeric) <= 1e-5 * max(1.0, abs(numeric)), (analytic, numeric)
        # with a predicted-clean context the pull-back carries d x0 / d z
        F2, pull2 = semantic_features(cf, sd, z, (z * 2.0, 0.5))
        assert torch.allclose(pull2(gF), 0.5 * semantic_features(cf, sd, 2.0 * z, None)[1](gF))
    finally:
        sd.vae.to(torch.float32)
        clip.model.to(torch.float32)


def test_semantic_features_on_a_batch_invariant_pipeline_do_not_depend_on_the_batch(clip):
    """make_batch_invariant: a row's semantic features and pull-back are the same bits whether
    it is computed alone or next to other rows (the image tower runs one row at a time)."""
    from sparke_lab.guidance.pipelines import make_batch_invariant
    pipe = make_batch_invariant(tiny_pipeline("sd"))
    torch.manual_seed(5)
    z = torch.randn(3, 4, 8, 8)
    gF = torch.randn(3, clip.dim)
    F, pull = semantic_features(clip, pipe, z, None)
    g = pull(gF)
    for i in range(3):
        Fi, pull_i = semantic_features(clip, pipe, z[i:i + 1], None)
        assert torch.equal(Fi, F[i:i + 1])
        assert torch.equal(pull_i(gF[i:i + 1]), g[i:i + 1])
    # prompt features: each distinct prompt is encoded alone, whatever shares the call
    T = clip.encode_prompts(["a red cube", "a blue ball", "a red cube"])
    assert torch.equal(T[0], T[2]) and torch.equal(T[1:2], clip.encode_prompts(["a blue ball"]))


def test_clip_string_resolves_on_the_digits_pipeline_only(sd):
    from sparke_lab.models import load_digits_pipeline
    g = SparkeGuidance(features="clip", scale=0.05, every=2)
    with pytest.raises(ValueError, match="ClipFeatures.from_pretrained"):
        g.generate(sd, ["a cube"], num_inference_steps=2, output_type="pt", progress=False)
    digits = load_digits_pipeline()
    g.generate(digits, ["an odd digit", "an even digit"], batch_size=2, num_inference_steps=3,
               guidance_scale=5.0, output_type="pt", progress=False,
               generator=torch.Generator().manual_seed(0))
    assert isinstance(g.features, ClipFeatures) and g.bank.features.shape == (2, 32)
    with pytest.raises(ValueError, match="features must be"):
        SparkeGuidance(features="dino")


def _bank(n=40, D=32, e=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.nn.functional.normalize(torch.randn(n, D, generator=gen), dim=1)
    t = torch.nn.functional.normalize(torch.randn(1, e, generator=gen), dim=1)
    return MemoryBank.from_features(X, t.repeat(n, 1)), t


@pytest.mark.parametrize("in_batch", [False, True])
def test_gated_step_unrelated_prompt_gets_at_most_one_percent(in_batch):
    bank, t = _bank()
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    kw = dict(sigma_image=1.0, sigma_text=0.3, scale=0.1, in_batch=in_batch)
    for Tq, related in ((t.repeat(3, 1), True), (-t.repeat(3, 1), False)):
        pub = SparkeGuidance(normalize="published", bank=bank, **kw).guide_latents(z.clone(), Tq) - z
        gated = SparkeGuidance(normalize="gated", bank=bank, **kw).guide_latents(z.clone(), Tq) - z
        ratio = gated.norm(dim=1) / pub.norm(dim=1)
        # brute force: gate = sum_i w_i k_i^2 / sum_i k_i^2 over bank rows and other queries
        f = torch.nn.functional.normalize(z, dim=1)
        rows = [(x, bank.prompt_features[i]) for i, x in enumerate(bank.features)]
        expect = []
        for j in range(3):
            others = rows + ([(f[i], Tq[i]) for i in range(3) if i != j] if in_batch else [])
            k2 = [float(torch.exp(-((x - f[j]) ** 2).sum() / 1.0 ** 2)) for x, _ in others]
            w = [float(torch.exp(-((tt - Tq[j]) ** 2).sum() / 0.3 ** 2)) for _, tt in others]
            expect.append(sum(a * b for a, b in zip(k2, w)) / sum(k2))
        assert torch.allclose(ratio, torch.tensor(expect, dtype=ratio.dtype), rtol=1e-4, atol=1e-12)
        if related and not in_batch:
            assert torch.allclose(gated, pub)            # every row related: gate exactly 1
        if not related and not in_batch:
            # unrelated: ||t - (-t)|| = 2, w = exp(-4 / 0.09) ~ 5e-20
            assert (ratio <= 0.01).all(), ratio


def test_prompt_gate_values_and_errors():
    assert torch.equal(prompt_gate(torch.tensor([0.5, 0.0, 2.0]), torch.tensor([1.0, 0.0, 1.0])),
                       torch.tensor([0.5, 0.0, 1.0]))
    with pytest.raises(ValueError, match="gated"):
        SparkeGuidance(objective="vendi", normalize="gated")
    g = SparkeGuidance(normalize="gated", bank=SketchBank(0.8, 0.3, n_features=64))
    g.bank.add(torch.randn(5, 16), torch.randn(5, 4))
    with pytest.raises(ValueError, match="exact MemoryBank"):
        g.guide_latents(torch.randn(2, 16), torch.randn(2, 4))


def test_particle_guidance_and_vendi_take_semantic_features(sd, clip):
    from sparke_lab.guidance import ParticleGuidance, VendiGuidance
    prompts = ["a red cube", "a blue ball", "a red cube", "a green cone"]
    kw = dict(batch_size=4, num_inference_steps=3, guidance_scale=5.0, output_type="pt", progress=False)
    base = generate(sd, prompts, None, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kw)
    for cb in (ParticleGuidance(features=clip, scale=0.2, every=1),
               VendiGuidance(features=clip, sigma_image=0.5, scale=0.2, every=1)):
        out = generate(sd, prompts, cb, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kw)
        assert torch.isfinite(out).all() and not torch.allclose(out, base), type(cb).__name__
    with pytest.raises(ValueError, match="features must be"):
        ParticleGuidance(features="dino")
