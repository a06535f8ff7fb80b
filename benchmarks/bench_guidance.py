"""Cost of one SPARKE guidance step against bank size, and guided vs unguided sampling time.

    python benchmarks/bench_guidance.py            # all parts (a few minutes on 2 CPU cores)
    python benchmarks/bench_guidance.py --part step
    python benchmarks/bench_guidance.py --part sampling

Part "step": one conditional guidance query (batch 1) at D = 16,384 (SD-1.5 latent size),
prompt features of dimension 768, against bank sizes n = 10^3, 10^4, 10^5:
  * exact bank (one kernel row, O(n D)),
  * sketch bank (random-Fourier-feature sums, O(m D), flat in n),
  * the published code's way: keep an n x n kernel matrix and rebuild/extend it each step,
    loss and gradient by autograd over the whole matrix (O(n^2) memory and copies),
  * Vendi guidance (eigendecomposition of the (n+1)^2 kernel, O(n^3)) at n = 2,000.
Part "sampling": guided over unguided wall time on the digits pipeline with a 10^4 bank, for
latent SPARKE and (digits) the recommended semantic SPARKE (falls back to a tiny random SD
pipeline when the digits model is not available).

All ratios are measured side by side in one run. Taught in: 06_scaling_from_n3_to_n and
09_stable_diffusion_on_gpu.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import time

import torch

from sparke_lab.guidance import MemoryBank, SketchBank, SparkeGuidance, generate
from sparke_lab.guidance.objectives import prompt_weights

D, E = 16_384, 768
SX, ST = 0.8, 0.3


def _mem_available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return float("inf")


def _timeit(fn, repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _rows(n, g, dim):
    X = torch.randn(n, dim, generator=g)
    return X / X.norm(dim=1, keepdim=True)


def _prompts(n, g, k=40):
    """Prompt features drawn from k prompt clusters (as in the paper's benchmark)."""
    C = torch.nn.functional.normalize(torch.randn(k, E, generator=g), dim=1)
    idx = torch.randint(k, (n,), generator=g)
    return torch.nn.functional.normalize(C[idx] + 0.1 * torch.randn(n, E, generator=g) / math.sqrt(E), dim=1)


class CachedMatrixGuidance:
    """The published code's approach, for comparison only: an n x n kernel matrix is kept and
    extended by the new sample's row/column at every step, and the conditional inverse RKE
    ``||K_X o K_T||_F^2 / n^2`` is differentiated by autograd over the whole matrix."""

    def __init__(self, X, T):
        self.X, self.T = X, T
        self.xx = (X * X).sum(1, keepdim=True)
        n = X.shape[0]
        # the cached matrices' values do not change the cost of a step; building the true
        # K_X would take O(n^2 D) once, so a random symmetric stand-in is used for timing
        R = torch.rand(n, n, generator=torch.Generator().manual_seed(1))
        self.KX = (R + R.T) / 2
        self.KT = prompt_weights(T, T, "gaussian", ST).sqrt()

    def step(self, f, t):
        f = f.clone().requires_grad_(True)
        d2 = (self.xx + (f * f).sum() - 2.0 * (self.X @ f.T)).clamp_min(0)
        kx = torch.exp(-d2 / (2 * SX ** 2))                                  # (n, 1)
        kt = prompt_weights(self.T, t, "gaussian", ST).sqrt()
        one = torch.ones(1, 1)
        KX = torch.cat([torch.cat([self.KX, kx], 1), torch.cat([kx.T, one], 1)], 0)
        KT = torch.cat([torch.cat([self.KT, kt], 1), torch.cat([kt.T, one], 1)], 0)
        n = KX.shape[0]
        loss = ((KX * KT) ** 2).sum() / n ** 2
        (g,) = torch.autograd.grad(loss, f)
        return g


def part_step(sizes=(1_000, 10_000, 100_000), n_features: int = 1024, repeats: int = 3) -> None:
    g = torch.Generator().manual_seed(0)
    f = _rows(1, g, D)
    t = _prompts(1, g)
    exact = MemoryBank()
    sketch = SketchBank(SX, ST, conditional=True, n_features=n_features, seed=0)
    results = []
    n_have = 0
    need_gb = max(sizes) * (D + E) * 4 / 1e9
    for n in sizes:
        if n > 10_000 and _mem_available_gb() < need_gb + 4:
            print(f"n={n}: skipped (needs ~{need_gb:.1f} GB free, {_mem_available_gb():.1f} GB available)")
            continue
        t0 = time.perf_counter()
        while n_have < n:  # fill both banks with the same rows, in chunks
            c = min(5_000, n - n_have)
            X, T = _rows(c, g, D), _prompts(c, g)
            exact.add(X, T)
            if n_have == 0:
                exact.reserve(max(sizes))
            sketch.add(X, T)
            n_have += c
            del X, T
        fill = time.perf_counter() - t0
        te = _timeit(lambda: exact.loss_and_grad(f, t, "gaussian", SX, "gaussian", ST), repeats)
        ts = _timeit(lambda: sketch.loss_and_grad(f, t, "gaussian", SX, "gaussian", ST), 3 * repeats)
        row = {"n": n, "exact_s": te, "sketch_s": ts, "fill_s": fill}
        if n == 10_000:
            cm = CachedMatrixGuidance(exact.features, exact.prompt_features)
            row["nxn_s"] = _timeit(lambda: cm.step(f, t), repeats=2)
            del cm
            gc.collect()
        results.append(row)
        print(f"n={n:>7,}: exact {te * 1e3:8.2f} ms   sketch {ts * 1e3:8.2f} ms"
              + (f"   n x n rebuild {row['nxn_s'] * 1e3:8.1f} ms" if "nxn_s" in row else "")
              + f"   (filled in {fill:.1f} s)", flush=True)
    # Vendi guidance at n = 2,000 against the exact bank at the same n
    vb = MemoryBank.from_features(exact.features[:2000].clone(), exact.prompt_features[:2000].clone())
    vg = SparkeGuidance(objective="cond-vendi", bank=vb, in_batch=False)
    tv = _timeit(lambda: vg.loss_and_grad(f, t), repeats=1)
    sg = SparkeGuidance(objective="cond-rke", bank=vb, in_batch=False)
    te2k = _timeit(lambda: sg.loss_and_grad(f, t), repeats)
    del exact, vb
    gc.collect()
    by_n = {r["n"]: r for r in results}
    print("\nOne conditional guidance step (batch 1, D = 16,384, prompt dim 768, "
          f"sketch m = {n_features}):")
    print(f"{'n':>9}  {'exact ms':>9}  {'sketch ms':>9}  {'n x n rebuild ms':>16}")
    for r in results:
        nxn = f"{r['nxn_s'] * 1e3:16.1f}" if "nxn_s" in r else f"{'':>16}"
        print(f"{r['n']:>9,}  {r['exact_s'] * 1e3:9.2f}  {r['sketch_s'] * 1e3:9.2f}  {nxn}")
    print(f"Vendi guidance (cond-vendi) at n = 2,000: {tv * 1e3:.0f} ms; exact cond-rke at "
          f"n = 2,000: {te2k * 1e3:.2f} ms")
    print("\nRatios (targets in brackets):")
    lo, hi = min(by_n), max(by_n)
    print(f"  exact  t({hi:,})/t({lo:,}) = {by_n[hi]['exact_s'] / by_n[lo]['exact_s']:.1f}  "
          f"(grows ~linearly: n ratio {hi / lo:.0f})")
    print(f"  sketch t({hi:,})/t({lo:,}) = {by_n[hi]['sketch_s'] / by_n[lo]['sketch_s']:.2f}  [<= 1.5]")
    if 10_000 in by_n and "nxn_s" in by_n[10_000]:
        print(f"  n x n rebuild / exact at n = 10,000 = "
              f"{by_n[10_000]['nxn_s'] / by_n[10_000]['exact_s']:.1f}x  [>= 10]")
    print(f"  Vendi(n=2,000) / exact(n=2,000) = {tv / te2k:.0f}x  [>= 100]")
    if 10_000 in by_n:
        print(f"  Vendi(n=2,000) / exact(n=10,000) = {tv / by_n[10_000]['exact_s']:.0f}x")


def part_sampling(n_bank: int = 10_000, n_images: int = 32, batch: int = 16, steps: int = 50,
                  repeats: int = 2) -> None:
    try:
        from sparke_lab.models import load_digits_pipeline
        pipe = load_digits_pipeline()
        name = "digits mini-SD"
        prompts = ["any digit", "an odd digit", "a digit less than five", "an even digit"]
    except Exception as exc:  # not built yet
        from sparke_lab.guidance.testing import tiny_pipeline
        print(f"(digits pipeline unavailable: {type(exc).__name__}; using a tiny random SD pipeline)")
        pipe, name = tiny_pipeline("sd"), "tiny random SD"
        prompts = ["a cat", "a dog", "a red car", "a tree"]
    pipe.set_progress_bar_config(disable=True)
    plist = [prompts[i % len(prompts)] for i in range(n_images)]
    from sparke_lab.guidance import encode_prompts
    T = encode_prompts(pipe, prompts)
    # a bank of n_bank finished samples' features (latent shape of this pipeline)
    lat = pipe.unet.config.in_channels * pipe.unet.config.sample_size ** 2
    g = torch.Generator().manual_seed(0)
    Xb = _rows(n_bank, g, lat)
    Tb = T[torch.randint(len(prompts), (n_bank,), generator=g)]

    semantic = getattr(pipe, "sparke_lab_model", None) == "digits"
    if semantic:  # the semantic (CLIP-space) variant: a bank of image-text embeddings
        from sparke_lab.guidance.semantic import ClipFeatures
        clip = ClipFeatures.for_digits()
        Tc = clip.encode_prompts(prompts)
        Xc = torch.nn.functional.normalize(torch.randn(n_bank, clip.dim, generator=g), dim=1)
        Tcb = Tc[torch.randint(len(prompts), (n_bank,), generator=g)]

    def run(kind: str):
        cb, T_run = None, T
        if kind == "latent":
            cb = SparkeGuidance.recommended("digits-latent" if semantic else "stable-diffusion",
                                            bank=MemoryBank.from_features(Xb, Tb))
        elif kind == "semantic":
            cb = SparkeGuidance.recommended("digits", bank=MemoryBank.from_features(Xc, Tcb))
            T_run = Tc
        generate(pipe, plist, cb, batch_size=batch, num_inference_steps=steps, guidance_scale=7.0,
                 generator=torch.Generator().manual_seed(0), output_type="np", progress=False,
                 prompt_features=T_run[[i % len(prompts) for i in range(n_images)]])

    kinds = ["none", "latent"] + (["semantic"] if semantic else [])
    run("none")
    times = {k: [] for k in kinds}
    for _ in range(repeats):  # interleaved, best of each
        for k in kinds:
            t0 = time.perf_counter()
            run(k)
            times[k].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    print(f"\nSampling on the {name} pipeline: {n_images} images, batch {batch}, {steps} steps, "
          f"CFG 7, a {n_bank:,}-sample exact bank (latent D = {lat}):")
    print(f"  unguided {best['none']:.2f} s ({best['none'] / n_images:.3f} s / sample)")
    print(f"  latent SPARKE (every 10 steps)     {best['latent']:.2f} s   ratio {best['latent'] / best['none']:.3f}  [<= 1.10]")
    if semantic:
        print(f"  semantic SPARKE (recommended)     {best['semantic']:.2f} s   ratio "
              f"{best['semantic'] / best['none']:.3f}  (one extra denoiser call, a VAE decode and "
              f"the image tower forward and backward per guided step)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["step", "sampling", "all"], default="all")
    p.add_argument("--max-n", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is robust on a shared CPU: oversubscribed OpenMP "
                        "threads can be 30x slower)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if a.part in ("step", "all"):
        part_step(sizes=tuple(n for n in (1_000, 10_000, 100_000) if n <= a.max_n))
    if a.part in ("sampling", "all"):
        part_sampling()


if __name__ == "__main__":
    main()
