"""Several processes against one on the same work: throughput, time in communication, bytes.

    python benchmarks/bench_distributed.py              # ~3-5 minutes on 2 CPU cores
    python benchmarks/bench_distributed.py --rounds 8 --per-rank 8

The work: SPARKE (recommended digits settings, conditional RKE, 25 steps, guided at steps 0,
10, 20) on the shipped digits pipeline, ``rounds`` rounds of ``2 x per_rank`` samples, with a
bank pre-filled to n = 10^3 or 10^5 rows (random unit features with real prompt features).
  * W = 1: one process, batch 2 x per_rank, with 1 and with 2 threads;
  * W = 2: two Gloo processes (torch.multiprocessing), 1 thread each, batch per_rank each.
The first row (no guidance, nothing exchanged) shows the parallel speed-up the machine allows.
Each measurement is the best of ``--repeats`` runs (a shared machine is noisy).
For each bank kind (exact rows; sketch with rows gathered; sketch with its sums all-reduced)
it prints samples per second, the W = 2 / W = 1 throughput ratio, the share of wall time
rank 0 spends inside collectives, and the bytes each rank sends per round (peers at the
guided steps + the finished samples into the bank), measured by sparke_lab.distributed's
counters (ring-equivalent: an all-gather sends (W - 1) chunks of a rank's size).
All numbers come from one run, side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

CONFIGS = [("none", "rows", 0), ("exact", "rows", 1_000), ("exact", "rows", 100_000),
           ("sketch", "rows", 1_000), ("sketch", "sum", 1_000), ("sketch", "sum", 100_000)]
PROMPTS = ["an odd digit", "a handwritten three", "an even digit", "a digit bigger than five"]


def _prefilled_guidance(pipe, kind: str, n: int):
    from sparke_lab.guidance import MemoryBank, SparkeGuidance, encode_prompts
    if kind == "none":  # unguided: the parallel speed-up this machine allows, nothing exchanged
        return None
    g = torch.Generator().manual_seed(0)  # identical bank on every rank
    T = encode_prompts(pipe, PROMPTS)
    D = pipe.unet.config.in_channels * pipe.unet.config.sample_size ** 2
    X = torch.randn(n, D, generator=g)
    X = X / X.norm(dim=1, keepdim=True)
    Tn = T[torch.randint(len(PROMPTS), (n,), generator=g)]
    guide = SparkeGuidance.recommended("digits-latent", bank="sketch" if kind == "sketch" else None)
    if kind == "exact":
        guide.bank = MemoryBank.from_features(X, Tn)
    else:
        guide.bank.add(X, Tn)
    return guide


def _run_work(pipe, guide, group, rounds: int, batch: int, steps: int):
    from sparke_lab.guidance import generate
    if guide is not None:
        guide.group = group
    texts = [PROMPTS[i % len(PROMPTS)] for i in range((rounds + 1) * batch * group.world_size)]
    t0 = 0.0
    for r in range(rounds + 1):
        if r == 1:  # round 0 warms up (allocations, first calls); the clock starts after it
            group.barrier()
            group.reset_stats()
            t0 = time.perf_counter()
        mine = group.shard(list(range(r * batch * group.world_size, (r + 1) * batch * group.world_size)))
        gens = [torch.Generator().manual_seed(i) for i in mine]
        generate(pipe, [texts[i] for i in mine], guide, batch_size=len(mine), num_inference_steps=steps,
                 guidance_scale=7.0, generator=gens, output_type="np", progress=False)
    group.barrier()
    wall = time.perf_counter() - t0
    st = {k: dict(v) for k, v in group.stats.items()}
    n = rounds * batch * group.world_size
    return {"wall": wall, "samples": n, "stats": st, "bank": 0 if guide is None else len(guide.bank)}


def _best(fn, repeats: int):
    runs = [fn() for _ in range(repeats)]
    return dict(min(runs, key=lambda r: r["wall"]), bank=runs[-1]["bank"])  # bank after all repeats


def _worker(rank, world, init_file, out_file, args):
    torch.set_num_threads(1)
    from sparke_lab.distributed import RankGroup
    from sparke_lab.models import load_digits_pipeline
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    pipe = load_digits_pipeline()
    res = {}
    for kind, sync, n in CONFIGS:
        group = RankGroup(rank, world, backend="gloo", sketch_sync=sync)
        guide = _prefilled_guidance(pipe, kind, n)
        res[f"{kind}/{sync}/{n}"] = _best(lambda: _run_work(pipe, guide, group, args.rounds, args.per_rank,
                                                            args.steps), args.repeats)
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(res, f)
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from sparke_lab.distributed import RankGroup
    from sparke_lab.models import load_digits_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        out2 = os.path.join(tmp, "w2.json")
        t0 = time.perf_counter()
        mp.spawn(_worker, args=(2, os.path.join(tmp, "init"), out2, args), nprocs=2)
        print(f"(W = 2 part incl. start-up: {time.perf_counter() - t0:.0f} s)")
        with open(out2) as f:
            w2 = json.load(f)
    pipe = load_digits_pipeline()
    w1, w1t1 = {}, {}
    for kind, sync, n in CONFIGS:
        for threads, res in ((2, w1), (1, w1t1)):
            torch.set_num_threads(threads)
            guide = _prefilled_guidance(pipe, kind, n)
            res[f"{kind}/{sync}/{n}"] = _best(lambda: _run_work(pipe, guide, RankGroup(), args.rounds,
                                                                2 * args.per_rank, args.steps), args.repeats)

    D = pipe.unet.config.in_channels * pipe.unet.config.sample_size ** 2
    print(f"\ndigits pipeline, latent D = {D}, {args.rounds} rounds x {2 * args.per_rank} samples, "
          f"{args.steps} steps, SPARKE cond-rke every 10 steps; Gloo on {os.cpu_count()} CPU cores\n")
    head = ("bank", "sync", "n", "W=1 1 thr img/s", "W=1 2 thr img/s", "W=2 img/s", "W2 / W1 (1 thr, 2 thr)",
            "comm share",
            "peers B/round", "bank B/round")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for kind, sync, n in CONFIGS:
        k = f"{kind}/{sync}/{n}"
        a, b, c = w1[k], w2[k], w1t1[k]
        t1, t2, t11 = a["samples"] / a["wall"], b["samples"] / b["wall"], c["samples"] / c["wall"]
        comm = sum(v["seconds"] for v in b["stats"].values())
        per = lambda tag: b["stats"].get(tag, {}).get("bytes_sent", 0) / args.rounds
        print(f"| {kind} | {sync} | {n:,} | {t11:.2f} | {t1:.2f} | {t2:.2f} | {t2 / t11:.2f}x, {t2 / t1:.2f}x | "
              f"{comm / b['wall']:.1%} | "
              f"{per('peers'):,.0f} | {per('bank'):,.0f} |")
        # both runs added the same rows to the same prefilled bank (the bank grows over repeats)
        assert a["bank"] == b["bank"] and (kind == "none" or a["bank"] > n), (a["bank"], b["bank"])
    print("\ncomm share: rank 0's seconds inside collectives / wall time (includes waiting for the "
          "slower rank at each exchange); B/round: bytes one rank sends per round.")


if __name__ == "__main__":
    main()
