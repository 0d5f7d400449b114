"""`segshield evaluate` on model files read by `wrap`: defended ONNX files, no-gradient models.

A model without gradients gets clean and benign rows under attack ``none`` and no attack
rows; the attacks skipped on it are logged once and recorded in the manifest. The ONNX
round trips export a tiny U-Net behind FR (several seconds: marked slow) and skip when
onnxruntime (``segshield[onnx]``) is missing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from segshield.cli.main import main
from segshield.data import load_dataset
from segshield.evaluation import EvalConfig, run_evaluation
from segshield.evaluation.store import ResultStore
from segshield.models import build_model, save, wrap

DATA = [
    "--data",
    "phantom-derm",
    "--size",
    "32",
    "--n",
    "8",
    "--split",
    "all",
    "--first",
    "3",
]  # file order: samples 0-2 below
FR = "fr:pd=30,ac=5,gd=60"
ASMA = "asma:steps=2"


def tiny_unet():
    torch.manual_seed(0)
    return build_model("unet", width=4, depth=2).eval()


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground Dice 2|P∩G| / (|P| + |G|), computed here from the masks (G never empty)."""
    assert gt.any()
    return 2.0 * float((pred & gt).sum()) / float(pred.sum() + gt.sum())


def evaluate(out: Path, *models: str, extra: tuple[str, ...] = ()) -> int:
    args = ["-q", "evaluate", *(a for m in models for a in ("--model", m)), *DATA]
    return main([*args, "--batch-size", "2", "--defense", FR, "-o", str(out), *extra])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny U-Net as a checkpoint and as a defended ONNX file (FR inside)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from segshield.defenses import get_defense
    from segshield.export import export_defended

    folder = tmp_path_factory.mktemp("onnxeval")
    model = tiny_unet()
    # untrained, every pixel is foreground: centre the logits on these images instead
    ds = load_dataset("phantom-derm", size=32, split="all", n=8, seed=0)
    x = torch.stack([ds[i]["image"] for i in range(3)]).float()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias -= model(x).median()
    save(model, folder / "unet")
    export_defended(model, get_defense("fr"), folder / "defended.onnx")
    return {"ckpt": folder / "unet.safetensors", "onnx": folder / "defended.onnx"}


def _rows(out: Path) -> list[dict]:
    with ResultStore(out, readonly=True) as store:
        return store.rows()


@pytest.mark.slow
def test_evaluate_defended_onnx_stores_its_clean_dice(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    out = tmp_path / "res"
    assert evaluate(out, str(files["onnx"])) == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    keys = {(r["model"], r["attack"], r["adaptive"]) for r in rows}
    assert keys == {("defended.onnx", "none", 0)}
    assert {r["defense"] for r in rows} == {FR, "none"} and len(rows) == 6
    assert all(np.isnan(r.get("attacked_dice", np.nan)) for r in rows)
    # the stored clean Dice is the Dice of wrap(path)'s own predictions
    ds = load_dataset("phantom-derm", size=32, split="all", n=8, seed=0)
    model = wrap(files["onnx"])
    for i in range(3):
        item = ds[i]
        with torch.no_grad():
            logits = model(item["image"][None].float())
        pred = (logits[0, 0] > 0).numpy()
        expected = dice(pred, np.asarray(item["mask"]) > 0)
        assert 0.05 < pred.mean() < 0.95  # a prediction with both classes
        stored = [r["clean_dice"] for r in rows if r["sample"] == str(item["name"])]
        assert stored == pytest.approx([expected] * 2, abs=1e-12)
    plain = [r for r in rows if r["defense"] == "none"]
    assert all(r["benign_dice"] == pytest.approx(r["clean_dice"]) for r in plain)
    defense = model.config["defense"]
    assert f"Note: defended.onnx: defended model file, defence {defense} inside" in printed
    assert "Note: defended.onnx: no gradients, attacks not run: asma" in printed


@pytest.mark.slow
def test_mixed_run_attacks_only_the_model_with_gradients(files, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    out = tmp_path / "res"
    report = tmp_path / "report.html"
    with caplog.at_level(logging.WARNING, logger="segshield.evaluation.harness"):
        rc = evaluate(
            out,
            str(files["ckpt"]),
            str(files["onnx"]),
            extra=("--attack", ASMA, "--report", str(report)),
        )
    assert rc == 0
    keys = {(r["model"], r["attack"]) for r in _rows(out)}
    assert keys == {("unet", ASMA), ("defended.onnx", "none")}
    warnings = [r.getMessage() for r in caplog.records if "no gradients" in r.getMessage()]
    assert len(warnings) == 1
    assert "defended.onnx" in warnings[0] and ASMA in warnings[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped_attacks"] == {"defended.onnx": [ASMA]}
    assert manifest["models"]["defended.onnx"]["defended"] is True
    html = report.read_text()
    assert f"defended.onnx: no gradients, attacks not run: {ASMA}" in html


# --- without onnxruntime: the same rules through a model that says it has no gradients ----


def _no_gradient_model():
    model = wrap(tiny_unet(), in_channels=3)
    model.supports_gradients = False
    return model


def _config(models: list[str], attacks: list[str], **more) -> EvalConfig:
    """Two 32x32 phantoms, one cheap defence (plus none)."""
    data = dict(datasets=["phantom-derm"], size=32, n=8, split="all", limit=2)
    return EvalConfig(models=models, attacks=attacks, defenses=["bitdepth:bits=4"], **data, **more)


def test_no_gradient_model_skips_attacks_and_gets_clean_rows(tmp_path, caplog):
    cfg = _config(["plain", "nograd"], [ASMA], adaptive=["fgsm:eps=0.03"])
    models = {"plain": wrap(tiny_unet(), in_channels=3), "nograd": _no_gradient_model()}
    with caplog.at_level(logging.WARNING, logger="segshield.evaluation.harness"):
        with run_evaluation(cfg, tmp_path / "res", models=models) as store:
            rows, manifest = store.rows(), store.manifest()
    got = {(r["model"], r["attack"], r["adaptive"]) for r in rows}
    assert got == {("plain", ASMA, 0), ("plain", "fgsm:eps=0.03", 1), ("nograd", "none", 0)}
    assert manifest["skipped_attacks"] == {"nograd": [ASMA, "fgsm:eps=0.03 (adaptive)"]}
    assert [r.levelname for r in caplog.records if "nograd" in r.getMessage()] == ["WARNING"]
    # the two models are the same network: equal clean and benign Dice per sample
    plain = {(r["sample"], r["defense"]): r for r in rows if r["model"] == "plain"}
    for r in rows:
        if r["model"] == "nograd":
            ref = plain[(r["sample"], r["defense"])]
            assert r["clean_dice"] == ref["clean_dice"] and r["benign_dice"] == ref["benign_dice"]


def test_attack_none_adds_clean_rows_for_every_model(tmp_path):
    cfg = _config(["plain"], ["none", ASMA])
    models = {"plain": wrap(tiny_unet(), in_channels=3)}
    with run_evaluation(cfg, tmp_path / "res", models=models) as store:
        rows = store.rows()
        assert store.manifest()["skipped_attacks"] == {}
    assert sorted({r["attack"] for r in rows}) == [ASMA, "none"] and len(rows) == 8
    none = {(r["sample"], r["defense"]): r for r in rows if r["attack"] == "none"}
    for r in rows:
        if r["attack"] == ASMA:
            assert none[(r["sample"], r["defense"])]["clean_dice"] == r["clean_dice"]


def test_none_is_not_an_adaptive_attack():
    with pytest.raises(ValueError, match="adaptive: 'none' is not an attack"):
        EvalConfig(models=["m"], datasets=["phantom-derm"], adaptive=["none"])
    with pytest.raises(ValueError, match="or --attack none for clean and benign scores only"):
        EvalConfig(models=["m"], datasets=["phantom-derm"], attacks=[])


def test_missing_onnx_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate(tmp_path / "o", str(tmp_path / "gone.onnx"))
    assert exc.value.code == 2
    assert "--model: " in capsys.readouterr().err
