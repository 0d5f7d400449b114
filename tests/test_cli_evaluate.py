"""`segshield evaluate`, `report`, `demo` and `reproduce` end to end on tiny real pieces."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshield.cli.main import main

CONTRACT = (
    "model",
    "dataset",
    "attack",
    "adaptive",
    "defense",
    "n",
    "clean_dice",
    "benign_dice",
    "attack_target_iou",
    "attacked_dice",
    "recovered_dice",
    "efficiency",
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from segshield.models import build_model, save

    torch.manual_seed(0)
    model = build_model("small", num_classes=1, width=2)
    stem = tmp_path_factory.mktemp("model") / "tiny"
    save(model, stem)
    return stem.with_suffix(".safetensors")


def _eval_args(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-q",
        "evaluate",
        "--model",
        str(ckpt),
        "--data",
        "phantom-derm",
        "--size",
        "16",
        "--n",
        "20",
        "--split",
        "all",
        "--limit",
        "3",
        "--batch-size",
        "2",
        "--attack",
        "asma:steps=2",
        "--adaptive",
        "fgsm:eps=0.03",
        "--defense",
        "fr:pd=30,ac=5,gd=60",
        "--defense",
        "jpeg:q=75",
        "-o",
        str(out),
        *extra,
    ]


def test_evaluate_then_report(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    out = tmp_path / "res"
    assert main(_eval_args(ckpt, out)) == 0
    printed = capsys.readouterr().out
    assert "| model | dataset | attack |" in printed
    # resume with the same command: nothing recomputed, same rows
    assert main(_eval_args(ckpt, out)) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    # 2 attacks (one adaptive) x 3 defences (none added)
    assert len(rows) == 6
    for r in rows:
        assert set(CONTRACT) <= set(r)
        assert r["n"] == 3 and r["dataset"] == "phantom-derm" and r["model"] == "tiny"
    assert {r["defense"] for r in rows} == {"fr:pd=30,ac=5,gd=60", "jpeg:q=75", "none"}
    assert {r["adaptive"] for r in rows} == {True, False}
    none = [r for r in rows if r["defense"] == "none" and not r["adaptive"]][0]
    assert none["benign_dice"] == pytest.approx(none["clean_dice"])
    assert none["recovered_dice"] == pytest.approx(none["attacked_dice"])
    assert main(["report", str(out), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 6 and "recovered_dice_std" in table[0]
    assert main(["report", str(out), "--format", "md", "-o", str(tmp_path / "r.html")]) == 0
    assert capsys.readouterr().out.startswith("| model |")
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") > 0 and "Adaptive attacks" in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["limit"] == 3 and manifest["resumed"]


def _fails(argv, capsys, *needles):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for n in needles:
        assert n in err, err


def test_evaluate_argument_errors(ckpt, tmp_path, capsys):
    out = tmp_path / "o"
    _fails(
        ["evaluate", "--model", str(tmp_path / "nope"), "--data", "phantom-derm", "-o", str(out)],
        capsys,
        "--model",
        "nope",
    )
    _fails(["evaluate", "--data", "phantom-derm", "-o", str(out)], capsys, "--model")
    _fails(["evaluate", "--model", str(ckpt), "-o", str(out)], capsys, "--data")
    _fails(
        [
            "evaluate",
            "--model",
            str(ckpt),
            "--data",
            "isic:" + str(tmp_path / "none"),
            "-o",
            str(out),
        ],
        capsys,
        "--data",
        "no such folder",
    )
    _fails(_eval_args(ckpt, out, "--attack", "bogus"), capsys, "bogus")
    _fails(_eval_args(ckpt, out, "--limit", "0"), capsys, "limit")
    _fails(
        ["evaluate", "--config", str(tmp_path / "x.yaml"), "-o", str(out)], capsys, "no such file"
    )
    _fails(_eval_args(ckpt, out, "--untargeted", "--target", "empty"), capsys, "--untargeted")
    assert not out.exists()  # nothing was written by a refused command


def test_evaluate_config_file_and_mismatch(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"models: [{ckpt}]\ndatasets: [phantom-derm]\nsize: 16\nn: 20\nsplit: all\n"
        "limit: 2\nattacks: ['fgsm:eps=0.03']\ndefenses: ['bitdepth:bits=4']\nexamples: 0\n"
    )
    out = tmp_path / "res"
    assert main(["-q", "evaluate", "--config", str(cfg), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["defense"] for r in rows] == ["bitdepth:bits=4", "none"]
    _fails(
        ["evaluate", "--config", str(cfg), "--seed", "4", "-o", str(out)],
        capsys,
        "different configuration",
    )


def test_report_argument_errors(tmp_path, capsys):
    _fails(["report", str(tmp_path), "--format", "json"], capsys, "results.sqlite")
    (tmp_path / "results.sqlite").write_bytes(b"")
    _fails(["report", str(tmp_path)], capsys, "--format")
    _fails(["report", str(tmp_path), "-o", str(tmp_path)], capsys, "folder")
    _fails(["report", str(tmp_path), "-o", str(tmp_path / "results.sqlite")], capsys, "overwrite")
    _fails(["report", str(tmp_path), "--format", "json", "--examples", "-1"], capsys, "--examples")


def _demo_flags(cache: Path, n_train: bool = True) -> list[str]:
    flags = [
        "--cache-dir",
        str(cache),
        "--size",
        "16",
        "--width",
        "2",
        "--epochs",
        "1",
        "--limit",
        "2",
        "--batch-size",
        "2",
        "--asma",
        "asma:steps=2",
        "--adaptive",
        "fgsm:eps=0.03",
        "--defense",
        "fr:pd=30,ac=5,gd=60",
        "--defense",
        "jpeg:q=50",
        "--defense",
        "none",
    ]
    return flags + (["--n-train", "16"] if n_train else [])


@pytest.mark.slow
def test_demo_trains_once_then_reuses(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    cache = tmp_path / "cache"
    out = tmp_path / "demo"
    assert main(["-q", "demo", "-o", str(out), *_demo_flags(cache)]) == 0
    printed = capsys.readouterr().out
    assert "## phantom-derm" in printed and "## phantom-fundus" in printed
    assert "success rate" in printed and "report:" in printed
    ckpts = sorted((cache / "models").glob("*.safetensors"))
    ckpts = [c for c in ckpts if ".state" not in c.name]
    assert len(ckpts) == 2
    stamps = [c.stat().st_mtime_ns for c in ckpts]
    report = (out / "report.html").read_text()
    assert "phantom-fundus" in report and "dx_attacked_cdr_abs_error" in report
    # second run: cached models reused (not rewritten), finished rows resumed
    out2 = tmp_path / "demo2"
    assert main(["-q", "demo", "-o", str(out2), *_demo_flags(cache)]) == 0
    assert [c.stat().st_mtime_ns for c in ckpts] == stamps
    assert (out2 / "report.html").is_file()


def test_demo_argument_errors(tmp_path, capsys):
    _fails(["demo", "--asma", "nope"], capsys, "nope")
    _fails(["demo", "--size", "4"], capsys, "size")
    _fails(["demo", "--defense", "jpeg:q=500"], capsys, "q")
    _fails(["demo", "--device", "tpu"], capsys, "--device")
    _fails(["reproduce", "--dataset", "origa", "--root", str(tmp_path / "no")], capsys, "--root")


def _fake_origa(root: Path, n: int = 20) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        m = np.zeros((24, 24), np.uint8)
        m[6:18, 6:18] = 1
        m[9:15, 9:15] = 2
        img = (rng.uniform(0, 60, (24, 24, 3)) + (m[..., None] * 90)).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"img{i}.png")
        Image.fromarray(m).save(root / "masks" / f"img{i}.png")


@pytest.mark.slow
def test_reproduce_tiny(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    root = tmp_path / "origa"
    _fake_origa(root)
    out = tmp_path / "rep"
    argv = [
        "-q",
        "reproduce",
        "--dataset",
        "origa",
        "--root",
        str(root),
        "-o",
        str(out),
        "--model",
        "small",
        *_demo_flags(tmp_path / "cache", n_train=False),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "## origa" in printed
    from segshield.evaluation.store import ResultStore

    with ResultStore(out / "results", readonly=True) as store:
        rows = store.rows()
    # the fake masks have a cup half as tall as the disc: ground-truth CDR 0.5
    assert rows and all(abs(r["dx_gt_cdr"] - 0.5) < 0.1 for r in rows)
    assert "dx_recovered_call_flipped" in rows[0]
    assert (out / "report.html").is_file() and (out / "results" / "results.sqlite").is_file()
    found = (tmp_path / "cache" / "models").glob("origa-small-16-*.json")
    ckpt = next(p for p in found if ".state." not in p.name)
    assert json.loads(ckpt.read_text())["trained_on"].startswith("origa:")
