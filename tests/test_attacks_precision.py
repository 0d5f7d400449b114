"""Attack speed options: bf16 autocast, channels-last, torch.compile (attacks.precision)."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from torch import nn

from segshield.attacks import ASMA, PGD, Defended
from segshield.attacks.precision import (
    FastAttack,
    FastForward,
    check_speed,
    fast_attack,
    fast_forward,
)
from segshield.defenses import get_defense
from segshield.models import build_model


def _model(k: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return build_model("small", num_classes=k, width=4).eval()


def _batch(b: int = 3, size: int = 16):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, 3, size, size, generator=g)
    target = torch.zeros(b, size, size, dtype=torch.long)
    target[:, 4:12, 4:12] = 1
    return x, target


def test_fp32_without_options_is_the_attack_and_model_themselves():
    attack, model = PGD(steps=2), _model()
    assert fast_attack(attack) is attack
    assert fast_forward(model) is model


def test_bf16_on_cpu_runs_within_budget_and_range(caplog):
    model = _model()
    x, target = _batch()
    attack = fast_attack(PGD(eps=4 / 255, steps=3), "bf16")
    assert isinstance(attack, FastAttack) and attack.spec() == PGD(eps=4 / 255, steps=3).spec()
    with caplog.at_level("WARNING"):
        result = attack(model, x, target_masks=target)
    adv = result.adversarial
    assert adv.dtype == torch.float32 and adv.shape == x.shape
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float((adv - x).abs().max()) <= 4 / 255 + 1e-6
    assert result.attack == "pgd" and not result.adaptive
    assert "bfloat16 autocast" in caplog.text


def test_bf16_asma_stays_close_to_fp32_on_cpu():
    """The CPU check of the plumbing: same images, the model in bf16; the attack moves
    the prediction towards the target in both, and the perturbations are alike."""
    model = _model()
    x, target = _batch()
    ref = ASMA(steps=5, tau=1e-3, beta=1e-2)(model, x, target_masks=target)
    low = fast_attack(ASMA(steps=5, tau=1e-3, beta=1e-2), "bf16")(model, x, target_masks=target)
    assert float(low.adversarial.min()) >= 0 and float(low.adversarial.max()) <= 1
    d_ref, d_low = ref.adversarial - x, low.adversarial - x
    cos = torch.nn.functional.cosine_similarity(d_ref.flatten(), d_low.flatten(), dim=0)
    assert float(cos) > 0.9
    assert float(d_low.abs().max()) == pytest.approx(float(d_ref.abs().max()), rel=0.2)


def test_fast_forward_returns_float32_and_leaves_the_model_alone():
    model = _model(k=2)
    before = copy.deepcopy(model.state_dict())
    x, _ = _batch()
    fast = fast_forward(model, "bf16", channels_last=True)
    assert isinstance(fast, FastForward)
    out = fast(x)
    assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == (3, 2, 16, 16)
    assert fast.num_classes == model.num_classes and fast.config == model.config
    for name, t in model.state_dict().items():
        assert torch.equal(t, before[name]) and t.is_contiguous()  # the copy is reordered
    # channels-last alone computes the same function (float32), up to summation order
    same = fast_forward(model, channels_last=True)(x)
    assert torch.allclose(same, model(x), atol=1e-5)


def test_behind_a_defence_only_the_model_is_wrapped():
    model = _model()
    fr = get_defense("fr")
    victim = Defended(model, fr)
    fast = fast_forward(victim, "bf16")
    assert isinstance(fast, Defended) and fast.is_defended
    assert fast.defense is fr and isinstance(fast.model, FastForward)
    x, target = _batch(2)
    result = fast_attack(PGD(eps=2 / 255, steps=2), "bf16")(victim, x, target_masks=target)
    assert result.adaptive
    assert float((result.adversarial - x).abs().max()) <= 2 / 255 + 1e-6


def test_fast_attack_builds_one_wrapped_model_per_model():
    model = _model()
    x, target = _batch(2)
    attack = FastAttack(PGD(steps=1), "bf16")
    attack(model, x, target_masks=target)
    attack(Defended(model, get_defense("fr")), x, target_masks=target)
    assert len(attack._models) == 1


def test_compile_plumbing_with_the_eager_backend():
    """torch.compile through dynamo (backend "eager": traced, not code-generated)."""
    model = _model()
    x, target = _batch(2)
    attack = FastAttack(PGD(eps=2 / 255, steps=2), compile=True, backend="eager")
    result = attack(model, x, target_masks=target)
    plain = PGD(eps=2 / 255, steps=2)(model, x, target_masks=target)
    assert torch.allclose(result.adversarial, plain.adversarial, atol=1e-6)


def test_speed_settings_are_checked():
    with pytest.raises(ValueError, match="expected one of 'fp32', 'bf16', got 'fp16'"):
        check_speed("fp16", False, False)
    with pytest.raises(TypeError, match="channels_last"):
        check_speed("fp32", "yes", False)
    with pytest.raises(ValueError, match="expected one of"):
        fast_attack(PGD(), "half")
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        with pytest.raises(ValueError, match="C\\+\\+ compiler"):
            check_speed("fp32", False, True, "cpu")


def test_evalconfig_speed_settings_and_digest():
    from segshield.evaluation.config import EvalConfig

    plain = EvalConfig(models=["m"], datasets=["phantom-derm"])
    fast = EvalConfig(models=["m"], datasets=["phantom-derm"], attack_precision="bf16")
    assert plain.digest() != fast.digest()
    assert [type(a).__name__ for _, _, a in plain.attack_list()] == ["ASMA"]
    assert [type(a).__name__ for _, _, a in fast.attack_list()] == ["FastAttack"]
    with pytest.raises(ValueError, match="attack_precision"):
        EvalConfig(models=["m"], datasets=["phantom-derm"], attack_precision="fp16")
    with pytest.raises(TypeError, match="compile"):
        EvalConfig(models=["m"], datasets=["phantom-derm"], compile="yes")


def test_evaluate_cli_takes_the_speed_flags(tmp_path, capsys):
    from segshield.cli.main import main
    from segshield.models import save

    stem = tmp_path / "tiny"
    save(build_model("small", num_classes=1, width=2), stem)
    out = tmp_path / "res"
    args = [
        "-q", "evaluate", "--model", str(stem) + ".safetensors", "--data", "phantom-derm",
        "--size", "16", "--n", "8", "--split", "all", "--limit", "2", "--batch-size", "2",
        "--attack", "pgd:eps={2,4}/255,steps=2", "--defense", "none", "--examples", "0",
        "--attack-precision", "bf16", "--channels-last", "-o", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    manifest = (out / "manifest.json").read_text()
    assert '"attack_precision": "bf16"' in manifest and '"channels_last": true' in manifest
    assert "pgd:eps=4/255,steps=2" in capsys.readouterr().out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_bf16_agrees_with_fp32_on_cuda():
    """The agreement check: mean target IoU and recovered Dice within 0.01 of float32.

    ASMA on a ResNet-18 FCN at 224x224 with FR behind it, 64 images, the same targets;
    both runs are scored in float32 on the 8-bit rounded adversarial images.
    """
    from segshield.attacks.base import target_iou
    from segshield.metrics import compute_dice, logits_to_mask

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model("resnet18_fcn", num_classes=1).to(dev).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 224, 224, generator=g).to(dev)
    target = torch.zeros(64, 224, 224, dtype=torch.long, device=dev)
    target[:, 60:160, 60:160] = 1
    with torch.no_grad():
        gt = logits_to_mask(model(x))
    fr = get_defense("fr:pad=zero").to(dev)

    def scores(result):
        adv = (result.adversarial * 255).round() / 255
        with torch.no_grad():
            iou = target_iou(logits_to_mask(model(adv)), target, 2)
            rec = logits_to_mask(model(fr(adv)))
        return float(iou.nanmean()), float(compute_dice(rec, gt, 2)[:, 1].nanmean())

    attack = ASMA(steps=200, tau=1e-5, beta=1e-4)
    ref = scores(attack(model, x, target_masks=target))
    low = scores(fast_attack(attack, "bf16", channels_last=True)(model, x, target_masks=target))
    assert abs(ref[0] - low[0]) <= 0.01, (ref, low)
    assert abs(ref[1] - low[1]) <= 0.01, (ref, low)


def test_speed_benchmark_runs_on_the_cpu_with_a_tiny_setting(capsys):
    """benchmarks/bench_attacks.py --speed: rows per mode, deltas against float32."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_attacks.py"
    spec = importlib.util.spec_from_file_location("bench_attacks", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    modes = [bench.SPEED_MODES["fp32"], bench.SPEED_MODES["bf16-cl"]]
    rows = bench.bench_speed(
        torch.device("cpu"), 2, 2, 16, "small", tau=1e-3, beta=1e-2, modes=modes
    )
    assert [r[0] for r in rows] == ["fp32", "bf16 + channels-last"]
    assert rows[0][2] == 1.0 and rows[0][4] == 0.0 and rows[0][6] == 0.0
    assert all(r[1] > 0 and 0 <= r[3] <= 1 and 0 <= r[5] <= 1 for r in rows)
    assert capsys.readouterr().out.count("| fp32 |") == 1


def test_attack_cli_takes_the_speed_flags(tmp_path):
    import csv
    import json

    import numpy as np
    from PIL import Image

    from segshield.cli.main import main
    from segshield.models import save

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            data / "images" / f"img{i}.png"
        )
        m = np.zeros((16, 16), np.uint8)
        m[2 + i : 9 + i, 3:10] = 255
        Image.fromarray(m).save(data / "masks" / f"img{i}.png")
    save(build_model("small", width=4), tmp_path / "m")
    args = [
        "-q", "attack", "--model", str(tmp_path / "m"), "--data", f"folder:{data}",
        "--split", "all", "--attack", "pgd:eps=4/255,steps=2", "--attack-precision", "bf16",
        "--channels-last", "-o", str(tmp_path / "out"),
    ]  # fmt: skip
    assert main(args) == 0
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["attack_precision"] == "bf16" and man["channels_last"] and not man["compile"]
    assert man["attack"].startswith("pgd:eps=0.0156")
    rows = list(csv.DictReader((tmp_path / "out" / "stats.csv").open()))
    assert len(rows) == 2 and all(float(r["linf"]) <= 4 / 255 + 1e-6 for r in rows)
