"""fit_classifier on a tiny phantom set: runs, reports, writes a loadable checkpoint."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from segshield.data.labels import dataset_labels
from segshield.models import load
from segshield.training import classifier_accuracy, fit_classifier

load_classifier = partial(load, task="classify")

ARGS = {
    "model": "cnn:width=2,depth=1",
    "size": 16,
    "epochs": 2,
    "seed": 0,
    "batch_size": 32,
    "lr": 1e-2,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "derm"
    return out, fit_classifier(data="phantom-derm", out=out, **ARGS)


def test_fit_classifier_writes_loadable_checkpoint(trained):
    out, result = trained
    assert result["checkpoint"] == [str(out) + ".safetensors", str(out) + ".json"]
    assert result["task"] == "malignancy"
    assert result["epochs"] == 2 and len(result["history"]) == 2
    assert 1 <= result["best_epoch"] <= 2
    assert sum(result["class_counts"]) == result["train_size"]
    model = load_classifier(out)
    cfg = json.loads((out.parent / "derm.json").read_text())
    assert cfg["label_task"] == "malignancy" and cfg["trained_on"] == "phantom-derm"
    assert cfg["input_size"] == [16, 16] and cfg["class_names"] == ["benign", "malignant"]
    # the reported validation accuracy is that of the saved weights (independent count)
    from segshield.data import load_dataset

    val = load_dataset("phantom-derm", size=16, split="val", seed=0)
    labels = dataset_labels(val, "malignancy")
    with torch.no_grad():
        pred = torch.cat([model(val[i]["image"][None]).argmax(1) for i in range(len(val))])
    assert result["val_accuracy"] == pytest.approx(float((pred == labels).double().mean()))
    assert cfg["val_scores"]["accuracy"] == pytest.approx(result["val_accuracy"])
    scores = classifier_accuracy(model, val, labels)
    assert scores["accuracy"] == pytest.approx(result["val_accuracy"])


def test_fit_classifier_is_deterministic_under_a_seed(trained, tmp_path):
    out, result = trained
    again = fit_classifier(data="phantom-derm", out=tmp_path / "again", **ARGS)
    assert again["history"] == result["history"]
    a, b = load_classifier(out), load_classifier(tmp_path / "again")
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        ({"model": "unet"}, ValueError, "model: expected a classifier, one of cnn"),
        ({"size": 4}, ValueError, "size"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"seed": -1}, ValueError, "seed"),
        ({"device": "tpu"}, ValueError, "device"),
        ({"data": "isic"}, ValueError, "isic needs a folder"),
    ],
)
def test_fit_classifier_rejects_bad_arguments(tmp_path, change, exc, match):
    kwargs = {"data": "phantom-derm", "out": tmp_path / "x", **ARGS, **change}
    with pytest.raises(exc, match=match):
        fit_classifier(**kwargs)
    assert not (tmp_path / "x.json").exists()


def test_fit_classifier_rejects_data_without_labels(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    import numpy as np

    from segshield.utils.imageio import write_png

    write_png(root / "images" / "a.png", np.zeros((16, 16, 3), np.uint8))
    write_png(root / "masks" / "a.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="expected a data set with image-level labels"):
        fit_classifier(data=f"folder:{root}", out=tmp_path / "x", **ARGS)
