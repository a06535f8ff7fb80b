"""The graded assignments (notebooks/assignments): one command builds student versions and
autograders with otter assign; student versions fail only with NotImplementedError; otter's
grader (no container) gives the solutions full points and the blank notebooks zero.

The instructor sources themselves run under ``pytest --nbmake notebooks`` (solutions + every
test cell, hidden ones included).
"""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from sparke_lab import course

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(course.ASSIGNMENTS)
#: written questions (graded by hand): no tests, so never in the autograder's scores
MANUAL = {"a1_rke_and_vendi": {"q5", "q6"}, "a2_conditional_rke_gradient": {"q2"},
          "a3_toy_guidance_study": {"q3"}, "a4_digits_capstone": {"q5"}}


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """All assignments, built once by the command ``make assignments`` runs."""
    out = tmp_path_factory.mktemp("assignments")
    proc = subprocess.run([sys.executable, "-m", "sparke_lab.course", "build", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {name: out / name for name in NAMES}


def _code(nb):
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_sources_exist_and_makefile_uses_the_command():
    for name in NAMES:
        assert course.assignment_source(name).parent == ROOT / "notebooks" / "assignments"
    make = (ROOT / "Makefile").read_text()
    assert "-m sparke_lab.course build" in make and "-m sparke_lab.course grade" in make


@pytest.mark.parametrize("name", NAMES)
def test_build_writes_student_version_and_autograder(built, name):
    student = nbformat.read(course.student_notebook(name, built[name]), as_version=4)
    solved = nbformat.read(course.solution_notebook(name, built[name]), as_version=4)
    src, sol = _code(student), _code(solved)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN PROMPT", "# HIDDEN", "ASSIGNMENT CONFIG"):
        assert marker not in src, marker
    assert "raise NotImplementedError" in src and "grader.check(" in src
    assert "# HIDDEN" not in sol and "grader.check(" in sol      # tests moved into otter's checks
    assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code")
    # public tests travel in the student notebook, hidden ones only in the autograder zip
    meta = student.metadata["otter"]
    assert meta["assignment_name"] == name
    public = [case for t in meta["tests"].values() for s in t["suites"] for case in s["cases"]]
    assert public and not any(case["hidden"] for case in public)
    with zipfile.ZipFile(course.autograder_zip(name, built[name])) as z:
        tests = {n: z.read(n).decode() for n in z.namelist() if n.startswith("tests/")}
        config = json.loads(z.read("otter_config.json"))
    assert config["assignment_name"] == name
    assert any("'hidden': True" in t for t in tests.values())
    assert not any(Path(n).stem in MANUAL[name] for n in tests)
    # written questions: a response cell for the student, the model answer only in the solution
    assert sum("Type your answer here" in c.source for c in student.cells) == len(MANUAL[name])


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_fails_only_with_not_implemented(built, name):
    from nbclient import NotebookClient

    path = course.student_notebook(name, built[name])
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors, "the blank student notebook raised nothing"
    names = sorted({e["ename"] for e in errors})
    assert names == ["NotImplementedError"], [f"{e['ename']}: {e['evalue']}" for e in errors]


@pytest.mark.parametrize("name", NAMES)
def test_grading_gives_solution_full_points_and_blank_zero(built, name, tmp_path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    (subs / "solved.ipynb").write_bytes(course.solution_notebook(name, built[name]).read_bytes())
    (subs / "blank.ipynb").write_bytes(course.student_notebook(name, built[name]).read_bytes())
    rows = course.grade(name, subs, out=tmp_path / "grades", build=built[name], progress=False)
    by = {Path(r["submission"]).stem: r for r in rows}
    assert by["solved"]["error"] is None and by["blank"]["error"] is None
    assert by["solved"]["possible"] > 0
    assert by["solved"]["total"] == by["solved"]["possible"], by["solved"]["scores"]
    assert by["blank"]["total"] == 0, by["blank"]["scores"]
    assert set(by["solved"]["scores"]).isdisjoint(MANUAL[name])   # written questions: by hand
    csv_text = (tmp_path / "grades" / "grades.csv").read_text()
    assert csv_text.splitlines()[0].startswith("submission,total,possible,q1")
    assert len(json.loads((tmp_path / "grades" / "grades.json").read_text())) == 2


def test_bad_input_gives_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown assignment 'a9'.*a1_rke_and_vendi"):
        course.assignment_source("a9")
    with pytest.raises(ValueError, match="assignment name is needed"):
        course.grade("", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        course.find_submissions(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no submissions"):
        course.find_submissions(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a submission"):
        course.find_submissions(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="make assignments"):
        course.autograder_zip("a1_rke_and_vendi", tmp_path / "nothing-built")
    proc = subprocess.run([sys.executable, "-m", "sparke_lab.course", "grade", "a9", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "error: unknown assignment" in proc.stderr


def test_toy_setting_evaluation_rejects_bad_settings():
    with pytest.raises(TypeError, match="dict"):
        course.evaluate_toy_setting([("scale", 2.0)])
    with pytest.raises(TypeError):
        course.evaluate_toy_setting({"no_such_knob": 1})


def test_digits_setting_rejects_bad_settings():
    assert course.check_digits_setting({}) == {"cfg": 7.0, "sparke": None}
    assert course.check_digits_setting({"cfg": 3}) == {"cfg": 3.0, "sparke": None}
    with pytest.raises(TypeError, match="dict"):
        course.check_digits_setting([("cfg", 3.0)])
    with pytest.raises(ValueError, match="unknown setting keys.*scale"):
        course.check_digits_setting({"scale": 4.0})
    with pytest.raises(ValueError, match="cfg must be"):
        course.check_digits_setting({"cfg": float("nan")})
    with pytest.raises(TypeError, match="'sparke' must be a dict"):
        course.check_digits_setting({"sparke": 4.0})
    with pytest.raises(TypeError):
        course.check_digits_setting({"sparke": {"no_such_knob": 1}})


def test_digits_study_row_on_hand_made_predictions():
    import numpy as np
    odd, even, small = course.digits_study_prompts()
    assert (odd.prompt, even.prompt, small.prompt) == ("an odd digit", "an even digit", "a digit less than five")
    texts, clusters = course.digits_study_layout(2)
    assert texts == [odd.prompt, even.prompt, small.prompt] * 2
    # per prompt: odd 1, -1 -> validity 1/2, spread 1; even 0, 2 -> 1, 2; small 2, 2 -> 1, 1
    pred = np.array([1, 0, 2, -1, 2, 2])
    row = course.digits_study_row(pred, np.ones((6, 3)) / np.sqrt(3), clusters)
    assert abs(row["validity"] - 2.5 / 3) < 1e-12 and abs(row["spread"] - 4 / 3) < 1e-12
    assert abs(row["rejected"] - 1 / 6) < 1e-12 and abs(row["cond_vendi"] - 1) < 1e-9
    # TV: odd all 1s vs .45 on 1 -> .55; even (.5, .5) on 0, 2 vs (.25 .1 .05 .15 .45) -> .65;
    # small all 2s vs .45 on 2 -> .55
    tv = 0.55 + 0.5 * (0.25 + 0.4 + 0.05 + 0.15 + 0.45) + 0.55
    assert abs(row["tv"] - tv / 3) < 1e-12
    assert course.digits_study_validity(pred, clusters) == row["validity"]
    assert course.digits_study_spread(pred, clusters) == row["spread"]
    assert np.isnan(course.digits_study_spread(np.array([-1, 0, 2, -1, 2, 2]), clusters))
    with pytest.raises(ValueError, match="same images"):
        course.digits_study_row(pred[:5], np.ones((6, 3)), clusters)


def test_claim_problems_follow_the_rerun_intervals():
    iv = lambda d, lo, hi: {"delta": d, "lo": lo, "hi": hi}
    ok_validity = {"validity_sparke": iv(-0.01, -0.05, 0.03), "validity_cfg": iv(-0.04, -0.11, 0.03)}
    cfg_ahead = {**ok_validity, "spread": iv(-0.35, -0.67, -0.03)}
    null = {"claim": "no significant difference", "delta": -0.46, "lo": -0.99, "hi": 0.06}
    assert course.claim_problems(null, cfg_ahead) == []                       # overlapping intervals
    assert course.claim_problems({**null, "claim": "lower CFG wins"}, cfg_ahead) == []
    bad = course.claim_problems({**null, "claim": "SPARKE wins"}, cfg_ahead)
    assert len(bad) == 1 and "lowered CFG ahead" in bad[0]
    sparke_ahead = {**ok_validity, "spread": iv(0.5, 0.2, 0.8)}
    assert "SPARKE ahead" in course.claim_problems({**null, "claim": "lower CFG wins"}, sparke_ahead)[0]
    assert "does not overlap" in course.claim_problems({**null, "hi": 0.1}, sparke_ahead)[0]
    assert "claim must be one of" in course.claim_problems({**null, "claim": "SPARKE is better"}, cfg_ahead)[0]
    assert "finite 'delta'" in course.claim_problems({"claim": "no significant difference"}, cfg_ahead)[0]
    assert "a claim is a dict" in course.claim_problems("SPARKE wins", cfg_ahead)[0]
    lost = {**cfg_ahead, "validity_cfg": iv(-0.10, -0.15, -0.05)}           # all of it beyond 3 points
    bad = course.claim_problems(null, lost)
    assert len(bad) == 1 and bad[0].startswith("validity_cfg")
    assert course.claim_problems(null, lost, tolerance=0.06) == []
