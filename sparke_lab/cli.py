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


def _progress_bar(args, desc: str):
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr, or None.

    ``--progress`` forces it, ``--no-progress`` hides it; by default it shows on a terminal."""
    if args.progress is False:
        return None
    from tqdm.auto import tqdm
    state = {}

    def update(done: int, total: int) -> None:  # a new bar for each pass over the rows
        bar = state.get("bar")
        if bar is None or done < bar.n:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit="rows", file=sys.stderr,
                                      disable=None if args.progress is None else False, mininterval=1.0)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return update


def cmd_scores(args) -> int:
    from . import scores
    from .io import load_features
    from .utils import format_table

    X = load_features(args.features, args.key)
    T = load_features(args.prompts, args.prompt_key) if args.prompts else None
    n = X.shape[0]
    eigen_orders = [a for a in args.orders if a != 2]
    # the exact spectrum is an n x n eigenproblem, except for the cosine kernel with d < n (d x d)
    needs_n_by_n = (eigen_orders and not (args.kernel == "cosine" and X.shape[1] < n)) or T is not None
    if args.method == "exact" and n > scores.MAX_EXACT_EIGEN_N and needs_n_by_n:
        # refuse before the O(n^2) RKE, not after it
        raise ValueError(f"{args.features}: n = {n} samples is too many for the exact eigenvalue scores "
                         f"(at most {scores.MAX_EXACT_EIGEN_N}: O(n^3) time, n x n memory); use "
                         "--method rff (linear in n), or --orders 2 without --prompts for the exact RKE alone")
    kw = dict(method=args.method, n_features=args.n_features, seed=args.seed)
    rff = args.method == "rff"
    rows = [{"score": "samples n", "value": float(n)}, {"score": "dimension d", "value": float(X.shape[1])}]
    rke, se = scores.rke_score(X, args.kernel, args.sigma, **kw, return_se=True,
                               progress=_progress_bar(args, "RKE (rff)") if rff else None)
    rows.append({"score": "RKE (order 2)", "value": rke, **({"std. error": se} if rff else {})})
    if eigen_orders:  # one spectrum serves every order
        lam = scores.kernel_eigenvalues(X, args.kernel, args.sigma, **kw,
                                        progress=_progress_bar(args, "spectrum (rff)") if rff else None)
        for a in eigen_orders:
            name = "Vendi (order 1)" if a == 1 else f"order-{a:g} score"
            rows.append({"score": name, "value": math.exp(scores.entropy(lam, a))})
    if T is not None:
        ck = dict(sigma_x=args.sigma, sigma_t=args.sigma_t, kernel=args.kernel, kernel_t=args.kernel_t, **kw)
        crke, cse = scores.conditional_rke_score(X, T, **ck, return_se=True,
                                                 progress=_progress_bar(args, "Cond-RKE (rff)") if rff else None)
        rows.append({"score": "Cond-RKE", "value": crke, **({"std. error": cse} if rff else {})})
        rows.append({"score": "Cond-Vendi", "value": scores.conditional_vendi_score(X, T, **ck)})
        rows.append({"score": "Information-Vendi", "value": scores.information_vendi_score(X, T, **ck)})
    if args.json:
        out = {}
        for r in rows:
            out[r["score"]] = r["value"]
            if "std. error" in r:
                out[r["score"] + " std. error"] = r["std. error"]
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.features}: kernel={args.kernel} sigma={args.sigma:g} method={args.method}")
        cols = ["score", "value"] + (["std. error"] if rff else [])
        print(format_table(rows, cols, "{:.4f}"))
        if rff:
            print("std. error: of the random-feature estimate (value +- 2 x std. error covers the exact "
                  "score about 95 % of the time); the eigenvalue scores have none")
    return 0


#: The main job: broad prompts under CFG 7 (the designed collapse), the reference CFG 1.5, and
#: SPARKE (semantic, the digits recommendation), latent SPARKE, CADS and interval CFG each at
#: a few strengths, so the report compares frontiers at matched fidelity.
DEMO_COMPARE = ["--model", "digits", "--prompts", "broad", "--steps", "25", "--cfg", "7",
                "--methods", "none,cfg@1.5,sparke@1,sparke@2,sparke@4,sparke-latent@0.025,"
                "sparke-latent@0.05,cads@0.25,cads@0.5,interval@0.1,interval@0.2"]


def cmd_demo(args) -> int:
    """The main job: a SPARKE comparison on the shipped digits model."""
    from .utils import full_size
    full = args.full or full_size()
    argv = ["compare", *DEMO_COMPARE, "--per-prompt", "22" if full else "6", "--seed", str(args.seed),
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


def _check_device(spec: Optional[str]) -> None:
    """A ``--device`` torch can use here, or a ValueError that says what is missing."""
    if spec is None:
        return
    import torch
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--device {spec!r} is not a device name ({exc}); use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if not torch.backends.cuda.is_built() else \
                "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?)"
            raise ValueError(f"--device {spec}: CUDA is not available ({why}, torch {torch.__version__}); "
                             "install a CUDA build of torch (see the README's GPU path) or use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {spec}: Apple MPS is not available here; use --device cpu")


def _check_out_folder(out: Path) -> None:
    """``--out`` must be a folder (or creatable), and the JSON files of an earlier run in it
    readable; a damaged one is named with what to do."""
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {out}: {parent} is a file, not a folder; choose another --out")
            break
    files = [out / "config.json", *sorted(out.glob("samples/*/manifest.json"))] if out.is_dir() else []
    for f in files:
        if not f.is_file():
            continue
        try:
            json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            what = ("restore it or choose another --out" if f.name == "config.json" else
                    f"delete the folder {f.parent} to generate that method again")
            raise ValueError(f"{f} is damaged (not valid JSON: {exc}); {what}") from None


def cmd_compare(args) -> int:
    from .experiments import load_prompt_file, parse_methods, run
    from .loading import check_features
    from .utils import format_table
    family = "digits" if args.model == "digits" else "stable-diffusion"
    prompts = load_prompt_file(args.prompts)
    methods = parse_methods(args.methods, args.sweep, family)
    if args.per_prompt < 2 or args.steps < 1 or args.batch_size < 1:
        raise ValueError("need --per-prompt >= 2, --steps >= 1 and --batch-size >= 1")
    _check_device(args.device)
    check_features(args.features)
    _check_out_folder(Path(args.out))
    results = run(args.model, prompts, methods, args.out,
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
    cols = ["method", "samples", "cond_vendi", "vendi", "in_batch_sim", "broad_spread", "broad_tv",
            "broad_validity", "prompt_fidelity", "rejected", "precision", "recall", "coverage", "kid",
            "sec_per_sample"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    print(format_table(list(results.values()), cols, "{:.3f}"))
    print(f"\nreport: {Path(args.out) / 'report.html'}")
    return 0


def cmd_train(args) -> int:
    from . import models
    fn = {"digits": models.train_digits, "judge": models.train_judge, "toy2d": models.train_toy2d,
          "clip": models.train_digits_clip}[args.model]
    folder = {"digits": "digits-sd", "judge": "judge", "toy2d": "toy2d", "clip": "digits-clip"}[args.model]
    from .models._common import DATA_ENV, train_dir
    out = train_dir(folder, args.out)
    report = fn(out, quick=args.quick, **({} if args.seed is None else {"seed": args.seed}))
    print(json.dumps(report, indent=2, default=str))
    loader = {"digits": "load_digits_pipeline", "judge": "load_digits_judge", "toy2d": "load_toy2d",
              "clip": "load_digits_clip"}[args.model]
    print(f"\nwrote {out}. Load it with sparke_lab.models.{loader}(path={str(out)!r}), or set "
          f"{DATA_ENV}={out.parent} to make every loader read that folder (it then needs the "
          f"other model folders and prompts/ too: copy them from {models.shipped_data_dir()}).")
    return 0


def cmd_lab(args) -> int:
    from . import lab
    try:
        return lab.main(args.directory, args.port, args.token, args.no_browser, args.ip,
                        args.jupyter_arg)
    except ImportError as exc:
        print(f"sparke-lab lab: error: {exc}", file=sys.stderr)
        return 2


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
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars of the rff computations on stderr (default: on a terminal)")
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
    c.add_argument("--sweep", action="store_true",
                   help="run each method without @scale at a small grid of strengths and compare "
                        "frontiers at matched fidelity (see the report)")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_compare)

    t = sub.add_parser("train", help="retrain an offline model from scratch")
    t.add_argument("model", choices=["digits", "judge", "toy2d", "clip"])
    t.add_argument("--out", help="output folder (default: $SPARKE_LAB_DATA/<model> if set, else "
                   "$XDG_DATA_HOME/sparke-lab/<model>, i.e. ~/.local/share/sparke-lab/<model>; "
                   "never the installed package)")
    t.add_argument("--quick", action="store_true", help="a tiny run for tests")
    t.add_argument("--seed", type=int, default=None,
                   help="default: each model's own (0; 1 for clip, so it differs from the judge)")
    t.set_defaults(func=cmd_train)

    j = sub.add_parser("lab", help="JupyterLab on the course notebooks (needs the [lab] extra)")
    j.add_argument("directory", nargs="?", default=None, help="notebook folder (default: ./notebooks if present, else .)")
    j.add_argument("--port", type=int, default=None, help="port (default: a free one); used as given or the start fails")
    j.add_argument("--token", default=None, help="access token (default: a random one, printed in the URL)")
    j.add_argument("--ip", default="127.0.0.1", help="address to listen on (default loopback)")
    j.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    j.add_argument("--jupyter-arg", action="append", default=[], metavar="ARG",
                   help="passed on to JupyterLab, e.g. --jupyter-arg=--LabApp.expose_app_in_browser=True (repeatable)")
    j.set_defaults(func=cmd_lab)
    return p


def _os_error_message(exc: OSError, folder: Optional[str] = None) -> str:
    """An OSError in words: what failed, on which file (else in which folder), what to do."""
    import errno
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    what = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "the disk is full: free space or choose another --out",
            errno.EDQUOT: "the disk quota is used up: free space or choose another --out",
            errno.EACCES: "no permission: choose another --out or fix the permissions",
            errno.EPERM: "no permission: choose another --out or fix the permissions",
            errno.EROFS: "the file system is read-only: choose another --out",
            errno.ENOTDIR: "a path component is a file, not a folder",
            errno.EISDIR: "a folder was given where a file is needed"}.get(exc.errno)
    if hint is None:  # e.g. PIL's "image file is truncated": a damaged file
        hint = "the file is damaged or unreadable" if where else \
            f"a file{f' under {folder}' if folder else ''} is damaged or unreadable"
    return f"{what}{where}; {hint}"


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        print(f"sparke-lab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # full disk, read-only or damaged files: a message, not a traceback
        print(f"sparke-lab {args.command}: error: {_os_error_message(exc, getattr(args, 'out', None))}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
