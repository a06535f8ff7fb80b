"""Does SPARKE guidance work? Sweeps and comparisons on the offline models, printed as tables.

    python benchmarks/guidance_experiments.py toy        # 2-D toy under CFG collapse
    python benchmarks/guidance_experiments.py digits     # digits mini-SD, broad prompts
    python benchmarks/guidance_experiments.py prompts    # prompt awareness: cond-rke vs rke
    python benchmarks/guidance_experiments.py all

Each experiment prints one table with every method measured in the same run, same seeds.
Numbers are recorded in docs/guidance.md. Taught in: 07_guided_sampling_2d and
08_guided_generation_digits.
"""
from __future__ import annotations

import argparse
import itertools
import time
from typing import Dict, List

import numpy as np
import torch

from sparke_lab.guidance import (CADS, IntervalGuidance, ParticleGuidance, SparkeGuidance,
                                 VendiGuidance, generate)


def _table(rows: List[Dict], cols: List[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols), flush=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


# ============================================================================ 2-D toy
def toy(n_per_class: int = 200, batch: int = 50, cfg: float = 3.0, steps: int = 50,
        sweep: bool = True) -> None:
    from sparke_lab.models import load_toy2d_pipeline

    torch.set_num_threads(1)
    pipe = load_toy2d_pipeline()
    mix = pipe.mixture
    truth = np.asarray(mix.weights)
    C = mix.n_classes
    # single-class batches, classes interleaved: fair to in-batch methods (Particle Guidance)
    nb = n_per_class // batch
    labels = np.concatenate([np.full(batch, c) for _ in range(nb) for c in range(C)])

    def run(cb, **kw):
        t0 = time.perf_counter()
        x = generate(pipe, labels, cb, batch_size=batch, num_inference_steps=steps,
                     guidance_scale=cfg, generator=torch.Generator().manual_seed(0),
                     progress=False, **kw)
        W = mix.mode_weights(x, labels)
        tv = 0.5 * np.abs(W - truth).sum(1)
        return {"on_mode": mix.on_mode_fraction(x, labels), "TV": float(tv.mean()),
                "TV_max": float(tv.max()), "weights(class 0)": np.round(W[0], 2).tolist(),
                "s": time.perf_counter() - t0}

    rows = []
    base = run(None)
    rows.append({"method": "no guidance (CFG %g)" % cfg, **base})
    rows.append({"method": "conditional model (CFG 1)",
                 **{k: v for k, v in _toy_cfg1(pipe, labels, steps, mix, truth).items()}})
    methods = {
        "SPARKE (recommended)": lambda: SparkeGuidance.recommended("toy2d"),
        "latent RKE (uncond.)": lambda: SparkeGuidance.recommended("toy2d", objective="rke"),
        "SPARKE published norm 0.05 every 5": lambda: SparkeGuidance(
            features="raw", sigma_image=0.6, scale=0.05, every=5, normalize="published"),
        # baselines at their best setting of a small sweep (scale 0.02-0.3, both step forms)
        "Particle Guidance (in-batch)": lambda: ParticleGuidance(
            scale=0.05, every=5, window=(0, 0.8), normalize="published", features="raw"),
        "Vendi (c-VSG, window 150)": lambda: VendiGuidance(
            features="raw", sigma_image=1.0, scale=0.05, every=5, window=(0, 0.8),
            normalize="published"),
        # on the toy's prompt embedding, the class embedding
        "CADS (.6/.9/.25)": lambda: CADS(),
        "interval CFG (0.2, 1)": lambda: IntervalGuidance(guidance_scale=cfg),
    }
    for name, make in methods.items():
        rows.append({"method": name, **run(make())})
    print(f"\n2-D toy: {len(labels)} samples ({n_per_class}/class), CFG {cfg}, {steps} DDIM steps; "
          f"true weights {truth.tolist()}; TV = total-variation distance of each class's mode "
          "weights to the truth (mean over classes)")
    _table(rows, ["method", "on_mode", "TV", "TV_max", "weights(class 0)", "s"])
    sp = rows[2]
    print(f"SPARKE: TV {base['TV']:.3f} -> {sp['TV']:.3f} ({base['TV'] / max(sp['TV'], 1e-9):.1f}x "
          f"smaller), on-mode {sp['on_mode']:.1%}")
    if not sweep:
        return
    rows = []
    for sig, sc, every, win in itertools.product([0.6, 1.0], [0.5, 1.0, 2.0], [1, 5, 10],
                                                 [None, (0.0, 0.8)]):
        g = SparkeGuidance(features="raw", sigma_image=sig, sigma_text=0.3, scale=sc,
                           every=every, window=win, normalize="none")
        r = run(g)
        rows.append({"sigma": sig, "scale": sc, "every": every, "window": str(win),
                     "on_mode": r["on_mode"], "TV": r["TV"]})
    print("\nSweep (SPARKE, raw features, normalize='none'):")
    _table(rows, ["sigma", "scale", "every", "window", "on_mode", "TV"])


def _toy_cfg1(pipe, labels, steps, mix, truth):
    x = generate(pipe, labels, None, batch_size=50, num_inference_steps=steps,
                 guidance_scale=1.0, generator=torch.Generator().manual_seed(0), progress=False)
    W = mix.mode_weights(x, labels)
    tv = 0.5 * np.abs(W - truth).sum(1)
    return {"on_mode": mix.on_mode_fraction(x, labels), "TV": float(tv.mean()),
            "TV_max": float(tv.max()), "weights(class 0)": np.round(W[0], 2).tolist()}


# ============================================================================ digits
def _digits_setup():
    from sparke_lab.models import load_digits_judge, load_digits_pipeline, load_prompt_set

    torch.set_num_threads(1)   # a tiny model: one thread is fastest and robust on a busy CPU
    pipe = load_digits_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe, load_digits_judge(), load_prompt_set


def _digits_metrics(images, prompts, judge, sigma_x: float = 0.5) -> Dict:
    """valid: share of images showing a valid digit of their prompt; spread: RKE over the
    judge's classes among valid images, per prompt cluster (1 / sum_c p_c^2), mean over
    clusters; cond_vendi: conditional Vendi of judge features (normalised, Gaussian sigma_x)
    given the prompt cluster (one-hot, sigma_t 0.3); vendi: unconditional Vendi."""
    from sparke_lab.scores import conditional_vendi_score, vendi_score

    pred = judge.predict(images)
    F = judge.features(images, normalize=True)
    ok = np.array([d in p.valid_digits for d, p in zip(pred, prompts)])
    clusters = np.array([p.cluster for p in prompts])
    spreads = []
    for c in np.unique(clusters):
        m = (clusters == c) & ok
        if m.sum() == 0:
            spreads.append(0.0)
            continue
        _, counts = np.unique(pred[m], return_counts=True)
        q = counts / counts.sum()
        spreads.append(float(1.0 / np.sum(q ** 2)))
    cl = {c: i for i, c in enumerate(np.unique(clusters))}
    T = np.eye(len(cl))[[cl[c] for c in clusters]]
    return {"valid": float(ok.mean()), "spread": float(np.mean(spreads)),
            "cond_vendi": conditional_vendi_score(F, T, sigma_x=sigma_x, sigma_t=0.3),
            "vendi": vendi_score(F, sigma=sigma_x)}


def _digits_run(pipe, judge, prompt_objs, cb, cfg=7.0, steps=50, batch=30, seed=0):
    t0 = time.perf_counter()
    imgs = generate(pipe, [p.prompt for p in prompt_objs], cb, batch_size=batch,
                    num_inference_steps=steps, guidance_scale=cfg,
                    generator=torch.Generator().manual_seed(seed), output_type="pt",
                    progress=False)
    r = _digits_metrics(imgs.float(), prompt_objs, judge)
    r["s"] = time.perf_counter() - t0
    return r


def digits(per_prompt: int = 16, cfg: float = 10.0, steps: int = 50, sweep: bool = True,
           seeds=(0, 1)) -> None:
    pipe, judge, load_prompt_set = _digits_setup()
    broad = load_prompt_set("broad")
    objs = broad * per_prompt            # round-robin: every batch mixes the prompts
    methods = {
        "no guidance": lambda: None,
        "SPARKE paper settings (0.8/0.3, 0.03)": lambda: SparkeGuidance(scale=0.03),
        "SPARKE 0.8/0.3, scale 0.1": lambda: SparkeGuidance(scale=0.1),
        "SPARKE (recommended: 0.5/0.3, 0.1)": lambda: SparkeGuidance.recommended("digits"),
        "latent RKE (uncond.) 0.5, 0.1": lambda: SparkeGuidance.recommended("digits", objective="rke"),
        "Particle Guidance 0.1": lambda: ParticleGuidance(scale=0.1, every=10),
        "CADS (.6/.9/.25)": lambda: CADS(),
        "Vendi (c-VSG) 0.1": lambda: VendiGuidance(scale=0.1, every=10),
        "interval CFG (0.2, 1)": lambda: IntervalGuidance(guidance_scale=cfg, interval=(0.2, 1.0)),
    }
    rows = []
    for name, make in methods.items():
        rs = [_digits_run(pipe, judge, objs, make(), cfg, steps, seed=s) for s in seeds]
        rows.append({"method": name, **{k: float(np.mean([r[k] for r in rs])) for k in rs[0]}})
    base = rows[0]
    for r in rows:
        r["d_spread"] = f"{100 * (r['spread'] / base['spread'] - 1):+.1f}%"
        r["d_cond_vendi"] = f"{100 * (r['cond_vendi'] / base['cond_vendi'] - 1):+.1f}%"
        r["d_valid"] = f"{100 * (r['valid'] - base['valid']):+.1f} pt"
    print(f"\ndigits mini-SD: {len(broad)} broad prompts x {per_prompt} images, CFG {cfg}, "
          f"{steps} steps, batches of 30 mixing prompts, mean of seeds {list(seeds)}")
    _table(rows, ["method", "valid", "d_valid", "spread", "d_spread", "cond_vendi",
                  "d_cond_vendi", "vendi", "s"])
    if not sweep:
        return
    rows = []
    for sig, sc, every, win in itertools.product([0.5, 0.8], [0.03, 0.1, 0.2], [10, 5],
                                                 [None, (0.0, 0.5)]):
        g = SparkeGuidance(sigma_image=sig, scale=sc, every=every, window=win)
        r = _digits_run(pipe, judge, objs, g, cfg, steps, seed=0)
        rows.append({"sigma": sig, "scale": sc, "every": every, "window": str(win),
                     "valid": r["valid"], "spread": r["spread"], "cond_vendi": r["cond_vendi"]})
    print("\nSweep (SPARKE cond-rke, published normalisation, seed 0):")
    _table(rows, ["sigma", "scale", "every", "window", "valid", "spread", "cond_vendi"])


def prompts(per_prompt: int = 4, cfg: float = 10.0, steps: int = 50, seeds=(0, 1),
            scales=(0.05, 0.07, 0.1, 0.15)) -> None:
    """Prompt awareness: all prompts (single-digit and broad) interleaved in every batch."""
    pipe, judge, load_prompt_set = _digits_setup()
    allp = load_prompt_set("all")
    objs = allp * per_prompt
    rows = []
    base = None
    for name, make in [("no guidance", lambda s: None)] + [
            (f"{obj} scale {s}", (lambda s, obj=obj: SparkeGuidance.recommended(
                "digits", objective=obj, scale=s)))
            for s in scales for obj in ("cond-rke", "rke")]:
        sc = float(name.split()[-1]) if "scale" in name else None
        rs = [_digits_run(pipe, judge, objs, make(sc), cfg, steps, seed=s) for s in seeds]
        r = {"method": name, **{k: float(np.mean([x[k] for x in rs])) for k in rs[0]}}
        base = base or r
        r["d_cond_vendi"] = f"{100 * (r['cond_vendi'] / base['cond_vendi'] - 1):+.1f}%"
        r["d_valid"] = f"{100 * (r['valid'] - base['valid']):+.1f} pt"
        rows.append(r)
    print(f"\nPrompt awareness: {len(allp)} prompts (single-digit and broad) x {per_prompt}, "
          f"interleaved in batches of 30, CFG {cfg}, {steps} steps, mean of seeds {list(seeds)}")
    _table(rows, ["method", "valid", "d_valid", "cond_vendi", "d_cond_vendi", "spread", "vendi", "s"])


# ============================================================================ main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=["toy", "digits", "prompts", "all"])
    p.add_argument("--no-sweep", action="store_true")
    a = p.parse_args(argv)
    if a.which in ("toy", "all"):
        toy(sweep=not a.no_sweep)
    if a.which in ("digits", "all"):
        digits(sweep=not a.no_sweep)
    if a.which in ("prompts", "all"):
        prompts()


if __name__ == "__main__":
    main()
