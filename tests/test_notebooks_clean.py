"""The course notebooks are committed clean: no outputs, no execution counts, no widget state.

Outputs in git bloat diffs, leak machine-specific paths and timings, and hide whether a notebook
still runs; CI executes them fresh under ``pytest --nbmake``.
"""
import json
import re
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found under {NOTEBOOK_DIR}"
    # the instructor sources of the graded assignments are checked like the course notebooks
    assert any(p.parent.name == "assignments" for p in NOTEBOOKS), "notebooks/assignments not covered"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    if "widgets" in nb.get("metadata", {}):
        problems.append("notebook metadata holds widget state ('widgets')")
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has execution_count {cell['execution_count']}")
        meta = cell.get("metadata", {})
        if "widgets" in meta or "execution" in meta:
            problems.append(f"cell {i} metadata holds {sorted(set(meta) & {'widgets', 'execution'})}")
    assert not problems, (f"{path.name} is not clean: " + "; ".join(problems) +
                          ". Clear it with `jupyter nbconvert --clear-output --inplace "
                          f"{path.relative_to(NOTEBOOK_DIR.parent)}` (and remove metadata.widgets).")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_names_no_device(path):
    # devices come from sl.pick_device(); a literal "cuda" in code breaks on CPU/MPS machines
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code":
            src = "".join(cell.get("source", []))
            assert not re.search(r"""["']cuda""", src), f"{path.name}, cell {i}: literal 'cuda' device"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_leaves_thread_settings_out_of_the_lesson(path):
    # OMP_WAIT_POLICY is set by `import sparke_lab`, the Makefile and the kernel spec of `make lab`
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code":
            assert "OMP_WAIT_POLICY" not in "".join(cell.get("source", [])), \
                f"{path.name}, cell {i}: thread settings belong in sparke_lab or the kernel environment"
