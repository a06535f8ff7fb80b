"""How classifier-free guidance collapses the broad prompts of the digits mini-SD.

For each CFG scale: per broad cluster (pooled over its 3 phrasings) the class distribution of
the valid images (judged by the rejecting judge), its total-variation distance to the designed
caption distribution, the spread (order-2 effective number of valid digits) and validity;
and the single-digit prompt fidelity. Prints markdown tables and the TV ratios CFG 7 vs
CFG 1 and 1.5, and writes everything to a JSON file.

    python benchmarks/digits_collapse.py --steps 50 --broad-per-prompt 64 --out collapse_50.json
    python benchmarks/digits_collapse.py --model /work/runs/digits-v2 --steps 25 --quick

The shipped table (sparke_lab/data/README.md, docs/guidance.md) comes from this script.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sparke_lab import models
from sparke_lab.models._common import torch_threads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="digits pipeline folder (default: the shipped one)")
    ap.add_argument("--judge", default=None, help="judge folder (default: the shipped one)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", default="1,1.5,3,5,7,10", help="comma-separated CFG scales")
    ap.add_argument("--broad-per-prompt", type=int, default=64,
                    help="images per broad phrasing (3 phrasings per cluster)")
    ap.add_argument("--single-per-prompt", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="8 broad / 2 single images per prompt")
    ap.add_argument("--out", default=None, help="write the JSON report here")
    args = ap.parse_args(argv)
    if args.quick:
        args.broad_per_prompt, args.single_per_prompt = 8, 2
    scales = [float(c) for c in args.cfg.split(",")]
    pipe = models.load_digits_pipeline(device="cpu", path=args.model)
    judge = models.load_digits_judge(device="cpu", path=args.judge)
    t0 = time.perf_counter()
    with torch_threads(1):
        rep = models.evaluate_digits_pipeline(
            pipe, judge, guidance_scales=scales, num_inference_steps=args.steps,
            single_per_prompt=args.single_per_prompt, broad_per_prompt=args.broad_per_prompt,
            seed=args.seed, batch_size=128)
    rep["model"] = args.model or "shipped"
    rep["seconds_total"] = round(time.perf_counter() - t0, 1)

    keys = [f"cfg_{w:g}" for w in scales]
    clusters = list(rep[keys[0]]["broad_clusters"])
    print(f"\n## {args.steps} steps, {args.broad_per_prompt} images x 3 phrasings per cluster, seed {args.seed}\n")
    print("| cluster | caption distribution | " + " | ".join(f"CFG {w:g}" for w in scales) + " |")
    print("|---|---|" + "---|" * len(scales))
    for c in clusters:
        cap = rep[keys[0]]["broad_clusters"][c]["caption_distribution"]
        order = sorted(cap, key=lambda d: -cap[d])
        cells = []
        for k in keys:
            m = rep[k]["broad_clusters"][c]
            dist = "/".join(f"{m['distribution'][d]:.2f}" for d in order)
            cells.append(f"{dist}<br>TV {m['tv']:.3f}, spread {m['spread']:.2f}, valid {m['validity']:.2f}")
        capt = "/".join(f"{d}:{cap[d]:g}" for d in order)
        print(f"| {c} | {capt} | " + " | ".join(cells) + " |")
    print("\n| CFG | mean TV | mean spread | broad valid | broad rejected | single fidelity | single rejected |")
    print("|---|---|---|---|---|---|---|")
    for w, k in zip(scales, keys):
        r = rep[k]
        print(f"| {w:g} | {r['broad_tv']:.3f} | {r['broad_spread']:.2f} | {r['broad_valid']:.3f} | "
              f"{r['broad_rejected']:.3f} | {r['single_accuracy']:.3f} | {r['single_rejected']:.3f} |")
    ratios = {}
    for lo in (1.0, 1.5):
        for hi in (7.0, 10.0):
            if lo in scales and hi in scales:
                a, b = rep[f"cfg_{lo:g}"], rep[f"cfg_{hi:g}"]
                ratios[f"tv_cfg{hi:g}_over_cfg{lo:g}"] = round(b["broad_tv"] / a["broad_tv"], 2)
                ratios[f"spread_cfg{lo:g}_minus_cfg{hi:g}"] = round(a["broad_spread"] - b["broad_spread"], 3)
    rep["ratios"] = ratios
    print("\n" + json.dumps(ratios))
    print(f"({rep['seconds_total']} s)")
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
