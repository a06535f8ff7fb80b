"""The GPU path in one command: at most about 5 minutes on one CUDA GPU, one JSON of pass/fail
and figures.

    python benchmarks/gpu_check.py --out outputs/gpu_check.json      # or: make gpu-check
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/smoke.json  # the same code on the CPU,
                                                                      # small sizes, fp32 (no figures
                                                                      # worth reading; a dry run)

Checks (each records ``passed``, its figures and seconds; one failing does not stop the rest):
- ``tiny_sd_fp16``, ``tiny_sdxl_fp16``, ``tiny_pixart_fp16``: stock pipelines built from tiny
  random configs (:func:`sparke_lab.guidance.testing.tiny_pipeline`) in float16 with SPARKE:
  images finite, the bank fills (one row per image) in float32 on the GPU, no skipped
  (non-finite) step, guided images differ from unguided ones, and the guidance maths run in
  float32 (an fp16 latent gives exactly the fp32 result cast back to fp16).
- ``digits_cuda_cpu_generator``: the shipped digits pipeline on the GPU with a CPU generator
  (same initial noise as on the CPU): images finite, mean/max difference to the CPU images,
  the judge's digits on both; float16 too.
- ``guidance_cost_d16384``: the tiny SD pipeline at 128x128 (latents 4x64x64, D = 16,384) in
  fp16, 8 images x 20 steps, SPARKE every step against a 10^4-row exact bank and a sketch bank
  (m = 2048): wall time guided / unguided, and one guidance query per bank kind.
- ``compare_cuda_fp16``: ``sparke-lab compare --device cuda --dtype fp16`` on the digits model.
- ``torchrun_nccl_one_process``: ``torchrun --standalone --nproc_per_node 1 -m sparke_lab.cli
  compare --backend nccl``.

Without a CUDA GPU it exits at once (status 2) with a message saying so; nothing is written.
The budget (--budget-s, default 300 s) is checked before each check: those that would start
after it are recorded as not run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

EXIT_NO_GPU = 2
PROMPTS = ["a cat", "a dog", "a red car", "a tree"]


def no_gpu_message(torch) -> str:
    return (f"gpu_check: no CUDA GPU is visible (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda}, torch.cuda.is_available() is False). This check needs one "
            "CUDA GPU and a CUDA build of torch (README, 'The GPU path'); nothing was run. "
            "--cpu-smoke runs the same code on the CPU as a dry run.")


class Checker:
    def __init__(self, device, dtype, budget_s: float, smoke: bool):
        self.device, self.dtype, self.smoke = device, dtype, smoke
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.results = {}

    def remaining(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def run(self, name, fn, min_left_s: float = 10.0):
        if self.remaining() < min_left_s:
            self.results[name] = {"passed": False, "not_run": "time budget spent"}
            print(f"[gpu_check] {name}: not run (time budget spent)", flush=True)
            return
        t0 = time.perf_counter()
        try:
            res = fn()
        except Exception as exc:  # one failing check does not stop the others
            res = {"passed": False, "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc()[-3000:]}
        res["seconds"] = round(time.perf_counter() - t0, 2)
        self.results[name] = res
        print(f"[gpu_check] {name}: {'PASS' if res.get('passed') else 'FAIL'} ({res['seconds']} s)",
              flush=True)

    def sync(self):
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _finite(x) -> bool:
    import torch
    return bool(torch.isfinite(torch.as_tensor(x).float()).all())


def _kw(family: str, steps: int, size: int = 16, seed: int = 0):
    import torch
    kw = dict(num_inference_steps=steps, guidance_scale=5.0, output_type="pt", progress=False,
              generator=torch.Generator("cpu").manual_seed(seed), height=size, width=size)
    if family == "pixart":
        kw.update(clean_caption=False, use_resolution_binning=False)
    return kw


def check_family(ck: Checker, family: str) -> dict:
    import torch
    from sparke_lab.guidance import MemoryBank, SparkeGuidance, encode_prompts, generate
    from sparke_lab.guidance.testing import tiny_pipeline

    pipe = tiny_pipeline(family).to(ck.device, ck.dtype)
    ref = generate(pipe, PROMPTS, None, batch_size=2, **_kw(family, 4))
    g = SparkeGuidance(scale=0.2, every=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = g.generate(pipe, PROMPTS, batch_size=2, **_kw(family, 4))
    nonfinite_warnings = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    bank = g.bank
    # the maths in float32: an fp16 latent gives the fp32 result cast back, bit for bit
    T = encode_prompts(pipe, PROMPTS[:2]).to(ck.device)
    gen = torch.Generator("cpu").manual_seed(1)
    lat32 = torch.randn(2, 4, 8, 8, generator=gen).to(ck.device)
    lat = lat32.to(ck.dtype)
    g2 = SparkeGuidance(scale=0.2, every=1, bank=MemoryBank.from_features(
        bank.features.clone(), bank.prompt_features.clone()))
    a = g2.guide_latents(lat, T)
    b = g2.guide_latents(lat.float(), T).to(ck.dtype)
    res = {
        "images": list(out.shape), "image_dtype": str(out.dtype),
        "images_finite": _finite(out) and _finite(ref),
        "bank_rows": len(bank), "bank_dtype": str(bank.features.dtype),
        "bank_device": str(bank.features.device),
        "skipped_steps": g.n_skipped, "nonfinite_warnings": nonfinite_warnings,
        "guided_vs_unguided_max_abs": float((out.float() - ref.float()).abs().max()),
        "last_stats": g.last_stats,
        "fp16_step_equals_fp32_step_cast": bool(torch.equal(a, b)) and a.dtype == lat.dtype,
    }
    res["passed"] = (res["images_finite"] and res["bank_rows"] == len(PROMPTS)
                     and bank.features.dtype == torch.float32
                     and bank.features.device.type == ck.device.type and g.n_skipped == 0
                     and not nonfinite_warnings and res["guided_vs_unguided_max_abs"] > 0
                     and all(math.isfinite(v) for v in g.last_stats.values())
                     and res["fp16_step_equals_fp32_step_cast"])
    return res


def check_digits(ck: Checker) -> dict:
    import torch
    import sparke_lab as sl
    from sparke_lab.models import load_digits_judge, load_digits_pipeline

    prompts = ["a handwritten three", "an odd digit", "the digit 7", "an even digit"] * 2
    steps = 5 if ck.smoke else 25
    cpu = torch.device("cpu")

    def images(device, dtype):
        pipe = load_digits_pipeline(device=device, dtype=dtype)
        out = pipe(prompts, num_inference_steps=steps, guidance_scale=7.0, output_type="pt",
                   generator=sl.make_generator(0, "cpu")).images
        return out.float().cpu()

    on_gpu = images(ck.device, torch.float32)
    on_cpu = images(cpu, torch.float32)
    half = images(ck.device, ck.dtype)
    judge = load_digits_judge(device=cpu)
    d_gpu, d_cpu = judge.predict(on_gpu), judge.predict(on_cpu)
    diff = (on_gpu - on_cpu).abs()
    res = {"images": list(on_gpu.shape), "finite": _finite(on_gpu) and _finite(half),
           "mean_abs_diff_to_cpu": float(diff.mean()), "max_abs_diff_to_cpu": float(diff.max()),
           "fp16_mean_abs_diff_to_cpu": float((half - on_cpu).abs().mean()),
           "judge_digits_gpu": d_gpu.tolist(), "judge_digits_cpu": d_cpu.tolist(),
           "judge_agreement": float((d_gpu == d_cpu).mean())}
    # same initial noise from the CPU generator: the images agree closely (pixels in [0, 1]),
    # not bit for bit (other kernels, TF32)
    res["passed"] = res["finite"] and res["mean_abs_diff_to_cpu"] < 0.05
    return res


def check_cost(ck: Checker) -> dict:
    import torch
    from sparke_lab.guidance import (MemoryBank, SketchBank, SparkeGuidance, encode_prompts,
                                     generate)
    from sparke_lab.guidance.testing import tiny_pipeline

    size = 32 if ck.smoke else 128          # tiny VAE: latents are size/2 per side, 4 channels
    n_bank = 1_000 if ck.smoke else 10_000
    n_images, steps, m = (4, 4, 256) if ck.smoke else (8, 20, 2048)
    pipe = tiny_pipeline("sd").to(ck.device, ck.dtype)
    T = encode_prompts(pipe, PROMPTS).to(ck.device)
    D = 4 * (size // 2) ** 2
    gen = torch.Generator("cpu").manual_seed(0)
    Xb = torch.randn(n_bank, D, generator=gen)
    Xb = (Xb / Xb.norm(dim=1, keepdim=True)).to(ck.device)
    Tb = T[torch.randint(len(PROMPTS), (n_bank,), generator=gen).to(ck.device)]
    exact = MemoryBank.from_features(Xb, Tb, device=ck.device)
    sketch = SketchBank(conditional=True, n_features=m, seed=0, device=ck.device)
    for i in range(0, n_bank, 1000):
        sketch.add(Xb[i:i + 1000], Tb[i:i + 1000])
    plist = [PROMPTS[i % len(PROMPTS)] for i in range(n_images)]
    pf = T[[i % len(PROMPTS) for i in range(n_images)]]

    def sample(bank):
        cb = None if bank is None else SparkeGuidance(scale=0.05, every=1, bank=bank,
                                                      update_bank=False)
        ck.sync()
        t0 = time.perf_counter()
        out = generate(pipe, plist, cb, batch_size=n_images, prompt_features=pf,
                       **_kw("sd", steps, size=size))
        ck.sync()
        return time.perf_counter() - t0, out

    def query(bank, repeats=5):
        g = SparkeGuidance(scale=0.05, every=1, bank=bank)
        lat = torch.randn(n_images, 4, size // 2, size // 2, generator=gen).to(ck.device, ck.dtype)
        g.guide_latents(lat, pf)
        ck.sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            g.guide_latents(lat, pf)
        ck.sync()
        return (time.perf_counter() - t0) / repeats

    sample(None)  # warm-up (kernels, allocator)
    times = {"unguided": [], "exact": [], "sketch": []}
    outs = {}
    for _ in range(2):  # interleaved, best of two
        for name, bank in (("unguided", None), ("exact", exact), ("sketch", sketch)):
            t, outs[name] = sample(bank)
            times[name].append(t)
    best = {k: min(v) for k, v in times.items()}
    res = {"D": D, "bank_rows": n_bank, "sketch_features": m, "images": n_images, "steps": steps,
           "seconds_unguided": round(best["unguided"], 4), "seconds_exact": round(best["exact"], 4),
           "seconds_sketch": round(best["sketch"], 4),
           "ratio_exact": round(best["exact"] / best["unguided"], 3),
           "ratio_sketch": round(best["sketch"] / best["unguided"], 3),
           "query_ms_exact": round(1e3 * query(exact), 3),
           "query_ms_sketch": round(1e3 * query(sketch), 3),
           "finite": all(_finite(o) for o in outs.values())}
    if ck.device.type == "cuda":
        res["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(ck.device) / 2 ** 20, 1)
    res["passed"] = res["finite"]
    return res


def _cli(ck: Checker, argv, out: Path, launcher=()) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    cmd = [*launcher, *argv] if launcher else [sys.executable, "-m", "sparke_lab.cli", *argv]
    timeout = max(30.0, ck.remaining())
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"passed": False, "error": f"timed out after {timeout:.0f} s", "command": cmd}
    return {"returncode": res.returncode, "command": " ".join(cmd),
            "tail": (res.stdout + res.stderr)[-2000:]}


def check_compare(ck: Checker, work: Path) -> dict:
    out = work / "compare"
    dtype = "fp32" if ck.smoke else "fp16"
    res = _cli(ck, ["compare", "--device", ck.device.type, "--dtype", dtype, "--prompts", "mini",
                    "--per-prompt", "4", "--steps", "5" if ck.smoke else "10",
                    "--methods", "none,sparke", "--no-progress", "--out", str(out)], out)
    metrics = out / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        res["metrics"] = {k: {c: v.get(c) for c in ("cond_vendi", "vendi", "prompt_fidelity")}
                          for k, v in m.items()}
        finite = all(isinstance(x, (int, float)) and math.isfinite(x)
                     for v in res["metrics"].values() for x in v.values() if x is not None)
    else:
        finite = False
    res["passed"] = res.get("returncode") == 0 and finite and (out / "report.html").is_file()
    return res


def check_torchrun(ck: Checker, work: Path) -> dict:
    out = work / "torchrun"
    backend = "gloo" if ck.smoke else "nccl"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                "-m", "sparke_lab.cli", "compare", "--backend", backend, "--prompts", "mini",
                "--per-prompt", "2", "--steps", "5", "--methods", "none,sparke", "--no-eval",
                "--no-progress", "--out", str(out)]
    res = _cli(ck, [], out, launcher=launcher)
    pngs = sorted(out.glob("samples/*/*.png"))
    manifests = sorted(out.glob("samples/*/manifest.json"))
    res.update(backend=backend, samples=len(pngs), manifests=len(manifests))
    res["passed"] = res.get("returncode") == 0 and len(pngs) == 2 * 14 * 2 and len(manifests) == 2
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/gpu_check.json", help="the JSON to write")
    p.add_argument("--budget-s", type=float, default=300.0, help="no check starts after this")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="run the same code on the CPU at small sizes in fp32 (a dry run)")
    args = p.parse_args(argv)

    import torch
    from sparke_lab.utils import pick_device

    device = pick_device("cpu") if args.cpu_smoke else pick_device(None)
    if device.type != "cuda" and not args.cpu_smoke:
        print(no_gpu_message(torch), file=sys.stderr)
        return EXIT_NO_GPU
    dtype = torch.float32 if args.cpu_smoke else torch.float16
    ck = Checker(device, dtype, args.budget_s, args.cpu_smoke)
    info = {"device": (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
            "torch": torch.__version__, "cuda": torch.version.cuda, "dtype": str(dtype),
            "cpu_smoke": args.cpu_smoke}
    print(f"[gpu_check] {info}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="sparke-lab-gpu-check-"))
    for family in ("sd", "sdxl", "pixart"):
        ck.run(f"tiny_{family}_fp16", lambda f=family: check_family(ck, f))
    ck.run("digits_cuda_cpu_generator", lambda: check_digits(ck))
    ck.run("guidance_cost_d16384", lambda: check_cost(ck), min_left_s=60)
    ck.run("compare_cuda_fp16", lambda: check_compare(ck, work), min_left_s=60)
    ck.run("torchrun_nccl_one_process", lambda: check_torchrun(ck, work), min_left_s=30)
    total = time.perf_counter() - ck.t0
    report = {**info, "passed": all(r.get("passed") for r in ck.results.values()),
              "total_seconds": round(total, 1), "work": str(work), "checks": ck.results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"[gpu_check] {'PASSED' if report['passed'] else 'FAILED'} in {total:.0f} s; wrote {out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
