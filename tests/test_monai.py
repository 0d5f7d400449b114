"""The MONAI extra: defences as MONAI transforms, MONAI networks as segshield models,
segshield's Dice against MONAI's DiceMetric, and the docs/MONAI.md example.

Tests that need MONAI skip when it is absent; the missing-extra messages are tested
without it (``sys.modules["monai"] = None`` makes ``import monai`` fail).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segshield.defenses import get_defense, list_defenses
from segshield.defenses.registry import DEFENSES
from segshield.integrations import monai as sm
from segshield.metrics import compute_dice
from segshield.models import build_model, load, save
from segshield.models.monai_nets import require_monai

MONAI_DOC = Path(__file__).resolve().parents[1] / "docs" / "MONAI.md"
TINY_NETS = {
    "monai-unet": "monai-unet:channels=4-8-16,num_res_units=1",
    "monai-segresnet": "monai-segresnet:init_filters=8,blocks_down=1-1-1",
    "monai-attention-unet": "monai-attention-unet:channels=4-8-16",
}
SPECS = [
    "fr",
    "fr:pd=20,ac=4,gd=40,pad=zero",
    "fd",
    "jpeg:q=60",
    "bitdepth:bits=3",
    "median:k=3",
    "gaussian:sigma=1.5",
]


@pytest.fixture(scope="module")
def monai():
    return pytest.importorskip("monai")


@pytest.fixture
def no_monai(monkeypatch):
    """``import monai`` fails, and the transform classes are rebuilt on next access."""
    monkeypatch.setitem(sys.modules, "monai", None)
    sm._classes.cache_clear()
    yield
    sm._classes.cache_clear()


# ------------------------------------------------------------------ missing extra


def test_missing_extra_error_names_the_extra(no_monai):
    with pytest.raises(ImportError, match=r"model 'monai-unet' needs MONAI.*segshield\[monai\]"):
        build_model("monai-unet")
    with pytest.raises(ImportError, match=r"integrations.monai needs MONAI.*segshield\[monai\]"):
        sm.FrequencyRefinementd  # noqa: B018 - the attribute access imports MONAI
    with pytest.raises(ImportError, match=r"segshield\[monai\]"):
        from segshield.integrations.monai import Defensed  # noqa: F401
    with pytest.raises(ImportError, match=r"this check needs MONAI"):
        require_monai("this check")


def test_without_monai_segshield_still_parses_and_defends(no_monai):
    """Only building a MONAI network or transform needs MONAI."""
    from segshield.models import parse_model_spec

    assert parse_model_spec("monai-unet:channels=8-16")[1] == {"channels": (8, 16)}
    x = torch.rand(1, 8, 8)
    assert torch.equal(sm.defend_channel_first(get_defense("fr"), x), get_defense("fr")(x[None])[0])
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        sm.Nope  # noqa: B018


# ------------------------------------------------------------------ transforms


def test_every_defence_has_named_transforms():
    names = {d["name"]: d["class"] for d in list_defenses() if d["name"] != "none"}
    assert sm.NAMED == {cls: name for name, cls in names.items()}
    assert set(sm.TRANSFORMS) == {"DefenseTransform", "Defensed"} | {
        n + s for n in names.values() for s in ("", "d")
    }


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("channels", [1, 3])
def test_transforms_equal_the_plain_defence(monai, spec, channels):
    from monai.data import MetaTensor

    torch.manual_seed(channels)
    x = torch.rand(channels, 37, 29)
    expected = get_defense(spec)(x[None])[0]
    name, settings = DEFENSES.parse(spec)
    named = {v: k for k, v in sm.NAMED.items()}[name]
    array_forms = [sm.DefenseTransform(spec), getattr(sm, named)(**settings)]
    dict_forms = [
        sm.Defensed(keys="image", defense=spec),
        getattr(sm, named + "d")("image", **settings),
    ]
    for t in array_forms:
        assert isinstance(t, monai.transforms.Transform)
        out = t(x)
        assert type(out) is torch.Tensor and torch.equal(out, expected)
        out = t(MetaTensor(x.clone()))
        assert isinstance(out, MetaTensor) and torch.equal(out.as_tensor(), expected)
        out = t(x.numpy().copy())
        assert isinstance(out, np.ndarray) and np.array_equal(out, expected.numpy())
    for t in dict_forms:
        assert isinstance(t, monai.transforms.MapTransform)
        out = t({"image": x.clone(), "label": x})
        assert torch.equal(out["image"], expected) and out["label"] is x


def test_meta_data_kept_and_compose(monai):
    from monai.data import MetaTensor
    from monai.transforms import Compose, ScaleIntensityd

    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.rand(1, 24, 20) * 7, affine=affine, meta={"filename_or_obj": "ct.nii"})
    pipeline = Compose(
        [ScaleIntensityd(keys="image"), sm.FrequencyRefinementd(keys="image", pd=30, gd=50)]
    )
    out = pipeline({"image": img, "label": 3})
    scaled = (img.as_tensor() - img.min()) / (img.max() - img.min())
    expected = get_defense("fr:pd=30,gd=50")(scaled[None])[0]
    assert isinstance(out["image"], MetaTensor) and out["label"] == 3
    torch.testing.assert_close(out["image"].as_tensor(), expected, atol=1e-6, rtol=0)
    assert out["image"].meta["filename_or_obj"] == "ct.nii"
    assert torch.equal(out["image"].affine, affine)
    # deterministic MONAI transforms: a CacheDataset caches through the defence
    first_uncached = pipeline.get_index_of_first(
        lambda t: (
            isinstance(t, monai.transforms.RandomizableTrait)
            or not isinstance(t, monai.transforms.Transform)
        )
    )
    assert first_uncached is None


def test_transform_errors(monai):
    t = sm.FrequencyRefinement()
    with pytest.raises(TypeError, match=r"expected a float image in \[0, 1\].*ScaleIntensity"):
        t(torch.zeros(1, 8, 8, dtype=torch.uint8))
    with pytest.raises(
        ValueError, match=r"channel-first image \(C, H, W\), got shape \(2, 1, 8, 8\)"
    ):
        t(torch.zeros(2, 1, 8, 8))
    with pytest.raises(TypeError, match="FrequencyRefinement: applies 'fr'.*DefenseTransform"):
        sm.FrequencyRefinement(defense="jpeg")
    with pytest.raises(TypeError, match="Gaussiand: applies 'gaussian'.*Defensed"):
        sm.Gaussiand("image", defense="fr")
    with pytest.raises(TypeError, match="missing the defence"):
        sm.DefenseTransform()
    with pytest.raises(ValueError, match="unknown parameter.s. colour"):
        sm.FrequencyRefinement(colour=1)
    with pytest.raises(TypeError, match="not with a built FrequencyRefinement"):
        sm.DefenseTransform(get_defense("fr"), pd=3)
    with pytest.raises(KeyError):
        sm.Defensed(keys="image", defense="fr")({"label": 1})
    assert sm.Defensed(keys="image", defense="fr", allow_missing_keys=True)({"x": 1}) == {"x": 1}
    assert (
        repr(sm.BitDepthd("image", bits=2))
        == "BitDepthd(keys=['image'], 'bitdepth:bits=2,gradient=bpda')"
    )


# ------------------------------------------------------------------ networks


@pytest.mark.parametrize("name", sorted(TINY_NETS))
def test_monai_networks_are_segshield_models(monai, name):
    torch.manual_seed(0)
    model = build_model(TINY_NETS[name], num_classes=2, in_channels=1).eval()
    classes = {
        "monai-unet": monai.networks.nets.UNet,
        "monai-segresnet": monai.networks.nets.SegResNet,
        "monai-attention-unet": monai.networks.nets.AttentionUnet,
    }
    assert isinstance(model.net, classes[name]) and model.stride == 4
    x = torch.rand(2, 1, 33, 17)
    out = model(x)
    assert out.shape == (2, 2, 33, 17) and torch.isfinite(out).all()
    # the model is the MONAI network on (x - 0.5) / 0.5, padded to the stride and cropped
    padded = torch.nn.functional.pad((x - 0.5) / 0.5, (0, 3, 0, 3), mode="replicate")
    with torch.no_grad():
        torch.testing.assert_close(out, model.net(padded)[:, :, :33, :17])


def test_monai_unet_settings_reach_the_network(monai):
    model = build_model("monai-unet:channels=4-8-16-32,strides=2-2-1,num_res_units=2,norm=batch")
    assert tuple(model.net.channels) == (4, 8, 16, 32) and tuple(model.net.strides) == (2, 2, 1)
    assert model.net.num_res_units == 2 and model.stride == 4
    assert model.config["arch_kwargs"] == {
        "channels": [4, 8, 16, 32],
        "strides": [2, 2, 1],
        "num_res_units": 2,
        "norm": "batch",
    }
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        ("monai-unet:channels=8", ValueError, "at least 2 levels"),
        ("monai-unet:channels=8-16,strides=2-2", ValueError, "strides: expected 1 values"),
        ("monai-unet:norm=group", ValueError, "norm: expected one of 'instance'"),
        ("monai-unet:kernel_size=4", ValueError, "odd kernel size"),
        ("monai-segresnet:init_filters=12", ValueError, "multiple of 8"),
        ("monai-segresnet:blocks_down=1-1,blocks_up=1-1", ValueError, "expected 1 values"),
        ("monai-attention-unet:channels=0-8", ValueError, "channels item"),
        ("monai-unet:width=8", TypeError, "unknown setting.s. width; valid settings: channels"),
    ],
)
def test_monai_network_setting_errors(monai, spec, exc, match):
    with pytest.raises(exc, match=match):
        build_model(spec)


def test_train_save_reload_attack_defend(monai, tmp_path, capsys):
    """``segshield train`` trains a MONAI UNet one epoch; the safetensors checkpoint
    holds MONAI's own network, reloads with equal outputs and is attacked and defended
    like a built-in model."""
    from segshield.attacks import PGD, Defended
    from segshield.cli.main import main
    from segshield.models.checkpoint import read_safetensors

    out = tmp_path / "m"
    spec = "monai-unet:channels=4-8-16,num_res_units=1"
    args = ["-q", "train", "--data", "phantom-derm", "--model", spec, "--size", "32"]
    assert main([*args, "--n", "8", "--epochs", "1", "-o", str(out), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 1
    model = load(out)
    assert model.config["architecture"] == "monai-unet"
    assert model.config["arch_kwargs"] == {"channels": [4, 8, 16], "num_res_units": 1}
    # a plain MONAI UNet with the checkpoint's weights gives the same logits
    net = monai.networks.nets.UNet(2, 3, 1, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    weights = read_safetensors(out.with_suffix(".safetensors"))
    net.load_state_dict({k.removeprefix("net."): v for k, v in weights.items()})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net.eval()((x - 0.5) / 0.5), atol=0, rtol=0)
    save(model, tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(load(tmp_path / "again")(x), model(x))
    masks = (x[:, 0] > 0.5).long()
    res = PGD(eps=4 / 255, steps=2)(Defended(model, get_defense("fr")), x, masks)
    assert res.adversarial.shape == x.shape
    assert 0 < (res.adversarial - x).abs().max() <= 4 / 255 + 1e-6


# ------------------------------------------------------------------ Dice


def _one_hot(masks: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(masks, k).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize("k", [2, 4])
def test_dice_equals_monai_dice_metric(monai, k):
    """Equal wherever the ground truth is non-empty; the empty-mask rules differ as
    docs/ALGORITHMS.md §5 says: both empty is 1 in segshield (MONAI: NaN, or 1 with
    ignore_empty=False); empty truth with a prediction is NaN in segshield (MONAI: NaN,
    or 0 with ignore_empty=False)."""
    from monai.metrics import DiceMetric

    g = torch.Generator().manual_seed(k)
    pred = torch.randint(0, k, (12, 9, 11), generator=g)
    gt = torch.randint(0, k, (12, 9, 11), generator=g)
    gt[0:3] = 0  # classes >= 1 absent from the truth: empty masks
    pred[0] = 0  # ... and from the prediction: both empty
    pred[3] = 0  # prediction empty, truth not
    ours = compute_dice(pred, gt, k).float()
    theirs = {}
    for ignore_empty in (True, False):
        metric = DiceMetric(include_background=True, reduction="none", ignore_empty=ignore_empty)
        theirs[ignore_empty] = metric(_one_hot(pred, k), _one_hot(gt, k))
    gt_empty = _one_hot(gt, k).sum((2, 3)) == 0
    pred_empty = _one_hot(pred, k).sum((2, 3)) == 0
    assert gt_empty.any() and (gt_empty & pred_empty).any() and (gt_empty & ~pred_empty).any()
    full = ~gt_empty
    torch.testing.assert_close(ours[full], theirs[True][full])
    torch.testing.assert_close(ours[full], theirs[False][full])
    both = gt_empty & pred_empty
    assert (ours[both] == 1).all() and (theirs[False][both] == 1).all()
    assert theirs[True][both].isnan().all()
    only_pred = gt_empty & ~pred_empty
    assert ours[only_pred].isnan().all() and theirs[True][only_pred].isnan().all()
    assert (theirs[False][only_pred] == 0).all()


# ------------------------------------------------------------------ docs/MONAI.md


def test_monai_doc_example_runs(monai, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", MONAI_DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/MONAI.md has no python example"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], str(MONAI_DOC), "exec"), scope)  # noqa: S102 - our own docs
    assert (tmp_path / "runs" / "monai_unet.safetensors").is_file()
    scores = scope["scores"]
    assert set(scores) == {"clean", "attacked", "attacked+fr"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
