"""The graded assignments of the course: build student versions and autograders, grade submissions.

The assignments live in ``notebooks/assignments/`` as *instructor source notebooks* in the
otter-grader "otter assign" format (v1): a first raw cell ``# ASSIGNMENT CONFIG``, questions
between ``# BEGIN QUESTION`` / ``# END QUESTION`` raw cells, solutions between
``# BEGIN SOLUTION`` / ``# END SOLUTION`` and tests between ``# BEGIN TESTS`` / ``# END TESTS``
(test cells whose first line is ``# HIDDEN`` are hidden from students). The sources are also
ordinary notebooks: ``pytest --nbmake notebooks`` runs them with the solutions and every test.
A solution cell holds the solution between ``# BEGIN SOLUTION NO PROMPT`` and ``# END SOLUTION``
lines, followed by the student's prompt inside a string that otter unwraps::

    def rke_from_kernel(K):
        # BEGIN SOLUTION NO PROMPT
        return float(1.0 / np.sum((K / K.shape[0]) ** 2))
        # END SOLUTION
        \"\"\" # BEGIN PROMPT
        raise NotImplementedError("q1: ...")
        \"\"\" # END PROMPT

so the student version raises ``NotImplementedError`` and nothing else. Test cells hold plain
``assert`` statements and print nothing (otter's OK format compares printed output, and the
sources are committed without outputs); a question's points are split evenly over its tests.

* :func:`build_assignment` runs ``otter assign`` on one source and writes
  ``build/assignments/<name>/student/<name>.ipynb`` (solutions replaced by cells that raise
  ``NotImplementedError``, hidden tests removed) and ``.../autograder/`` (the solved notebook and
  the autograder zip).
* :func:`grade` grades submissions (``.ipynb`` files, or zips made by otter's export) with
  otter's non-containerised grader (what ``otter run`` does: the current Python environment,
  no Docker, no network) and writes ``grades.csv`` and ``grades.json``.
* :func:`evaluate_toy_setting` measures one SPARKE setting on the 2-D toy; assignment 3 and its
  hidden tests use it.

Command line (what ``make assignments`` and ``make grade`` call)::

    python -m sparke_lab.course build [NAME ...] [--out DIR] [--check]
    python -m sparke_lab.course grade NAME SUBMISSIONS [--out DIR]

Instructor tools, not taught in a notebook: README, "Graded assignments". The study helper
:func:`evaluate_toy_setting` is used in notebooks/assignments/a3_toy_guidance_study.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]

ROOT = Path(__file__).resolve().parents[1]
#: Where the instructor source notebooks live (a repository checkout).
SOURCE_DIR = ROOT / "notebooks" / "assignments"
#: Where generated student versions and autograders go (gitignored).
BUILD_DIR = ROOT / "build" / "assignments"
#: Where :func:`grade` writes its tables unless told otherwise.
GRADES_DIR = ROOT / "build" / "grades"

#: The assignments, in course order.
ASSIGNMENTS = ("a1_rke_and_vendi", "a2_conditional_rke_gradient", "a3_toy_guidance_study")


# --------------------------------------------------------------------------- paths
def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"an assignment name is needed; choose one of {', '.join(ASSIGNMENTS)}")
    if name not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {name!r}; choose one of {', '.join(ASSIGNMENTS)}")
    return name


def assignment_source(name: str, source_dir: Optional[PathLike] = None) -> Path:
    """Path of the instructor source notebook of assignment ``name``.

    ``ValueError`` for an unknown name (the message lists the known ones),
    ``FileNotFoundError`` when the source is missing (e.g. an installed package without the
    repository's ``notebooks/``). Used by ``make assignments`` (README, "Graded assignments").
    """
    _check_name(name)
    path = Path(source_dir or SOURCE_DIR) / f"{name}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"instructor source of {name} not found at {path}; the sources "
                                "live in notebooks/assignments/ of a sparke-lab checkout")
    return path


def output_dir(name: str, out: Optional[PathLike] = None) -> Path:
    """``out`` or ``build/assignments/<name>``: the folder with ``student/`` and ``autograder/``."""
    return Path(out) if out is not None else BUILD_DIR / _check_name(name)


def autograder_zip(name: str, out: Optional[PathLike] = None) -> Path:
    """The autograder zip that :func:`build_assignment` wrote for ``name`` (``FileNotFoundError``
    naming the build command when there is none)."""
    folder = output_dir(name, out) / "autograder"
    zips = sorted(folder.glob(f"{name}-autograder_*.zip"))
    if not zips:
        raise FileNotFoundError(f"no autograder for {name} in {folder}; build it with "
                                f"`make assignments` (python -m sparke_lab.course build {name})")
    return zips[-1]


def student_notebook(name: str, out: Optional[PathLike] = None) -> Path:
    """The generated student notebook of ``name`` (after :func:`build_assignment`)."""
    return output_dir(name, out) / "student" / f"{name}.ipynb"


def solution_notebook(name: str, out: Optional[PathLike] = None) -> Path:
    """The generated solved notebook of ``name`` (otter's autograder notebook)."""
    return output_dir(name, out) / "autograder" / f"{name}.ipynb"


# --------------------------------------------------------------------------- building
def build_assignment(name: str, out: Optional[PathLike] = None, run_tests: bool = False,
                     source_dir: Optional[PathLike] = None, quiet: bool = True) -> Path:
    """Run ``otter assign`` on assignment ``name``; returns the output folder.

    Writes ``<out>/student/<name>.ipynb`` (the version handed to students) and
    ``<out>/autograder/`` (the solved notebook and ``<name>-autograder_<time>.zip`` for
    :func:`grade`); ``out`` defaults to ``build/assignments/<name>`` and is replaced.
    ``run_tests=True`` also grades the solved notebook and fails unless it gets full points
    (otter's own check; slower). Used by ``make assignments`` (README, "Graded assignments").
    """
    from ._extras import require_extra
    otter_assign = require_extra("otter.assign", "course", "building assignments (otter assign)").main

    src = assignment_source(name, source_dir)
    dest = output_dir(name, out).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    sink = io.StringIO()
    with contextlib.ExitStack() as stack:
        if quiet:
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
        try:
            otter_assign(str(src), str(dest), no_pdfs=True, no_run_tests=not run_tests)
        except Exception as exc:
            raise RuntimeError(f"otter assign failed on {src}: {exc}\n{sink.getvalue()}") from exc
    if not student_notebook(name, dest).is_file():
        raise RuntimeError(f"otter assign wrote no student notebook for {name} in {dest}:\n"
                           f"{sink.getvalue()}")
    autograder_zip(name, dest)  # raises if missing
    return dest


def build_all(names: Optional[Sequence[str]] = None, out: Optional[PathLike] = None,
              run_tests: bool = False) -> Dict[str, Path]:
    """:func:`build_assignment` for ``names`` (default: all), each into ``<out>/<name>``."""
    names = list(names) if names else list(ASSIGNMENTS)
    for n in names:
        _check_name(n)
    return {n: build_assignment(n, None if out is None else Path(out) / n, run_tests=run_tests)
            for n in names}


# --------------------------------------------------------------------------- grading
def find_submissions(path: PathLike) -> List[Path]:
    """Submissions at ``path``: one ``.ipynb``/``.zip`` file, or every such file in a folder
    (not recursive; checkpoints skipped). ``FileNotFoundError`` when nothing is there."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"submission path {p} does not exist")
    if p.is_file():
        if p.suffix not in (".ipynb", ".zip"):
            raise ValueError(f"{p} is not a submission (expected an .ipynb notebook or a .zip "
                             "made by the notebook's export)")
        return [p]
    found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix in (".ipynb", ".zip")
                   and not q.name.startswith("."))
    if not found:
        raise FileNotFoundError(f"no submissions (.ipynb or .zip files) in {p}")
    return found


@contextlib.contextmanager
def _preserved_process_state():
    """otter's runner prepends a conda path to PATH and changes directories; undo both."""
    env_path, cwd = os.environ.get("PATH"), os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)
        if env_path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = env_path


def grade_one(name: str, submission: PathLike, out: Optional[PathLike] = None) -> Dict:
    """Grade one submission of ``name`` with otter (no container); returns a dict with
    ``total``, ``possible``, per-question ``scores`` and ``error`` (None when graded).

    Manually graded (written) questions have no tests and are not in the scores.
    Used by ``make grade`` (README, "Graded assignments").
    """
    from ._extras import require_extra
    require_extra("otter.api", "course", "grading assignments (otter)")
    zip_path = autograder_zip(name, out)
    sub = Path(submission)
    if not sub.is_file():
        raise FileNotFoundError(f"submission {sub} not found")
    t0 = time.perf_counter()
    row: Dict = {"assignment": name, "submission": str(sub), "total": 0.0, "possible": None,
                 "scores": {}, "error": None}
    try:
        with _preserved_process_state(), warnings.catch_warnings():
            # otter's own pandas/traitlets deprecations: nothing a user can act on
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            from otter.api import grade_submission
            res = grade_submission(str(sub.resolve()), str(zip_path), quiet=True)
        row["total"], row["possible"] = float(res.total), float(res.possible)
        row["scores"] = {q: float(res.get_score(q)) for q in sorted(res.test_files)}
        if res.catastrophic_error is not None:
            row["error"] = f"{type(res.catastrophic_error).__name__}: {res.catastrophic_error}"
    except Exception as exc:  # a broken submission is a 0 with a reason, not a crash
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def grade(name: str, submissions: PathLike, out: Optional[PathLike] = None,
          build: Optional[PathLike] = None, progress: bool = True) -> List[Dict]:
    """Grade every submission at ``submissions`` (a file or a folder) for assignment ``name``.

    Uses the autograder made by :func:`build_assignment` (``build``: its output folder,
    default ``build/assignments/<name>``; built first if missing). Writes ``grades.csv``
    (one row per submission: file, total, possible, one column per question, error) and
    ``grades.json`` into ``out`` (default ``build/grades/<name>``) and returns the rows.
    Used by ``make grade`` (README, "Graded assignments").
    """
    _check_name(name)
    subs = find_submissions(submissions)
    try:
        autograder_zip(name, build)
    except FileNotFoundError:
        if progress:
            print(f"no autograder for {name} yet: building it", file=sys.stderr)
        build_assignment(name, build)
    rows = []
    for s in subs:
        row = grade_one(name, s, build)
        rows.append(row)
        if progress:
            pts = "not graded" if row["possible"] is None else \
                f"{row['total']:g} / {row['possible']:g} points"
            msg = f"{s.name}: {pts} ({row['seconds']} s)"
            print(msg + (f"  ERROR {row['error']}" if row["error"] else ""), file=sys.stderr)
    dest = Path(out) if out is not None else GRADES_DIR / name
    dest.mkdir(parents=True, exist_ok=True)
    questions = sorted({q for r in rows for q in r["scores"]})
    with open(dest / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "total", "possible", *questions, "error"])
        for r in rows:
            w.writerow([r["submission"], r["total"], r["possible"],
                        *[r["scores"].get(q, "") for q in questions], r["error"] or ""])
    (dest / "grades.json").write_text(json.dumps(rows, indent=2) + "\n")
    if progress:
        print(f"wrote {dest / 'grades.csv'} and {dest / 'grades.json'}", file=sys.stderr)
    return rows


# ----------------------------------------------------------- assignment 3: the 2-D toy study
@lru_cache(maxsize=1)
def _toy_pipeline():
    from .models import load_toy2d_pipeline
    return load_toy2d_pipeline(device="cpu")


def _toy_samples(guidance, seed: int, n_per_class: int, steps: int, cfg: float, batch_size: int):
    import torch
    from .guidance import generate
    pipe = _toy_pipeline()
    labels = toy_study_labels(n_per_class, batch_size, pipe.mixture.n_classes)
    return generate(pipe, labels, guidance, batch_size=batch_size, num_inference_steps=steps,
                    guidance_scale=cfg, generator=torch.Generator().manual_seed(seed), progress=False)


@lru_cache(maxsize=64)
def _toy_unguided_tv(seed: int, n_per_class: int, steps: int, cfg: float, batch_size: int) -> float:
    # the unguided reference of a seed is the same for every setting: sample it once
    from . import teaching
    from .utils import torch_threads
    mix = _toy_pipeline().mixture
    with torch_threads(1):
        x = _toy_samples(None, seed, n_per_class, steps, cfg, batch_size)
    labels = toy_study_labels(n_per_class, batch_size, mix.n_classes)
    return float(teaching.toy_mode_tv(mix, x, labels).mean())


def toy_study_labels(n_per_class: int = 200, batch_size: int = 50, n_classes: int = 3):
    """Class labels of the toy study: single-class batches of ``batch_size``, classes in turn
    (as in 07_guided_sampling_2d). Used in notebooks/assignments/a3_toy_guidance_study."""
    import numpy as np
    if n_per_class % batch_size:
        raise ValueError("n_per_class must be a multiple of batch_size")
    return np.concatenate([np.full(batch_size, c) for _ in range(n_per_class // batch_size)
                           for c in range(n_classes)])


def evaluate_toy_setting(setting: Optional[Dict] = None, seed: int = 0, n_per_class: int = 200,
                         steps: int = 20, cfg: float = 3.0, batch_size: int = 50) -> Dict:
    """Sample the 2-D toy at CFG ``cfg`` without guidance and with
    ``SparkeGuidance.recommended("toy2d", **setting)`` from the same noise (``seed``), and
    measure both: mean total-variation distance of the per-class mode weights to the truth
    (``teaching.toy_mode_tv``) and the fraction of samples on a mode of their class.

    Returns ``tv_unguided``, ``tv``, ``tv_ratio`` (= tv / tv_unguided), ``on_mode`` and
    ``meets_target`` (TV at most half of unguided and >= 85 % on mode). About a second on one
    CPU thread at the defaults (600 points, 20 DDIM steps).
    Taught in: notebooks/assignments/a3_toy_guidance_study (the measurement of
    07_guided_sampling_2d).
    """
    from . import teaching
    from .guidance import SparkeGuidance
    from .utils import torch_threads

    if setting is not None and not isinstance(setting, dict):
        raise TypeError(f"setting must be a dict of SparkeGuidance keyword arguments, got "
                        f"{type(setting).__name__}")
    guidance = SparkeGuidance.recommended("toy2d", **(setting or {}))  # bad settings fail here
    mix = _toy_pipeline().mixture
    labels = toy_study_labels(n_per_class, batch_size, mix.n_classes)
    with torch_threads(1):
        guided = _toy_samples(guidance, int(seed), n_per_class, int(steps), float(cfg), batch_size)
    tv0 = _toy_unguided_tv(int(seed), n_per_class, int(steps), float(cfg), batch_size)
    tv = float(teaching.toy_mode_tv(mix, guided, labels).mean())
    on = float(mix.on_mode_fraction(guided, labels))
    ratio = tv / tv0 if tv0 > 0 else math.inf
    return {"tv_unguided": tv0, "tv": tv, "tv_ratio": ratio, "on_mode": on,
            "meets_target": bool(ratio <= 0.5 and on >= 0.85)}


# --------------------------------------------------------------------------- command line
def main(argv: Optional[Iterable[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sparke_lab.course",
                                description="Build the course's assignments (otter assign) and "
                                            "grade submissions (otter, no container).")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="student versions and autograders into build/assignments/")
    b.add_argument("names", nargs="*", help=f"assignments (default: all of {', '.join(ASSIGNMENTS)})")
    b.add_argument("--out", help="output root (default build/assignments); one folder per assignment")
    b.add_argument("--check", action="store_true",
                   help="also grade the solved notebook and require full points (slower)")
    g = sub.add_parser("grade", help="grade submissions; writes grades.csv and grades.json")
    g.add_argument("name", help=f"assignment, one of {', '.join(ASSIGNMENTS)}")
    g.add_argument("submissions", help="a submitted .ipynb/.zip or a folder of them")
    g.add_argument("--out", help="where to write the tables (default build/grades/NAME)")
    g.add_argument("--build", help="the assignment's build folder (default build/assignments/NAME)")
    args = p.parse_args(None if argv is None else list(argv))
    try:
        if args.cmd == "build":
            t0 = time.perf_counter()
            for name, path in build_all(args.names, args.out, run_tests=args.check).items():
                print(f"{name}: {student_notebook(name, path)}  (students)\n"
                      f"{' ' * len(name)}  {autograder_zip(name, path)}  (autograder)")
            print(f"built in {time.perf_counter() - t0:.1f} s")
            return 0
        rows = grade(args.name, args.submissions, args.out, args.build)
        print(f"{'submission':40s} {'points':>12s}")
        for r in rows:
            pts = f"{r['total']:g} / {r['possible']:g}" if r["possible"] is not None else "error"
            print(f"{Path(r['submission']).name:40s} {pts:>12s}" +
                  (f"  {r['error']}" if r["error"] else ""))
        return 1 if any(r["error"] for r in rows) else 0
    except (ValueError, FileNotFoundError, TypeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
