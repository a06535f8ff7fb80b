"""Optional dependencies: which features need which pip extra, and the error that says so.

The core install (``pip install sparke-lab``) covers the scores, guidance, models, the
comparison runner and its report. Features beyond it come with extras declared in
pyproject.toml: ``[lab]`` (JupyterLab, ipywidgets, ipykernel: the notebooks and their
widgets), ``[course]`` (otter-grader: building and grading the assignments) and ``[test]``.
No core module imports an extra at import time; the feature that needs one calls
:func:`require_extra` and gets an ImportError naming the extra to install.
"""
from __future__ import annotations

import importlib
from types import ModuleType

#: Each extra of pyproject.toml and what it is for (the wording of the error).
EXTRAS = {
    "lab": "the notebooks in JupyterLab and their widgets",
    "course": "building and grading the course's assignments",
    "test": "the test suite",
}


def install_hint(extra: str) -> str:
    """The pip commands that install ``extra`` (from an index, and in a checkout)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; the extras are {', '.join(EXTRAS)}")
    return f'pip install "sparke-lab[{extra}]"  (in a checkout: pip install -e ".[{extra}]")'


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``; if it is missing, raise an ImportError that names
    the extra ``extra`` that provides it and how to install it.
    """
    hint = install_hint(extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{feature} needs the Python package {module!r}, which could not be "
                          f"imported ({exc}). It comes with sparke-lab's [{extra}] extra ({EXTRAS[extra]}): "
                          f"{hint}") from exc
