"""The set-up files agree: pyproject.toml is the one place of ranges; environment.yml mirrors it."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def pyproject_groups():
    """{"core": [...], "<extra>": [...]} from pyproject.toml."""
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"core": proj["dependencies"], **proj["optional-dependencies"]}


def pyproject_requirements():
    return [r for reqs in pyproject_groups().values() for r in reqs]


def environment_groups():
    """The pip list of environment.yml, split at its "# extra: NAME" comments."""
    groups, current, in_pip = {"core": []}, "core", False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        marker = re.match(r"^\s+# extra: (\S+)\s*$", raw)
        if in_pip and marker:
            current = marker.group(1)
            groups.setdefault(current, [])
            continue
        line = raw.split("#", 1)[0].rstrip()
        if re.match(r"^\s+- pip:\s*$", line):
            in_pip = True
            continue
        if in_pip and re.match(r"^\s{6,}- ", line):
            item = line.strip()[2:].strip()
            if item != "-e .":
                groups[current].append(item)
    return groups


def environment_requirements():
    return [r for reqs in environment_groups().values() for r in reqs]


def test_environment_yml_matches_pyproject():
    py = sorted(_norm(r) for r in pyproject_requirements())
    env = sorted(_norm(r) for r in environment_requirements())
    assert env == py, f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"


def test_environment_yml_groups_match_the_extras():
    py = {g: sorted(map(_norm, reqs)) for g, reqs in pyproject_groups().items()}
    env = {g: sorted(map(_norm, reqs)) for g, reqs in environment_groups().items()}
    assert set(env) == set(py), f"groups: pyproject {sorted(py)}, environment.yml {sorted(env)}"
    for group in py:
        assert env[group] == py[group], (group, py[group], env[group])


def _names(reqs):
    from packaging.requirements import Requirement
    return {Requirement(r).name.lower() for r in reqs}


def test_core_has_no_notebook_or_course_packages():
    groups = pyproject_groups()
    assert {"lab", "course", "test"} <= set(groups)
    core = _names(groups["core"])
    for extra in ("lab", "course", "test"):
        assert not core & _names(groups[extra]), (extra, core & _names(groups[extra]))
    assert {"jupyterlab", "ipywidgets", "ipykernel"} <= _names(groups["lab"])
    assert "otter-grader" in _names(groups["course"])
    assert "selenium" in _names(groups["test"])


def test_every_extra_is_known_to_the_error_messages():
    from sparke_lab._extras import EXTRAS
    assert set(EXTRAS) == set(pyproject_groups()) - {"core"}


def test_make_test_installs_every_extra():
    make = (ROOT / "Makefile").read_text()
    extras = sorted(set(pyproject_groups()) - {"core"})
    assert re.search(r'-e "\.\[' + ",".join(extras) + r'\]"', make), extras


def test_environment_installs_the_project():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_default_torch_pin_is_inside_the_range():
    from packaging.specifiers import SpecifierSet
    pin = re.search(r"^TORCH_SPEC \?= torch==(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    torch_req = next(r for r in pyproject_requirements() if r.startswith("torch"))
    assert pin in SpecifierSet(torch_req[len("torch"):]), (pin, torch_req)


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
