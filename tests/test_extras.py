"""The core never needs an extra; a feature that needs one names it (issue 15).

A subprocess hides every package of the [lab], [course] and [test] extras (``sys.modules[name] =
None`` makes ``import name`` raise ImportError and ``importlib.util.find_spec`` return None, as
for an absent package), imports every sparke_lab module and uses a few core features. The wheel
test (tests/test_wheel_install.py) checks the same with the extras truly absent.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparke_lab._extras import EXTRAS, install_hint, require_extra

ROOT = Path(__file__).resolve().parents[1]

#: import names provided by the extras (and by their dependencies) that the core must not need
EXTRA_MODULES = ["ipywidgets", "IPython", "ipykernel", "jupyterlab", "jupyter_server", "notebook",
                 "jupyter_client", "nbformat", "nbclient", "otter", "selenium", "nbmake",
                 "hypothesis", "vendi_score", "prdc", "pytest"]

SCRIPT = r"""
import json, pkgutil, sys, importlib
for name in NAMES:
    sys.modules[name] = None
import numpy as np
import sparke_lab as sl
mods = sorted(m.name for m in pkgutil.walk_packages(sl.__path__, "sparke_lab."))
for m in mods:
    importlib.import_module(m)
out = {"modules": mods, "rke": float(sl.rke_score(np.random.default_rng(0).normal(size=(50, 3)), sigma=1.0)),
       "prompts": len(sl.models.load_prompt_set("mini"))}
errors = {}
try:
    sl.widgets.spectrum_explorer(np.zeros((5, 2)))
except ImportError as exc:
    errors["widgets"] = str(exc)
try:
    from sparke_lab import course
    course.build_assignment("a1_rke_and_vendi", out="/nonexistent/never-written")
except ImportError as exc:
    errors["course"] = str(exc)
from sparke_lab.cli import main
import contextlib, io
err = io.StringIO()
with contextlib.redirect_stderr(err):
    out["lab_rc"] = main(["lab", "--no-browser"])
errors["lab"] = err.getvalue()
out["errors"] = errors
out["loaded_extras"] = sorted(n for n in NAMES if sys.modules.get(n) is not None)
print(json.dumps(out))
"""


def test_core_imports_and_runs_without_any_extra():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = f"NAMES = {EXTRA_MODULES!r}\n" + SCRIPT
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "sparke_lab.widgets" in out["modules"] and "sparke_lab.course" in out["modules"]
    assert "sparke_lab.lab" in out["modules"] and "sparke_lab.guidance.sparke" in out["modules"]
    assert out["rke"] > 1 and out["prompts"] == 14
    assert out["loaded_extras"] == []
    assert 'pip install "sparke-lab[lab]"' in out["errors"]["widgets"]
    assert 'pip install "sparke-lab[course]"' in out["errors"]["course"]
    assert out["lab_rc"] == 2 and 'pip install "sparke-lab[lab]"' in out["errors"]["lab"]


def test_require_extra_names_the_extra_and_keeps_the_cause():
    assert require_extra("json", "lab", "x") is json
    with pytest.raises(ImportError, match=r'\[course\] extra .*pip install "sparke-lab\[course\]"') as info:
        require_extra("no_such_module_for_sparke_lab", "course", "grading")
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(ValueError, match="unknown extra"):
        install_hint("gpu")
    assert set(EXTRAS) == {"lab", "course", "test"}
