"""Bad inputs and faults, one row per probe (issue 14, items 2.1 and 2.6-2.8).

Each row runs one probe and states what must happen: a CLI exit code with a fragment of the
message, a library exception type with a fragment, or a property of the value returned.
Every row failed on the code before the fix (a traceback, a bare or misleading message, or
an impossible value); ``python tests/test_bad_inputs.py`` prints what each probe does now.
"""
from __future__ import annotations

import errno
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import torch

import sparke_lab as sl
from sparke_lab.cli import main


@dataclass
class Outcome:
    exit_code: Optional[int] = None     # CLI probes
    raised: Optional[type] = None       # an exception that escaped (a traceback for the CLI)
    message: str = ""
    value: object = None                # library probes that return


@dataclass
class Probe:
    id: str
    item: str                            # the issue item it covers
    run: Callable[[Path, pytest.MonkeyPatch], Outcome]
    exit_code: Optional[int] = None      # expected CLI exit code ...
    raises: Optional[type] = None        # ... or expected exception type ...
    fragment: str = ""                   # ... with this in the message
    check: Optional[Callable[[object], bool]] = None   # ... or a property of the value
    needs_run: bool = False              # starts from a copy of a finished digits run in tmp/


def cli(*argv, capsys=None) -> Callable[[Path, pytest.MonkeyPatch], Outcome]:
    """A probe running ``sparke-lab argv``; ``{tmp}`` in an argument is the test folder."""
    def run(tmp: Path, mp) -> Outcome:
        args = [a.format(tmp=tmp) for a in argv]
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # a traceback: the probe fails
            return Outcome(raised=type(exc), message=f"{type(exc).__name__}: {exc}")
        return Outcome(exit_code=code)
    return run


def library(fn) -> Callable[[Path, pytest.MonkeyPatch], Outcome]:
    def run(tmp: Path, mp) -> Outcome:
        try:
            return Outcome(value=fn(tmp, mp))
        except Exception as exc:
            return Outcome(raised=type(exc), message=str(exc))
    return run


def with_setup(setup, runner):
    def run(tmp: Path, mp) -> Outcome:
        setup(tmp, mp)
        return runner(tmp, mp)
    return run


# ---------------------------------------------------------------------------- fixtures as files
RNG = np.random.default_rng(0)
X50 = RNG.normal(size=(50, 8)).astype(np.float32)


def write_npy(tmp, mp):
    np.save(tmp / "f.npy", X50)


def truncated(name, writer):
    def setup(tmp, mp):
        writer(tmp / name)
        data = (tmp / name).read_bytes()
        (tmp / name).write_bytes(data[: len(data) // 2])
    return setup


def save_npy(p):
    np.save(p, X50)


def save_npz(p):
    np.savez(p, features=X50)


def save_pt(p):
    torch.save({"features": torch.from_numpy(X50)}, p)


def save_st(p, dtype=torch.float32):
    from safetensors.torch import save_file
    save_file({"features": torch.from_numpy(X50).to(dtype)}, str(p))


def write_text(name, text):
    def setup(tmp, mp):
        (tmp / name).write_text(text)
    return setup


def write_bytes(name, data):
    def setup(tmp, mp):
        (tmp / name).write_bytes(data)
    return setup


def fail_writes(err, msg):
    """Every atomic write of the runner fails with ``err`` (a full disk, a read-only folder)."""
    def setup(tmp, mp):
        from sparke_lab import experiments

        def refuse(path, data):
            raise OSError(err, msg, str(path))
        mp.setattr(experiments, "_atomic_write_bytes", refuse)
    return setup


def no_cuda(tmp, mp):
    mp.setattr(torch.cuda, "is_available", lambda: False)


# a tiny finished run of the digits model (2 samples, 2 steps), copied per probe
PROMPTS = "prompt,cluster,valid_digits\nan odd digit,0,1 3 5 7 9\n"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


def compare_again(tmp):
    return ["compare", "--prompts", f"{tmp}/p.csv", "--methods", "none", "--per-prompt", "2",
            "--steps", "2", "--batch-size", "2", "--no-progress", "--device", "cpu", "--out", f"{tmp}/out"]


def damaged_run(edit):
    def setup(tmp, mp):
        edit(tmp / "out")
    return setup


def truncate_png(out: Path):
    png = sorted((out / "samples" / "none").glob("*.png"))[0]
    data = png.read_bytes()
    png.write_bytes(data[: len(data) // 2])


def truncate_json(rel):
    def edit(out: Path):
        p = out / rel
        p.write_text(p.read_text()[:20])
    return edit


def sketch_with_nan(tmp, mp):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    from sparke_lab.guidance import SketchBank
    b = SketchBank(sigma_image=0.8, sigma_text=0.3, n_features=16, seed=0)
    b.add(torch.randn(5, 6), torch.randn(5, 3))
    b.save(tmp / "bank.safetensors")
    with safe_open(str(tmp / "bank.safetensors"), framework="pt") as f:
        meta = f.metadata()
    t = load_file(str(tmp / "bank.safetensors"))
    t["sum"][3] = float("nan")
    save_file(t, str(tmp / "bank.safetensors"), metadata=meta)


def exact_refused_first(tmp, mp):
    import sparke_lab.scores as scores
    mp.setattr(scores, "MAX_EXACT_EIGEN_N", 40)

    def too_late(*a, **k):
        raise AssertionError("the O(n^2) exact RKE ran before the eigenvalue guard refused")
    mp.setattr(scores, "pairwise_kernel_power_sum", too_late)
    np.save(tmp / "f.npy", X50)


def prompt_clusters(text):
    def fn(tmp, mp):
        from sparke_lab.experiments import load_prompt_file
        (tmp / "p.csv").write_text(text)
        return [p.cluster for p in load_prompt_file(str(tmp / "p.csv"))]
    return fn


# ------------------------------------------------------------------------------- the scores
def rke_and_vendi(X, sigma):
    return sl.rke_score(X, sigma=sigma), sl.vendi_score(X, sigma=sigma), len(X)


def brute_rke(X, sigma):
    X = np.asarray(X, dtype=np.float64)
    d2 = (((X[:, None, :] - X[None, :, :]) / sigma) ** 2).sum(-1)
    return len(X) ** 2 / np.exp(-d2).sum()  # k^2 = exp(-d^2 / sigma^2)


def possible(rv, ref=None):
    rke, vendi, n = rv
    ok = 1.0 <= rke <= n and rke <= vendi * (1 + 1e-9)
    return ok and (ref is None or abs(rke / ref - 1) < 1e-6)


OFFSET = X50 + np.float32(1000.0)
TINY = np.float32(1e-3)


PROBES = [
    # 2.1 impossible scores
    Probe("rke-float32-offset-1000", "2.1", library(lambda t, m: rke_and_vendi(OFFSET, 1.0)),
          check=lambda v: possible(v, brute_rke(OFFSET, 1.0))),
    Probe("rke-sigma-0.001", "2.1", library(lambda t, m: rke_and_vendi(X50, 0.001)),
          check=lambda v: possible(v) and v[0] == 50.0),
    Probe("cli-sigma-1e-300", "2.1", with_setup(write_npy, cli("scores", "{tmp}/f.npy", "--sigma", "1e-300", "--json")),
          exit_code=0),
    Probe("cli-sigma-1e300", "2.1", with_setup(write_npy, cli("scores", "{tmp}/f.npy", "--sigma", "1e300", "--json")),
          exit_code=0),
    Probe("cli-sigma-1e-160", "2.1", with_setup(write_npy, cli("scores", "{tmp}/f.npy", "--sigma", "1e-160", "--json")),
          exit_code=0),
    Probe("cli-sigma-1e-320", "2.1", with_setup(write_npy, cli("scores", "{tmp}/f.npy", "--sigma", "1e-320")),
          exit_code=2, fragment="smallest normal float"),
    # 2.6 tracebacks
    Probe("empty-npy", "2.6", with_setup(write_bytes("e.npy", b""), cli("scores", "{tmp}/e.npy")),
          exit_code=2, fragment="e.npy is empty (0 bytes)"),
    Probe("truncated-npy", "2.6", with_setup(truncated("t.npy", save_npy), cli("scores", "{tmp}/t.npy")),
          exit_code=2, fragment="t.npy could not be read as a .npy file"),
    Probe("truncated-npz", "2.6", with_setup(truncated("t.npz", save_npz), cli("scores", "{tmp}/t.npz")),
          exit_code=2, fragment="t.npz could not be read as a .npz file"),
    Probe("truncated-pt", "2.6", with_setup(truncated("t.pt", save_pt), cli("scores", "{tmp}/t.pt")),
          exit_code=2, fragment="t.pt could not be read as a torch .pt file"),
    Probe("truncated-safetensors", "2.6", with_setup(truncated("t.safetensors", save_st), cli("scores", "{tmp}/t.safetensors")),
          exit_code=2, fragment="t.safetensors could not be read as a .safetensors file"),
    Probe("garbage-safetensors", "2.6", with_setup(write_bytes("g.safetensors", b"not a safetensors file at all"),
                                                   cli("scores", "{tmp}/g.safetensors")),
          exit_code=2, fragment="g.safetensors could not be read as a .safetensors file"),
    Probe("empty-csv", "2.6", with_setup(write_text("e.csv", ""), cli("scores", "{tmp}/e.csv")),
          exit_code=2, fragment="e.csv is empty (0 bytes)"),
    Probe("out-is-a-file", "2.6", with_setup(write_text("o", "x"), cli("compare", "--methods", "none", "--out", "{tmp}/o")),
          exit_code=2, fragment="is a file, not a folder"),
    Probe("out-read-only", "2.6", with_setup(fail_writes(errno.EROFS, "Read-only file system"),
                                             cli("compare", "--methods", "none", "--out", "{tmp}/o")),
          exit_code=2, fragment="read-only: choose another --out"),
    Probe("full-disk", "2.6", with_setup(fail_writes(errno.ENOSPC, "No space left on device"),
                                         cli("compare", "--methods", "none", "--out", "{tmp}/o")),
          exit_code=2, fragment="the disk is full"),
    Probe("truncated-png", "2.6", with_setup(damaged_run(truncate_png), lambda t, m: cli(*compare_again(t))(t, m)),
          exit_code=2, fragment="was changed after it was committed", needs_run=True),
    Probe("device-cuda-without-cuda", "2.6", with_setup(no_cuda, cli("compare", "--methods", "none", "--device", "cuda",
                                                                     "--out", "{tmp}/o")),
          exit_code=2, fragment="CUDA is not available"),
    Probe("features-module-missing", "2.6", cli("compare", "--methods", "none", "--features", "no_such_module_x:f",
                                                "--out", "{tmp}/o"),
          exit_code=2, fragment="cannot import module 'no_such_module_x'"),
    Probe("features-function-missing", "2.6", cli("compare", "--methods", "none", "--features", "math:no_such_fn",
                                                  "--out", "{tmp}/o"),
          exit_code=2, fragment="module 'math' has no function 'no_such_fn'"),
    # 2.7 misleading messages
    Probe("truncated-config-json", "2.7", with_setup(damaged_run(truncate_json("config.json")),
                                                      lambda t, m: cli(*compare_again(t))(t, m)),
          exit_code=2, fragment="config.json is damaged (not valid JSON", needs_run=True),
    Probe("truncated-manifest-json", "2.7", with_setup(damaged_run(truncate_json("samples/none/manifest.json")),
                                                        lambda t, m: cli(*compare_again(t))(t, m)),
          exit_code=2, fragment="manifest.json is damaged (not valid JSON", needs_run=True),
    Probe("text-named-npy", "2.7", with_setup(write_text("t.npy", "1,2,3\n4,5,6\n"), cli("scores", "{tmp}/t.npy")),
          exit_code=2, fragment="t.npy is not a NumPy .npy file (no .npy header; it looks like a text file)"),
    Probe("bf16-safetensors", "2.7", with_setup(lambda t, m: save_st(t / "b.safetensors", torch.bfloat16),
                                                cli("scores", "{tmp}/b.safetensors", "--json")),
          exit_code=0),
    Probe("csv-header-row", "2.7", with_setup(write_text("h.csv", "a,b,c\n1,2,3\n4,5,6\n0,1,1\n"),
                                              cli("scores", "{tmp}/h.csv", "--json")),
          exit_code=0),
    Probe("csv-ragged-row", "2.7", with_setup(write_text("r.csv", "1,2,3\n4,5,6\n7,8\n"), cli("scores", "{tmp}/r.csv")),
          exit_code=2, fragment="r.csv, line 3: 2 values, but line 1 has 3"),
    # 2.8 smaller
    Probe("vendi-order-400", "2.8", library(lambda t, m: (sl.vendi_score(X50, sigma=1.0, order=400),
                                                           sl.vendi_score(X50, sigma=1.0, order=math.inf))),
          check=lambda v: math.isfinite(v[0]) and v[1] <= v[0] <= v[1] * 1.01),
    Probe("vendi-order-1e6", "2.8", library(lambda t, m: (sl.vendi_score(X50, sigma=1.0, order=1e6),
                                                           sl.vendi_score(X50, sigma=1.0, order=math.inf))),
          check=lambda v: v[0] == pytest.approx(v[1], rel=1e-5)),
    Probe("sketch-bank-nan-sum", "2.8", with_setup(sketch_with_nan, library(
        lambda t, m: __import__("sparke_lab.guidance", fromlist=["SketchBank"]).SketchBank.load(t / "bank.safetensors"))),
        raises=ValueError, fragment="hold NaN or Inf"),
    Probe("exact-refused-before-rke", "2.8", with_setup(exact_refused_first, cli("scores", "{tmp}/f.npy")),
          exit_code=2, fragment="use --method rff"),
    Probe("rff-progress", "2.8", with_setup(write_npy, cli("scores", "{tmp}/f.npy", "--method", "rff", "--n-features",
                                                         "64", "--progress")),
          exit_code=0),
    Probe("prompt-csv-text-cluster", "2.8", library(prompt_clusters("prompt,cluster\na,0\nb,1\nc,odd\nd,odd\n")),
          check=lambda c: c == [0, 1, 2, 2]),
    Probe("prompt-csv-blank-cluster", "2.8", library(prompt_clusters("prompt,cluster\na,3\nb,\nc,1\nd,\n")),
          check=lambda c: c == [3, 4, 1, 5]),
]


@pytest.mark.parametrize("probe", PROBES, ids=[p.id for p in PROBES])
def test_probe(probe: Probe, tmp_path, monkeypatch, capsys, request):
    if probe.needs_run:
        shutil.copytree(request.getfixturevalue("finished_run"), tmp_path, dirs_exist_ok=True)
    got = probe.run(tmp_path, monkeypatch)
    out, err = capsys.readouterr()
    if probe.exit_code is not None:
        assert got.raised is None, f"{probe.id}: traceback instead of a message: {got.message}"
        assert got.exit_code == probe.exit_code, f"{probe.id}: exit {got.exit_code}; stderr: {err}"
        assert probe.fragment in (err if probe.exit_code else out), f"{probe.id}: {err or out}"
        if probe.exit_code:
            assert "Traceback" not in err
    elif probe.raises is not None:
        assert got.raised is probe.raises and probe.fragment in got.message, f"{probe.id}: {got}"
    else:
        assert got.raised is None, f"{probe.id}: raised {got.raised}: {got.message}"
        assert probe.check(got.value), f"{probe.id}: {got.value}"


# the values behind the exit-0 CLI rows
@pytest.mark.parametrize("sigma, rke", [("1e-300", 50.0), ("1e300", 1.0), ("1e-160", 50.0)])
def test_extreme_bandwidths_give_the_limits(tmp_path, capsys, sigma, rke):
    np.save(tmp_path / "f.npy", X50)
    assert main(["scores", str(tmp_path / "f.npy"), "--sigma", sigma, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # distinct points: K -> I as sigma -> 0 (every score n); K -> all ones as sigma -> inf (1)
    assert out["RKE (order 2)"] == rke
    assert out["Vendi (order 1)"] == pytest.approx(rke, rel=1e-12)
    assert out["order-inf score"] == pytest.approx(rke, rel=1e-12)


def test_bf16_and_header_csv_load_the_numbers(tmp_path):
    from sparke_lab.io import load_features
    save_st(tmp_path / "b.safetensors", torch.bfloat16)
    np.testing.assert_array_equal(load_features(tmp_path / "b.safetensors"),
                                  torch.from_numpy(X50).bfloat16().float().numpy())
    (tmp_path / "h.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(load_features(tmp_path / "h.csv"), [[1, 2, 3], [4, 5, 6]])


def test_rff_progress_is_drawn(tmp_path, capsys):
    np.save(tmp_path / "f.npy", X50)
    assert main(["scores", str(tmp_path / "f.npy"), "--method", "rff", "--n-features", "64", "--progress"]) == 0
    captured = capsys.readouterr()
    assert "RKE (rff)" in captured.err and "50/50" in captured.err
    assert "std. error" in captured.out


def make_run(base: Path) -> Path:
    """A finished digits run (2 samples, 2 steps, no evaluation) in ``base``."""
    (base / "p.csv").write_text(PROMPTS)
    assert main(["compare", "--prompts", str(base / "p.csv"), "--methods", "none", "--per-prompt", "2",
                 "--steps", "2", "--batch-size", "2", "--no-eval", "--no-progress", "--device", "cpu",
                 "--out", str(base / "out")]) == 0
    return base


if __name__ == "__main__":  # print what each probe does now (for the before/after table)
    import contextlib
    import io
    import tempfile
    with tempfile.TemporaryDirectory() as run_dir:
        run = make_run(Path(run_dir))
        for p in PROBES:
            with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
                tmp = Path(d)
                if p.needs_run:
                    shutil.copytree(run, tmp, dirs_exist_ok=True)
                err, out = io.StringIO(), io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                    got = p.run(tmp, mp)
                if got.raised is not None:
                    what = ("traceback " if p.exit_code is not None else "raises ") + got.message.splitlines()[0]
                elif got.exit_code is not None:
                    last = (err.getvalue().strip().splitlines() or [""])[-1]
                    what = f"exit {got.exit_code}: {last}" if got.exit_code else \
                        f"exit 0: {' '.join(out.getvalue().split())[:160]}"
                else:
                    what = f"returns {got.value}"
                print(f"{p.item}\t{p.id}\t{what[:300]}", flush=True)
