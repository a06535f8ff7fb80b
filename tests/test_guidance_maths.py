"""The maths of SPARKE guidance: closed-form gradients, banks, sketch, Vendi, errors."""
import math

import numpy as np
import pytest
import torch

import sparke_lab as sl
from sparke_lab.guidance import MemoryBank, SketchBank, SparkeGuidance, load_bank
from sparke_lab.guidance.objectives import kernel_row_loss_grad, prompt_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread


def _data(n=12, B=3, D=10, e=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, D, generator=g, dtype=torch.float64)
    X = X / X.norm(dim=1, keepdim=True)
    T = torch.randn(n, e, generator=g, dtype=torch.float64)
    T = T / T.norm(dim=1, keepdim=True)
    Z = torch.randn(B, D, generator=g, dtype=torch.float64) * 3
    Tq = T[:B].clone()
    return X, T, Z, Tq


def _row_loss_autograd(X, T, F, Tq, kernel, sx, kernel_t, st):
    if kernel == "gaussian":
        kx = torch.exp(-torch.cdist(X, F) ** 2 / (2 * sx ** 2))
    else:
        kx = (X / X.norm(dim=1, keepdim=True)) @ (F / F.norm(dim=1, keepdim=True)).T
    if T is None:
        return (kx ** 2).sum(0)
    if kernel_t == "gaussian":
        kt = torch.exp(-torch.cdist(T, Tq) ** 2 / (2 * st ** 2))
    else:
        kt = (T / T.norm(dim=1, keepdim=True)) @ (Tq / Tq.norm(dim=1, keepdim=True)).T
    return (kx ** 2 * kt ** 2).sum(0)


@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
@pytest.mark.parametrize("kernel_t", ["gaussian", "cosine"])
@pytest.mark.parametrize("conditional", [True, False])
def test_kernel_row_gradient_equals_autograd(kernel, kernel_t, conditional):
    X, T, Z, Tq = _data()
    F = (Z / Z.norm(dim=1, keepdim=True)).requires_grad_(True)
    w = prompt_weights(T, Tq, kernel_t, 0.7) if conditional else None
    loss, grad = kernel_row_loss_grad(X, F.detach(), kernel, 0.9, w)
    ref = _row_loss_autograd(X, T if conditional else None, F, Tq, kernel, 0.9, kernel_t, 0.7)
    (g_ref,) = torch.autograd.grad(ref.sum(), F)
    assert torch.allclose(loss, ref.detach(), rtol=1e-10, atol=1e-12)
    assert torch.allclose(grad, g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("objective", ["cond-rke", "rke"])
@pytest.mark.parametrize("kernel", ["gaussian", "cosine"])
def test_full_gradient_wrt_latent_equals_autograd(objective, kernel):
    """bank + in-batch rows, chained through z -> z / ||z||."""
    X, T, Z, Tq = _data(n=15, B=4, D=12)
    g = SparkeGuidance(objective=objective, kernel=kernel, sigma_image=0.8, sigma_text=0.5)
    g.bank.add(X.float(), T.float())
    F, pull = g.featurize(Z.float())
    loss, gF, rows = g.loss_and_grad(F, Tq.float())
    gz = pull(gF)
    assert rows == 15 + 3
    z = Z.clone().requires_grad_(True)
    f = z / z.norm(dim=1, keepdim=True)
    cond = objective == "cond-rke"
    total = 0
    for b in range(4):  # row of sample b: bank rows + other batch samples (held fixed)
        others = torch.cat([X, f.detach()[[j for j in range(4) if j != b]]])
        Tothers = torch.cat([T, Tq[[j for j in range(4) if j != b]]])
        total = total + _row_loss_autograd(others, Tothers if cond else None, f[b:b + 1],
                                           Tq[b:b + 1], kernel, 0.8, "gaussian", 0.5).sum()
    (g_ref,) = torch.autograd.grad(total, z)
    assert torch.allclose(gz.double(), g_ref, rtol=2e-4, atol=1e-6)


def test_guided_step_raises_conditional_rke():
    X, T, Z, Tq = _data(n=40, B=1, D=16, seed=3)
    # a sample close to a bank row of the same prompt
    T[:20] = Tq[0]
    z = (X[0] + 0.05 * torch.randn(16, dtype=torch.float64)).reshape(1, 16) * 5
    for normalize, scale in (("published", 0.02), ("none", 0.02)):
        g = SparkeGuidance(sigma_image=0.8, sigma_text=0.3, scale=scale, normalize=normalize)
        g.bank.add(X.float(), T.float())
        before = sl.conditional_rke_score(torch.cat([X, z / z.norm()]), torch.cat([T, Tq[:1]]),
                                          sigma_x=0.8, sigma_t=0.3)
        z2 = g.guide_latents(z.float(), Tq[:1].float()).double()
        after = sl.conditional_rke_score(torch.cat([X, z2 / z2.norm()]), torch.cat([T, Tq[:1]]),
                                         sigma_x=0.8, sigma_t=0.3)
        assert after > before, normalize
        if normalize == "published":  # step length is exactly scale * ||z||
            assert math.isclose(float((z2 - z).norm()), scale * float(z.norm()), rel_tol=1e-4)


def test_vendi_gradient_equals_autograd():
    X, T, Z, Tq = _data(n=8, B=2, D=6, seed=1)
    for objective in ("vendi", "cond-vendi"):
        g = SparkeGuidance(objective=objective, sigma_image=0.9, sigma_text=0.6, features="raw")
        g.bank.add(X.float(), T.float())
        F = Z / Z.norm(dim=1, keepdim=True) * 0.9
        loss, gF, _ = g.loss_and_grad(F.float(), Tq.float())
        Fr = F.clone().requires_grad_(True)
        A = torch.cat([X, Fr])
        K = torch.exp(-torch.cdist(A, A) ** 2 / (2 * 0.81))
        if objective == "cond-vendi":
            TT = torch.cat([T, Tq])
            K = K * torch.exp(-torch.cdist(TT, TT) ** 2 / (2 * 0.36))
        lam = torch.linalg.eigvalsh(K / K.shape[0]).clamp_min(1e-30)
        H = -(lam * lam.log()).sum()
        (g_ref,) = torch.autograd.grad(-H, Fr)
        assert torch.allclose(gF.double(), g_ref, rtol=1e-3, atol=1e-5), objective
        assert math.isclose(float(loss[0]), float(-H), rel_tol=1e-5)


def test_sketch_bank_approximates_exact():
    torch.manual_seed(0)
    D, e = 64, 8
    centres = torch.randn(3, D)
    X = torch.cat([c + 0.05 * torch.randn(200, D) for c in centres])
    X = X / X.norm(dim=1, keepdim=True)
    T = torch.nn.functional.normalize(torch.randn(3, e), dim=1).repeat_interleave(200, 0)
    F = torch.nn.functional.normalize(centres[:2] + 0.1 * torch.randn(2, D), dim=1)
    Tq = T[[0, 200]]
    exact = MemoryBank.from_features(X, T)
    sk = SketchBank(0.8, 0.3, conditional=True, n_features=8192, seed=1)
    sk.add(X, T)
    l1, g1 = exact.loss_and_grad(F, Tq, "gaussian", 0.8, "gaussian", 0.3)
    l2, g2 = sk.loss_and_grad(F, Tq, "gaussian", 0.8, "gaussian", 0.3)
    assert torch.allclose(l1, l2, rtol=0.1)
    # what moves a latent is the part tangent to the sphere (the pull-back drops the rest)
    tan = lambda g: g - (g * F).sum(1, keepdim=True) * F
    cos = torch.nn.functional.cosine_similarity(tan(g1), tan(g2), dim=1)
    assert bool((cos > 0.95).all()), cos


def test_bank_window_and_growth():
    b = MemoryBank(max_size=5)
    for i in range(4):
        b.add(torch.full((3, 2), float(i)), torch.ones(3, 1))
    assert len(b) == 5 and b.total_added == 12
    assert sorted(b.features[:, 0].tolist()) == [2.0, 2.0, 3.0, 3.0, 3.0]
    big = MemoryBank()
    for i in range(50):
        big.add(torch.randn(7, 4))
    assert len(big) == 350 and big.features.shape == (350, 4)


def test_bank_save_load_roundtrip_and_checks(tmp_path):
    X, T, Z, Tq = _data()
    b = MemoryBank.from_features(X.float(), T.float(), max_size=100)
    p = tmp_path / "bank.safetensors"
    b.save(p)
    b2 = load_bank(p)
    assert isinstance(b2, MemoryBank) and len(b2) == len(b) and b2.max_size == 100
    assert torch.equal(b2.features, b.features) and torch.equal(b2.prompt_features, b.prompt_features)
    with pytest.raises(ValueError, match="dimension"):
        MemoryBank.load(p, expect_dim=99)
    with pytest.raises(ValueError, match="prompt dimension"):
        MemoryBank.load(p, expect_prompt_dim=3)
    sk = SketchBank(0.8, 0.3, n_features=64)
    sk.add(X.float(), T.float())
    p2 = tmp_path / "sketch.safetensors"
    sk.save(p2)
    sk2 = load_bank(p2)
    F = Z.float() / Z.float().norm(dim=1, keepdim=True)
    assert torch.allclose(sk.loss_and_grad(F, Tq.float())[1], sk2.loss_and_grad(F, Tq.float())[1])
    with pytest.raises(ValueError, match="not a sparke-lab"):
        MemoryBank.load(p2)  # a sketch file is not an exact bank
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError):
        load_bank(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        load_bank(tmp_path / "missing.safetensors")


def test_bank_rejects_bad_input():
    b = MemoryBank()
    b.add(torch.randn(3, 4), torch.randn(3, 2))
    with pytest.raises(ValueError, match="NaN"):
        b.add(torch.full((1, 4), float("nan")), torch.randn(1, 2))
    with pytest.raises(ValueError, match="dimension"):
        b.add(torch.randn(1, 5), torch.randn(1, 2))
    with pytest.raises(ValueError, match="prompt"):
        b.add(torch.randn(1, 4))
    with pytest.raises(ValueError, match="empty"):
        MemoryBank().save("/tmp/never.safetensors")


@pytest.mark.parametrize("kwargs,match", [
    (dict(objective="entropy"), "objective"), (dict(kernel="laplace"), "kernel"),
    (dict(sigma_image=0), "sigma_image"), (dict(sigma_text=-1), "sigma_text"),
    (dict(scale=float("nan")), "scale"), (dict(every=0), "every"),
    (dict(window=(0.8, 0.2)), "window"), (dict(normalize="l2"), "normalize"),
    (dict(features="pixels"), "features"),
    (dict(objective="vendi", bank="sketch"), "Vendi"),
    (dict(bank=SketchBank(0.5, 0.3)), "sigma"),
])
def test_guidance_rejects_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SparkeGuidance(**kwargs)


def test_conditional_needs_prompt_features():
    g = SparkeGuidance()
    g.bank.add(torch.randn(3, 8), torch.randn(3, 2))
    with pytest.raises(ValueError, match="prompt features"):
        g.guide_latents(torch.randn(2, 8))


def test_nan_gradient_is_skipped_with_warning():
    g = SparkeGuidance(objective="rke", scale=0.5)
    g.bank.add(torch.nn.functional.normalize(torch.randn(4, 8), dim=1))
    z = torch.randn(3, 8)
    z[1] = float("inf")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = g.guide_latents(z)
    assert torch.isfinite(out[[0, 2]]).all()
    assert not torch.equal(out[0], z[0]) and torch.equal(out[1], z[1])


def test_half_precision_latents_use_float32_maths():
    X = torch.nn.functional.normalize(torch.randn(20, 64), dim=1)
    for dtype in (torch.float16, torch.bfloat16):
        g = SparkeGuidance(objective="rke", scale=0.05)
        g.bank.add(X)
        z = torch.randn(2, 4, 4, 4).to(dtype)
        out = g.guide_latents(z)
        ref = g.guide_latents(z.float())
        assert out.dtype == dtype and torch.isfinite(out.float()).all()
        assert torch.allclose(out.float(), ref.to(dtype).float())


def test_reference_bank_repels_but_is_not_updated():
    ref = MemoryBank.from_features(torch.nn.functional.normalize(torch.randn(5, 8), dim=1))
    g = SparkeGuidance(objective="rke", reference=ref, scale=0.1, in_batch=False)
    z = ref.features[:1] * 3 + 0.01 * torch.randn(1, 8)
    out = g.guide_latents(z)
    assert not torch.equal(out, z)
    g._add_finished(out, None)
    assert len(ref) == 5 and len(g.bank) == 1


def test_vendi_gradient_cosine_kernel_equals_autograd():
    X, T, Z, Tq = _data(n=8, B=2, D=6, seed=2)
    g = SparkeGuidance(objective="vendi", kernel="cosine", features="raw")
    g.bank.add(X.float(), T.float())
    loss, gF, _ = g.loss_and_grad(Z.float(), Tq.float())
    Zr = Z.clone().requires_grad_(True)
    A = torch.cat([X, Zr])
    An = A / A.norm(dim=1, keepdim=True)
    lam = torch.linalg.eigvalsh(An @ An.T / A.shape[0]).clamp_min(1e-30)
    (g_ref,) = torch.autograd.grad((lam * lam.log()).sum(), Zr)  # -H
    assert torch.allclose(gF.double(), g_ref, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("objective", ["cond-rke", "rke", "vendi", "cond-vendi"])
def test_a_slice_with_its_peers_equals_the_whole_batch(objective):
    """What one process computes for its rows, given the round's other rows (peers), is
    what one process computes for the whole batch: the maths behind multi-process runs."""
    X, T, Z, Tq = _data(n=10, B=5, D=8, seed=4)
    g = SparkeGuidance(objective=objective, sigma_image=0.8, sigma_text=0.5)
    g.bank.add(X.float(), T.float())
    F = (Z / Z.norm(dim=1, keepdim=True)).float()
    L, G, rows = g.loss_and_grad(F, Tq.float())
    for start, stop in ((0, 2), (2, 5), (4, 5)):
        l, gr, r = g.loss_and_grad(F[start:stop], Tq[start:stop].float(), peers=(F, Tq.float(), start))
        assert torch.allclose(gr, G[start:stop], rtol=1e-5, atol=1e-6), (start, stop)
        assert torch.allclose(l, L[start:stop], rtol=1e-5, atol=1e-6) and r == rows


def test_step_direction_is_not_round_off_when_neighbours_are_far():
    """Two samples of unrelated prompts (prompt weight ~2e-10) and an empty bank: the true
    gradient is tiny and the published normalisation scales it to a full step, so its
    direction must be the true one, not the round-off of the self-pair (k = 1)."""
    g = SparkeGuidance(objective="cond-rke", sigma_image=0.8, sigma_text=0.3, scale=0.1)
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    T = torch.eye(2)                                           # w = exp(-2 / 0.09)
    step = (g.guide_latents(z, T) - z).double()
    zz = z.double().requires_grad_(True)
    f = zz / zz.norm(dim=1, keepdim=True)
    w = math.exp(-2 / 0.3 ** 2)
    loss = 2 * w * torch.exp(-((f[0] - f[1]) ** 2).sum() / 0.8 ** 2)  # each sample's row to the other
    (gz,) = torch.autograd.grad(loss, zz)
    for b in range(2):
        cos = float(torch.dot(step[b], -gz[b]) / (step[b].norm() * gz[b].norm()))
        assert cos > 0.999, (b, cos)


def test_full_ring_buffer_reloads_with_the_same_eviction_order(tmp_path):
    live = MemoryBank(max_size=3)
    for v in range(4):                                   # rows 1, 2, 3 kept; 0 evicted
        live.add(torch.full((1, 2), float(v)))
    live.save(tmp_path / "ring.safetensors")
    loaded = load_bank(tmp_path / "ring.safetensors")
    for b in (live, loaded):
        b.add(torch.full((1, 2), 9.0))                   # evicts the oldest: row 1
    assert sorted(live.features[:, 0].tolist()) == sorted(loaded.features[:, 0].tolist()) == [2.0, 3.0, 9.0]
    assert live.digest() == loaded.digest()


def test_official_unsquared_kernel_equals_ours_at_sqrt2_sigma():
    """The official code (bank >= 10 rows) sums k_sigma(x_i, f) k_sigma_t(t_i, t), unsquared;
    ours sums k^2. Since k_sigma(x, y) = k_{sqrt(2) sigma}(x, y)^2 exactly, its loss and
    gradient equal ours at sqrt(2) times its bandwidths (0.8 / 0.3 -> 1.131 / 0.424):
    docs/guidance.md, "Paper settings and the official code"."""
    from sparke_lab.guidance.objectives import kernel_row_loss_grad, prompt_weights
    g = torch.Generator().manual_seed(0)
    Xb, F = torch.randn(12, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    Tb, Tq = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    sx, st = 0.8, 0.3
    f = F.clone().requires_grad_(True)
    kx = torch.exp(-torch.cdist(Xb, f) ** 2 / (2 * sx ** 2))          # unsquared, official
    kt = torch.exp(-torch.cdist(Tb, Tq) ** 2 / (2 * st ** 2))
    official = (kx * kt).sum(0)
    (grad_off,) = torch.autograd.grad(official.sum(), f)
    w = prompt_weights(Tb, Tq, "gaussian", st * 2 ** 0.5)
    loss, grad = kernel_row_loss_grad(Xb, F, "gaussian", sx * 2 ** 0.5, w)
    torch.testing.assert_close(loss, official.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, grad_off, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("sigma", [1e-3, 0.5])
def test_roundoff_gradient_gets_no_published_step(sigma):
    """A bank row equal to the query up to float32 round-off: the gradient is below the
    summation error bound and gets no step (before: a full published step in a random
    direction, issue 14, item 2.8); a resolvable difference still gets the full step."""
    from sparke_lab.guidance import MemoryBank, SparkeGuidance
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 64, generator=g)
    f = torch.nn.functional.normalize(z, dim=1)
    v = torch.nn.functional.normalize(torch.randn(1, 64, generator=g), dim=1)
    for delta, expect in ((1e-7, 0.0), (1e-4, 0.1)):
        guide = SparkeGuidance(objective="rke", sigma_image=sigma, scale=0.1, in_batch=False,
                               bank=MemoryBank.from_features(f + delta * v))
        step = (guide.guide_latents(z.clone(), None) - z).norm() / z.norm()
        assert float(step) == pytest.approx(expect, abs=1e-6), (delta, float(step))
