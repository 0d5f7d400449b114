"""``segshield train``: the command's contract, argument validation, classify dispatch."""

from __future__ import annotations

import json

import pytest
import torch

from segshield.cli.main import main
from segshield.cli.train import parse_size
from segshield.models import SegmentationModel, load


def test_contract_unet_phantom_derm(tmp_path, capsys):
    out = tmp_path / "X"
    args = ["train", "--data", "phantom-derm", "--model", "unet", "--size", "64"]
    code = main(["-q", *args, "--epochs", "1", "-o", str(out), "--n", "8", "--device", "cpu"])
    assert code == 0
    assert (tmp_path / "X.safetensors").is_file() and (tmp_path / "X.json").is_file()
    model = load(out)
    assert isinstance(model, SegmentationModel)
    assert model.config["architecture"] == "unet"
    assert model.config["trained_on"] == "phantom-derm"
    assert model.config["input_size"] == [64, 64]
    assert model.num_classes == 1
    assert model(torch.rand(1, 3, 50, 70)).shape == (1, 1, 50, 70)
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_run"] == 1
    assert 0.0 <= summary["best_scores"]["lesion_dice"] <= 1.0


def test_fundus_phantom_gives_three_class_model_and_resume(tmp_path, capsys):
    out = tmp_path / "f"
    base = ["-q", "train", "--data", "phantom-fundus", "--model", "small:width=4", "--size", "32"]
    base += ["--n", "10", "-o", str(out), "--batch-size", "4", "--device", "cpu"]
    assert main([*base, "--epochs", "1"]) == 0
    model = load(out)
    assert model.num_classes == 3
    assert {"disc_dice", "cup_dice"} <= set(model.config["val_scores"])
    capsys.readouterr()
    assert main([*base, "--epochs", "2", "--resume", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 1
    state = json.loads((tmp_path / "f.state.json").read_text())
    assert state["epoch"] == 2


def test_bf16_channels_last_flags_reach_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "b"
    args = ["-q", "train", "--data", "phantom-derm", "--model", "small:width=2", "--size", "16"]
    args += ["--n", "8", "--epochs", "1", "-o", str(out), "--precision", "bf16"]
    assert main([*args, "--channels-last"]) == 0
    training = load(out).config["training"]
    assert training["precision"] == "bf16" and training["channels_last"] is True


def test_val_split_holds_out_a_fraction(tmp_path, capsys):
    out = tmp_path / "v"
    args = ["-q", "train", "--data", "phantom-derm", "--model", "small:width=2", "--size", "16"]
    args += ["--n", "10", "--val-split", "0.3", "--epochs", "1", "-o", str(out)]
    assert main(args) == 0
    state = json.loads((tmp_path / "v.state.json").read_text())
    assert state["history"][0]["val"]["nan_count"] >= 0
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "segformer"], "--model: expected one of 'unet'"),
        (["--size", "12x"], "--size: expected S or HxW"),
        (["--size", "4"], "--size"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--lr", "0"], "--lr"),
        (["--val-split", "1.5"], "--val-split"),
        (["--workers", "-1"], "--workers"),
        (["--n", "1"], "--n: expected at least 2"),
        (["--resume", "nowhere/run"], "--resume: .*not found"),
        (["--task", "classify", "--n", "5"], "--n: not supported with --task classify"),
        (["--task", "classify", "--precision", "bf16"], "--precision: not supported with"),
        (["--task", "classify", "--channels-last"], "--channels-last: not supported with"),
        (["--precision", "fp16"], "--precision: invalid choice"),
        (["--task", "classify", "--model", "unet"], "--model: expected one of 'cnn'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(tmp_path, capsys, extra, message):
    args = ["train", "--data", "phantom-derm", "--epochs", "1", "-o", str(tmp_path / "m")]
    with pytest.raises(SystemExit) as exc:
        main([*args, *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "segshield train: error:" in err
    import re

    assert re.search(message, err), err


def test_bad_data_specs(tmp_path, capsys):
    cases = [
        (["--data", "isic"], "needs a folder"),
        (["--data", f"isic:{tmp_path / 'absent'}"], "does not exist"),
        (["--data", "mnist"], "unknown data-set kind"),
        (["--data", f"isic:{tmp_path}", "--n", "0"], "--n: expected at least 2 phantoms or 1"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["train", *extra, "--epochs", "1", "-o", str(tmp_path / "m")])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_output_must_not_be_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "phantom-derm", "-o", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err


def test_parse_size():
    assert parse_size("128") == (128, 128)
    assert parse_size("192x256") == (192, 256)
    with pytest.raises(ValueError, match="8..4096"):
        parse_size("0x5")


def test_classify_dispatches_to_fit_classifier(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_fit(**kwargs):
        seen.update(kwargs)
        return {"auc": 0.5}

    import segshield.training.classify as training

    monkeypatch.setattr(training, "fit_classifier", fake_fit)
    # --model defaults to the cnn classifier with --task classify
    args = ["-q", "train", "--task", "classify", "--data", "phantom-fundus"]
    args += ["--size", "96", "--epochs", "3", "-o", str(tmp_path / "c.json"), "--seed", "4"]
    assert main([*args, "--batch-size", "5", "--lr", "0.01", "--device", "cpu"]) == 0
    assert seen == {
        "data": "phantom-fundus",
        "model": "cnn",
        "size": 96,
        "epochs": 3,
        "out": tmp_path / "c",
        "seed": 4,
        "batch_size": 5,
        "lr": 0.01,
        "device": "cpu",
    }
    assert json.loads(capsys.readouterr().out) == {"auc": 0.5}


@pytest.mark.parametrize(
    ("folder", "kind", "k", "region"),
    [
        ("isic2017", "isic", 1, "lesion"),
        ("origa", "origa", 3, "cup"),
        ("paddleseg_optic_disc", "paddleseg", 1, "disc"),
    ],
)
def test_train_on_real_data(shared_data, tmp_path, capsys, folder, kind, k, region):
    root = shared_data / folder
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    out = tmp_path / kind
    args = ["-q", "train", "--data", f"{kind}:{root}", "--model", "small:width=2", "--size", "32"]
    assert main([*args, "--n", "4", "--epochs", "1", "-o", str(out), "--batch-size", "2"]) == 0
    model = load(out)
    assert model.num_classes == k
    assert f"{region}_dice" in model.config["val_scores"]
    assert model.config["trained_on"] == f"{kind}:{root}"
