"""``segshield attack``: outputs, argument checks before any work, bad files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshield.cli.main import main

models = pytest.importorskip("segshield.models")
pytest.importorskip("segshield.data")


def _folder(root: Path, n: int = 4, size: int = 16, grey: bool = False) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        shape = (size, size) if grey else (size, size, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
            root / "images" / f"img{i}.png"
        )
        m = np.zeros((size, size), np.uint8)
        m[2 + i : 9 + i, 3:10] = 255
        Image.fromarray(m).save(root / "masks" / f"img{i}.png")
    return root


@pytest.fixture()
def setup(tmp_path):
    torch.manual_seed(0)
    data = _folder(tmp_path / "data")
    models.save(models.build_model("small", width=4), tmp_path / "m")
    return tmp_path, data


def _run(tmp, data, *extra, out="out"):
    return main(
        [
            "-q",
            "attack",
            "--model",
            str(tmp / "m"),
            "--data",
            f"folder:{data}",
            "--split",
            "all",
            "-o",
            str(tmp / out),
            *extra,
        ]
    )


def test_pgd_writes_images_stats_and_manifest(setup):
    tmp, data = setup
    rc = _run(tmp, data, "--attack", "pgd:eps=4/255,steps=2", "--target", "none")
    assert rc == 0
    out = tmp / "out"
    rows = list(csv.DictReader((out / "stats.csv").open()))
    assert sorted(r["name"] for r in rows) == [f"img{i}" for i in range(4)]
    for r in rows:
        assert float(r["linf"]) <= 4 / 255 + 1e-6
        assert r["steps"] == "2"
        clean = np.asarray(Image.open(data / "images" / f"{r['name']}.png")).astype(int)
        adv = np.asarray(Image.open(out / "adversarial" / f"{r['name']}.png"))
        assert adv.dtype == np.uint8 and adv.shape == clean.shape
        # round-then-clip of a perturbation of at most 4 grey levels
        assert np.abs(adv.astype(int) - clean).max() <= 4
    js = json.loads((out / "stats.json").read_text())
    assert len(js) == 4 and js[0]["target_iou"] is None  # NaN -> null in JSON
    man = json.loads((out / "manifest.json").read_text())
    assert man["attack"].startswith("pgd:") and man["n_failed"] == 0
    assert man["seed"] == 0 and man["attack_config"]["seed"] == 0


def test_asma_other_gt_with_adaptive_defense(setup):
    pytest.importorskip("segshield.defenses")
    tmp, data = setup
    rc = _run(
        tmp,
        data,
        "--attack",
        "asma:steps=3,tau=1e-3",
        "--defense",
        "fr:pd=30,ac=5,gd=60",
        "--adaptive",
        "bpda",
        "--batch-size",
        "3",
    )
    assert rc == 0
    rows = list(csv.DictReader((tmp / "out" / "stats.csv").open()))
    assert all(r["target_source"] != r["name"] for r in rows)
    assert {r["target_source"] for r in rows} == {r["name"] for r in rows}
    assert "defended_gt_iou" in rows[0]
    assert json.loads((tmp / "out" / "manifest.json").read_text())["adaptive"] == "bpda"


def test_sixteen_bit_grey(tmp_path):
    data = _folder(tmp_path / "g", grey=True)
    models.save(models.build_model("small", width=4, in_channels=1), tmp_path / "m")
    rc = _run(tmp_path, data, "--attack", "fgsm:eps=0.01", "--target", "none", "--bits", "16")
    assert rc == 0
    im = np.asarray(Image.open(tmp_path / "out" / "adversarial" / "img0.png"))
    assert im.dtype in (np.uint16, np.int32) and im.max() > 255


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "nope"], "valid attacks"),
        (["--attack", "asma:foo=1"], "valid parameters"),
        (["--adaptive", "bpda"], "--adaptive: needs --defense"),
        (["--target", "sideways"], "--target: unknown kind"),
        (["--attack", "segpgd"], "untargeted"),
        (["--attack", "asma", "--target", "none"], "targeted"),
        (["--defense", "fr:zz=1"], "--defense"),
        (["--eot", "0"], "--eot"),
        (["--seed", "-1"], "--seed"),
        (["--batch-size", "0"], "--batch-size"),
        (["--limit", "1"], "at least 2 images"),
        (["--target", "shift:factor=2"], "valid: dx, dy"),
        (["--device", "cuda:9" if torch.cuda.is_available() else "cuda"], "--device"),
    ],
)
def test_arguments_checked_before_work(setup, capsys, args, message):
    tmp, data = setup
    with pytest.raises(SystemExit) as exc:
        _run(tmp, data, *args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp / "out").exists()


def test_missing_checkpoint_and_output_inside_data(setup, capsys):
    tmp, data = setup
    with pytest.raises(SystemExit):
        main(["attack", "--model", str(tmp / "nope"), "--data", f"folder:{data}", "-o", "x"])
    assert "nope.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(tmp, data, out=str(data / "adv"))
    assert "inside the input data folder" in capsys.readouterr().err


def test_bad_file_is_named_and_run_continues(setup, caplog):
    tmp, data = setup
    (data / "images" / "img1.png").write_bytes(b"not a png")
    rc = _run(tmp, data, "--attack", "fgsm", "--target", "none", "--batch-size", "1")
    rows = list(csv.DictReader((tmp / "out" / "stats.csv").open()))
    man = json.loads((tmp / "out" / "manifest.json").read_text())
    assert rc == 1
    assert "img1" in caplog.text and any("img1" in f for f in man["failed"])
    assert sorted(r["name"] for r in rows) == ["img0", "img2", "img3"]


def test_item_failing_at_read_time_is_named(setup, caplog, monkeypatch):
    from segshield.data.dataset import SegDataset

    tmp, data = setup
    original = SegDataset.__getitem__

    def flaky(self, index):
        if self.names[index] == "img2":
            raise ValueError("img2.png: cannot read image (truncated)")
        return original(self, index)

    monkeypatch.setattr(SegDataset, "__getitem__", flaky)
    rc = _run(tmp, data, "--attack", "fgsm", "--target", "none", "--batch-size", "4")
    rows = list(csv.DictReader((tmp / "out" / "stats.csv").open()))
    assert rc == 1 and "img2" in caplog.text
    assert sorted(r["name"] for r in rows) == ["img0", "img1", "img3"]
