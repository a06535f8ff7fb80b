"""Where the shipped models are read from and where training writes (issue 15)."""
from pathlib import Path

import pytest

import sparke_lab
from sparke_lab import models
from sparke_lab.cli import main
from sparke_lab.models._common import DATA_ENV, XDG_ENV, data_dir, train_dir

PACKAGE = Path(sparke_lab.__file__).resolve().parent

SHIPPED = ["toy2d/config.json", "toy2d/model.safetensors", "judge/config.json",
           "judge/judge.safetensors", "prompts/prompts.csv", "prompts/grammar.json",
           "digits-sd/model_index.json", "digits-sd/unet/diffusion_pytorch_model.safetensors",
           "digits-sd/vae/diffusion_pytorch_model.safetensors",
           "digits-sd/text_encoder/model.safetensors", "digits-sd/tokenizer/vocab.json",
           "digits-sd/tokenizer/merges.txt", "digits-sd/scheduler/scheduler_config.json"]


def test_shipped_data_is_package_data(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    shipped = models.shipped_data_dir()
    assert shipped.resolve() == PACKAGE / "data"
    assert data_dir() == shipped
    for rel in SHIPPED:
        assert (shipped / rel).is_file(), rel


def test_environment_variable_overrides_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "toy2d")):
        models.load_toy2d()
    assert models.shipped_data_dir().resolve() == PACKAGE / "data"  # unaffected


def test_user_data_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv(XDG_ENV, str(tmp_path / "xdg"))
    assert models.user_data_dir() == tmp_path / "xdg" / "sparke-lab"
    monkeypatch.delenv(XDG_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.user_data_dir() == tmp_path / "home" / ".local" / "share" / "sparke-lab"


def test_train_dir_never_defaults_to_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv(XDG_ENV, str(tmp_path / "xdg"))
    assert train_dir("judge") == tmp_path / "xdg" / "sparke-lab" / "judge"
    assert train_dir("judge", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    assert train_dir("judge") == tmp_path / "data" / "judge"
    monkeypatch.delenv(DATA_ENV)
    assert PACKAGE not in train_dir("toy2d").parents


def test_cli_train_writes_to_the_user_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv(XDG_ENV, str(tmp_path))
    shipped = (PACKAGE / "data" / "judge" / "judge.safetensors").read_bytes()
    assert main(["train", "judge", "--quick"]) == 0
    out = tmp_path / "sparke-lab" / "judge"
    assert (out / "judge.safetensors").is_file() and (out / "config.json").is_file()
    assert (PACKAGE / "data" / "judge" / "judge.safetensors").read_bytes() == shipped
    printed = capsys.readouterr().out
    assert f"load_digits_judge(path={str(out)!r})" in printed and f"{DATA_ENV}={out.parent}" in printed
    judge = models.load_digits_judge(path=out)  # the loader reads it when given the folder
    assert judge.predict(models.digits_real_images("test")[:4]).shape == (4,)
