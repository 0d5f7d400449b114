"""``segshield defend`` and ``segshield defenses`` end to end on small generated files."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
from PIL import Image

from segshield.cli.main import main
from segshield.defenses import FrequencyRefinement
from segshield.utils.imageio import encode_png16, read_image


def rng_image(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    hi = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, hi, shape).astype(dtype)


def digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def image_folder(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(rng_image((30, 41, 3))).save(src / "rgb.png")
    Image.fromarray(rng_image((17, 23, 4), seed=1)).save(src / "rgba.png")
    Image.fromarray(rng_image((20, 20), seed=2)).save(src / "sub" / "grey.bmp")
    Image.fromarray(rng_image((16, 24, 3), seed=3)).save(src / "sub" / "photo.jpg", quality=90)
    Image.fromarray(rng_image((19, 13), np.uint16, seed=4)).save(src / "sub" / "grey16.png")
    Image.fromarray(rng_image((12, 9, 3), seed=5)).save(src / "sub" / "scan.tif")
    (src / "sub" / "rgb16.png").write_bytes(encode_png16(rng_image((14, 11, 3), np.uint16, 6)))
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return src


def test_folder_with_corrupt_file(image_folder, tmp_path, caplog, capsys):
    before = digest(image_folder)
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="segshield"):
        code = main(["defend", str(image_folder), "-o", str(out), "--defense", "fr:pad=zero"])
    assert code == 1
    assert "broken.png" in caplog.text
    assert digest(image_folder) == before  # inputs untouched
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == [
        "rgb.png",
        "rgba.png",
        "sub/grey.png",
        "sub/grey16.png",
        "sub/photo.png",
        "sub/rgb16.png",
        "sub/scan.png",
    ]
    assert "failed 1" in capsys.readouterr().out
    # same bit depth and channel count, and the values are the library's FR; alpha untouched
    fr = FrequencyRefinement(pad="zero")
    for name in ("rgb.png", "rgba.png", "sub/grey.bmp", "sub/grey16.png", "sub/rgb16.png"):
        src = read_image(image_folder / name)
        got = read_image(out / (name.rsplit(".", 1)[0] + ".png"))
        assert got.dtype == src.dtype and got.shape == src.shape, name
        np.testing.assert_array_equal(got[..., :3], fr(src[..., :3]))
        np.testing.assert_array_equal(got[..., 3:], src[..., 3:])


def test_identity_round_trip_keeps_16_bit_exactly(tmp_path):
    arr = rng_image((9, 10, 4), np.uint16, seed=7)
    src = tmp_path / "a16.png"
    src.write_bytes(encode_png16(arr))
    out = tmp_path / "o"
    assert main(["defend", str(src), "-o", str(out), "--defense", "none"]) == 0
    np.testing.assert_array_equal(read_image(out / "a16.png"), arr)


def test_existing_outputs_skipped_unless_overwrite(tmp_path):
    src = tmp_path / "x.png"
    Image.fromarray(rng_image((16, 16, 3))).save(src)
    out = tmp_path / "o"
    assert main(["defend", str(src), "-o", str(out), "--defense", "bitdepth:bits=1"]) == 0
    first = (out / "x.png").read_bytes()
    assert main(["defend", str(src), "-o", str(out), "--defense", "bitdepth:bits=1"]) == 0
    assert (out / "x.png").read_bytes() == first  # skipped
    (out / "x.png").write_bytes(b"stale")  # --overwrite redoes it
    argv = ["defend", str(src), "-o", str(out), "--defense", "bitdepth:bits=1", "--overwrite"]
    assert main(argv) == 0
    assert (out / "x.png").read_bytes() == first


@pytest.mark.parametrize(
    ("make_args", "match"),
    [
        (lambda d: [str(d / "in"), "-o", str(d / "in" / "out")], "inside the input folder"),
        (lambda d: [str(d / "in"), "-o", str(d / "in")], "inside the input folder"),
        (lambda d: [str(d / "in" / "a.png"), "-o", str(d / "in")], "overwrite the input"),
        (lambda d: [str(d / "in"), str(d / "in" / "a.png"), "-o", str(d / "o")], "both"),
        (lambda d: [str(d / "missing"), "-o", str(d / "o")], "missing"),
        (lambda d: [str(d / "in"), "-o", str(d / "o"), "--defense", "fr:bad=1"], "pd, ac"),
        (lambda d: [str(d / "in"), "-o", str(d / "in" / "a.png")], "not a folder"),
        (lambda d: [str(d / "in"), "-o", str(d / "o"), "--device", "cuda:99"], "--device"),
        (lambda d: [str(d / "empty"), "-o", str(d / "o")], "no images"),
    ],
)
def test_refusals(tmp_path, capsys, make_args, match):
    (tmp_path / "in").mkdir()
    (tmp_path / "empty").mkdir()
    Image.fromarray(rng_image((8, 8, 3))).save(tmp_path / "in" / "a.png")
    before = digest(tmp_path / "in")
    with pytest.raises(SystemExit) as err:
        main(["defend", *make_args(tmp_path)])
    assert err.value.code == 2
    assert match in capsys.readouterr().err
    assert digest(tmp_path / "in") == before
    assert not (tmp_path / "o").exists()


def test_defenses_lists_registry(capsys):
    assert main(["defenses"]) == 0
    text = capsys.readouterr().out
    for name in ("fr", "jpeg", "fd", "bitdepth", "median", "gaussian", "none"):
        assert f"| {name} |" in text
    assert "pd=30" in text and "bpda / smooth" in text
    assert main(["defenses", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in items} >= {"fr", "jpeg"}


@pytest.mark.parametrize("shape", [(13, 11), (13, 11, 3), (9, 8, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_forward_numpy_is_the_numpy_forward_on_a_device(shape, dtype, device):
    fr = FrequencyRefinement(pad="zero").to(device)
    arr = rng_image(shape, dtype, seed=8)
    got = fr.forward_numpy(arr, device)
    assert got.dtype == arr.dtype and got.shape == arr.shape
    want = FrequencyRefinement(pad="zero")(arr)
    if device.type == "cpu":
        np.testing.assert_array_equal(got, want)
    else:  # another float64 matmul may round a .5 the other way
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert not np.array_equal(got, arr)
