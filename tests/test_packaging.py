"""The set-up files agree: pyproject.toml is the one place of ranges; environment.yml mirrors it."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def pyproject_requirements():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    proj = data["project"]
    return proj["dependencies"] + proj["optional-dependencies"]["test"]


def environment_requirements():
    lines, in_pip = [], False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if re.match(r"^\s+- pip:\s*$", line):
            in_pip = True
            continue
        if in_pip and re.match(r"^\s{6,}- ", line):
            item = line.strip()[2:].strip()
            if item != "-e .":
                lines.append(item)
    return lines


def test_environment_yml_matches_pyproject():
    py = sorted(_norm(r) for r in pyproject_requirements())
    env = sorted(_norm(r) for r in environment_requirements())
    assert env == py, f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"


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
