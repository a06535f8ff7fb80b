"""`sparke-lab lab` builds the JupyterLab command line that `make lab` and the browser tests use."""
import os
import sys

import pytest

from sparke_lab import lab
from sparke_lab.cli import build_parser


def test_lab_argv_port_token_and_no_browser(tmp_path):
    argv = lab.lab_argv(tmp_path, port=8899, token="secret", no_browser=True,
                        extra=["--LabApp.expose_app_in_browser=True"])
    assert argv[:3] == [sys.executable, "-m", "jupyterlab"]
    for arg in (f"--ServerApp.root_dir={tmp_path.resolve()}", "--ServerApp.ip=127.0.0.1",
                "--ServerApp.port=8899", "--ServerApp.port_retries=0",
                "--IdentityProvider.token=secret", "--ServerApp.open_browser=False",
                "--LabApp.expose_app_in_browser=True"):
        assert arg in argv
    assert ("--ServerApp.allow_root=True" in argv) == (os.geteuid() == 0)
    plain = lab.lab_argv(tmp_path)
    assert not any(a.startswith(("--ServerApp.port=", "--IdentityProvider.token", "--ServerApp.open_browser"))
                   for a in plain)


def test_lab_refuses_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        lab.lab_argv(tmp_path / "missing")
    with pytest.raises(ValueError, match="--port"):
        lab.lab_argv(tmp_path, port=70000)


def test_lab_env_draws_inline():
    env = lab.lab_env({"MPLBACKEND": "Agg", "HOME": "/x"})
    assert "MPLBACKEND" not in env and env["HOME"] == "/x"


def test_cli_parses_the_lab_options():
    args = build_parser().parse_args(["lab", "nb", "--port", "8899", "--token", "t", "--no-browser",
                                      "--jupyter-arg=--LabApp.expose_app_in_browser=True"])
    assert (args.directory, args.port, args.token, args.no_browser) == ("nb", 8899, "t", True)
    assert args.jupyter_arg == ["--LabApp.expose_app_in_browser=True"]


def test_default_notebook_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lab.default_notebook_dir() == tmp_path
    (tmp_path / "notebooks").mkdir()
    assert lab.default_notebook_dir() == tmp_path / "notebooks"
