"""segshield export: defended models as ONNX / torch.export files (docs/ALGORITHMS.md §1-§2).

The round trips trace and translate real graphs (several seconds each) and are marked
slow; the rest checks the graph module, the refusals and the wrapper without tracing.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from segshield.data.phantom_derm import make_derm_phantom
from segshield.defenses import block_dct, get_defense
from segshield.export import EXPORTABLE_DEFENSES, DefendedGraph, export_defended
from segshield.export.graph import traceable_defense
from segshield.models import build_model, list_models, save, wrap

EXPORT_SPECS = ("fr", "fd", "bitdepth:bits=4", "gaussian:sigma=1", "none")
H, W = 223, 191


def tiny(name: str, num_classes: int = 1):
    kwargs = {
        "unet": {"width": 4, "depth": 2},
        "resnet18_fcn": {"width": 8, "decoder_width": 8},
    }.get(name, {})
    torch.manual_seed(0)
    return build_model(name, num_classes=num_classes, **kwargs).eval()


def phantoms(n: int) -> torch.Tensor:
    """n phantom dermoscopy images (H, W) as a float batch in [0, 1] (8-bit values)."""
    imgs = [make_derm_phantom((H, W), seed=1, index=i).image for i in range(n)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


def reference(model, defense, x):
    with torch.no_grad():
        logits = model(defense(x))
    return torch.sigmoid(logits) if model.num_classes == 1 else torch.softmax(logits, 1)


def tied_images(x: torch.Tensor, defense, tol: float = 1e-6) -> torch.Tensor:
    """Per image: whether some FR/FD coefficient C/Q lies within ``tol`` of a rounding tie."""
    if defense.name not in ("fr", "fd"):
        return torch.zeros(x.shape[0], dtype=torch.bool)
    b, c, h, w = x.shape
    mode = "replicate" if defense.pad == "edge" else "constant"
    v = torch.nn.functional.pad(x.double() * 255, (0, (-w) % 8, 0, (-h) % 8), mode=mode)
    t = block_dct(v) / defense.table.double()
    return ((t - t.floor() - 0.5).abs() < tol).flatten(1).any(1)


def check_round_trip(probs: np.ndarray, ref: torch.Tensor, x, defense) -> None:
    """Probabilities within 1e-4 except on an FR rounding tie; masks differ in <= 0.1%."""
    probs = torch.from_numpy(probs)
    assert probs.shape == ref.shape and probs.dtype == torch.float32
    diff = (probs - ref).abs().flatten(1).amax(1)
    tied = tied_images(x, defense)
    assert bool(((diff <= 1e-4) | tied).all()), (diff, tied)
    k = ref.shape[1]
    masks = (lambda p: p[:, 0] > 0.5) if k == 1 else (lambda p: p.argmax(1))
    assert float((masks(probs) != masks(ref)).float().mean()) <= 1e-3


# --- the graph module (no tracing) -----------------------------------------------------


@pytest.mark.parametrize("spec", EXPORT_SPECS)
def test_defended_graph_is_defence_then_model_then_probabilities(spec):
    model, defense = tiny("unet"), get_defense(spec)
    x = torch.rand(2, 3, 23, 19)
    with torch.no_grad():
        out = DefendedGraph(model, defense)(x)
    torch.testing.assert_close(out, reference(model, defense, x), atol=1e-5, rtol=0)


def test_defended_graph_softmax_and_uint8_input():
    model, defense = tiny("unet", num_classes=3), get_defense("fr")
    x8 = (torch.rand(2, 3, 17, 21) * 255).round().to(torch.uint8)
    with torch.no_grad():
        out = DefendedGraph(model, defense, uint8_input=True)(x8)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 17, 21))
    ref = reference(model, defense, x8.float() / 255)
    assert float((out.argmax(1) != ref.argmax(1)).float().mean()) <= 1e-3


def test_refused_defences_name_themselves_and_the_exportable_ones():
    listed = "exportable defences: fr, fd, bitdepth, gaussian, none"
    with pytest.raises(ValueError, match=r"--defense jpeg:q=75,gradient=bpda: cannot be exp"):
        traceable_defense(get_defense("jpeg"))
    with pytest.raises(ValueError, match=f"libjpeg.*{listed}"):
        traceable_defense(get_defense("jpeg"))
    with pytest.raises(ValueError, match=f"median:k=3.*no median operator.*{listed}"):
        traceable_defense(get_defense("median"))
    with pytest.raises(ValueError, match="cannot be exported"):
        DefendedGraph(tiny("unet"), get_defense("median"))
    assert EXPORTABLE_DEFENSES == ("fr", "fd", "bitdepth", "gaussian", "none")


def test_export_refuses_bad_suffix_and_non_segmentation_model(tmp_path):
    with pytest.raises(ValueError, match=r"expected a \.onnx or \.pt2 file name, got suffix"):
        export_defended(tiny("unet"), get_defense("fr"), tmp_path / "m.tflite")
    with pytest.raises(TypeError, match="expected a segshield SegmentationModel"):
        DefendedGraph(torch.nn.Conv2d(3, 1, 1), get_defense("fr"))
    assert not list(tmp_path.iterdir())


def test_cli_export_validate_errors(tmp_path, capsys):
    from segshield.cli.main import main

    save(tiny("unet"), tmp_path / "m")
    base = ["export", "--model", str(tmp_path / "m.safetensors")]
    for extra, message in (
        (["--defense", "jpeg", "-o", str(tmp_path / "d.onnx")], "jpeg.*cannot be exported"),
        (["--defense", "fr", "-o", str(tmp_path / "d.bin")], "expected a file name ending"),
        (["--defense", "fr:nope=1", "-o", str(tmp_path / "d.onnx")], "nope"),
    ):
        with pytest.raises(SystemExit) as info:
            main(base + extra)
        assert info.value.code == 2
        assert re.search(message, capsys.readouterr().err)
    with pytest.raises(SystemExit) as info:
        main(["export", "--model", str(tmp_path / "missing"), "--defense", "fr", "-o", "d.onnx"])
    assert info.value.code == 2 and "no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "d.onnx").exists()


def test_wrap_refuses_pt2(tmp_path):
    path = tmp_path / "d.pt2"
    path.write_bytes(b"PK")
    with pytest.raises(ValueError, match="does not load torch.export.*unpickles"):
        wrap(path)


# --- round trips (trace + translate: slow) ------------------------------------------------


def _session(path):
    onnxruntime = pytest.importorskip("onnxruntime")
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _cases():
    # fd: test_cli_export_writes_onnx; none: the model alone, inside every other case
    cases = [("unet", "fr"), ("unet", "bitdepth:bits=4"), ("unet", "gaussian:sigma=1")]
    cases.append(("resnet18_fcn", "fr"))
    monai = pytest.mark.skipif("monai-unet" not in list_models(), reason="no monai-unet")
    return [*cases, pytest.param("monai-unet", "fr", marks=monai)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "spec"), _cases())
def test_onnx_round_trip_matches_pytorch(tmp_path, name, spec):
    pytest.importorskip("onnxscript")
    model, defense = tiny(name), get_defense(spec)
    path = tmp_path / "defended.onnx"
    meta = export_defended(model, defense, path)
    assert meta["defense"] == defense.spec() and meta["output"] == "sigmoid"
    session = _session(path)
    for x in (phantoms(1), torch.rand(5, 3, H, W, generator=torch.Generator().manual_seed(2))):
        probs = session.run(None, {"images": x.numpy()})[0]
        check_round_trip(probs, reference(model, defense, x), x, defense)


@pytest.mark.slow
def test_defended_onnx_wraps_for_evaluation(tmp_path):
    pytest.importorskip("onnxscript")
    model, defense = tiny("unet", num_classes=3), get_defense("fr:pd=20")
    model.config["class_names"] = ["bg", "disc", "cup"]
    path = tmp_path / "d.onnx"
    export_defended(model, defense, path, uint8_input=True)
    wrapped = wrap(path)
    assert wrapped.config["defended"] is True and wrapped.config["defense"] == defense.spec()
    assert (wrapped.num_classes, wrapped.in_channels) == (3, 3)
    assert wrapped.config["class_names"] == ["bg", "disc", "cup"]
    assert wrapped.supports_gradients is False
    x = phantoms(2)
    with torch.no_grad():
        pred, ref = wrapped(x).argmax(1), model(defense(x)).argmax(1)
    assert float((pred != ref).float().mean()) <= 1e-3
    with pytest.raises(ValueError, match="exported with num_classes=3, got 1"):
        wrap(path, num_classes=1)
    with pytest.raises(ValueError, match="normalises inside"):
        wrap(path, mean=0.5, std=0.5)


@pytest.mark.slow
def test_pt2_round_trip_through_torch_export_load(tmp_path):
    model, defense = tiny("unet"), get_defense("fr")
    path = tmp_path / "defended.pt2"
    meta = export_defended(model, defense, path, uint8_input=True)
    extra = {"segshield.json": ""}
    program = torch.export.load(path, extra_files=extra)  # our own file, just written
    assert json.loads(extra["segshield.json"]) == meta and meta["input"] == "uint8"
    for b in (1, 5):
        x8 = (phantoms(b) * 255).round().to(torch.uint8)
        with torch.no_grad():
            probs = program.module()(x8)
        x = x8.float() / 255
        check_round_trip(probs.numpy(), reference(model, defense, x), x, defense)


@pytest.mark.slow
def test_cli_export_writes_onnx(tmp_path):
    pytest.importorskip("onnxscript")
    from segshield.cli.main import main

    model = tiny("unet")
    save(model, tmp_path / "m")
    out = tmp_path / "out" / "d.onnx"
    args = ["export", "--model", str(tmp_path / "m.safetensors"), "--defense", "fd"]
    assert main(args + ["-o", str(out)]) == 0
    x = phantoms(1)
    probs = _session(out).run(None, {"images": x.numpy()})[0]
    check_round_trip(probs, reference(model, get_defense("fd"), x), x, get_defense("fd"))
