"""SPARKE on the shipped 2-D toy (CFG collapse) and the digits pipeline, small sizes."""
import numpy as np
import pytest
import torch

from sparke_lab.guidance import SparkeGuidance, generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread


def _toy():
    try:
        from sparke_lab.models import load_toy2d
        return load_toy2d()
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"toy model unavailable: {exc}")


def test_sparke_undoes_cfg_collapse_on_toy():
    model = _toy()
    mix = model.mixture
    truth = np.asarray(mix.weights)
    labels = np.concatenate([np.full(50, c) for _ in range(2) for c in range(3)])

    def run(cb):
        x = generate(model, labels, cb, batch_size=50, num_inference_steps=50,
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
    model = _toy()
    g = SparkeGuidance(features="raw", sigma_image=1.0, scale=0.0)
    generate(model, [0, 1, 2], g, num_inference_steps=5, guidance_scale=3.0, progress=False)
    assert g.bank.prompt_features.shape == (3, model.n_classes)


def test_digits_pipeline_guidance_smoke():
    try:
        from sparke_lab.models import load_digits_pipeline
        pipe = load_digits_pipeline()
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"digits model unavailable: {exc}")
    g = SparkeGuidance.recommended("digits", every=2)
    kw = dict(num_inference_steps=4, guidance_scale=7.0, output_type="pt", progress=False,
              generator=torch.Generator().manual_seed(0))
    ref = generate(pipe, ["any digit", "an odd digit"], None, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    out = g.generate(pipe, ["any digit", "an odd digit"], **kw)
    assert out.shape == ref.shape and len(g.bank) == 2
    assert g.bank.dim == 4 * 8 * 8
