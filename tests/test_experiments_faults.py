"""The comparison runner under bad input and faults: every case is refused before anything is
written, stops with a clear message, or is detected on resume and before evaluation."""
import json
import math

import numpy as np
import pytest
import torch

from sparke_lab import experiments as E
from sparke_lab.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------ refused before the first write
_NO_CUDA = not torch.cuda.is_available()

BAD_ARGS = [
    # (what, extra arguments, words the message must hold)
    ("negative cfg", ["--cfg", "-5"], "--cfg"),
    ("NaN cfg", ["--cfg", "nan"], "--cfg"),
    ("infinite cfg", ["--cfg", "inf"], "--cfg"),
    ("cfg below 1 (CFG silently off)", ["--cfg", "0.5"], "--cfg"),
    ("negative method scale", ["--methods", "none,sparke@-1"], "sparke@-1"),
    ("NaN method scale", ["--methods", "none,pg@nan"], "pg@nan"),
    ("missing model folder", ["--model", "./no/such/model"], "does not exist"),
    ("hub id not in the cache", ["--model", "nobody-xyz/no-such-model"], "cache"),
    ("unknown dtype", ["--dtype", "fp8"], "dtype"),
    ("half precision on the CPU", ["--dtype", "fp16", "--device", "cpu"], "CPU"),
    ("negative seed", ["--seed", "-1"], "--seed"),
    ("huge seed", ["--seed", str(2**70)], "--seed"),
    ("features: no such module", ["--features", "no_such_module_xyz:fn"], "no_such_module_xyz"),
    ("features: no such function", ["--features", "json:no_such_fn"], "no_such_fn"),
    ("features: not a spec", ["--features", "garbage"], "garbage"),
    ("features: not callable", ["--features", "math:pi"], "not a function"),
    ("unknown device", ["--device", "tpu9"], "tpu9"),
    ("CUDA without CUDA", ["--device", "cuda"], "CUDA"),
]


@pytest.mark.parametrize("what,extra,words", BAD_ARGS, ids=[b[0] for b in BAD_ARGS])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, capsys, what, extra, words):
    if "--device" in extra and "cuda" in extra and not _NO_CUDA:
        pytest.skip("this machine has CUDA")
    (tmp_path / "p.txt").write_text("an odd digit\na handwritten three\n")
    out = tmp_path / "run"
    args = ["compare", "--prompts", str(tmp_path / "p.txt"), "--methods", "none", "--per-prompt", "2",
            "--steps", "2", "--batch-size", "4", "--no-eval", "--no-progress", "--out", str(out)]
    # later options win in argparse: the bad value replaces the good default
    assert main(args + extra) == 2, what
    err = capsys.readouterr().err
    assert "error:" in err and words in err, err
    assert not out.exists(), f"{what}: {out} was written, so the corrected command would be refused"


def test_a_good_command_after_a_refused_one_runs(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("an odd digit\n")
    args = ["compare", "--prompts", str(tmp_path / "p.txt"), "--per-prompt", "2", "--steps", "2",
            "--batch-size", "2", "--no-eval", "--no-progress", "--out", str(tmp_path / "run")]
    assert main(args + ["--methods", "none,sparke@-1"]) == 2
    assert main(args + ["--methods", "none,sparke@0.1"]) == 0
    assert "samples and banks" in capsys.readouterr().out


# ------------------------------------------------------------ non-finite images
def _nan_in_second_image(real):
    def generate(*a, **k):
        out = np.array(real(*a, **k), dtype=np.float32)
        out[min(1, len(out) - 1)] = np.nan
        return out
    return generate


@pytest.mark.parametrize("case", ["cfg 1e38 (the model diverges)", "one NaN image in a round"])
def test_non_finite_images_stop_the_run_and_are_never_written(run_config, tmp_path, pipe, monkeypatch, case):
    import sparke_lab.guidance as G
    cfg = 1e38 if case.startswith("cfg") else 5.0
    if not case.startswith("cfg"):
        monkeypatch.setattr(G, "generate", _nan_in_second_image(G.generate))
    run = E.ComparisonRun(run_config(methods=["none"], steps=3, cfg=cfg), tmp_path / "r", pipe=pipe, progress=False)
    with pytest.raises(ValueError, match=r"NaN/Inf .*nothing of this round was committed"):
        run.generate_method("none")
    mdir = run.method_dir("none")
    assert not list(mdir.glob("*.png"))                      # no black PNG stands for a NaN image
    assert not (mdir / "manifest.json").exists()


# ------------------------------------------------------------ committed samples are checked
def _overwrite_with_another_sample(mdir):
    (mdir / "000000.png").write_bytes((mdir / "000001.png").read_bytes())


def _overwrite_with_a_new_image(mdir):
    from PIL import Image
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(mdir / "000002.png")


def _delete(mdir):
    (mdir / "000003.png").unlink()


def _truncate(mdir):
    p = mdir / "000004.png"
    p.write_bytes(p.read_bytes()[:20])


def _replace_the_bank(mdir):
    man = json.loads((mdir / "manifest.json").read_text())
    other = "bank_1.safetensors" if man["bank"] == "bank_0.safetensors" else "bank_0.safetensors"
    (mdir / man["bank"]).write_bytes((mdir / other).read_bytes())


TAMPER = [("overwritten by another sample", _overwrite_with_another_sample, "changed"),
          ("overwritten by a new image", _overwrite_with_a_new_image, "changed"),
          ("deleted", _delete, "missing"),
          ("truncated", _truncate, "changed")]


METHODS = ["none", "sparke@0.3"]


@pytest.fixture(scope="module")
def committed(run_config, tmp_path_factory, pipe):
    """A run folder whose two methods are finished (3 committed rounds each)."""
    root = tmp_path_factory.mktemp("committed")
    run = E.ComparisonRun(run_config(methods=METHODS, steps=3), root / "ref", pipe=pipe, progress=False)
    for m in METHODS:
        run.generate_method(m)
    return root / "ref"


@pytest.fixture
def resumed(committed, tmp_path, run_config, pipe):
    """A copy of the finished folder, opened again for a resume."""
    import shutil
    shutil.copytree(committed, tmp_path / "run")
    return E.ComparisonRun(run_config(methods=METHODS, steps=3), tmp_path / "run", pipe=pipe, progress=False)


@pytest.mark.parametrize("what,tamper,word", TAMPER, ids=[t[0] for t in TAMPER])
def test_changed_or_missing_samples_are_caught_on_resume_and_before_evaluation(resumed, what, tamper, word):
    tamper(resumed.method_dir("none"))
    with pytest.raises(ValueError, match=word):
        resumed.generate_method("none")                       # resume (nothing left to generate)
    with pytest.raises(ValueError, match=word):
        resumed.load_samples("none")                          # what evaluation reads


def test_a_replaced_bank_is_caught_on_resume(resumed):
    mdir = resumed.method_dir("sparke@0.3")
    man = json.loads((mdir / "manifest.json").read_text())
    assert len(man["rounds"]) == 3 and len(man["rounds"][0]["sha256"]) == 2
    _replace_the_bank(mdir)
    with pytest.raises(ValueError, match="bank was changed"):
        resumed.generate_method("sparke@0.3")


def test_unchanged_samples_resume_and_load(resumed):
    resumed.generate_method("none")
    images, _, _ = resumed.load_samples("none")
    assert images.shape == (6, 16, 16, 1) and math.isfinite(float(images.mean()))
