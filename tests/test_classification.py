"""Classifiers: labels, model and checkpoint, and the clean/attacked/defended evaluation."""

from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch
from torch import nn

from segshield.attacks.cw import CarliniWagnerL2
from segshield.data.labels import CLASS_NAMES, dataset_labels, item_label, task_for_kind
from segshield.defenses import Defense
from segshield.evaluation import evaluate_classifier
from segshield.models import Classifier, build_model, list_models, load, save

# the new names of the deprecated segshield.classification functions
build_classifier = partial(build_model, task="classify")
list_classifiers = partial(list_models, "classify")
load_classifier = partial(load, task="classify")
save_classifier = save

# ---------------------------------------------------------------- labels


def _fundus_mask(cdr_rows: int, disc_rows: int = 20) -> torch.Tensor:
    m = torch.zeros(32, 32, dtype=torch.long)
    m[4 : 4 + disc_rows, 4:28] = 1
    m[4 : 4 + cdr_rows, 12:20] = 2
    return m


def test_glaucoma_label_from_cdr_threshold_inclusive():
    assert item_label({"cdr": 0.6}, "glaucoma") == 1
    assert item_label({"cdr": 0.59}, "glaucoma") == 0
    assert item_label({"cdr": 0.59}, "glaucoma", threshold=0.5) == 1


def test_glaucoma_label_from_mask_when_no_cdr():
    assert item_label({"mask": _fundus_mask(12)}, "glaucoma") == 1  # 12/20
    assert item_label({"mask": _fundus_mask(11)}, "glaucoma") == 0  # 11/20
    # the item's cdr wins over the mask
    assert item_label({"cdr": 0.2, "mask": _fundus_mask(12)}, "glaucoma") == 0


def test_label_errors_name_the_item():
    with pytest.raises(ValueError, match="s1: the ground-truth mask has no optic disc"):
        item_label({"name": "s1", "mask": torch.zeros(8, 8, dtype=torch.long)}, "glaucoma")
    with pytest.raises(ValueError, match="s2: no 'malignant' label"):
        item_label({"name": "s2", "mask": torch.zeros(8, 8, dtype=torch.long)}, "malignancy")
    with pytest.raises(ValueError, match="s3: expected a 'cdr' value or a fundus 'mask'"):
        item_label({"name": "s3"}, "glaucoma")
    with pytest.raises(ValueError, match="task: expected one of"):
        item_label({"cdr": 0.5}, "melanoma")
    with pytest.raises(ValueError, match="threshold"):
        item_label({"cdr": 0.5}, "glaucoma", threshold=1.5)


def test_task_for_kind_and_dataset_labels():
    assert task_for_kind("phantom-fundus") == "glaucoma"
    assert task_for_kind("phantom-derm") == "malignancy"
    with pytest.raises(ValueError, match="got kind 'isic'"):
        task_for_kind("isic")
    items = [{"malignant": 1}, {"malignant": 0}, {"malignant": True}]
    labels = dataset_labels(items, "malignancy")
    assert labels.dtype == torch.long and labels.tolist() == [1, 0, 1]


def test_phantom_labels_follow_the_data():
    from segshield.data import load_dataset

    ds = load_dataset("phantom-fundus", size=32, split="all", n=12)
    labels = dataset_labels(ds, "glaucoma")
    assert labels.tolist() == [int(ds[i]["cdr"] >= 0.6) for i in range(len(ds))]
    derm = load_dataset("phantom-derm", size=32, split="all", n=6)
    assert dataset_labels(derm, "malignancy").tolist() == [
        int(derm[i]["malignant"]) for i in range(6)
    ]


# ---------------------------------------------------------------- models


def test_build_classifier_shapes_any_size_and_registry():
    assert list_classifiers() == ["cnn"]
    m = build_classifier("cnn:width=4,depth=2", in_channels=1).eval()
    assert m(torch.rand(2, 1, 20, 36)).shape == (2, 2)
    assert m.config["architecture"] == "cnn"
    assert m.config["arch_kwargs"] == {"width": 4, "depth": 2}
    assert m.config["task"] == "classify"


def test_classifier_owns_normalisation():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        lin[1].weight.copy_(torch.tensor([[1.0, 1.0]]))
    m = Classifier(lin, num_classes=1, in_channels=2, mean=[0.5, 0.0], std=[0.5, 2.0])
    x = torch.tensor([[[[1.0]], [[1.0]]]])  # (1, 2, 1, 1)
    assert m(x).item() == pytest.approx((1 - 0.5) / 0.5 + (1 - 0.0) / 2.0)


def test_build_classifier_errors():
    with pytest.raises(ValueError, match="model: expected one of 'cnn'"):
        build_classifier("resnet")
    with pytest.raises(TypeError, match="unknown setting.*valid settings: width, depth"):
        build_classifier("cnn", blocks=2)
    with pytest.raises(ValueError, match="class_names: expected 2 names"):
        build_classifier("cnn", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="depth"):
        build_classifier("cnn", depth=9)
    with pytest.raises(ValueError, match="std: expected values > 0"):
        build_classifier("cnn", std=0.0)
    with pytest.raises(TypeError, match="net"):
        Classifier("net", num_classes=2, in_channels=3)
    m = build_classifier("cnn", width=2, depth=1)
    with pytest.raises(ValueError, match="images: expected 3 channel"):
        m(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="model output: expected logits"):
        Classifier(nn.Identity(), num_classes=2, in_channels=3)(torch.rand(1, 3, 4, 4))


def test_classifier_config_marks_the_task_whatever_the_extra_config_says():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    m = Classifier(net, num_classes=2, in_channels=3, config={"task": "segment", "seed": 4})
    assert m.config["task"] == "classify" and m.config["seed"] == 4
    assert m.config["class_names"] == ["class0", "class1"] and m.config["mean"] == [0.5] * 3


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = build_classifier(
        "cnn:width=3,depth=2", in_channels=3, class_names=list(CLASS_NAMES["glaucoma"])
    )
    m.config["label_task"] = "glaucoma"
    with torch.no_grad():
        m(torch.rand(4, 3, 16, 16))  # move the batch-norm statistics away from defaults
    m.eval()
    paths = save_classifier(m, tmp_path / "clf.safetensors")
    assert [p.name for p in paths] == ["clf.safetensors", "clf.json"]
    cfg = json.loads(paths[1].read_text())
    assert cfg["task"] == "classify" and cfg["label_task"] == "glaucoma"
    x = torch.rand(2, 3, 16, 16)
    for name in ("clf", "clf.json", "clf.safetensors"):
        loaded = load_classifier(tmp_path / name)
        assert not loaded.training
        torch.testing.assert_close(loaded(x), m(x))
        assert loaded.config["class_names"] == ["normal", "glaucoma"]


def test_checkpoint_errors(tmp_path):
    import segshield.classification as old

    with pytest.deprecated_call(match="segshield.models.save"):
        old_save_classifier = old.save_classifier  # its own type check, kept with the alias
    with pytest.raises(TypeError, match="expected a segshield Classifier"):
        old_save_classifier(nn.Linear(2, 2), tmp_path / "x")
    custom = Classifier(nn.Sequential(nn.Flatten(), nn.LazyLinear(2)), num_classes=2, in_channels=3)
    with pytest.raises(ValueError, match="cannot save architecture 'custom'"):
        save_classifier(custom, tmp_path / "x")
    with pytest.raises(ValueError, match="refusing to load a .pt file"):
        load_classifier(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint config not found"):
        load_classifier(tmp_path / "missing")

    from segshield.models import build_model, save

    save(build_model("small", width=4), tmp_path / "seg")
    with pytest.raises(ValueError, match="a segmentation checkpoint, not a classifier"):
        load_classifier(tmp_path / "seg")

    save_classifier(build_classifier("cnn", width=2, depth=1), tmp_path / "c")
    (tmp_path / "c.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint weights not found"):
        load_classifier(tmp_path / "c")
    save_classifier(build_classifier("cnn", width=2, depth=1), tmp_path / "c")
    cfg = json.loads((tmp_path / "c.json").read_text())
    cfg["arch_kwargs"]["width"] = 3
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="weights do not match"):
        load_classifier(tmp_path / "c")
    (tmp_path / "c.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_classifier(tmp_path / "c")


# ---------------------------------------------------------------- evaluation


class _Brightness(nn.Module):
    """Known answer: class 1 when the image mean exceeds 0.5 (logit 20 * (mean - 0.5))."""

    def forward(self, x):
        z = 20 * (x.mean(dim=(1, 2, 3)) - 0.5)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def _bright_items(n: int = 4):
    return [
        {
            "image": torch.full((1, 8, 8), 0.3 if i % 2 == 0 else 0.7),
            "name": f"s{i}",
            "malignant": i % 2,
        }
        for i in range(n)
    ]


class _Spy(Defense):
    """Identity defence that records what it sees."""

    name = "spy"
    gradients = ("exact",)

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def transform(self, x):
        self.seen.append(x.detach().clone())
        return x

    def spec_params(self):
        return {}


def test_evaluate_rows_known_answer():
    model = _Brightness()
    items = _bright_items()
    rows = evaluate_classifier(
        model,
        items,
        ["fgsm:eps=8/255", "fgsm:eps=0.25"],
        ["none", "gaussian:sigma=1"],
        batch_size=3,
        task="malignancy",
    )
    assert len(rows) == 4 * 2 * 2
    assert len({(r["sample"], r["attack"], r["defense"]) for r in rows}) == 16
    for r in rows:
        assert r["label"] == int(r["sample"][1:]) % 2
        assert r["clean_correct"] and r["defended_clean_correct"]
        small = "0.25" not in r["attack"]
        # 8/255 cannot move a mean 0.2 away from 0.5; 0.25 flips every image
        assert r["attacked_correct"] is small
        assert r["defended_correct"] is small  # blurring a constant image changes nothing
        assert r["attack_success"] is (not small)
        assert r["linf"] == pytest.approx(8 / 255 if small else 0.25, abs=1e-6)
        assert r["seed"] == 0 and r["task"] == "malignancy" and r["adaptive"] is False
        assert json.loads(r["config"])["png_roundtrip"] is True


def test_evaluate_defence_recovers_and_png_roundtrip():
    model = _Brightness()
    items = _bright_items(2)
    spy = _Spy()
    rows = evaluate_classifier(model, items, ["fgsm:eps=0.102"], [spy], task="malignancy")
    # inputs of the spy: clean batch, then the adversarial batch on the 8-bit grid
    adv_seen = spy.seen[1] * 255
    torch.testing.assert_close(adv_seen, adv_seen.round(), rtol=0, atol=1e-4)
    assert not torch.allclose(spy.seen[1], torch.stack([it["image"] for it in items]))
    spy2 = _Spy()
    evaluate_classifier(
        model, items, ["fgsm:eps=0.102"], [spy2], task="malignancy", png_roundtrip=False
    )
    off_grid = spy2.seen[1] * 255
    assert (off_grid - off_grid.round()).abs().max() > 0.1
    assert [r["defense"] for r in rows] == ["spy", "spy"]


def test_evaluate_adaptive_attacks_through_each_defence():
    model = _Brightness()
    items = _bright_items(2)
    spy = _Spy()
    rows = evaluate_classifier(
        model, items, ["pgd:eps=0.05,steps=2"], ["none", spy], adaptive=True, task="malignancy"
    )
    assert len(rows) == 2 * 2
    assert all(r["adaptive"] for r in rows)
    # the attack ran through the spy: clean pass + 1 clean forward + 2 steps + final + defended
    assert len(spy.seen) > 3


def test_evaluate_deterministic_and_cw_object():
    torch.manual_seed(0)
    model = build_classifier("cnn", width=2, depth=1)
    items = [
        {"image": torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i)), "cdr": c}
        for i, c in enumerate((0.3, 0.7, 0.65))
    ]
    atks = ["pgd:eps=0.03,steps=2", CarliniWagnerL2(steps=5, search_steps=2)]
    a = evaluate_classifier(
        model, items, atks, ["none", "bitdepth:bits=4"], seed=3, task="glaucoma"
    )
    b = evaluate_classifier(
        model, items, atks, ["none", "bitdepth:bits=4"], seed=3, task="glaucoma"
    )
    assert a == b
    assert [r["label"] for r in a[:3]] == [0, 1, 1]
    assert any(r["attack"].startswith("cw:") for r in a)
    assert all(math.isfinite(r["l2"]) for r in a)


def test_evaluate_uses_model_label_task_and_dataset_kind():
    from segshield.data import load_dataset

    ds = load_dataset("phantom-derm", size=16, split="all", n=3)
    model = build_classifier("cnn", width=2, depth=1)
    rows = evaluate_classifier(model, ds, ["fgsm"], ["none"])
    assert {r["task"] for r in rows} == {"malignancy"} and rows[0]["dataset"] == "phantom-derm"
    model.config["label_task"] = "glaucoma"
    with pytest.raises(ValueError, match="predicts 'glaucoma' but data set kind 'phantom-derm'"):
        evaluate_classifier(model, ds, ["fgsm"], ["none"])


def test_evaluate_errors():
    model = _Brightness()
    items = _bright_items(2)
    kw = {"task": "malignancy"}
    with pytest.raises(ValueError, match="asma attacks segmentation models only"):
        evaluate_classifier(model, items, ["asma"], ["none"], **kw)
    with pytest.raises(ValueError, match="attacks: expected at least one"):
        evaluate_classifier(model, items, [], ["none"], **kw)
    with pytest.raises(ValueError, match="defenses: expected at least one"):
        evaluate_classifier(model, items, ["fgsm"], [], **kw)
    with pytest.raises(ValueError, match="dataset: expected at least one item"):
        evaluate_classifier(model, [], ["fgsm"], ["none"], **kw)
    with pytest.raises(TypeError, match="attacks: expected attack specs"):
        evaluate_classifier(model, items, [3], ["none"], **kw)
    with pytest.raises(TypeError, match="defenses: expected defence specs"):
        evaluate_classifier(model, items, ["fgsm"], [nn.Identity()], **kw)
    with pytest.raises(ValueError, match="task: expected one of"):
        evaluate_classifier(model, items, ["fgsm"], ["none"], task="x")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_classifier(model, items, ["fgsm"], ["none"], batch_size=0, **kw)
    with pytest.raises(TypeError, match="adaptive"):
        evaluate_classifier(model, items, ["fgsm"], ["none"], adaptive="yes", **kw)
    with pytest.raises(ValueError, match="got kind 'custom'"):
        evaluate_classifier(model, items, ["fgsm"], ["none"])


def test_evaluate_on_device(device):
    model = build_classifier("cnn", width=2, depth=1, in_channels=1).to(device)
    rows = evaluate_classifier(model, _bright_items(2), ["fgsm"], ["none"], task="malignancy")
    assert len(rows) == 2 and all(r["linf"] <= 8 / 255 + 1e-6 for r in rows)
