"""Baseline defences (docs/ALGORITHMS.md §3) vs scipy / Pillow references, gradients, registry."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image

from segshield.defenses import (
    BitDepth,
    Defense,
    FeatureDistillation,
    FrequencyRefinement,
    Gaussian,
    Identity,
    Jpeg,
    Median,
    get_defense,
    list_defenses,
    parse_spec,
)

ALL = [
    FrequencyRefinement(),
    FrequencyRefinement(gradient="smooth"),
    FeatureDistillation(),
    Jpeg(75),
    BitDepth(4),
    BitDepth(3, gradient="smooth"),
    Median(3),
    Gaussian(1.0),
    Identity(),
]


def images(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


@pytest.mark.parametrize("defense", ALL, ids=lambda d: d.spec())
def test_every_defense_keeps_shape_dtype_device_and_range(defense, device):
    for shape in ((2, 3, 23, 19), (1, 1, 8, 8), (1, 4, 9, 17)):
        x = images(shape).to(device)
        y = defense(x)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
        assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert defense.gradient in defense.gradients and not defense.randomized


@pytest.mark.parametrize("defense", ALL, ids=lambda d: d.spec())
def test_gradient_policy(defense):
    x = images((1, 3, 16, 16), seed=1).requires_grad_(True)
    g = torch.randn(1, 3, 16, 16)
    defense(x).backward(g)
    assert torch.isfinite(x.grad).all()
    if defense.gradient == "bpda":
        torch.testing.assert_close(x.grad, g, rtol=0, atol=0)
    else:  # exact or smooth: a real, nonzero, non-identity gradient (except Identity)
        assert x.grad.abs().sum() > 0
        if not isinstance(defense, Identity):
            assert not torch.equal(x.grad, g)


def test_gaussian_matches_scipy_and_gradcheck():
    x = images((2, 3, 20, 15)).double()
    for sigma in (0.5, 1.0, 2.3):
        ref = scipy.ndimage.gaussian_filter(
            x.numpy(), (0, 0, sigma, sigma), mode="nearest", truncate=4.0
        )
        np.testing.assert_allclose(Gaussian(sigma)(x).numpy(), ref, atol=1e-12)
    xs = images((1, 1, 6, 5)).double().requires_grad_(True)
    assert torch.autograd.gradcheck(Gaussian(0.8), (xs,))


def test_median_matches_scipy():
    x = images((2, 3, 20, 15))
    for k in (1, 3, 5):
        ref = scipy.ndimage.median_filter(x.numpy(), size=(1, 1, k, k), mode="nearest")
        np.testing.assert_array_equal(Median(k)(x).numpy(), ref)


def test_bitdepth_levels():
    x = images((1, 3, 10, 10)).double()
    for bits in (1, 3, 8):
        levels = 2**bits - 1
        y = BitDepth(bits)(x).numpy()
        np.testing.assert_allclose(y, np.round(x.numpy() * levels) / levels, atol=1e-12)
        assert len(np.unique(y)) <= 2**bits
    assert BitDepth(8)(torch.tensor([[[[0.5]]]])).item() == pytest.approx(128 / 255)


def pil_jpeg(arr: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def test_jpeg_matches_pillow_and_channel_rules():
    x = images((2, 3, 24, 32))
    u8 = np.clip(np.round(x.numpy() * 255), 0, 255).astype(np.uint8)
    y = Jpeg(50)(x)
    for i in range(2):
        ref = pil_jpeg(u8[i].transpose(1, 2, 0), 50).transpose(2, 0, 1)
        np.testing.assert_array_equal(np.round(y[i].numpy() * 255).astype(np.uint8), ref)
    # C = 1: grey JPEG; C = 4: each channel as its own grey JPEG
    x4 = images((1, 4, 16, 16), seed=3)
    y4 = Jpeg(60)(x4)
    u8_4 = np.clip(np.round(x4.numpy() * 255), 0, 255).astype(np.uint8)
    for c in range(4):
        np.testing.assert_array_equal(
            np.round(y4[0, c].numpy() * 255).astype(np.uint8), pil_jpeg(u8_4[0, c], 60)
        )
    torch.testing.assert_close(Jpeg(60)(x4[:, 1:2]), y4[:, 1:2])
    # lower quality loses more
    err = [float((Jpeg(q)(x) - x).abs().mean()) for q in (10, 50, 95)]
    assert err[0] > err[1] > err[2]


def test_numpy_path_for_baselines():
    img = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    out = BitDepth(1)(img)
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    np.testing.assert_array_equal(out, np.where(img > 127, 255, 0))
    img16 = (img.astype(np.uint16) * 257)[:, :, 0]
    out16 = Median(3)(img16)
    ref = scipy.ndimage.median_filter(img16, size=3, mode="nearest")
    assert out16.dtype == np.uint16
    np.testing.assert_array_equal(out16, ref)
    np.testing.assert_array_equal(Identity()(img), img)


# --- registry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "fr:pd=30,ac=5,gd=60",
        "fr",
        "fr:gd=80,pad=zero,clip=false,gradient=smooth,quality=40,dtype=float64",
        "jpeg:q=75",
        "bitdepth:bits=4",
        "median:k=3",
        "gaussian:sigma=1",
        "gaussian:sigma=0.5,gradient=bpda",
        "fd",
        "fd:low=20,gradient=smooth",
        "none",
    ],
)
def test_registry_builds_and_spec_rebuilds(spec):
    d = get_defense(spec)
    assert isinstance(d, Defense) and d.name == spec.split(":")[0]
    again = get_defense(d.spec())
    assert again.spec() == d.spec() and type(again) is type(d)
    x = images((1, 3, 16, 16))
    torch.testing.assert_close(again(x), d(x))


def test_registry_values():
    fr = get_defense("fr:pd=30,ac=5,gd=60,pad=zero")
    assert isinstance(fr, FrequencyRefinement) and fr.pad == "zero"
    assert fr.table[0, 0] == 30 and fr.table[2, 2] == 5 and fr.table[7, 7] == 60
    assert get_defense("jpeg:q=30").quality == 30
    assert get_defense("gaussian:sigma=1.5").sigma == 1.5
    assert get_defense("fr:clip=false").clip is False
    assert parse_spec(" FR : pd=30 , ac=5 ") == ("fr", {"pd": 30, "ac": 5})
    d = Median(5)
    assert get_defense(d) is d


def test_registry_custom_tables(tmp_path):
    tables = torch.arange(1, 129, dtype=torch.float64).reshape(2, 8, 8)
    fr = FrequencyRefinement.from_table(tables, pad="zero")
    spec = fr.spec()
    assert spec.startswith("fr:table=1/2/3/")
    again = get_defense(spec)
    torch.testing.assert_close(again.table, tables)
    path = tmp_path / "tab.json"
    fr.to_file(path)
    from_file = get_defense(f"fr:file={path},gradient=smooth")
    torch.testing.assert_close(from_file.table, tables)
    assert from_file.gradient == "smooth" and from_file.pad == "zero"
    assert get_defense(from_file.spec()).spec() == from_file.spec()


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        ("frq", ValueError, "valid names: fr, jpeg, fd, bitdepth, median, gaussian, none"),
        ("jpeg:quality=75", ValueError, "valid parameters: q, gradient"),
        ("none:x=1", ValueError, r"valid parameters: \(none\)"),
        ("jpeg:q", ValueError, "key=value"),
        ("jpeg:q=high", ValueError, "expected an integer"),
        ("gaussian:sigma=wide", ValueError, "expected a number"),
        ("fr:clip=maybe", ValueError, "true or false"),
        ("fr:pd=1,pd=2", ValueError, "twice"),
        ("fr:dtype=float16", ValueError, "dtype"),
        ("fr:table=1/2/3", ValueError, "64 steps"),
        ("fr:table=1/a", ValueError, "numbers"),
        ("fr:table=" + "/".join(["5"] * 64) + ",pd=3", ValueError, "cannot be combined"),
        ("fr:table=" + "/".join(["5"] * 64) + ",file=x.json", ValueError, "either"),
        ("fr:file=/nonexistent/t.json", FileNotFoundError, "t.json"),
        ("median:k=4", ValueError, "odd"),
        ("bitdepth:bits=0", ValueError, "bits"),
        ("jpeg:gradient=smooth", ValueError, "'bpda'"),
        (42, TypeError, "string"),
    ],
)
def test_registry_errors(spec, exc, match):
    with pytest.raises(exc, match=match):
        get_defense(spec)


def test_list_defenses_describes_everything():
    items = {d["name"]: d for d in list_defenses()}
    assert set(items) == {"fr", "jpeg", "fd", "bitdepth", "median", "gaussian", "none"}
    assert items["fr"]["params"]["pd"]["default"] == 30
    assert items["fr"]["gradients"] == ("bpda", "smooth")
    assert items["gaussian"]["gradient"] == "exact"
    assert items["jpeg"]["params"]["q"]["default"] == 75
    for d in items.values():
        built = get_defense(d["name"])
        assert built.gradient == d["gradient"]
        for key, p in d["params"].items():  # defaults listed are the real defaults
            if p["default"] is not None and key not in ("dtype",):
                assert key in built.spec_params() or key in ("quality",)
                assert built.spec_params()[key] == p["default"]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: Jpeg(0), ValueError, "quality"),
        (lambda: Jpeg(75, gradient="exact"), ValueError, "gradient"),
        (lambda: Median(0), ValueError, "k"),
        (lambda: Median(2), ValueError, "odd"),
        (lambda: Median(3.5), TypeError, "integer"),
        (lambda: Gaussian(0), ValueError, "sigma"),
        (lambda: Gaussian(1, gradient="smooth"), ValueError, "gradient"),
        (lambda: BitDepth(17), ValueError, "bits"),
        (lambda: FeatureDistillation(low=-1), ValueError, "low"),
        (lambda: FeatureDistillation(low_size=9), ValueError, "low_size"),
        (lambda: Identity()(torch.rand(2, 2)), ValueError, r"\(B, C, H, W\)"),
        (lambda: Jpeg()([1, 2]), TypeError, "float tensor"),
    ],
)
def test_baseline_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_class_level_gradient_is_the_default_policy():
    assert FrequencyRefinement.gradient == "bpda" and Gaussian.gradient == "exact"
    assert Identity.gradient == "exact" and Jpeg.gradient == "bpda"
    assert FrequencyRefinement(gradient="smooth").gradient == "smooth"
    assert FrequencyRefinement.gradient == "bpda"  # instance choice does not leak
