"""The ``sparke-lab`` command line: score feature files, run the demo, train the offline models."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import List, Optional


def _orders(text: str) -> List[float]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        out.append(math.inf if part in ("inf", "infinity") else float(part))
    if not out:
        raise argparse.ArgumentTypeError("give at least one order, e.g. 1,2,inf")
    return out


def cmd_scores(args) -> int:
    from . import scores
    from .io import load_features
    from .utils import format_table

    X = load_features(args.features, args.key)
    T = load_features(args.prompts, args.prompt_key) if args.prompts else None
    kw = dict(method=args.method, n_features=args.n_features, seed=args.seed)
    rows = [{"score": "samples n", "value": float(X.shape[0])}, {"score": "dimension d", "value": float(X.shape[1])}]
    rows.append({"score": "RKE (order 2)", "value": scores.rke_score(X, args.kernel, args.sigma, **kw)})
    for a in args.orders:
        if a == 2:
            continue
        name = "Vendi (order 1)" if a == 1 else f"order-{a:g} score"
        rows.append({"score": name, "value": scores.vendi_score(X, args.kernel, args.sigma, order=a, **kw)})
    if T is not None:
        ck = dict(sigma_x=args.sigma, sigma_t=args.sigma_t, kernel=args.kernel, kernel_t=args.kernel_t, **kw)
        rows.append({"score": "Cond-RKE", "value": scores.conditional_rke_score(X, T, **ck)})
        rows.append({"score": "Cond-Vendi", "value": scores.conditional_vendi_score(X, T, **ck)})
        rows.append({"score": "Information-Vendi", "value": scores.information_vendi_score(X, T, **ck)})
    if args.json:
        print(json.dumps({r["score"]: r["value"] for r in rows}, indent=2))
    else:
        print(f"{args.features}: kernel={args.kernel} sigma={args.sigma:g} method={args.method}")
        print(format_table(rows, ["score", "value"], "{:.4f}"))
    return 0


DEMO_COMPARE = ["--model", "digits", "--prompts", "mini", "--steps", "25", "--cfg", "7",
                "--methods", "none,sparke,rke,vendi,pg,cads,sparke@0.05,sparke@0.2"]


def cmd_demo(args) -> int:
    """The main job: a SPARKE comparison on the shipped digits model."""
    from .utils import full_size
    full = args.full or full_size()
    argv = ["compare", *DEMO_COMPARE, "--per-prompt", "32" if full else "8", "--seed", str(args.seed),
            "--out", args.out + ("-full" if full else "")]
    print("sparke-lab demo: " + " ".join(argv))
    return cmd_compare(build_parser().parse_args(argv))


def cmd_mixture(args) -> int:
    from .mixture_demo import DEMO_COLUMNS, mixture_demo
    from .utils import format_table
    rows = mixture_demo(args.out, full=args.full or None, seed=args.seed)
    print("Score analysis of Gaussian mixtures with a known number of modes")
    print("(RKE should match 1/sum w^2 and Vendi should match exp H(w) for well-separated modes)\n")
    print(format_table(rows, DEMO_COLUMNS))
    print(f"\nwrote {Path(args.out) / 'eigenspectrum.png'} and {Path(args.out) / 'scores.json'}")
    return 0


def cmd_compare(args) -> int:
    from .experiments import load_prompt_file, parse_methods, run
    from .utils import format_table
    results = run(args.model, load_prompt_file(args.prompts), parse_methods(args.methods), args.out,
                  per_prompt=args.per_prompt, steps=args.steps, cfg=args.cfg, seed=args.seed,
                  batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                  features=args.features, bank=args.bank, batch_invariant=args.batch_invariant,
                  evaluate=not args.no_eval,
                  progress=not args.no_progress, backend=args.backend, sketch_sync=args.sketch_sync)
    if results is None:  # another process of a torchrun job: rank 0 reports
        return 0
    if args.no_eval:
        print(f"samples and banks in {Path(args.out) / 'samples'} (no evaluation: --no-eval)")
        return 0
    cols = ["method", "samples", "cond_vendi", "vendi", "rke", "in_batch_sim", "broad_spread",
            "prompt_fidelity", "precision", "recall", "coverage", "kid", "sec_per_sample"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    print(format_table(list(results.values()), cols, "{:.3f}"))
    print(f"\nreport: {Path(args.out) / 'report.html'}")
    return 0


def cmd_train(args) -> int:
    from . import models
    fn = {"digits": models.train_digits, "judge": models.train_judge, "toy2d": models.train_toy2d}[args.model]
    folder = {"digits": "digits-sd", "judge": "judge", "toy2d": "toy2d"}[args.model]
    out = args.out or str(models.data_dir() / folder)
    report = fn(out, quick=args.quick, seed=args.seed)
    print(json.dumps(report, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparke-lab", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    # compare is defined first so that demo can reuse its parser

    s = sub.add_parser("scores", help="score a feature file (.npy/.npz/.pt/.safetensors/.csv)")
    s.add_argument("features", help="(n, d) features of n samples")
    s.add_argument("--prompts", help="(n, e) prompt features of the same samples, for conditional scores")
    s.add_argument("--key", help="array name inside a .npz/.pt/.safetensors container")
    s.add_argument("--prompt-key", help="array name inside the prompt-feature container")
    s.add_argument("--kernel", default="gaussian", choices=["gaussian", "cosine"])
    s.add_argument("--kernel-t", default=None, choices=["gaussian", "cosine"], help="prompt kernel (default: --kernel)")
    s.add_argument("--sigma", type=float, default=1.0, help="Gaussian bandwidth of the features")
    s.add_argument("--sigma-t", type=float, default=1.0, help="Gaussian bandwidth of the prompt features")
    s.add_argument("--orders", type=_orders, default=[1.0, 2.0, math.inf], help="Renyi orders, e.g. 0.5,1,2,inf")
    s.add_argument("--method", default="exact", choices=["exact", "rff"], help="rff: random Fourier features, for large n")
    s.add_argument("--n-features", type=int, default=2048)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_scores)

    d = sub.add_parser("demo", help="the main job: compare SPARKE with the baselines on the digits model")
    d.add_argument("--out", default="outputs/demo")
    d.add_argument("--full", action="store_true", help="full size (same as SPARKE_LAB_FULL=1)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)

    x = sub.add_parser("mixture", help="score analysis of Gaussian mixtures with a known number of modes")
    x.add_argument("--out", default="outputs/mixture")
    x.add_argument("--full", action="store_true", help="full size (same as SPARKE_LAB_FULL=1)")
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=cmd_mixture)

    c = sub.add_parser("compare", help="compare diversity methods on the same prompts and seeds")
    c.add_argument("--model", default="digits", help="'digits' (shipped), a local diffusers folder or a hub id")
    c.add_argument("--prompts", default="mini", help="prompt file (.txt or .csv) or a shipped set: single, broad, mini, all")
    c.add_argument("--methods", default="none,sparke,rke,vendi,pg,cads",
                   help="comma list of none,sparke,rke,vendi,pg,cads,interval; name@scale sets the scale")
    c.add_argument("--per-prompt", type=int, default=8)
    c.add_argument("--steps", type=int, default=25)
    c.add_argument("--cfg", type=float, default=7.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--batch-size", type=int, default=16, help="samples per batch on each process")
    c.add_argument("--device", default=None, help="default: cuda > mps > cpu")
    c.add_argument("--dtype", default=None, help="fp16/bf16/fp32 (default fp16 on CUDA, fp32 elsewhere)")
    c.add_argument("--features", default="auto", help="auto (judge for digits, pixels otherwise), pixels, or module:function")
    c.add_argument("--out", default="outputs/compare")
    c.add_argument("--bank", default="exact", choices=["exact", "sketch"],
                   help="SPARKE/RKE memory bank: exact rows or a random-feature sketch (constant cost per step)")
    c.add_argument("--batch-invariant", action="store_true",
                   help="run the model one sample at a time (slower): results then do not depend on the "
                        "batch size or process count, to the bit")
    c.add_argument("--no-eval", action="store_true", help="generate samples and banks only (no metrics or report)")
    c.add_argument("--backend", default=None, choices=["gloo", "nccl"],
                   help="under torchrun: process-group backend (default nccl with CUDA, else gloo)")
    c.add_argument("--sketch-sync", default="rows", choices=["rows", "sum"],
                   help="under torchrun: a sketch bank gathers the new rows, or all-reduces its fixed-size sums")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_compare)

    t = sub.add_parser("train", help="retrain an offline model from scratch")
    t.add_argument("model", choices=["digits", "judge", "toy2d"])
    t.add_argument("--out", help="output folder (default: the shipped location under data/)")
    t.add_argument("--quick", action="store_true", help="a tiny run for tests")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        print(f"sparke-lab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
