"""The sparke-lab command: scores of feature files in every supported format, the demo, errors."""
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import sparke_lab as sl
from sparke_lab.cli import main
from sparke_lab.io import load_features


@pytest.fixture
def feats(rng):
    return rng.normal(size=(40, 5)).astype(np.float32)


def write_all(tmp_path, X):
    paths = {}
    np.save(tmp_path / "f.npy", X)
    paths["npy"] = tmp_path / "f.npy"
    np.savez(tmp_path / "f.npz", features=X, other=X[:3])
    paths["npz"] = tmp_path / "f.npz"
    torch.save({"features": torch.from_numpy(X)}, tmp_path / "f.pt")
    paths["pt"] = tmp_path / "f.pt"
    save_file({"features": X}, str(tmp_path / "f.safetensors"))
    paths["safetensors"] = tmp_path / "f.safetensors"
    np.savetxt(tmp_path / "f.csv", X, delimiter=",")
    paths["csv"] = tmp_path / "f.csv"
    return paths


def test_load_features_every_format(tmp_path, feats):
    for fmt, p in write_all(tmp_path, feats).items():
        np.testing.assert_allclose(load_features(p), feats, rtol=1e-6, err_msg=fmt)
    np.save(tmp_path / "img.npy", np.zeros((3, 1, 4, 4)))
    assert load_features(tmp_path / "img.npy").shape == (3, 16)


def test_load_features_errors(tmp_path, feats):
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing.npy")
    np.savez(tmp_path / "two.npz", a=feats, b=feats)
    with pytest.raises(ValueError, match="--key"):
        load_features(tmp_path / "two.npz")
    with pytest.raises(KeyError, match="holds"):
        load_features(tmp_path / "two.npz", key="c")
    (tmp_path / "f.xyz").write_text("1")
    with pytest.raises(ValueError, match="unsupported"):
        load_features(tmp_path / "f.xyz")


def test_scores_command_json(tmp_path, feats, capsys):
    p = write_all(tmp_path, feats)["safetensors"]
    T = np.repeat(np.eye(4), 10, axis=0).astype(np.float32)
    np.save(tmp_path / "t.npy", T)
    assert main(["scores", str(p), "--sigma", "0.8", "--prompts", str(tmp_path / "t.npy"),
                 "--sigma-t", "0.3", "--orders", "1,2,inf", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["RKE (order 2)"] == pytest.approx(sl.rke_score(feats, sigma=0.8), rel=1e-9)
    assert out["Vendi (order 1)"] == pytest.approx(sl.vendi_score(feats, sigma=0.8), rel=1e-9)
    assert out["Cond-RKE"] == pytest.approx(sl.conditional_rke_score(feats, T, 0.8, 0.3), rel=1e-9)
    assert "order-inf score" in out


def test_scores_command_table_and_errors(tmp_path, feats, capsys):
    p = write_all(tmp_path, feats)["npy"]
    assert main(["scores", str(p), "--kernel", "cosine"]) == 0
    assert "RKE (order 2)" in capsys.readouterr().out
    assert main(["scores", str(p), "--sigma", "0"]) == 2
    assert "bandwidth" in capsys.readouterr().err
    bad = feats.copy()
    bad[3, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    assert main(["scores", str(tmp_path / "bad.npy")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main(["scores", str(tmp_path / "nope.npy")]) == 2


def test_mixture_job_writes_table_and_figure(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPARKE_LAB_FULL", raising=False)
    assert main(["mixture", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "10 equal modes" in out
    assert (tmp_path / "eigenspectrum.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "scores.json").read_text())
    for r in rows:
        assert r["RKE"] == pytest.approx(r["1/sum w^2"], rel=0.02)
        assert r["Vendi"] == pytest.approx(r["exp H(w)"], rel=0.03)
