"""What the digits judge accepts: held-out digits, not-a-digit images, guided samples.

Prints the share of each kind of image the judge accepts as a digit (and, for real digits,
accepts *and* labels correctly), and draws an example grid with the judge's verdicts:

- held-out real digits (450), and the four kinds of :mod:`sparke_lab.models.negatives` drawn
  with seeds never used in training (noise, random strokes, two-digit blends, corrupted);
- samples of an untrained UNet (random weights) decoded by the shipped VAE;
- the shipped digits model at CFG 7, 25 steps: unguided, and latent SPARKE at large scales
  (the images guidance breaks).

    python benchmarks/judge_rejection.py --out docs/figures/judge_rejection.png

The figures in sparke_lab/data/README.md come from this script.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main(argv=None) -> int:
    from sparke_lab import models
    from sparke_lab.guidance import SparkeGuidance, generate
    from sparke_lab.models.judge import REJECT, rejection_report
    from sparke_lab.models.negatives import not_a_digit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96, help="generated images per guided setting")
    ap.add_argument("--scales", default="0.1,0.3,0.6,1.0")
    ap.add_argument("--out", default=None, help="PNG of example images with verdicts")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    judge = models.load_digits_judge(device="cpu")
    pipe = models.load_digits_pipeline(device="cpu")
    rep = {"shipped": judge.info.get("rejection"), "fresh": rejection_report(judge, n=1000, seed=4242)}
    x_te, y_te = models.digits_real_images("test", return_labels=True)
    rows = {"real digits": x_te[:12]}
    held = (x_te, torch.from_numpy(y_te))
    for kind in ("noise", "strokes", "blends", "corrupted"):
        rows[kind] = not_a_digit(kind, 12, seed=99, digits=held)

    # an untrained UNet's samples through the trained VAE
    from diffusers import UNet2DConditionModel
    torch.manual_seed(0)
    raw = UNet2DConditionModel.from_config(pipe.unet.config)
    trained = pipe.unet
    pipe.unet = raw
    prompts = [p.prompt for p in models.load_prompt_set("mini")]
    plist = [prompts[i % len(prompts)] for i in range(args.n)]
    gens = [torch.Generator().manual_seed(i) for i in range(args.n)]
    untrained = generate(pipe, plist, None, batch_size=48, num_inference_steps=25,
                         guidance_scale=7.0, generator=gens, output_type="pt", progress=False)
    pipe.unet = trained
    rep["untrained_unet_accepted"] = round(float((judge.predict(untrained) != REJECT).mean()), 4)
    rows["untrained UNet"] = untrained[:12]

    broad = [p.prompt for p in models.load_prompt_set("broad")]
    plist = [broad[i % len(broad)] for i in range(args.n)]
    for scale in [0.0] + [float(s) for s in args.scales.split(",")]:
        cb = None if scale == 0 else SparkeGuidance.recommended("digits-latent", scale=scale)
        imgs = generate(pipe, plist, cb, batch_size=48, num_inference_steps=25, guidance_scale=7.0,
                        generator=[torch.Generator().manual_seed(i) for i in range(args.n)],
                        output_type="pt", progress=False)
        name = "unguided CFG 7" if scale == 0 else f"latent SPARKE {scale:g}"
        rep[f"{name} accepted"] = round(float((judge.predict(imgs) != REJECT).mean()), 4)
        rows[name] = imgs[:12]
    print(json.dumps(rep, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rep, fh, indent=1)
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(len(rows), 12, figsize=(9.5, 0.85 * len(rows) + 0.6), squeeze=False)
        for i, (name, imgs) in enumerate(rows.items()):
            pred = judge.predict(imgs)
            for j in range(12):
                ax = axes[i, j]
                ax.imshow(imgs[j, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ok = pred[j] != REJECT
                ax.set_title(str(int(pred[j])) if ok else "no", fontsize=7, pad=1,
                             color="black" if ok else "red")
            axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        fig.suptitle("The judge's verdict on each image: its digit, or 'no' (not a digit)", fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        fig.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
