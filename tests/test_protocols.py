"""``segshield reproduce`` presets, ``--print-config``, ``--init``, ``last-gt``, ISIC 2018,
the efficiency as a ratio of means and the seeded ``--limit`` subset."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from segshield.attacks import make_targets
from segshield.cli.main import main
from segshield.evaluation.protocols import PROTOCOLS, resolve, resolved_config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "ALGORITHMS.md"


# -- the presets equal the documented settings --------------------------------------------


def _doc_table() -> dict[str, tuple[str, str]]:
    """The §4b preset table: setting -> (fr-paper cell, quick cell)."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("| setting | `fr-paper` (default) | `quick`")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = (cells[1], cells[2])
    return rows


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_presets_equal_the_documented_settings():
    doc = _doc_table()
    paper, quick = PROTOCOLS["fr-paper"], PROTOCOLS["quick"]
    # the paper's setting, written out independently of the module
    assert paper.model == "resnet_fcn" and paper.width == 64 and paper.size == 224
    assert paper.attack == "asma:steps=1001,tau=1e-07,beta=1e-06"
    assert paper.defenses[0] == "fr:pd=30,ac=5,gd=60,pad=zero"
    assert paper.target == "other-gt" and paper.png_roundtrip and paper.limit is None
    # ... and as the documentation's table states it
    assert _codes(doc["model"][0])[0] == paper.model and "width 64" in doc["model"][0]
    assert _codes(doc["model"][1])[0] == quick.model and "width 16" in doc["model"][1]
    assert doc["size"] == (f"{paper.size}x{paper.size}", f"{quick.size}x{quick.size}")
    assert _codes(doc["attack"][0]) == [paper.attack]
    assert _codes(doc["attack"][1]) == [quick.attack]
    adaptive = doc["adaptive (through each defence, BPDA where not differentiable)"]
    assert _codes(adaptive[0]) == [paper.adaptive] and _codes(adaptive[1]) == [quick.adaptive]
    assert _codes(doc["defences"][0]) == list(paper.defenses)
    assert _codes(doc["defences"][1]) == [quick.defenses[0]]
    assert list(quick.defenses[1:]) == list(paper.defenses[1:])
    assert _codes(doc["targets"][0])[0] == paper.target and quick.target == "other-gt"
    assert doc["evaluated images"] == ("all", f"the first {quick.limit}")
    assert quick.subset == "first"
    assert f"{paper.epochs} epochs" in doc["training"][0]
    assert f"{quick.epochs} epochs" in doc["training"][1]
    assert doc["batch size, seed"] == (f"{paper.batch_size}, 0", f"{quick.batch_size}, 0")


def test_quick_keeps_the_earlier_defaults():
    q = PROTOCOLS["quick"]
    assert (q.model, q.width, q.size, q.epochs, q.limit, q.batch_size) == (
        "unet",
        16,
        128,
        20,
        100,
        8,
    )
    assert q.attack == "asma:steps=300,tau=1e-05,beta=0.0001"
    assert q.adaptive == "pgd:eps=0.0314,alpha=0.0078,steps=10"


def test_resolve_overrides_and_errors():
    p = resolve("fr-paper", size=64, target="last-gt", defenses=["jpeg:q=50", "none"])
    assert (p.size, p.target, p.defenses, p.model) == (
        64,
        "last-gt",
        ("jpeg:q=50", "none"),
        "resnet_fcn",
    )
    assert resolve("fr-paper", size=None).size == 224  # None keeps the preset's
    with pytest.raises(ValueError, match="fr-paper"):
        resolve("paper")
    with pytest.raises(ValueError, match="valid: model"):
        resolve("quick", colour="red")
    with pytest.raises(ValueError, match="target"):
        resolve("quick", target="shift")
    with pytest.raises(ValueError, match="size"):
        resolve("quick", size=4)


def _fake_isic2017(root: Path, n_train: int = 6, n_val: int = 4, test: bool = False) -> None:
    rng = np.random.default_rng(0)
    splits = [("Training", n_train), ("Validation", n_val)] + ([("Test", 3)] if test else [])
    for split, n in splits:
        img = root / f"ISIC-2017_{split}_Data"
        gt = root / f"ISIC-2017_{split}_Part1_GroundTruth"
        img.mkdir(parents=True)
        gt.mkdir()
        for i in range(n):
            m = np.zeros((20, 24), np.uint8)
            m[4 + i % 3 : 14 + i % 3, 6:18] = 255
            x = (rng.uniform(0, 80, (20, 24, 3)) + (m[..., None] > 0) * 120).astype(np.uint8)
            Image.fromarray(x).save(img / f"ISIC_{split[:2]}{i:05d}.jpg")
            Image.fromarray(m).save(gt / f"ISIC_{split[:2]}{i:05d}_segmentation.png")


def test_print_config_prints_the_resolved_settings_without_training(tmp_path, capsys):
    root = tmp_path / "isic"
    _fake_isic2017(root)
    cache = tmp_path / "cache"
    argv = ["reproduce", "--data", f"isic:{root}", "--cache-dir", str(cache), "--print-config"]
    assert main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)
    want = {"model", "size", "attack", "adaptive", "defenses", "targets", "png_roundtrip", "splits"}
    assert want <= set(cfg)
    assert cfg["model"]["name"] == "resnet_fcn" and cfg["size"] == 224
    assert cfg["model"]["outputs"] == "1 sigmoid channel"
    assert cfg["model"]["encoder"] == "trained from scratch"
    assert cfg["attack"] == "asma:steps=1001,tau=1e-07,beta=1e-06"
    assert cfg["defenses"][0] == "fr:pd=30,ac=5,gd=60,pad=zero" and cfg["png_roundtrip"] is True
    assert cfg["splits"] == {"train": "train", "select": "val", "evaluate": "val"}
    assert not cache.exists()  # nothing trained
    assert main([*argv, "--protocol", "quick", "--target", "last-gt", "--limit", "5"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["model"]["name"], cfg["size"], cfg["targets"]) == ("unet", 128, "last-gt")
    assert cfg["evaluated"] == {"limit": 5, "subset": "random"}


def test_official_test_folder_is_evaluated_when_present(tmp_path, capsys):
    root = tmp_path / "isic"
    _fake_isic2017(root, test=True)
    assert main(["reproduce", "--data", f"isic:{root}", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["evaluate"] == "test"


def test_deprecated_dataset_root_alias_warns(tmp_path, capsys):
    root = tmp_path / "isic"
    _fake_isic2017(root)
    argv = ["reproduce", "--dataset", "isic2017", "--root", str(root), "--print-config"]
    with pytest.warns(FutureWarning, match="--data isic:"):
        assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["data"] == f"isic:{root}"


def test_reproduce_argument_errors(tmp_path, capsys):
    root = tmp_path / "isic"
    _fake_isic2017(root)

    def fails(argv, needle):
        with pytest.raises(SystemExit) as exc:
            main(["reproduce", *argv, "--print-config"])
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err

    fails([], "--data")
    fails(["--data", "phantom-derm"], "real data set")
    fails(["--data", f"isic:{root}", "--dataset", "isic2017", "--root", str(root)], "not both")
    fails(["--data", f"isic:{root}", "--init", str(tmp_path / "none.safetensors")], "--init")
    fails(["--data", f"isic:{root}", "--model", "nonet"], "nonet")
    fails(["--data", f"isic:{root}", "--limit", "3", "--first", "3"], "--first")


# -- --init ----------------------------------------------------------------------------


def test_init_loads_fitting_weights_and_refuses_others_by_name(tmp_path):
    from segshield.models import build_model
    from segshield.models.init import encoder_of, load_encoder

    src = build_model("resnet18_fcn", width=4)
    dst = build_model("resnet18_fcn", width=4)
    state = {f"encoder.{k}": v.clone() for k, v in encoder_of(src).state_dict().items()}
    for v in state.values():
        if v.is_floating_point():
            v.normal_()  # values the fresh model cannot have by chance
    good = tmp_path / "enc.safetensors"
    save_file(state, str(good))
    info = load_encoder(dst, good)
    assert info["tensors"] == len(state) and len(info["sha256"]) == 64
    for k, v in encoder_of(dst).state_dict().items():
        assert torch.equal(v, state[f"encoder.{k}"]), k
    # a tensor of another shape: refused, naming the key and both shapes
    first = next(iter(encoder_of(src).state_dict()))
    shape = tuple(encoder_of(src).state_dict()[first].shape)
    bad = dict(state)
    bad[f"encoder.{first}"] = torch.zeros(shape[0] + 1, *shape[1:])
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=re.escape(f"key '{first}' has shape")) as exc:
        load_encoder(dst, tmp_path / "bad.safetensors")
    assert str(shape) in str(exc.value)
    # a missing tensor, an extra one, a model without an encoder, a pickle
    missing = {k: v for k, v in state.items() if k != f"encoder.{first}"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=re.escape(f"key '{first}'") + ".*missing"):
        load_encoder(dst, tmp_path / "missing.safetensors")
    extra = {**state, "encoder.fc.weight": torch.zeros(2, 2)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match="'fc.weight' of the file is not in the encoder"):
        load_encoder(dst, tmp_path / "extra.safetensors")
    wider = build_model("resnet18_fcn", width=8)
    with pytest.raises(ValueError, match="does not fit the encoder"):
        load_encoder(wider, good)
    with pytest.raises(ValueError, match="no encoder"):
        load_encoder(build_model("unet", width=2), good)
    torch.save(state, tmp_path / "enc.pt")
    with pytest.raises(ValueError, match="not a .safetensors file"):
        load_encoder(dst, tmp_path / "enc.pt")


def test_reproduce_refuses_an_unfit_init_before_training(tmp_path, capsys):
    from segshield.models import build_model
    from segshield.models.init import encoder_of

    root = tmp_path / "isic"
    _fake_isic2017(root)
    f = tmp_path / "r18.safetensors"
    save_file(encoder_of(build_model("resnet18_fcn", width=4)).state_dict(), str(f))
    with pytest.raises(SystemExit):  # a ResNet-18 file for the ResNet-50 of fr-paper
        main(["reproduce", "--data", f"isic:{root}", "--init", str(f), "--print-config"])
    assert "does not fit the encoder" in capsys.readouterr().err
    argv = ["reproduce", "--data", f"isic:{root}", "--init", str(f), "--print-config"]
    assert main([*argv, "--model", "resnet18_fcn", "--width", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["encoder"] == f"encoder from {f}"


@pytest.mark.slow
def test_reproduce_tiny_with_init_states_it(tmp_path, capsys, monkeypatch):
    from segshield.evaluation.store import ResultStore
    from segshield.models import build_model
    from segshield.models.init import encoder_of

    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    root = tmp_path / "isic"
    _fake_isic2017(root)
    f = tmp_path / "enc.safetensors"
    save_file(encoder_of(build_model("resnet18_fcn", width=2)).state_dict(), str(f))
    out = tmp_path / "rep"
    argv = ["-q", "reproduce", "--data", f"isic:{root}", "-o", str(out), "--init", str(f)]
    argv += ["--model", "resnet18_fcn", "--width", "2", "--size", "32", "--epochs", "1"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--target", "last-gt", "--limit", "3"]
    argv += ["--asma", "asma:steps=2", "--adaptive", "fgsm:eps=0.03", "--defense", "jpeg:q=50"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"encoder initialised from {f}" in printed and "recovered_iou" in printed
    assert "attack_success_rate" in printed and "l2" in printed
    with ResultStore(out / "results", readonly=True) as store:
        manifest = store.manifest()
        rows = store.rows()
    assert manifest["protocol"]["model"]["encoder"] == f"encoder from {f}"
    assert manifest["models"][next(iter(manifest["models"]))]["encoder_init"]["file"] == str(f)
    assert len(manifest["samples"][f"isic:{root.name}"]) == 3
    assert {r["sample"] for r in rows} == set(manifest["samples"][f"isic:{root.name}"])
    assert "encoder from" in (out / "report.html").read_text()


# -- last-gt -------------------------------------------------------------------------------


def test_last_gt_gives_every_image_the_last_mask():
    m = torch.stack([torch.full((2, 3), i) for i in range(4)])
    t = make_targets("last-gt", m)
    assert [int(x[0, 0]) for x in t] == [3, 3, 3, 2]  # the last takes the one before it
    assert not any(torch.equal(t[i], m[i]) for i in range(4))
    with pytest.raises(ValueError, match="at least 2"):
        make_targets("last-gt", m[:1])


# -- ISIC 2018 Task 1 layout ---------------------------------------------------------------


def test_isic2018_task1_layout_loads(tmp_path):
    from segshield.data import load_dataset

    root = tmp_path / "ISIC2018"
    rng = np.random.default_rng(1)
    for split, n in (("Training", 4), ("Validation", 2), ("Test", 3)):
        img = root / f"ISIC2018_Task1-2_{split}_Input"
        gt = root / f"ISIC2018_Task1_{split}_GroundTruth"
        img.mkdir(parents=True)
        gt.mkdir()
        for i in range(n):
            stem = f"ISIC_{split[:2]}{i:05d}"
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                img / f"{stem}.jpg"
            )
            m = np.zeros((20, 24), np.uint8)
            m[5:15, 6 + i : 18] = 255
            Image.fromarray(m).save(gt / f"{stem}_segmentation.png")
        (img / "ATTRIBUTION.txt").write_text("credits")
    # the other tasks' folders beside them are passed over
    t3 = root / "ISIC2018_Task3_Training_Input"
    t3.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(t3 / "ISIC_9999999.jpg")
    (root / "ISIC2018_Task3_Training_GroundTruth").mkdir()
    t2 = root / "ISIC2018_Task2_Training_GroundTruth_v3"
    t2.mkdir()
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(t2 / "ISIC_Tr00000_attribute_streaks.png")
    sizes = {s: len(load_dataset(f"isic:{root}", split=s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 4, "val": 2, "test": 3}
    ds = load_dataset(f"isic:{root}", split="test", size=16)
    assert ds.names == ["ISIC_Te00000", "ISIC_Te00001", "ISIC_Te00002"] and not ds.problems
    m = ds[1]["mask"]
    assert m.shape == (16, 16) and set(m.unique().tolist()) == {0, 1}
    assert json.dumps(resolved_config(PROTOCOLS["fr-paper"], f"isic:{root}")["splits"]) == (
        '{"train": "train", "select": "val", "evaluate": "test"}'
    )


# -- efficiency: the ratio of the means ----------------------------------------------------


def test_efficiency_is_a_ratio_of_means_not_exploded_by_a_near_zero_clean_dice():
    from segshield.evaluation.scoring import EFFICIENCY_MIN_CLEAN, SegmentationScorer
    from segshield.evaluation.summary import summarize

    rows = [
        dict(model="m", dataset="d", attack="a", adaptive=0, defense="fr", sample=s,
             clean_dice=c, recovered_dice=r, clean_iou=c, recovered_iou=r, efficiency=e)
        for s, c, r, e in (("x", 0.01, 0.9, math.nan), ("y", 0.9, 0.45, 0.5), ("z", 0.8, 0.8, 1.0))
    ]  # fmt: skip
    out = summarize(rows)[0]
    # mean recovered / mean clean, computed by hand: (0.9 + 0.45 + 0.8) / (0.01 + 0.9 + 0.8)
    assert out["efficiency"] == pytest.approx(2.15 / 1.71)
    assert out["efficiency_iou"] == pytest.approx(2.15 / 1.71)
    assert out["efficiency_nan"] == 1  # the per-sample ratio is NaN below the threshold
    # the scorer writes NaN per sample where the clean Dice is below the threshold
    scorer = SegmentationScorer({"lesion": (1,)}, downstream=False, threshold=0.6)
    gt = torch.ones(2, 10, 20, dtype=torch.long)
    gt[:, 0, 0] = 0  # 199 lesion pixels each
    clean_pred = gt.clone()
    clean_pred[0] = 0
    clean_pred[0, 5, 5] = 1  # 1 of 199 pixels: clean Dice 2 / (2 + 198) = 0.01
    _, clean = scorer.columns("clean", clean_pred, gt)
    assert float(clean.dice[0]) == pytest.approx(0.01)
    assert float(clean.dice[0]) < EFFICIENCY_MIN_CLEAN <= float(clean.dice[1])
    x = torch.zeros(2, 3, 10, 20)
    cols = scorer.recovered(x, gt, x, gt, clean_pred, clean, None)
    assert math.isnan(cols["efficiency"][0]) and cols["efficiency"][1] == pytest.approx(1.0)


def test_efficiency_with_a_clean_dice_of_001():
    from segshield.evaluation.summary import summarize

    base = dict(model="m", dataset="d", attack="a", adaptive=0, defense="none")
    rows = [{**base, "sample": "a", "clean_dice": 0.01, "recovered_dice": 0.5, "efficiency": 50.0}]
    rows += [{**base, "sample": "b", "clean_dice": 0.8, "recovered_dice": 0.4, "efficiency": 0.5}]
    # rows stored before the threshold carry the exploding per-sample ratio (50); the
    # mean of per-sample ratios would be (50 + 0.5) / 2 = 25.25
    assert summarize(rows)[0]["efficiency"] == pytest.approx(0.9 / 0.81)


def test_attack_success_rate_counts_target_iou_of_at_least_half():
    from segshield.evaluation.summary import summarize

    base = dict(model="m", dataset="d", attack="a", adaptive=0, defense="none")
    ious = [0.5, 0.49, math.nan, 0.9]
    rows = [{**base, "sample": str(i), "attack_target_iou": v} for i, v in enumerate(ious)]
    assert summarize(rows)[0]["attack_success_rate"] == pytest.approx(0.5)


# -- --limit: a seeded random subset; --first: file order ----------------------------------


def test_subset_is_seeded_random_and_first_keeps_file_order():
    from segshield.data.subset import subset_indices

    a = subset_indices(600, 48, order="random", seed=0)
    assert a == subset_indices(600, 48, order="random", seed=0)  # reproducible
    assert a != subset_indices(600, 48, order="random", seed=1)
    assert len(set(a)) == 48 and a == sorted(a) and a != list(range(48))
    assert max(a) > 300  # spread over the whole split, not its head
    assert subset_indices(600, 48, order="first") == list(range(48))
    with pytest.raises(ValueError, match="order"):
        subset_indices(5, 2, order="last")


def test_evaluate_limit_records_a_random_subset_and_first_the_head(tmp_path, monkeypatch):
    from segshield.data import load_dataset
    from segshield.data.subset import subset_indices
    from segshield.models import build_model, save

    monkeypatch.setenv("SEGSHIELD_PROGRESS", "0")
    stem = tmp_path / "tiny"
    save(build_model("small", width=2), stem)
    every = load_dataset("phantom-derm", size=16, split="all", n=20).names
    for flag, want in (
        ("--limit", [every[i] for i in subset_indices(20, 3, order="random", seed=0)]),
        ("--first", every[:3]),
    ):
        out = tmp_path / flag.strip("-")
        argv = ["-q", "evaluate", "--model", str(stem), "--data", "phantom-derm", "--size", "16"]
        argv += ["--n", "20", "--split", "all", flag, "3", "--attack", "none", "-o", str(out)]
        assert main(argv) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["samples"] == {"phantom-derm": want}
        assert manifest["config"]["subset"] == ("random" if flag == "--limit" else "first")


def test_cli_choices_match_the_presets():
    from segshield import choices
    from segshield.cli.main import build_parser

    assert tuple(PROTOCOLS) == choices.PROTOCOLS
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    p = sub.choices["reproduce"]
    opts = {o: a for a in p._actions for o in a.option_strings}
    assert tuple(opts["--protocol"].choices) == choices.PROTOCOLS
    assert opts["--protocol"].default == "fr-paper"
    assert tuple(opts["--target"].choices) == choices.REPRODUCE_TARGETS
    assert "--first" in opts and "--limit" in opts
