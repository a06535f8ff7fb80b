"""Does SPARKE guidance work? Sweeps and comparisons on the offline models, printed as tables.

    python benchmarks/guidance_experiments.py toy        # 2-D toy under CFG collapse

The digits measurements (frontiers at matched fidelity, prompt awareness) are in
benchmarks/digits_guidance.py.

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


# ============================================================================ main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=["toy"])
    p.add_argument("--no-sweep", action="store_true")
    a = p.parse_args(argv)
    toy(sweep=not a.no_sweep)


if __name__ == "__main__":
    main()
