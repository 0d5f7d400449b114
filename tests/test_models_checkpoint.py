"""Checkpoints (safetensors + JSON, never pickle) and wrappers (module, TorchScript, ONNX)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from segshield.models import (
    NoGradientError,
    build_model,
    load,
    read_config,
    save,
    wrap,
)
from segshield.models.wrappers import OnnxNet


def _trained_like(name: str, **kw) -> nn.Module:
    """A model whose BN statistics and weights differ from a fresh build."""
    torch.manual_seed(3)
    m = build_model(name, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.train()
    m(torch.rand(4, m.in_channels, 16, 16))  # updates BN running statistics
    return m.eval()


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("unet", {"width": 2, "depth": 2, "num_classes": 3, "in_channels": 1}),
        ("small", {"width": 3}),
        ("resnet18_fcn", {"width": 2, "decoder_width": 2}),
    ],
)
def test_round_trip_identical_outputs(tmp_path, name, kw):
    m = _trained_like(name, **kw)
    m.config["val_scores"] = {"lesion_dice": 0.5}
    paths = save(m, tmp_path / "ckpt")
    assert [p.name for p in paths] == ["ckpt.safetensors", "ckpt.json"]
    x = torch.rand(2, m.in_channels, 21, 19)
    for ref in ("ckpt", "ckpt.json", "ckpt.safetensors"):
        loaded = load(tmp_path / ref)
        assert not loaded.training
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), m(x), rtol=0, atol=0)
        assert loaded.config["val_scores"] == {"lesion_dice": 0.5}
        assert loaded.config["arch_kwargs"] == m.config["arch_kwargs"]
        assert loaded.num_classes == m.num_classes


def test_round_trip_keeps_normalisation_and_classes(tmp_path):
    m = build_model(
        "small", num_classes=3, width=2, mean=[0.1, 0.2, 0.3], std=0.2, class_names=["b", "r", "c"]
    )
    save(m, tmp_path / "m")
    cfg = json.loads((tmp_path / "m.json").read_text())
    assert cfg["mean"] == pytest.approx([0.1, 0.2, 0.3])
    assert cfg["std"] == pytest.approx([0.2, 0.2, 0.2])
    loaded = load(tmp_path / "m")
    assert loaded.config["class_names"] == ["b", "r", "c"]
    torch.testing.assert_close(loaded.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
    for key in ("architecture", "arch_kwargs", "num_classes", "class_names", "mean", "std"):
        assert key in cfg
    for key in ("input_size", "trained_on", "val_scores", "segshield_version", "seed"):
        assert key in cfg


def test_save_leaves_no_temporary_files(tmp_path):
    save(build_model("small", width=2), tmp_path / "m")
    save(build_model("small", width=2), tmp_path / "m")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_load_refuses_pickle_files(tmp_path):
    pt = tmp_path / "model.pt"
    torch.save(build_model("small", width=2).state_dict(), pt)
    with pytest.raises(ValueError, match="pickle.*never"):
        load(pt)


def test_load_refuses_pickle_disguised_as_safetensors(tmp_path):
    m = build_model("small", width=2)
    save(m, tmp_path / "m")
    (tmp_path / "m.safetensors").write_bytes(pickle.dumps({"w": np.zeros(3)}))
    with pytest.raises(ValueError, match="not a safetensors file"):
        load(tmp_path / "m")


def test_load_malformed_json(tmp_path):
    save(build_model("small", width=2), tmp_path / "m")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(tmp_path / "m")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("num_classes"), "missing key 'num_classes'"),
        (lambda c: c.update(arch_kwargs="wide"), "'arch_kwargs' should be an object"),
        (lambda c: c.update(format="other"), "not a segshield model checkpoint"),
        (lambda c: c.update(architecture="vit"), "unknown architecture 'vit'"),
        (lambda c: c.update(num_classes=True), "'num_classes' should be an integer"),
        (lambda c: c["arch_kwargs"].update(width=5), "weights do not match"),
        (lambda c: c["arch_kwargs"].update(colour=5), "invalid model settings"),
    ],
)
def test_load_validates_config(tmp_path, edit, message):
    save(build_model("small", width=2), tmp_path / "m")
    cfg = json.loads((tmp_path / "m.json").read_text())
    edit(cfg)
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        load(tmp_path / "m")


def test_load_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint config not found"):
        load(tmp_path / "nothing")
    save(build_model("small", width=2), tmp_path / "m")
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="weights not found"):
        load(tmp_path / "m")


def test_read_config_returns_json(tmp_path):
    save(build_model("unet", width=2, depth=1), tmp_path / "m")
    assert read_config(tmp_path / "m.safetensors")["arch_kwargs"] == {"width": 2, "depth": 1}


def test_save_refuses_custom_and_non_models(tmp_path):
    with pytest.raises(ValueError, match="cannot save architecture 'custom'"):
        save(wrap(nn.Conv2d(3, 1, 1)), tmp_path / "m")
    with pytest.raises(TypeError, match="SegmentationModel"):
        save(nn.Conv2d(3, 1, 1), tmp_path / "m")


# ---------------------------------------------------------------- wrappers


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_wrap_module_passes_images_unnormalised_by_default():
    net = _Net()
    m = wrap(net, num_classes=2)
    x = torch.rand(2, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(m(x), net(x))
    assert m.config["architecture"] == "custom"
    assert m.supports_gradients


def test_wrap_module_with_normalisation_and_stride():
    net = _Net()
    m = wrap(net, num_classes=2, mean=0.5, std=0.25, stride=8)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        ref = net(torch.nn.functional.pad((x - 0.5) / 0.25, (0, 1, 0, 7), mode="replicate"))
        torch.testing.assert_close(m(x), ref[..., :9, :7])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_wrap_torchscript_file(tmp_path):
    net = _Net().eval()
    path = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    m = wrap(path, num_classes=2)
    assert m.config["architecture"] == "torchscript"
    assert m.config["source"] == str(path)
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = m(x)
    torch.testing.assert_close(out, net(x))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_wrap_rejects_non_torchscript_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_Net().state_dict(), path)
    with pytest.raises(ValueError, match="not a TorchScript file"):
        wrap(path)


def test_wrap_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        wrap(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="nn.Module or a path"):
        wrap(42)
    with pytest.raises(ValueError, match="class_names: expected 2 names"):
        wrap(_Net(), num_classes=2, class_names=["a", "b", "c"])


class _FakeInput:
    name = "images"


class _FakeSession:
    """Duck-typed onnxruntime session: logits = 2 * x[:, :1] - 1."""

    def __init__(self):
        self.calls = 0

    def get_inputs(self):
        return [_FakeInput()]

    def run(self, outputs, feeds):
        self.calls += 1
        x = feeds["images"]
        assert isinstance(x, np.ndarray) and x.dtype == np.float32
        return [2 * x[:, :1] - 1]


def test_onnx_net_forward_and_no_gradients():
    from segshield.models import SegmentationModel

    m = SegmentationModel(
        OnnxNet(_FakeSession()), num_classes=1, in_channels=3, mean=0, std=1, stride=1
    )
    x = torch.rand(2, 3, 5, 4)
    torch.testing.assert_close(m(x), 2 * x[:, :1] - 1)
    x.requires_grad_(True)
    out = m(x)
    with pytest.raises(NoGradientError, match="no gradients.*supports_gradients"):
        out.sum().backward()


def test_onnx_net_needs_one_input():
    class TwoInputs(_FakeSession):
        def get_inputs(self):
            return [_FakeInput(), _FakeInput()]

    with pytest.raises(ValueError, match="exactly one input"):
        OnnxNet(TwoInputs())


def test_wrap_onnx_file_without_runtime(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(ImportError, match=r"segshield\[onnx\]"):
        wrap(path)


def test_wrap_real_onnx_model(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net = _Net().eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 8, 8),), str(path), dynamo=False)
    m = wrap(path, num_classes=2)
    assert m.supports_gradients is False
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(m(x), net(x), rtol=1e-4, atol=1e-5)
    x.requires_grad_(True)
    with pytest.raises(NoGradientError):
        m(x).sum().backward()


def test_load_hands_classifier_checkpoints_to_load_classifier(tmp_path):
    from segshield.models import Classifier, build_model, load, save

    clf = build_model("cnn", task="classify", width=2).eval()
    save(clf, tmp_path / "clf")
    got = load(tmp_path / "clf")
    assert isinstance(got, Classifier)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(got(x), clf(x))


def test_mismatched_weights_are_one_line_naming_the_first_difference(tmp_path):
    from segshield.models.checkpoint import check_checkpoint

    save(build_model("small", width=2), tmp_path / "m")
    cfg = json.loads((tmp_path / "m.json").read_text())
    cfg["arch_kwargs"]["width"] = 4
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    for call in (load, check_checkpoint):
        with pytest.raises(ValueError) as exc:
            call(tmp_path / "m")
        text = str(exc.value)
        assert "\n" not in text and len(text) < 400
        assert text.startswith(f"{tmp_path / 'm.safetensors'}: weights do not match")
        assert "of another shape (first net.stem.0.weight: (2, 3, 3, 3) in the file" in text


def test_check_checkpoint_reads_only_the_header(tmp_path):
    from segshield.models.checkpoint import check_checkpoint

    save(build_model("small", width=2), tmp_path / "m")
    assert check_checkpoint(tmp_path / "m", task="segment")["arch_kwargs"] == {"width": 2}
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="m.safetensors: not a safetensors file"):
        check_checkpoint(tmp_path / "m")
    with pytest.raises(ValueError, match="a segmentation checkpoint, not a classifier one"):
        check_checkpoint(tmp_path / "m", task="classify")
