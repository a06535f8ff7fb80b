"""The comparison runner on the shipped digits model: outputs, resume after a crash, the report."""
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sparke_lab import experiments as E
from sparke_lab.cli import main
from sparke_lab.report import fmt


def test_prompt_files(tmp_path):
    (tmp_path / "p.txt").write_text("# comment\na cat\n\na dog\n")
    ps = E.load_prompt_file(str(tmp_path / "p.txt"))
    assert [p.prompt for p in ps] == ["a cat", "a dog"] and [p.cluster for p in ps] == [0, 1]
    (tmp_path / "p.csv").write_text("prompt,cluster,valid_digits\nan odd digit,odd,1 3 5\na one,one,1\nodd again,odd,1;3\n")
    ps = E.load_prompt_file(str(tmp_path / "p.csv"))
    assert [p.cluster for p in ps] == [0, 1, 0] and ps[2].valid == (1, 3)
    assert len(E.load_prompt_file("mini")) > 4
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="no prompts"):
        E.load_prompt_file(str(tmp_path / "empty.txt"))
    (tmp_path / "bad.csv").write_text("text\nhello\n")
    with pytest.raises(ValueError, match="'prompt' column"):
        E.load_prompt_file(str(tmp_path / "bad.csv"))
    (tmp_path / "bad2.csv").write_text("prompt,valid_digits\nodd,one three\n")
    with pytest.raises(ValueError, match="integers"):
        E.load_prompt_file(str(tmp_path / "bad2.csv"))
    with pytest.raises(FileNotFoundError):
        E.load_prompt_file(str(tmp_path / "missing.txt"))


def test_methods_parse():
    assert E.parse_methods("none, sparke@0.1 ,pg") == ["none", "sparke@0.1", "pg"]
    for bad in ("", "sparke,magic", "sparke@x", "pg,pg"):
        with pytest.raises(ValueError):
            E.parse_methods(bad)


def test_resume_after_crash_equals_uninterrupted_run(run_config, tmp_path, pipe, monkeypatch):
    full = E.ComparisonRun(run_config(methods=["sparke@0.3"]), tmp_path / "full", pipe=pipe, progress=False)
    full.generate_method("sparke@0.3")
    ref_images, _, ref_manifest = full.load_samples("sparke@0.3")

    import sparke_lab.guidance as G
    real_generate, calls = G.generate, {"n": 0}

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the second round
        return real_generate(*a, **k)
    monkeypatch.setattr(G, "generate", crashing)
    run = E.ComparisonRun(run_config(methods=["sparke@0.3"]), tmp_path / "crash", pipe=pipe, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run.generate_method("sparke@0.3")
    assert len(json.loads((tmp_path / "crash/samples/sparke_at_0.3/manifest.json").read_text())["rounds"]) == 1
    monkeypatch.setattr(G, "generate", real_generate)
    again = E.ComparisonRun(run_config(methods=["sparke@0.3"]), tmp_path / "crash", pipe=pipe, progress=False)
    again.generate_method("sparke@0.3")
    images, _, manifest = again.load_samples("sparke@0.3")
    assert images.shape == ref_images.shape == (6, 16, 16, 1) or images.shape == ref_images.shape
    np.testing.assert_array_equal(images, ref_images)  # nothing lost, nothing duplicated
    from sparke_lab.guidance import load_bank
    b1 = load_bank(tmp_path / "full/samples/sparke_at_0.3" / ref_manifest["bank"])
    b2 = load_bank(tmp_path / "crash/samples/sparke_at_0.3" / manifest["bank"])
    assert len(b1) == len(b2) == 6
    np.testing.assert_allclose(b1.features.numpy(), b2.features.numpy(), atol=1e-6)


def test_other_configuration_is_refused(run_config, tmp_path, pipe):
    E.ComparisonRun(run_config(), tmp_path / "run", pipe=pipe, progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        E.ComparisonRun(run_config(steps=5), tmp_path / "run", pipe=pipe, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a sparke-lab run folder"):
        E.ComparisonRun(run_config(), tmp_path / "other", pipe=pipe, progress=False)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_config_json_keeps_its_keys(run_config, tmp_path, pipe):
    """RunConfig holds PromptSpecs; config.json keeps the JSON it always had (old folders resume)."""
    specs = [E.PromptSpec("an odd digit", 0, (1, 3, 5, 7, 9)), E.PromptSpec("a handwritten three", 1, (3,))]
    E.ComparisonRun(run_config(prompts=specs), tmp_path / "run", pipe=pipe, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["prompts"] == [{"prompt": "an odd digit", "cluster": 0, "valid": [1, 3, 5, 7, 9]},
                                {"prompt": "a handwritten three", "cluster": 1, "valid": [3]}]
    assert set(saved) == {"model", "prompts", "methods", "per_prompt", "steps", "cfg", "seed",
                          "batch_size", "dtype", "features"}
    E.ComparisonRun(run_config(), tmp_path / "run", pipe=pipe, progress=False)  # dict prompts: the same run


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells, self.stack = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("meta", "img", "br"):  # void elements have no end tag
            self.stack.append(tag)
        if tag == "img":
            self.imgs.append(a)
        if tag == "td" and "data-key" in a:
            self.cells.append((a["data-key"], a["data-value"]))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()


def test_report_matches_metrics(run_config, tmp_path, pipe):
    run = E.ComparisonRun(run_config(), tmp_path / "r", pipe=pipe, progress=False)
    results = run.run()
    out = tmp_path / "r"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"none", "sparke@0.3"}
    assert (out / "metrics.csv").read_text().count("\n") == 3
    doc = (out / "report.html").read_text()
    assert doc.startswith("<!doctype html>")
    p = _Collect()
    p.feed(doc)
    p.close()
    assert p.stack == []  # every element closed
    assert len(p.imgs) >= 6
    for img in p.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert (out / img["data-file"]).is_file()
    rows = [metrics[m] for m in metrics]
    shown = {}
    for key, value in p.cells:
        shown.setdefault(key, []).append(value)
    for key, values in shown.items():
        assert values == [fmt(r.get(key)) for r in rows], key
    for r in rows:
        assert 0 <= r["prompt_fidelity"] <= 1 and r["cond_vendi_delta_lo"] <= r["cond_vendi_delta_hi"]
    assert rows[0]["cond_vendi_delta"] == rows[0]["cond_vendi_delta_lo"] == rows[0]["cond_vendi_delta_hi"] == 0
    assert "Δ" in doc
    # broad prompts: class-distribution metrics with intervals, the cluster table, rejections
    for r in rows:
        assert 0 <= r["broad_validity"] <= 1 and 0 <= r["rejected"] <= 1
        if r["broad_spread"] == r["broad_spread"]:
            assert 1 <= r["broad_spread"] <= 5
        assert "broad_spread_delta" in r
    assert 'id="clusters"' in doc and "Rejected samples" in doc


def test_compare_command_errors(tmp_path, capsys):
    assert main(["compare", "--prompts", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["compare", "--methods", "none,magic", "--out", str(tmp_path / "o")]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["compare", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"),
                 "--methods", "none", "--per-prompt", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_old_manifest_format_is_refused_clearly(run_config, tmp_path, pipe):
    run = E.ComparisonRun(run_config(methods=["none"]), tmp_path / "old", pipe=pipe, progress=False)
    mdir = run.method_dir("none")
    mdir.mkdir(parents=True)
    (mdir / "manifest.json").write_text(json.dumps({"rounds": [{"file": "round_00000.npz", "n": 2}]}))
    with pytest.raises(ValueError, match="older sparke-lab"):
        run.generate_method("none")


def test_prompt_file_class_weights(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("prompt,cluster,valid_digits,class_weights\nan odd digit,10,1 3,0.75 0.25\na one,1,1,\n")
    specs = E.load_prompt_file(str(f))
    assert specs[0].weights == (0.75, 0.25) and specs[1].weights == ()
    f.write_text("prompt,cluster,valid_digits,class_weights\nan odd digit,10,1 3,0.5\n")
    with pytest.raises(ValueError, match="one per valid digit"):
        E.load_prompt_file(str(f))
    f.write_text("prompt,cluster,valid_digits,class_weights\nan odd digit,10,1 3,a b\n")
    with pytest.raises(ValueError, match="must be numbers"):
        E.load_prompt_file(str(f))
    assert all(abs(sum(s.weights) - 1) < 1e-9 for s in E.load_prompt_file("broad"))
