"""Models: registry shapes, normalisation, padding, ResNet layouts, error messages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segshield.models import SegmentationModel, build_model, list_models, parse_model_spec
from segshield.models.resnet import ResNetEncoder

TINY = {
    "unet": {"width": 2, "depth": 2},
    "resnet_fcn": {"width": 2, "decoder_width": 2},
    "resnet18_fcn": {"width": 2, "decoder_width": 2},
    "resnet34_fcn": {"width": 2, "decoder_width": 2},
    "small": {"width": 2},
}


#: the MONAI networks (extra segshield[monai]; tests/test_monai.py builds them)
MONAI_NAMES = {"monai-unet", "monai-segresnet", "monai-attention-unet"}


def test_registry_lists_all_names():
    assert set(list_models()) == set(TINY) | MONAI_NAMES


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize(("c", "k"), [(1, 1), (3, 3)])
@pytest.mark.parametrize("hw", [(32, 32), (33, 17), (7, 40)])
def test_shapes_any_size(name, c, k, hw):
    torch.manual_seed(0)
    model = build_model(name, num_classes=k, in_channels=c, **TINY[name]).eval()
    x = torch.rand(2, c, *hw)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, k, *hw)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model.num_classes == k
    assert model.config["architecture"] == name
    assert model.config["arch_kwargs"] == TINY[name]


def test_strides_match_architecture():
    assert build_model("unet", width=2, depth=3).stride == 8
    assert build_model("resnet18_fcn", width=2, decoder_width=2).stride == 32
    assert build_model("small", width=2).stride == 4


def test_model_accepts_gradients_to_input(device):
    model = build_model("unet", width=2, depth=2).to(device).eval()
    x = torch.rand(1, 3, 18, 22, device=device, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert x.grad.abs().sum() > 0


def test_spec_string_settings_and_override():
    m = build_model("unet:width=3,depth=2")
    assert m.config["arch_kwargs"] == {"width": 3, "depth": 2}
    assert m.stride == 4
    m = build_model("unet:width=3,depth=2", depth=1)
    assert m.stride == 2
    assert parse_model_spec("small: width = 5 ") == ("small", {"width": 5})


def test_parse_model_spec_types_and_checks_registered_names():
    """Registered names: lower-cased, typed by the factory, unknown settings refused;
    unknown names come back untyped for the caller to refuse."""
    assert parse_model_spec(" UNet : width=1e1,depth=60/20") == ("unet", {"width": 10, "depth": 3})
    with pytest.raises(ValueError, match="unet:width: expected an integer, got 'wide'"):
        parse_model_spec("unet:width=wide")
    with pytest.raises(TypeError, match="unknown setting.s. colour; valid settings: width"):
        parse_model_spec("small:colour=red")
    with pytest.raises(ValueError, match="'width' given twice"):
        parse_model_spec("small:width=2,width=3")
    assert parse_model_spec("segformer:layers=3,act=gelu") == (
        "segformer",
        {"layers": 3, "act": "gelu"},
    )
    with pytest.raises(TypeError, match="expected a name string"):
        parse_model_spec(16)


def test_monai_settings_parse_without_monai():
    """Dash-separated list settings of the MONAI networks are typed by the registry
    alone (MONAI is only imported to build the network)."""
    assert parse_model_spec("monai-unet:channels=16-32-64-128,strides=2-2-1") == (
        "monai-unet",
        {"channels": (16, 32, 64, 128), "strides": (2, 2, 1)},
    )
    assert parse_model_spec("monai-segresnet:blocks_up=none") == (
        "monai-segresnet",
        {"blocks_up": None},
    )
    with pytest.raises(ValueError, match="channels: expected a dash-separated list of integers"):
        parse_model_spec("monai-unet:channels=16-x")
    with pytest.raises(ValueError, match="dash-separated"):
        parse_model_spec("monai-unet:channels=16--32")


def test_bad_name_lists_valid_choices():
    with pytest.raises(ValueError, match="unet.*resnet_fcn.*small"):
        build_model("segformer")


def test_unknown_setting_lists_valid_ones():
    with pytest.raises(TypeError, match="unknown setting.*depth.*valid settings: width"):
        build_model("small", depth=3)


def test_bad_spec_syntax():
    with pytest.raises(ValueError, match="key=value"):
        build_model("unet:width16")


def test_class_names_count_checked():
    with pytest.raises(ValueError, match="expected 3 names"):
        build_model("small", num_classes=3, class_names=["a", "b"])
    m = build_model("small", num_classes=3, class_names=["bg", "rim", "cup"], width=2)
    assert m.config["class_names"] == ["bg", "rim", "cup"]


def test_out_of_range_settings():
    with pytest.raises(ValueError, match="depth"):
        build_model("unet", depth=9)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small", num_classes=0)
    with pytest.raises(TypeError, match="width"):
        build_model("small", width=2.5)


class _Echo(nn.Module):
    """Returns its (normalised, padded) input, recording the padded shape."""

    def forward(self, x):
        self.seen = tuple(x.shape)
        return x


def test_normalisation_inside_the_model():
    mean, std = [0.2, 0.4, 0.6], [0.5, 0.25, 2.0]
    m = SegmentationModel(_Echo(), num_classes=3, in_channels=3, mean=mean, std=std)
    x = torch.rand(2, 3, 5, 6)
    expected = torch.stack([(x[:, i] - mean[i]) / std[i] for i in range(3)], dim=1)
    torch.testing.assert_close(m(x), expected)
    assert m.config["mean"] == pytest.approx(mean)
    assert m.config["std"] == pytest.approx(std)


def test_padding_to_stride_and_crop_back():
    echo = _Echo()
    m = SegmentationModel(echo, num_classes=1, in_channels=1, mean=0.0, std=1.0, stride=8)
    x = torch.rand(1, 1, 13, 17)
    out = m(x)
    assert echo.seen == (1, 1, 16, 24)
    torch.testing.assert_close(out, x)


def test_padding_is_replicate_at_bottom_right():
    class Spy(nn.Module):
        def forward(self, x):
            self.x = x
            return x

    spy = Spy()
    m = SegmentationModel(spy, num_classes=1, in_channels=1, mean=0.0, std=1.0, stride=4)
    x = torch.rand(1, 1, 3, 2)
    m(x)
    ref = F.pad(x, (0, 2, 0, 1), mode="replicate")
    torch.testing.assert_close(spy.x, ref)


def test_model_checks_inputs_and_outputs():
    m = SegmentationModel(nn.Conv2d(3, 2, 1), num_classes=2, in_channels=3)
    with pytest.raises(ValueError, match="expected 3 channel"):
        m(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="unsqueeze"):
        m(torch.rand(3, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        m(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    wrong_k = SegmentationModel(nn.Conv2d(3, 2, 1), num_classes=1, in_channels=3)
    with pytest.raises(ValueError, match="expected 1 channel.*got 2.*num_classes"):
        wrong_k(torch.rand(1, 3, 4, 4))
    shrink = SegmentationModel(nn.Conv2d(3, 1, 2, stride=2), num_classes=1, in_channels=3)
    with pytest.raises(ValueError, match="stride"):
        shrink(torch.rand(1, 3, 4, 4))


def test_model_settings_validated():
    with pytest.raises(ValueError, match="mean: expected 1 or 3"):
        SegmentationModel(nn.Identity(), num_classes=3, in_channels=3, mean=[0.1, 0.2])
    with pytest.raises(ValueError, match="std: expected values > 0"):
        SegmentationModel(nn.Identity(), num_classes=1, in_channels=1, std=0.0)
    with pytest.raises(TypeError, match="nn.Module"):
        SegmentationModel(lambda x: x, num_classes=1, in_channels=1)


@pytest.mark.parametrize(
    ("depth", "params", "out_channels"),
    [
        # torchvision ImageNet ResNets minus the 1000-way fc layer (in*1000 + 1000)
        (18, 11_689_512 - 513_000, 512),
        (34, 21_797_672 - 513_000, 512),
        (50, 25_557_032 - 2_049_000, 2048),
    ],
)
def test_resnet_encoder_matches_standard_layout(depth, params, out_channels):
    enc = ResNetEncoder(depth=depth, in_channels=3, width=64)
    assert sum(p.numel() for p in enc.parameters()) == params
    assert enc.channels[-1] == out_channels


def test_resnet_encoder_strides():
    enc = ResNetEncoder(depth=18, in_channels=1, width=2)
    feats = enc(torch.zeros(1, 1, 64, 96))
    assert [f.shape[-2:] for f in feats] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
    assert [f.shape[1] for f in feats] == enc.channels


def test_resnet_bad_depth_lists_choices():
    with pytest.raises(ValueError, match="18, 34, 50"):
        ResNetEncoder(depth=101)


def test_fr_paper_model_defaults():
    # ResNet-50 encoder and a single sigmoid channel by default (Liu et al., MICCAI 2020)
    m = build_model("resnet_fcn")
    assert m.num_classes == 1
    assert m.net.encoder.channels[-1] == 2048
    assert any(isinstance(mod, nn.ConvTranspose2d) for mod in m.net.modules())
