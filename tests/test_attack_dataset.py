"""``attack_dataset`` (the library behind ``segshield attack``) and the target specs."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshield.attacks import derangement, get_attack
from segshield.attacks.target_spec import check_attack_target, parse_target, resize_mask
from segshield.data import load_dataset
from segshield.defenses import get_defense
from segshield.evaluation.attack_dataset import AttackedSet, attack_dataset, write_stats
from segshield.models import build_model


def _folder(root: Path, n: int = 4, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"img{i}.png")
        m = np.zeros((size, size), np.uint8)
        m[2 + i : 9 + i, 3:10] = 255
        Image.fromarray(m).save(root / "masks" / f"img{i}.png")
    return root


@pytest.fixture()
def data(tmp_path):
    torch.manual_seed(0)
    ds = load_dataset(f"folder:{_folder(tmp_path / 'data')}", split="all")
    return build_model("small", width=4), ds


def test_untargeted_pgd_writes_images_and_stats(data, tmp_path):
    model, ds = data
    out = tmp_path / "out"
    done = attack_dataset(model, ds, get_attack("pgd:eps=4/255,steps=2"), out, target=None)
    assert isinstance(done, AttackedSet) and done.n_items == 4 and done.failed == []
    assert [r["name"] for r in done.rows] == [f"img{i}" for i in range(4)]
    assert all(r["linf"] <= 4 / 255 + 1e-6 and r["target_source"] is None for r in done.rows)
    assert done.success_rate == sum(r["success"] for r in done.rows) / 4
    for i in range(4):
        adv = np.asarray(Image.open(out / "adversarial" / f"img{i}.png")).astype(int)
        clean = np.asarray(Image.open(tmp_path / "data" / "images" / f"img{i}.png")).astype(int)
        assert np.abs(adv - clean).max() <= 4  # round-then-clip of <= 4 grey levels
    rows = list(csv.DictReader((out / "stats.csv").open()))
    assert [r["name"] for r in rows] == [r["name"] for r in done.rows]
    assert json.loads((out / "stats.json").read_text())[0]["target_iou"] is None


def test_other_gt_takes_the_derangement_and_defence_columns(data, tmp_path):
    model, ds = data
    done = attack_dataset(
        model, ds, get_attack("asma:steps=2,tau=1e-3"), tmp_path / "o", limit=3, batch_size=2,
        defense=get_defense("fr"), adaptive=True, seed=5,
    )  # fmt: skip
    partner = derangement(3, 5).tolist()
    assert [r["target_source"] for r in done.rows] == [ds.names[j] for j in partner]
    assert done.n_items == 3
    assert all(0 <= r["defended_gt_iou"] <= 1 for r in done.rows)
    assert all(not math.isnan(r["defended_target_iou"]) for r in done.rows)


def test_failing_batch_is_named_and_the_rest_run(data, tmp_path, caplog):
    model, ds = data
    with caplog.at_level(logging.ERROR):
        done = attack_dataset(
            model, ds, get_attack("fgsm"), tmp_path / "o", target="none", bits=16, batch_size=3
        )
    assert done.rows == [] and done.failed == ds.names[:4]
    assert "16 needs single-channel images" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attack": "segpgd", "target": "empty"}, "segpgd is untargeted"),
        ({"attack": "asma", "target": None}, "asma is targeted"),
        ({"adaptive": True}, "adaptive: needs a defense"),
        ({"limit": 1}, "other-gt needs at least 2 items, got 1"),
        ({"bits": 12}, "bits"),
        ({"batch_size": 0}, "batch_size"),
        ({"target": "shift:factor=2"}, "valid: dx, dy"),
    ],
)
def test_bad_arguments_raise_before_any_file(data, tmp_path, kwargs, message):
    model, ds = data
    attack = get_attack(kwargs.pop("attack", "asma:steps=1"))
    with pytest.raises(ValueError, match=message):
        attack_dataset(model, ds, attack, tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists()


def test_write_stats_unions_columns_and_writes_nan_as_null(tmp_path):
    write_stats(tmp_path / "s", [{"a": 1, "b": math.nan}, {"c": "x", "a": 2}])
    assert (tmp_path / "s" / "stats.csv").read_text() == "a,b,c\n1,nan,\n2,,x\n"
    assert json.loads((tmp_path / "s" / "stats.json").read_text()) == [
        {"a": 1, "b": None},
        {"c": "x", "a": 2},
    ]


def test_parse_target_kinds_parameters_and_errors():
    assert parse_target("other-gt") == ("other-gt", {})
    assert parse_target("scale:factor=2") == ("scale", {"factor": 2})
    assert parse_target("none") == ("none", {})
    with pytest.raises(ValueError, match=r"^--target: unknown kind 'sideways'; expected one of"):
        parse_target("sideways", "--target")
    with pytest.raises(ValueError, match="'none' takes no parameters"):
        parse_target("none:x=1")
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) dx for full; valid: cls"):
        parse_target("full:dx=1")


def test_check_attack_target():
    check_attack_target(get_attack("asma"), "empty")
    check_attack_target(get_attack("segpgd"), "none")
    check_attack_target(get_attack("pgd"), "none")  # PGD takes both
    with pytest.raises(ValueError, match="^--target: asma is targeted"):
        check_attack_target(get_attack("asma"), "none", "--target")


def test_resize_mask_is_nearest_and_keeps_ids():
    m = torch.tensor([[0, 1], [2, 255]])
    assert resize_mask(m, (2, 2)) is m
    big = resize_mask(m, (4, 4))
    assert big.dtype == torch.int64 and big.tolist()[3] == [2, 2, 255, 255]
    assert set(resize_mask(big, (3, 5)).unique().tolist()) <= {0, 1, 2, 255}
