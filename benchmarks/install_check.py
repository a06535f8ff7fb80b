"""Build the sparke-lab wheel, install it into a fresh virtual environment and use it from a
folder outside the checkout; print the wheel size and the install time.

    python benchmarks/install_check.py                 # prints a JSON summary
    python benchmarks/install_check.py --keep /tmp/x   # keep the wheel, venv and outputs

Offline and independent of the checkout, robust for CI:
1. The wheel is built from a copy of pyproject.toml, README.md and sparke_lab/ only
   (``pip wheel --no-deps --no-build-isolation --no-index``: setuptools from this environment,
   nothing downloaded, nothing written into the checkout).
2. A fresh ``python -m venv --without-pip`` (no ``--system-site-packages``, no packages of its
   own) gets the wheel from this environment's pip, ``pip --python VENV/bin/python install
   --no-index --no-deps WHEEL`` (pip >= 22.3): pip unpacks it, writes the ``sparke-lab``
   script and records the files, as for any install.
3. The dependencies are not downloaded (CI has no wheel cache of torch & co., and a download
   would measure the network). Instead the fresh venv sees a folder of symbolic links to
   exactly the *core* dependency closure of the wheel's own metadata (its Requires-Dist without
   extras, followed through each dependency's Requires-Dist), taken from the environment that
   runs this script, through a ``.pth`` file. Neither the checkout nor the packages of the
   extras (JupyterLab, ipywidgets, otter-grader, selenium, ...) nor this environment's editable
   sparke-lab are visible (checked), and ``pip check`` in the venv confirms that the exposed
   distributions satisfy the wheel's requirements.
4. From an empty temporary folder (HOME and XDG_DATA_HOME inside it, no PYTHONPATH, no
   SPARKE_LAB_DATA) it runs ``sl.models.load_digits_pipeline()`` and one image,
   ``sparke-lab compare --prompts mini --per-prompt 2 --steps 2`` (``--per-prompt 1`` is
   refused by compare with a clear error: two samples per prompt are the least the metrics
   use; also checked) and ``sparke-lab scores`` on a small .npy file.

Run by tests/test_wheel_install.py, which asserts every check; the timings are printed, not
asserted (they depend on the machine and its load).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
#: import names of the extras' packages: none may be importable in the fresh venv
EXTRA_IMPORTS = ["ipywidgets", "jupyterlab", "ipykernel", "otter", "selenium", "nbmake", "pytest",
                 "hypothesis", "vendi_score", "prdc"]


def _run(cmd, **kw) -> Tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return res, time.perf_counter() - t0


def build_wheel(work: Path) -> Tuple[Path, float]:
    """Build the wheel from a minimal copy of the sources; returns (wheel path, seconds)."""
    src = work / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "sparke_lab", src / "sparke_lab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    res, secs = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                      "--no-index", "--quiet", "-w", str(work / "dist"), str(src)])
    if res.returncode != 0:
        raise RuntimeError(f"building the wheel failed:\n{res.stdout}\n{res.stderr}")
    wheels = sorted((work / "dist").glob("sparke_lab-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in {work / 'dist'}, found {wheels}")
    return wheels[0], secs


def wheel_contents(wheel: Path) -> Dict:
    """Data files missing from the wheel, and its core and extra requirements."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
    shipped = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sparke_lab" / "data").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts
                     and ".ipynb_checkpoints" not in p.parts)
    reqs = meta.get_all("Requires-Dist") or []
    return {"n_files": len(names), "data_files": len(shipped),
            "missing_data": [p for p in shipped if p not in names],
            "core_requirements": [r for r in reqs if "extra ==" not in r],
            "extras": meta.get_all("Provides-Extra") or []}


def core_closure(requirements: List[str]) -> Tuple[Dict[str, metadata.Distribution], List[str]]:
    """The installed distributions that ``requirements`` need (no extras unless a requirement
    asks for one), followed transitively; returns (name -> distribution, missing names)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: Dict[str, metadata.Distribution] = {}
    missing: List[str] = []
    seen = set()
    stack = [(Requirement(r), "") for r in requirements]
    while stack:
        req, parent_extra = stack.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        for extra in ("", *sorted(req.extras)):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            try:
                dist = found.get(name) or metadata.distribution(name)
            except metadata.PackageNotFoundError:
                missing.append(str(req))
                break
            found[name] = dist
            stack.extend((Requirement(r), extra) for r in (dist.requires or []))
    return found, sorted(set(missing))


def link_distributions(dists: Dict[str, metadata.Distribution], dest: Path) -> int:
    """Symlink every top-level entry (package, module, .libs folder, .dist-info) of ``dists``
    into ``dest``; returns the number of links."""
    dest.mkdir(parents=True)
    n = 0
    for name, dist in sorted(dists.items()):
        if dist.files is None:
            raise RuntimeError(f"{name} has no RECORD; cannot tell which files it installed")
        tops = {f.parts[0] for f in dist.files if f.parts and f.parts[0] not in ("..", "__pycache__")}
        for top in sorted(tops):
            target = Path(dist.locate_file(top))
            if (dest / top).exists() or not target.exists() or top.endswith(".pth"):
                continue  # shared namespace folder already linked; a recorded-but-removed file
            (dest / top).symlink_to(target)
            n += 1
    return n


def make_venv(work: Path, wheel: Path, deps: Path) -> Dict:
    """A fresh venv (no pip, no setuptools of its own, no system site-packages) with the wheel
    installed by this environment's pip (``pip --python VENV_PYTHON install``)."""
    venv = work / "venv"
    res, venv_s = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    if res.returncode != 0:
        raise RuntimeError(f"python -m venv failed:\n{res.stderr}")
    py = venv / "bin" / "python"
    res, install_s = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index",
                           "--no-deps", "--no-cache-dir", "--quiet", str(wheel)], env=clean_env(work))
    if res.returncode != 0:
        raise RuntimeError(f"pip install of the wheel failed:\n{res.stdout}\n{res.stderr}")
    site = Path(subprocess.check_output(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True, env=clean_env(work)).strip())
    (site / "_sparke_lab_core_deps.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    return {"venv": str(venv), "python": str(py), "site": str(site),
            "venv_seconds": round(venv_s, 2), "install_seconds": round(install_s, 2)}


def clean_env(work: Path) -> Dict[str, str]:
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "SPARKE_LAB_DATA",
            "PYTHONUSERBASE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HOME=str(work / "home"), XDG_DATA_HOME=str(work / "xdg"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE",
               PYTHONNOUSERSITE="1")
    (work / "home").mkdir(exist_ok=True)
    return env


PROBE = r"""
import importlib.util, json, sys, time
t0 = time.perf_counter()
import sparke_lab as sl
from sparke_lab.models import data_dir
pipe = sl.models.load_digits_pipeline()
load_s = time.perf_counter() - t0
img = pipe("a handwritten three", num_inference_steps=2, guidance_scale=5.0,
           generator=sl.make_generator(0), output_type="np").images
print(json.dumps({"sparke_lab": sl.__file__, "data_dir": str(data_dir()),
                  "pipeline": type(pipe).__name__, "image_shape": list(img.shape),
                  "image_finite": bool((img == img).all()), "load_seconds": round(load_s, 2),
                  "sys_path": sys.path,
                  "extras_importable": [m for m in EXTRAS if importlib.util.find_spec(m)]}))
"""


def check(keep: Path = None) -> Dict:
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="sparke-lab-wheel-"))
    if keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    out: Dict = {"work": str(work)}
    checks: Dict[str, bool] = {}
    try:
        wheel, build_s = build_wheel(work)
        contents = wheel_contents(wheel)
        out.update(wheel=wheel.name, wheel_bytes=wheel.stat().st_size,
                   wheel_mb=round(wheel.stat().st_size / 1e6, 2), build_seconds=round(build_s, 2),
                   wheel_files=contents["n_files"], extras=contents["extras"])
        checks["wheel holds every file of sparke_lab/data"] = (
            contents["data_files"] > 0 and not contents["missing_data"])
        out["missing_data"] = contents["missing_data"]
        checks["wheel declares the extras lab, course, test"] = {"lab", "course", "test"} <= set(contents["extras"])

        dists, missing = core_closure(contents["core_requirements"])
        out["core_distributions"] = sorted(f"{d.metadata['Name']}=={d.version}" for d in dists.values())
        out["missing_core_distributions"] = missing
        checks["core dependency closure is installed here"] = not missing
        leaked = sorted(set(dists) & {"jupyterlab", "ipywidgets", "ipykernel", "otter-grader",
                                      "selenium", "sparke-lab"})
        checks["core closure holds no extra's package"] = not leaked
        out["leaked"] = leaked
        link_distributions(dists, work / "core-deps")
        out.update(make_venv(work, wheel, work / "core-deps"))
        env = clean_env(work)
        py, bin_dir = out["python"], Path(out["venv"]) / "bin"

        res, _ = _run([sys.executable, "-m", "pip", "--python", py, "check"], env=env)
        checks["pip check: the exposed distributions satisfy the wheel"] = res.returncode == 0
        out["pip_check"] = (res.stdout + res.stderr).strip()[-2000:]

        run_dir = work / "run"
        run_dir.mkdir()
        res, secs = _run([py, "-c", f"EXTRAS = {EXTRA_IMPORTS!r}\n" + PROBE], cwd=run_dir, env=env)
        probe = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {}
        out["probe"] = {k: v for k, v in probe.items() if k != "sys_path"} or res.stderr[-3000:]
        out["probe_seconds"] = round(secs, 2)
        site = out["site"]
        checks["load_digits_pipeline() from the wheel, outside the checkout"] = bool(probe) and (
            probe["sparke_lab"].startswith(site) and probe["data_dir"].startswith(site)
            and probe["image_shape"][0] == 1 and probe["image_finite"])
        checks["neither the checkout nor the extras are visible"] = bool(probe) and (
            not probe["extras_importable"]
            and not any(p and Path(p).resolve() == ROOT for p in probe["sys_path"]))

        cli = str(bin_dir / "sparke-lab")
        res, _ = _run([cli, "compare", "--prompts", "mini", "--per-prompt", "1", "--steps", "2",
                       "--out", "one"], cwd=run_dir, env=env)
        checks["compare --per-prompt 1 is refused with a clear error"] = (
            res.returncode == 2 and "--per-prompt >= 2" in res.stderr)
        res, secs = _run([cli, "compare", "--prompts", "mini", "--per-prompt", "2", "--steps", "2",
                          "--methods", "none,sparke", "--no-progress", "--out", "cmp"],
                         cwd=run_dir, env=env)
        out["compare_seconds"] = round(secs, 2)
        out["compare_tail"] = (res.stdout + res.stderr)[-1500:]
        metrics = run_dir / "cmp" / "metrics.json"
        checks["sparke-lab compare --prompts mini --per-prompt 2 --steps 2"] = (
            res.returncode == 0 and (run_dir / "cmp" / "report.html").is_file() and metrics.is_file()
            and {"none", "sparke"} <= set(json.loads(metrics.read_text())))
        out["report"] = str(run_dir / "cmp" / "report.html")

        res, _ = _run([py, "-c", "import numpy as np; np.save('features.npy', "
                       "np.random.default_rng(0).normal(size=(40, 3)))"], cwd=run_dir, env=env)
        res, secs = _run([cli, "scores", "features.npy", "--sigma", "1.0", "--json"],
                         cwd=run_dir, env=env)
        out["scores_seconds"] = round(secs, 2)
        try:
            scores = json.loads(res.stdout[res.stdout.index("{"):])
        except ValueError:
            scores = {}
        out["scores"] = scores or res.stderr[-1500:]
        checks["sparke-lab scores on a small file"] = (
            res.returncode == 0 and scores.get("samples n") == 40 and 1 < scores["RKE (order 2)"] < 40)
    finally:
        out["checks"] = checks
        out["passed"] = bool(checks) and all(checks.values())
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", help="work folder to keep (wheel, venv, outputs); default a temporary one")
    p.add_argument("--json-out", help="also write the summary to this file")
    args = p.parse_args(argv)
    out = check(Path(args.keep) if args.keep else None)
    text = json.dumps(out, indent=2)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    print(text)
    print(f"\nwheel {out.get('wheel')}: {out.get('wheel_mb')} MB; built in {out.get('build_seconds')} s; "
          f"fresh venv {out.get('venv_seconds')} s; pip install of the wheel {out.get('install_seconds')} s "
          f"({len(out.get('core_distributions', []))} core distributions linked, not downloaded); "
          f"checks {'passed' if out['passed'] else 'FAILED'}")
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
