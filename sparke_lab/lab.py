"""``sparke-lab lab``: JupyterLab on the course notebooks, the way ``make lab`` starts it.

One command for students (``make lab`` calls it), for a server on a chosen port and token
(``sparke-lab lab --port 8899 --token SECRET --no-browser``) and for the browser tests in
tests/test_browser.py, which start JupyterLab exactly like this. Needs the ``[lab]`` extra.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence


def default_notebook_dir() -> Path:
    """``./notebooks`` when the current folder is a sparke-lab checkout, else the current folder."""
    here = Path.cwd()
    return here / "notebooks" if (here / "notebooks").is_dir() else here


def lab_argv(directory: Optional[os.PathLike] = None, port: Optional[int] = None,
             token: Optional[str] = None, no_browser: bool = False,
             ip: str = "127.0.0.1", extra: Sequence[str] = ()) -> List[str]:
    """The ``python -m jupyterlab ...`` command line of :func:`main`.

    Binds to ``ip`` (loopback by default); ``port`` None lets Jupyter pick a free one, a given
    port is used or the start fails (no silent move to another port); ``token`` None lets
    Jupyter make a random token (printed in its URL). Update checks and the news feed are
    off: they would reach the network. ``extra`` arguments are passed on to JupyterLab as they
    are (e.g. ``--LabApp.expose_app_in_browser=True``, which the browser tests use).
    """
    folder = Path(directory) if directory is not None else default_notebook_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {folder} not found; pass an existing folder "
                                "(in a checkout: notebooks/)")
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder.resolve()}",
            f"--ServerApp.ip={ip}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if port is not None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"--port must be in 1..65535, got {port}")
        argv += [f"--ServerApp.port={int(port)}", "--ServerApp.port_retries=0"]
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    if no_browser:
        argv.append("--ServerApp.open_browser=False")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")  # containers and CI run as root; Jupyter refuses it
    return argv + list(extra)


def lab_env(environ: Optional[dict] = None) -> dict:
    """The server's environment: ``MPLBACKEND`` removed so that kernels draw inline (the
    Makefile and tests set it to Agg, which would hide every figure)."""
    env = dict(os.environ if environ is None else environ)
    env.pop("MPLBACKEND", None)
    return env


def main(directory=None, port=None, token=None, no_browser=False, ip="127.0.0.1", extra=()) -> int:
    """Start JupyterLab (replaces this process on POSIX, so signals reach the server)."""
    from ._extras import require_extra
    require_extra("jupyterlab", "lab", "sparke-lab lab (JupyterLab)")
    require_extra("ipywidgets", "lab", "the notebooks' widgets")
    argv = lab_argv(directory, port, token, no_browser, ip, extra)
    env = lab_env()
    sys.stdout.flush()
    if os.name == "posix":
        os.execve(argv[0], argv, env)
    return subprocess.call(argv, env=env)  # pragma: no cover (Windows)
