"""Benchmark of the score routes, measured side by side in one run.

1. Exact RKE (Frobenius route, O(n^2)) against eigendecomposition Vendi (O(n^3)) at n = 4,000.
2. RFF RKE (linear in n) against the exact chunked RKE at n = 100,000, d = 512, with the
   relative error and the peak memory of the exact path (an n x n float32 matrix would
   need n^2 * 4 bytes = 40 GB; the chunked path must stay far below that).

    python benchmarks/bench_scores.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/bench_scores.py --quick    # small sizes, seconds
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import sparke_lab as sl  # noqa: E402
from sparke_lab.utils import format_table  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeats=1):
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return value, best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-small", type=int, default=4000)
    p.add_argument("--d-small", type=int, default=256)
    p.add_argument("--n-large", type=int, default=100_000)
    p.add_argument("--d-large", type=int, default=512)
    p.add_argument("--n-features", type=int, default=4096)
    args = p.parse_args(argv)
    if args.quick:
        args.n_small, args.n_large, args.d_large = 1000, 10_000, 128
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    rows = []

    # 1. O(n^2) Frobenius route against the O(n^3) eigen route
    m = sl.gaussian_mixture(args.n_small, 20, dim=args.d_small, separation=8.0, spread=0.2, seed=0)
    X = torch.from_numpy(m.X).float()
    sigma = 4.0
    rke, t_rke = timed(lambda: sl.rke_score(X, sigma=sigma), repeats=3)
    vendi2, t_eig2 = timed(lambda: sl.vendi_score(X, sigma=sigma, order=2.0 + 1e-9))
    vendi1, t_vendi = timed(lambda: sl.vendi_score(X, sigma=sigma))
    rows.append({"n": args.n_small, "d": args.d_small, "method": "RKE exact (Frobenius)", "seconds": t_rke,
                 "ratio": 1.0, "rel. error": 0.0, "value": rke})
    rows.append({"n": args.n_small, "d": args.d_small, "method": "order-2 via eigenvalues", "seconds": t_eig2,
                 "ratio": t_eig2 / t_rke, "rel. error": abs(vendi2 - rke) / rke, "value": vendi2})
    rows.append({"n": args.n_small, "d": args.d_small, "method": "Vendi (eigendecomposition)", "seconds": t_vendi,
                 "ratio": t_vendi / t_rke, "rel. error": float("nan"), "value": vendi1})

    # 2. RFF against the exact chunked sum at large n
    m = sl.gaussian_mixture(args.n_large, 50, dim=args.d_large, separation=8.0, spread=0.15, seed=1)
    X = torch.from_numpy(m.X).float()
    del m
    sigma = 4.0
    rss0 = peak_rss_mb()
    exact, t_exact = timed(lambda: sl.rke_score(X, sigma=sigma))
    rss_exact = peak_rss_mb() - rss0
    rows.append({"n": args.n_large, "d": args.d_large, "method": "RKE exact (chunked)", "seconds": t_exact,
                 "ratio": 1.0, "rel. error": 0.0, "value": exact})
    for seed in range(3):
        approx, t_rff = timed(lambda: sl.rke_score(X, sigma=sigma, method="rff",
                                                   n_features=args.n_features, seed=seed))
        rows.append({"n": args.n_large, "d": args.d_large, "method": f"RKE rff m={args.n_features} seed {seed}",
                     "seconds": t_rff, "ratio": t_exact / t_rff, "rel. error": abs(approx - exact) / exact,
                     "value": approx})

    print(format_table(rows, ["n", "d", "method", "seconds", "ratio", "rel. error", "value"], "{:.4g}"))
    print("ratio = time of the reference row / time of this row, except rows 2-3: their time / exact RKE time")
    full_matrix_mb = args.n_large**2 * 4 / 2**20
    print(f"process peak RSS after the exact chunked path: {rss0 + rss_exact:.0f} MB in all "
          f"(+{rss_exact:.0f} MB during it); an n x n float32 kernel matrix alone would need "
          f"{full_matrix_mb:.0f} MB")


if __name__ == "__main__":
    main()
