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
* :func:`sample_digits_setting`, :func:`digits_study_row` and :func:`rerun_digits_comparison`
  generate and score one setting of the digits capstone (assignment 4) and re-run a student's
  matched-fidelity comparison on other seeds; :func:`claim_problems` says whether a claim
  survives the re-run. Assignment 4's hidden tests use them.

Command line (what ``make assignments`` and ``make grade`` call)::

    python -m sparke_lab.course build [NAME ...] [--out DIR] [--check]
    python -m sparke_lab.course grade NAME SUBMISSIONS [--out DIR]

Instructor tools, not taught in a notebook: README, "Graded assignments". The study helper
:func:`evaluate_toy_setting` is used in notebooks/assignments/a3_toy_guidance_study, the digits
helpers in notebooks/assignments/a4_digits_capstone.
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
ASSIGNMENTS = ("a1_rke_and_vendi", "a2_conditional_rke_gradient", "a3_toy_guidance_study",
               "a4_digits_capstone")


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


# ------------------------------------------------- assignment 4: the digits capstone study
#: The capstone's fixed design: images per prompt, DDIM steps, the collapsed CFG every
#: setting is compared with, the validity a matched setting may lose (3 points), the
#: judge-feature bandwidth of Cond-Vendi, and the paired-interval subsets (halves).
DIGITS_STUDY = {"per_prompt": 16, "steps": 15, "reference_cfg": 7.0, "tolerance": 0.03,
                "sigma_judge": 0.5, "sigma_prompt": 0.3, "repeats": 50, "interval_seed": 0}
#: The claims a student may make about SPARKE against lowered CFG at matched validity.
CLAIMS = ("SPARKE wins", "no significant difference", "lower CFG wins")


@lru_cache(maxsize=1)
def _digits_models():
    from .models import load_digits_judge, load_digits_pipeline
    return load_digits_pipeline(device="cpu"), load_digits_judge(device="cpu")


def digits_study_prompts():
    """The capstone's three broad prompts ("an odd digit", "an even digit", "a digit less
    than five"): the first phrasing of each of the first three broad clusters, as in
    08_guided_generation_digits. Used in notebooks/assignments/a4_digits_capstone."""
    from .models import load_prompt_set
    broad = load_prompt_set("broad")
    clusters = sorted({p.cluster for p in broad})[:3]
    return [next(p for p in broad if p.cluster == c) for c in clusters]


def digits_study_layout(per_prompt: Optional[int] = None):
    """``(texts, clusters)`` of one study run: the prompts interleaved (p0 p1 p2 p0 ...),
    ``per_prompt`` images each; ``clusters`` is the broad cluster id of every image.
    Used in notebooks/assignments/a4_digits_capstone."""
    import numpy as np
    per_prompt = DIGITS_STUDY["per_prompt"] if per_prompt is None else int(per_prompt)
    if per_prompt < 2:
        raise ValueError(f"per_prompt must be at least 2, got {per_prompt}")
    prompts = [p for _ in range(per_prompt) for p in digits_study_prompts()]
    return [p.prompt for p in prompts], np.array([p.cluster for p in prompts])


def check_digits_setting(setting) -> Dict:
    """A capstone setting as a normalised dict ``{"cfg": float, "sparke": dict or None}``:
    ``cfg`` the CFG scale (default 7), ``sparke`` keyword overrides of
    ``SparkeGuidance.recommended("digits")`` (absent or None: no guidance). Clear errors for
    anything else. Used in notebooks/assignments/a4_digits_capstone (its tests)."""
    from .guidance import SparkeGuidance
    if not isinstance(setting, dict):
        raise TypeError(f"a setting is a dict such as {{'cfg': 3.0}} or {{'sparke': {{'scale': 4.0}}}}, "
                        f"got {type(setting).__name__}")
    unknown = set(setting) - {"cfg", "sparke"}
    if unknown:
        raise ValueError(f"unknown setting keys {sorted(unknown)}; a setting has 'cfg' (the CFG "
                         "scale) and 'sparke' (overrides of SparkeGuidance.recommended('digits'))")
    cfg = float(setting.get("cfg", DIGITS_STUDY["reference_cfg"]))
    if not (math.isfinite(cfg) and cfg >= 1.0):
        raise ValueError(f"cfg must be a finite CFG scale >= 1, got {setting.get('cfg')!r}")
    sparke = setting.get("sparke")
    if sparke is not None:
        if not isinstance(sparke, dict):
            raise TypeError("'sparke' must be a dict of SparkeGuidance.recommended('digits') "
                            f"overrides, got {type(sparke).__name__}")
        SparkeGuidance.recommended("digits", **sparke)  # bad knobs fail here
        sparke = dict(sparke)
    return {"cfg": cfg, "sparke": sparke}


@lru_cache(maxsize=48)
def _digits_images(key: str, seed: int, per_prompt: int, steps: int):
    import torch
    from .guidance import SparkeGuidance, generate
    from .utils import torch_threads
    setting = json.loads(key)
    pipe, _ = _digits_models()
    texts, _ = digits_study_layout(per_prompt)
    guidance = None if setting["sparke"] is None else \
        SparkeGuidance.recommended("digits", **setting["sparke"])  # a fresh, empty bank
    with torch_threads(1):
        images = generate(pipe, texts, guidance, batch_size=len(texts), num_inference_steps=steps,
                          guidance_scale=setting["cfg"], generator=torch.Generator().manual_seed(seed),
                          output_type="pt", progress=False)
    return images.float().cpu()


def sample_digits_setting(setting: Dict, seed: int = 0, per_prompt: Optional[int] = None,
                          steps: Optional[int] = None):
    """Images (n, 1, 16, 16) in [0, 1] of one capstone setting (:func:`check_digits_setting`):
    the three study prompts, ``per_prompt`` each (:func:`digits_study_layout`), one batch,
    ``steps`` DDIM steps, initial noise from ``seed``: every setting of a seed starts from the
    same noise, so rows are paired across settings. Kept per (setting, seed) in this process.
    About 3 s on one CPU thread at the defaults (48 images, 15 steps).
    Taught in: notebooks/assignments/a4_digits_capstone."""
    s = check_digits_setting(setting)
    per_prompt = DIGITS_STUDY["per_prompt"] if per_prompt is None else int(per_prompt)
    steps = DIGITS_STUDY["steps"] if steps is None else int(steps)
    return _digits_images(json.dumps(s, sort_keys=True), int(seed), per_prompt, steps).clone()


def digits_study_judge():
    """The rejecting judge (``load_digits_judge`` on the CPU, loaded once) the capstone
    evaluates with. Used in notebooks/assignments/a4_digits_capstone."""
    return _digits_models()[1]


def _study_rows(pred, clusters) -> List[Dict]:
    """:func:`sparke_lab.metrics.cluster_class_metrics` of each study prompt's images (validity,
    spread over valid digits, TV to its caption shares), in prompt order."""
    import numpy as np
    from . import metrics
    pred, clusters = np.asarray(pred), np.asarray(clusters)
    return [metrics.cluster_class_metrics(pred[clusters == p.cluster], p.valid_digits, p.class_weights)
            for p in digits_study_prompts()]


def digits_study_validity(pred, clusters) -> float:
    """Mean over the study prompts of the share of images whose judged digit is valid for
    their prompt (the judge's -1 "not a digit" never is). The metric of the re-run's
    validity intervals (:func:`rerun_digits_comparison`); used in a4_digits_capstone's tests."""
    import numpy as np
    return float(np.mean([r["validity"] for r in _study_rows(pred, clusters)]))


def digits_study_spread(pred, clusters) -> float:
    """Mean over the study prompts of the spread ``1 / sum p_c^2`` over valid digits
    (:func:`sparke_lab.metrics.cluster_class_metrics`); NaN when a prompt has no valid image.
    Used in notebooks/assignments/a4_digits_capstone (the metric of its paired intervals)."""
    import numpy as np
    vals = [r["spread"] for r in _study_rows(pred, clusters)]
    return float("nan") if any(math.isnan(v) for v in vals) else float(np.mean(vals))


def digits_study_row(pred, features, clusters) -> Dict[str, float]:
    """The reference Table-1 row of the capstone (what its question 1 asks for): mean over the
    study prompts of validity, spread and TV to the caption distribution
    (:func:`sparke_lab.metrics.cluster_class_metrics`), the share of rejected images, and
    Cond-Vendi of the judge's normalised features given the one-hot prompt cluster
    (``sigma_x = DIGITS_STUDY["sigma_judge"]``, ``sigma_t = DIGITS_STUDY["sigma_prompt"]``).
    Used in notebooks/assignments/a4_digits_capstone (the reference of its question 1)."""
    import numpy as np
    from .models import REJECT
    from .scores import conditional_vendi_score
    pred, clusters = np.asarray(pred), np.asarray(clusters)
    F = np.asarray(features, dtype=np.float64)
    if not (len(pred) == len(F) == len(clusters)):
        raise ValueError(f"pred, features and clusters must describe the same images, got "
                         f"{len(pred)}, {len(F)} and {len(clusters)} rows")
    rows = _study_rows(pred, clusters)
    T = np.eye(int(clusters.max()) + 1)[clusters]
    return {"validity": float(np.mean([r["validity"] for r in rows])),
            "spread": float(np.mean([r["spread"] for r in rows])),
            "tv": float(np.mean([r["tv"] for r in rows])),
            "rejected": float(np.mean(pred == REJECT)),
            "cond_vendi": float(conditional_vendi_score(F, T, sigma_x=DIGITS_STUDY["sigma_judge"],
                                                        sigma_t=DIGITS_STUDY["sigma_prompt"]))}


def _paired(score, a, b, clusters) -> Dict[str, float]:
    from .evaluation_tools import paired_subsample_interval
    iv = paired_subsample_interval(score, (a, clusters), (b, clusters), repeats=DIGITS_STUDY["repeats"],
                                   seed=DIGITS_STUDY["interval_seed"])
    return {"delta": iv.delta, "lo": iv.lo, "hi": iv.hi}


def rerun_digits_comparison(sparke_setting: Dict, cfg_setting: Dict, seeds: Sequence[int] = (1, 2),
                            per_prompt: Optional[int] = None, steps: Optional[int] = None) -> Dict:
    """Re-run a capstone comparison on other ``seeds`` (pooled, rows paired by seed and image):
    the reference (no guidance, CFG 7), ``sparke_setting`` and ``cfg_setting``.

    Returns ``spread`` (``delta`` = spread(SPARKE) - spread(CFG) with its 95 % paired
    half-sample interval ``lo`` / ``hi``), ``validity_sparke`` and ``validity_cfg`` (validity
    minus the reference's, with intervals) and ``n``. What assignment 4's hidden tests run;
    six generations, about 20 s on one CPU thread at the defaults.
    Taught in: notebooks/assignments/a4_digits_capstone (its question 4)."""
    import numpy as np
    judge = digits_study_judge()
    ref = {"cfg": DIGITS_STUDY["reference_cfg"]}
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed to re-run")
    _, clusters = digits_study_layout(per_prompt)

    def pred(setting):
        return np.concatenate([np.asarray(judge.predict(sample_digits_setting(setting, s, per_prompt, steps)))
                               for s in seeds])

    C = np.concatenate([clusters] * len(seeds))
    p_ref, p_sp, p_cfg = pred(ref), pred(sparke_setting), pred(cfg_setting)
    return {"spread": _paired(digits_study_spread, p_cfg, p_sp, C),
            "validity_sparke": _paired(digits_study_validity, p_ref, p_sp, C),
            "validity_cfg": _paired(digits_study_validity, p_ref, p_cfg, C),
            "n": int(len(C)), "seeds": seeds}


def claim_problems(claim: Dict, rerun: Dict, tolerance: Optional[float] = None) -> List[str]:
    """Why a capstone claim does not survive a re-run (:func:`rerun_digits_comparison`);
    an empty list when it does.

    ``claim``: ``{"claim": one of CLAIMS, "delta", "lo", "hi"}`` (the student's spread
    difference SPARKE - CFG with its interval). Checks, each with the re-run's own interval as
    the margin: every chosen setting keeps validity within ``tolerance`` (3 points) of the
    reference unless the re-run's interval says otherwise (fails only when the whole interval
    of its validity loss lies beyond the tolerance); "SPARKE wins" fails when the re-run puts
    lowered CFG ahead beyond its interval (``hi < 0``), "lower CFG wins" the other way round
    (``lo > 0``), and "no significant difference" fails when the re-run's interval and the
    claimed one do not overlap (a difference the claim ruled out). Used in the hidden tests of
    notebooks/assignments/a4_digits_capstone."""
    tol = DIGITS_STUDY["tolerance"] if tolerance is None else float(tolerance)
    problems = []
    for name in ("validity_sparke", "validity_cfg"):
        v = rerun[name]
        if v["hi"] < -tol:
            problems.append(f"{name}: the re-run loses {-v['delta']:.1%} validity (interval "
                            f"[{v['lo']:+.1%}, {v['hi']:+.1%}]), beyond the {tol:.0%} allowed")
    if not isinstance(claim, dict):
        return problems + [f"a claim is a dict with 'claim', 'delta', 'lo', 'hi', got {type(claim).__name__}"]
    s, kind = rerun["spread"], claim.get("claim")
    numbers = [claim.get(k) for k in ("delta", "lo", "hi")]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
        problems.append(f"the claim needs finite 'delta', 'lo' and 'hi' (its interval), got {numbers}")
    elif kind not in CLAIMS:
        problems.append(f"claim must be one of {CLAIMS}, got {kind!r}")
    elif kind == "SPARKE wins" and s["hi"] < 0:
        problems.append(f"claimed SPARKE wins, but the re-run puts lowered CFG ahead: "
                        f"{s['delta']:+.2f} [{s['lo']:+.2f}, {s['hi']:+.2f}]")
    elif kind == "lower CFG wins" and s["lo"] > 0:
        problems.append(f"claimed lowered CFG wins, but the re-run puts SPARKE ahead: "
                        f"{s['delta']:+.2f} [{s['lo']:+.2f}, {s['hi']:+.2f}]")
    elif kind == "no significant difference" and (s["lo"] > claim["hi"] or s["hi"] < claim["lo"]):
        problems.append(f"claimed no significant difference with interval [{claim['lo']:+.2f}, "
                        f"{claim['hi']:+.2f}], but the re-run's [{s['lo']:+.2f}, {s['hi']:+.2f}] "
                        "does not overlap it")
    return problems


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
