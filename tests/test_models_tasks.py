"""One registry and one checkpoint format for both tasks; the deprecated classification names."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from segshield.models import (
    Classifier,
    SegmentationModel,
    build_model,
    list_models,
    load,
    model_task,
    save,
)
from segshield.training.loop import fit
from segshield.training.state import state_paths


def test_registry_entries_know_their_task():
    assert list_models("classify") == ["cnn"]
    assert "cnn" not in list_models() and "unet" in list_models("segment")
    assert model_task("cnn:width=2") == "classify" and model_task("small") == "segment"
    clf = build_model("cnn", width=2, depth=1)
    assert isinstance(clf, Classifier) and clf.num_classes == 2
    assert clf.config["class_names"] == ["class0", "class1"]
    seg = build_model("small", width=2)
    assert isinstance(seg, SegmentationModel) and seg.num_classes == 1
    assert seg.config["class_names"] == ["background", "foreground"] and "task" not in seg.config
    with pytest.raises(ValueError, match="model: expected one of 'cnn'"):
        build_model("unet", task="classify")
    with pytest.raises(ValueError, match="task: expected one of"):
        build_model("unet", task="detect")
    with pytest.raises(ValueError, match="task: expected one of"):
        list_models("detect")


def test_one_save_and_load_keyed_on_the_task(tmp_path):
    torch.manual_seed(0)
    clf = build_model("cnn:width=2,depth=1", in_channels=1).eval()
    save(clf, tmp_path / "clf")
    assert json.loads((tmp_path / "clf.json").read_text())["task"] == "classify"
    x = torch.rand(2, 1, 8, 8)
    for task in (None, "classify"):
        got = load(tmp_path / "clf", task=task)
        assert isinstance(got, Classifier) and torch.equal(got(x), clf(x))
    save(build_model("small", width=2), tmp_path / "seg")
    with pytest.raises(ValueError, match="a segmentation checkpoint, not a classifier one"):
        load(tmp_path / "seg", task="classify")
    with pytest.raises(ValueError, match="a classifier checkpoint, not a segmentation one"):
        load(tmp_path / "clf", task="segment")
    cfg = json.loads((tmp_path / "clf.json").read_text())
    (tmp_path / "clf.json").write_text(json.dumps({**cfg, "task": "detect"}))
    with pytest.raises(ValueError, match="unknown task 'detect'"):
        load(tmp_path / "clf")
    (tmp_path / "clf.json").write_text(json.dumps({**cfg, "architecture": "unet"}))
    with pytest.raises(ValueError, match="unknown architecture 'unet'; valid classifier"):
        load(tmp_path / "clf")


def test_checkpoint_without_task_loads_as_segmentation(tmp_path):
    """Checkpoints written before the task key existed are segmentation models."""
    save(build_model("unet:width=2,depth=1"), tmp_path / "old")
    cfg = json.loads((tmp_path / "old.json").read_text())
    assert "task" not in cfg
    assert isinstance(load(tmp_path / "old"), SegmentationModel)


def test_deprecated_classification_names_warn_and_work(tmp_path):
    import segshield.classification as old
    import segshield.classification.models as old_models
    import segshield.training as training

    with pytest.warns(DeprecationWarning, match="use segshield.models.build_model"):
        build_classifier = old.build_classifier
    with pytest.warns(DeprecationWarning, match="segshield.models.save"):
        save_classifier = old_models.save_classifier
    with pytest.warns(DeprecationWarning, match="segshield.data.labels.item_label"):
        assert old.item_label({"cdr": 0.7}, "glaucoma") == 1
    with pytest.warns(DeprecationWarning, match="segshield.utils.device.resolve_device"):
        assert training.resolve_device("cpu") == torch.device("cpu")
    m = build_classifier("cnn", width=2, depth=1)
    assert isinstance(m, Classifier)
    with pytest.raises(TypeError, match="expected a segshield Classifier"):
        save_classifier(build_model("small", width=2), tmp_path / "x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert old.list_classifiers() == ["cnn"]
        save_classifier(m, tmp_path / "c")
        assert isinstance(old.load_classifier(tmp_path / "c"), Classifier)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = old.nothing


class _Steps:
    """A known-answer task: the validation score is fixed per epoch."""

    score = "s"

    def __init__(self, scores):
        self.scores = scores
        self.epoch = 0

    def batches(self, epoch):
        self.epoch = epoch
        return [torch.ones(2, 3, 4, 4)] * 2

    def lr(self, epoch, step):
        return 0.1 * epoch

    def loss(self, model, batch):
        return model(batch).pow(2).mean(), 2

    def validate(self, model):
        return {"s": self.scores[self.epoch - 1], "n": 3}

    def best_config(self, epoch, scores):
        return {"val_scores": scores, "epoch": epoch}


def test_fit_keeps_the_best_epoch_earliest_on_ties(tmp_path):
    model = build_model("small", width=2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    steps = _Steps([0.2, 0.5, 0.5, 0.1])
    r = fit(
        model,
        steps,
        opt,
        epochs=4,
        out=tmp_path / "m",
        device=torch.device("cpu"),
        settings={},
        keep_state=False,
    )
    assert r["best_epoch"] == 2 and r["best_score"] == 0.5 and r["epochs_run"] == 4
    assert [h["lr"] for h in r["history"]] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert all(math.isfinite(h["loss"]) for h in r["history"])
    assert load(tmp_path / "m").config["epoch"] == 2
    assert not any(p.exists() for p in state_paths(tmp_path / "m"))


def test_classification_scorer_and_batch_pass():
    from segshield.attacks import get_attack
    from segshield.defenses import get_defense
    from segshield.evaluation.classify import attack_classifier_batch
    from segshield.evaluation.scoring import ClassificationScorer

    cols = ClassificationScorer.columns(
        "recovered", torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1])
    )
    assert cols == {"recovered_acc": [1.0, 0.0, 1.0]}
    torch.manual_seed(0)
    m = build_model("cnn", width=2, depth=1).eval()
    x, y = torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 1])
    defs = [get_defense("none"), get_defense("bitdepth:bits=3")]
    kw = {"adaptive": True, "png_roundtrip": True, "seed": 5}
    a = attack_classifier_batch(m, x, y, [get_attack("pgd:eps=0.03,steps=2")], defs, **kw)
    b = attack_classifier_batch(m, x, y, [get_attack("pgd:eps=0.03,steps=2")], defs, **kw)
    assert [j for _, j, _, _ in a] == [0, 1]  # adaptive: one attack per defence
    for (_, _, ra, pa), (_, _, rb, pb) in zip(a, b, strict=True):
        assert torch.equal(ra.adversarial, rb.adversarial) and pa.keys() == pb.keys()
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # the "none" defence recovers nothing: recovered = attacked
    assert torch.equal(a[0][3]["recovered"], a[0][3]["attacked"])
