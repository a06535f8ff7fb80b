"""Benchmark of the score routes, measured side by side in one run.

1. Exact RKE (Frobenius route, O(n^2)) against eigendecomposition Vendi (O(n^3)) at n = 4,000.
2. The exact route's price for certified accuracy: the float64 certified pair sum against the
   float32 Gram route it replaced (copied below, timing only), at n = 6,000.
3. RFF RKE (linear in n) against the exact chunked RKE at n = 100,000, d = 512, with the
   relative error, the standard error and the peak memory of the exact path (an n x n float32
   matrix would need n^2 * 4 bytes = 40 GB; the chunked path must stay far below that).
4. Issue 14 item 3: 20,000 clustered points (d = 16, sigma 3), n_features = 4,096, ten seeds:
   the mean-embedding estimator used before (recomputed here) against the covariance form.
5. ``sparke-lab scores --method rff`` on n x 64 (default n = 200,000): what the command computes
   now (RKE with its standard error, one spectrum for every order) against what it computed
   before (the mean-embedding RKE, then a full float64 covariance per order), both at n / 4
   (interleaved, best of two), and the new path at n.

    python benchmarks/bench_scores.py            # full sizes (many minutes on 2 cores)
    python benchmarks/bench_scores.py --quick    # small sizes, a minute or two
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import sparke_lab as sl  # noqa: E402
from sparke_lab import scores  # noqa: E402
from sparke_lab.rff import FourierFeatures  # noqa: E402
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


# ----------------------------------------------------------- the routes before issue 14 (timing)
def old_pair_sum(X: torch.Tensor, sigma: float, block: int = 4096) -> float:
    """The float32 Gram route used before: uncentred, no certification, diagonal not reset."""
    n, c = X.shape[0], 2 / (2.0 * sigma**2)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, n, block):
        for j in range(i, n, block):
            A, B = X[i:i + block], X[j:j + block]
            norms = (A * A).sum(1, keepdim=True) + (B * B).sum(1, keepdim=True).T
            s = torch.addmm(norms, A, B.T, beta=-c, alpha=2.0 * c).clamp_max_(0.0).exp_().sum(dtype=torch.float64)
            total += s if i == j else 2.0 * s
    return float(total)


def old_rff_rke(X: torch.Tensor, sigma: float, m: int, seed: int) -> float:
    """The mean-embedding estimate used before: ||(1/n) sum phi_{sigma/sqrt2}(x_i)||^2 (ORF)."""
    fm = FourierFeatures(X.shape[1], "gaussian", sigma / math.sqrt(2.0), m, seed)
    total = fm.feature_sum(X)
    v = float(total @ total) / X.shape[0] ** 2
    return 1.0 / min(max(v, 1.0 / X.shape[0]), 1.0)


def old_covariance(fm, X: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """The full float64 product F^T F per chunk, as before."""
    C = None
    for s in range(0, X.shape[0], chunk):
        F = fm(X[s:s + chunk]).double()
        C = F.T @ F if C is None else C + F.T @ F
    return C / X.shape[0]


def old_scores_command(X: torch.Tensor, sigma: float, m: int, orders) -> dict:
    out = {"RKE": old_rff_rke(X, sigma, m, 0)}
    for a in orders:  # vendi_score(order=a) built the covariance again for every order
        if a == 2:
            continue
        fm = FourierFeatures(X.shape[1], "gaussian", sigma, m, 0)
        lam = torch.linalg.eigvalsh(old_covariance(fm, X)).flip(0)
        out[a] = math.exp(scores.entropy(lam, a))
    return out


def new_scores_command(X: torch.Tensor, sigma: float, m: int, orders) -> dict:
    rke, se = sl.rke_score(X, sigma=sigma, method="rff", n_features=m, return_se=True)
    out = {"RKE": rke, "se": se}
    lam = scores.kernel_eigenvalues(X, sigma=sigma, method="rff", n_features=m)
    for a in orders:
        if a != 2:
            out[a] = math.exp(scores.entropy(lam, a))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-small", type=int, default=4000)
    p.add_argument("--d-small", type=int, default=256)
    p.add_argument("--n-large", type=int, default=100_000)
    p.add_argument("--d-large", type=int, default=512)
    p.add_argument("--n-features", type=int, default=4096)
    p.add_argument("--n-cli", type=int, default=200_000)
    p.add_argument("--n-old", type=int, default=0, help="n of the 'before' path in section 5 (default n-cli / 4)")
    p.add_argument("--n-issue", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--skip", default="", help="comma list of sections to skip, e.g. 3,5")
    args = p.parse_args(argv)
    if args.quick:
        args.n_small, args.n_large, args.d_large = 1000, 10_000, 128
        args.n_cli, args.n_issue, args.seeds = 20_000, 5000, 4
    skip = {int(s) for s in args.skip.split(",") if s}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    cols = ["n", "d", "method", "seconds", "ratio", "rel. error", "value"]

    if 1 not in skip:  # 1. O(n^2) Frobenius route against the O(n^3) eigen route
        rows = []
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
        print("\n1. exact routes (ratio: time / time of the Frobenius RKE)")
        print(format_table(rows, cols, "{:.4g}"))

    if 2 not in skip:  # 2. the certified float64 route against the float32 route it replaced
        rows = []
        n = 6000 if not args.quick else 2000
        for d, offset in ((16, 0.0), (256, 0.0), (16, 1000.0)):
            X = (torch.randn(n, d, generator=torch.Generator().manual_seed(d)) + offset).float()
            truth = sl.rke_score(X.double() - offset, sigma=4.0)  # centred copy in float64
            old, t_old = timed(lambda: n * n / old_pair_sum(X, 4.0), repeats=2)
            new, t_new = timed(lambda: sl.rke_score(X, sigma=4.0), repeats=2)
            tag = f" (+{offset:g})" if offset else ""
            rows.append({"n": n, "d": d, "method": f"old float32 Gram{tag}", "seconds": t_old, "ratio": 1.0,
                         "rel. error": abs(old / truth - 1), "value": old})
            rows.append({"n": n, "d": d, "method": f"certified float64{tag}", "seconds": t_new,
                         "ratio": t_new / t_old, "rel. error": abs(new / truth - 1), "value": new})
        print("\n2. price of the certified exact route (ratio: new time / old time; error against a "
              "float64 run on centred data)")
        print(format_table(rows, cols, "{:.4g}"))

    if 3 not in skip:  # 3. RFF against the exact chunked sum at large n
        rows = []
        m = sl.gaussian_mixture(args.n_large, 50, dim=args.d_large, separation=8.0, spread=0.15, seed=1)
        X = torch.from_numpy(m.X).float()
        del m
        sigma = 4.0
        rss0 = peak_rss_mb()
        exact, t_exact = timed(lambda: sl.rke_score(X, sigma=sigma))
        rss_exact = peak_rss_mb() - rss0
        rows.append({"n": args.n_large, "d": args.d_large, "method": "RKE exact (chunked)", "seconds": t_exact,
                     "ratio": 1.0, "rel. error": 0.0, "value": exact, "std. error": 0.0})
        for seed in range(3):
            (approx, se), t_rff = timed(lambda: sl.rke_score(X, sigma=sigma, method="rff", return_se=True,
                                                             n_features=args.n_features, seed=seed))
            rows.append({"n": args.n_large, "d": args.d_large, "method": f"RKE rff m={args.n_features} seed {seed}",
                         "seconds": t_rff, "ratio": t_exact / t_rff, "rel. error": abs(approx - exact) / exact,
                         "value": approx, "std. error": se})
        print("\n3. RFF against exact at large n (ratio: exact time / rff time)")
        print(format_table(rows, cols + ["std. error"], "{:.4g}"))
        full_matrix_mb = args.n_large**2 * 4 / 2**20
        print(f"process peak RSS after the exact chunked path: {rss0 + rss_exact:.0f} MB in all "
              f"(+{rss_exact:.0f} MB during it); an n x n float32 kernel matrix alone would need "
              f"{full_matrix_mb:.0f} MB")

    if 4 not in skip:  # 4. issue 14 item 3: error of the two estimators at 4,096 features
        rows = []
        mix = sl.gaussian_mixture(args.n_issue, 20, dim=16, separation=8.0, spread=0.05, seed=0)
        X = torch.from_numpy(mix.X).float()
        exact, t_exact = timed(lambda: sl.rke_score(X, sigma=3.0))
        Xc = X - X.mean(0)
        old, new, t_old, t_new = [], [], 0.0, 0.0
        for seed in range(args.seeds):
            v, t = timed(lambda: old_rff_rke(Xc, 3.0, 4096, seed))
            old.append(v)
            t_old += t
            v, t = timed(lambda: sl.rke_score(X, sigma=3.0, method="rff", n_features=4096, seed=seed, return_se=True))
            new.append(v)
            t_new += t
        err_old = np.array(old) / exact - 1
        err_new = np.array([v for v, _ in new]) / exact - 1
        se_new = np.array([se for _, se in new]) / exact
        covered = int(sum(abs(v - exact) <= 2 * se for v, se in new))
        rows.append({"estimator": "exact", "seconds": t_exact, "max |error|": 0.0, "rms error": 0.0,
                     "mean rel. SE": 0.0, "covered (2 SE)": "-"})
        rows.append({"estimator": "mean embedding (before)", "seconds": t_old / args.seeds,
                     "max |error|": np.abs(err_old).max(), "rms error": np.sqrt((err_old**2).mean()),
                     "mean rel. SE": float("nan"), "covered (2 SE)": "-"})
        rows.append({"estimator": "covariance form (now)", "seconds": t_new / args.seeds,
                     "max |error|": np.abs(err_new).max(), "rms error": np.sqrt((err_new**2).mean()),
                     "mean rel. SE": se_new.mean(), "covered (2 SE)": f"{covered}/{args.seeds}"})
        print(f"\n4. RKE at 4,096 features, {args.n_issue} points in 20 clusters, d = 16, sigma 3 "
              f"(exact {exact:.3f}); {args.seeds} seeds, seconds per estimate; ratio old/new time "
              f"{t_old / t_new:.2f}, error ratio (rms) {np.sqrt((err_old**2).mean() / (err_new**2).mean()):.1f}")
        print(format_table(rows, list(rows[0]), "{:.4g}"))

    if 5 not in skip:  # 5. the scores command on n x 64 with --method rff
        rows = []
        orders = [1.0, 2.0, math.inf]
        n_big, n_old = args.n_cli, args.n_old or args.n_cli // 4
        X = torch.from_numpy(sl.gaussian_mixture(n_big, 30, dim=64, separation=6.0, spread=1.0, seed=5).X).float()
        sigma, m = 4.0, scores.DEFAULT_N_FEATURES
        t_old = t_new_small = float("inf")
        for _ in range(2):  # interleaved, best of two: a shared machine's load drifts
            old, t = timed(lambda: old_scores_command(X[:n_old], sigma, m, orders))
            t_old = min(t_old, t)
            new_small, t = timed(lambda: new_scores_command(X[:n_old], sigma, m, orders))
            t_new_small = min(t_new_small, t)
        rows.append({"n": n_old, "path": "before: ME RKE + covariance per order", "seconds": t_old,
                     "ratio": 1.0, "RKE": old["RKE"], "RKE SE": float("nan"), "Vendi": old[1.0]})
        rows.append({"n": n_old, "path": "now: RKE +- SE + one covariance", "seconds": t_new_small,
                     "ratio": t_old / t_new_small, "RKE": new_small["RKE"], "RKE SE": new_small["se"],
                     "Vendi": new_small[1.0]})
        if n_big > n_old:
            new_big, t_new_big = timed(lambda: new_scores_command(X, sigma, m, orders))
            rows.append({"n": n_big, "path": "now: RKE +- SE + one covariance", "seconds": t_new_big,
                         "ratio": float("nan"), "RKE": new_big["RKE"], "RKE SE": new_big["se"],
                         "Vendi": new_big[1.0]})
        print(f"\n5. sparke-lab scores --method rff (m = {m}, orders 1,2,inf) on n x 64 "
              "(ratio: time before / time now, at the same n)")
        print(format_table(rows, list(rows[0]), "{:.4g}"))

if __name__ == "__main__":
    main()
