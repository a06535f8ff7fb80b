"""Does guidance change *which* digits a broad prompt yields under CFG, at held fidelity?

The measurements behind docs/guidance.md, on the shipped digits model (designed collapse,
rejecting judge), each method at a grid of strengths (``sparke-lab compare --sweep``), two
seeds, then compared along their fidelity-diversity frontiers at matched validity:

    python benchmarks/digits_guidance.py run broad  --out runs/broad     # 50 steps, CFG 7, 15 broad prompts
    python benchmarks/digits_guidance.py run sevens --out runs/sevens    # "the digit 7" interleaved with "an odd digit"
    python benchmarks/digits_guidance.py table broad  runs/broad         # markdown tables from both seeds
    python benchmarks/digits_guidance.py table sevens runs/sevens

``run`` calls ``sparke-lab compare`` (resumable: run it again after an interruption);
``table`` reads ``metrics.json``, ``frontier.json`` and ``clusters.json`` of each seed.
Expect about 30-60 min per seed for ``broad`` on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

BROAD = ("none,cfg@1.5,sparke-clip,rke-clip,sparke-latent,rke,pg,cads,interval,vendi")
SEVENS = "none,sparke-clip,rke-clip,sparke-latent,rke"
SEVENS_CSV = "prompt,cluster,valid_digits\nthe digit 7,7,7\nan odd digit,10,1 3 5 7 9\n"


def _run(kind: str, out: Path, seeds, per_prompt: int, steps: int, cfg: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if kind == "broad":
        prompts, methods = "broad", BROAD
    else:
        (out / "sevens.csv").write_text(SEVENS_CSV)
        prompts, methods = str(out / "sevens.csv"), SEVENS
    for seed in seeds:
        cmd = [sys.executable, "-m", "sparke_lab.cli", "compare", "--prompts", prompts, "--methods",
               methods, "--sweep", "--per-prompt", str(per_prompt), "--steps", str(steps), "--cfg",
               str(cfg), "--seed", str(seed), "--out", str(out / f"seed{seed}"), "--no-progress"]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def _fmt(x, digits=2):
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _pool(values, los, his):
    """Mean over seeds; 95 % interval from the seeds' standard errors (independent seeds)."""
    v = np.array(values, dtype=float)
    se = (np.array(his, dtype=float) - np.array(los, dtype=float)) / (2 * 1.959964)
    m = float(v.mean())
    s = float(np.sqrt((se ** 2).sum()) / len(v))
    return m, m - 1.959964 * s, m + 1.959964 * s


def _table_broad(folders, figure=None) -> None:
    fr = [json.loads((f / "frontier.json").read_text()) for f in folders]
    met = [json.loads((f / "metrics.json").read_text()) for f in folders]
    fk, dk = fr[0]["axes"]
    if figure:
        import matplotlib
        matplotlib.use("Agg")
        from sparke_lab.evaluation import method_groups
        from sparke_lab.plotting import plot_frontiers, use_style
        use_style()
        mean = lambda m, k: float(np.mean([x[m][k] for x in met]))
        groups = method_groups(list(met[0]))
        fig = plot_frontiers({g: [(mean(m, fk), mean(m, dk), m) for m in ms] for g, ms in groups.items()},
                             target=mean("none", fk) - fr[0]["drop"], xlabel="broad validity (rejecting judge)",
                             ylabel="spread over valid digits (1 / sum p^2)",
                             references=[(mean(m, fk), mean(m, dk), m) for m in met[0] if m.startswith("cfg@")])
        fig.axes[0].set_title(f"digits, broad prompts, CFG 7, 50 steps: mean of {len(folders)} seeds")
        fig.savefig(figure, dpi=110, bbox_inches="tight")
        print(f"wrote {figure}")
    print(f"\n### Matched fidelity ({dk} at {fk} = unguided - {fr[0]['drop']:g}), {len(folders)} seeds\n")
    print("| method | settings | matched spread | gain over none [95 %] | lost spread recovered [95 %] | per seed |")
    print("|---|---|---|---|---|---|")
    for i, row in enumerate(fr[0]["rows"]):
        rows = [f["rows"][i] for f in fr]
        g = _pool([r["gain"] for r in rows], [r["gain_lo"] for r in rows], [r["gain_hi"] for r in rows])
        rec = _pool([r.get("recovered", float("nan")) for r in rows],
                    [r.get("recovered_lo", float("nan")) for r in rows],
                    [r.get("recovered_hi", float("nan")) for r in rows])
        matched = float(np.mean([r["matched"] for r in rows]))
        seeds = "; ".join(f"{_fmt(r['matched'])} ({_fmt(r.get('recovered'))})" for r in rows)
        print(f"| {row['method']} | {row['settings']} | {_fmt(matched)} | {_fmt(g[0])} [{_fmt(g[1])}, {_fmt(g[2])}] "
              f"| {_fmt(rec[0])} [{_fmt(rec[1])}, {_fmt(rec[2])}] | {seeds} |")
    print("\n### Every setting (mean of seeds)\n")
    print("| method | broad valid | spread | TV to captions | Cond-Vendi | rejected | s / sample |")
    print("|---|---|---|---|---|---|---|")
    for m in met[0]:
        rs = [x[m] for x in met]
        mean = lambda k: float(np.mean([r.get(k, float("nan")) for r in rs]))
        print(f"| {m} | {_fmt(mean('broad_validity'), 3)} | {_fmt(mean('broad_spread'))} | "
              f"{_fmt(mean('broad_tv'), 3)} | {_fmt(mean('cond_vendi'))} | {_fmt(mean('rejected'), 3)} | "
              f"{_fmt(mean('sec_per_sample'), 3)} |")


def _table_sevens(folders) -> None:
    from sparke_lab.evaluation import matched_difference
    cl = [json.loads((f / "clusters.json").read_text()) for f in folders]
    met = [json.loads((f / "metrics.json").read_text()) for f in folders]
    print("\n### Interleaved prompts: share of sevens among \"an odd digit\" images (valid ones)\n")
    print("| method | share of 7 | odd validity | odd spread | per seed (share of 7) |")
    print("|---|---|---|---|---|")
    for m in met[0]:
        shares, vals, spreads = [], [], []
        for c in cl:
            odd = c[m]["10"]
            shares.append(odd["distribution"][odd["valid"].index(7)])
            vals.append(odd["validity"])
            spreads.append(odd["spread"])
        print(f"| {m} | {_fmt(np.mean(shares), 3)} | {_fmt(np.mean(vals), 3)} | {_fmt(np.mean(spreads))} | "
              + "; ".join(_fmt(s, 3) for s in shares) + " |")
    fr = [json.loads((f / "frontier.json").read_text()) for f in folders]
    print(f"\n### cond-rke vs rke at matched fidelity ({fr[0]['axes'][1]} at {fr[0]['axes'][0]} = unguided - {fr[0]['drop']:g})\n")
    print("| pair | difference (mean of seeds) | 95 % interval | per seed |")
    print("|---|---|---|---|")
    for a, b in (("sparke-clip", "rke-clip"), ("sparke-latent", "rke")):
        ds = []
        for f in fr:
            rows = {r["method"]: r for r in f["rows"]}
            if a in rows and b in rows:
                ds.append(matched_difference(rows[a], rows[b], f["n"]))
        if not ds:
            continue
        p = _pool([d["delta"] for d in ds], [d["lo"] for d in ds], [d["hi"] for d in ds])
        print(f"| {a} - {b} | {_fmt(p[0], 3)} | [{_fmt(p[1], 3)}, {_fmt(p[2], 3)}] | "
              + "; ".join(f"{_fmt(d['delta'], 3)} [{_fmt(d['lo'], 3)}, {_fmt(d['hi'], 3)}]" for d in ds) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("kind", choices=["broad", "sevens"])
    r.add_argument("--out", required=True)
    r.add_argument("--seeds", default="0,1")
    r.add_argument("--per-prompt", type=int, default=None, help="default: 22 (broad: 66 per cluster), 64 (sevens)")
    r.add_argument("--steps", type=int, default=50)
    r.add_argument("--cfg", type=float, default=7.0)
    t = sub.add_parser("table")
    t.add_argument("kind", choices=["broad", "sevens"])
    t.add_argument("folder", help="the --out of run (holds seed0, seed1, ...)")
    t.add_argument("--figure", default=None, help="broad: also draw the mean frontiers to this PNG")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        per = args.per_prompt or (22 if args.kind == "broad" else 64)
        _run(args.kind, Path(args.out), [int(s) for s in args.seeds.split(",")], per, args.steps, args.cfg)
        return 0
    folders = sorted(p for p in Path(args.folder).glob("seed*") if (p / "frontier.json").exists())
    if not folders:
        raise SystemExit(f"no evaluated seed folders under {args.folder}")
    if args.kind == "broad":
        _table_broad(folders, args.figure)
    else:
        _table_sevens(folders)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
