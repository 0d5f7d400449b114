"""Image files read upright and split into colour and alpha, written back in their layout."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from segshield.utils.imageio import (
    ImageReadError,
    decode_image,
    encode_png16,
    read_image,
    scan_images,
)
from segshield.utils.imagelayers import (
    ImageLayers,
    apply_orientation,
    read_image_layers,
    write_image_layers,
)


def rng_image(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    hi = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, hi, shape).astype(dtype)


def save_oriented(path, arr, orientation, **kw):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif, **kw)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_pillows_exif_transpose(tmp_path, orientation):
    arr = rng_image((5, 7, 3), seed=orientation)
    path = tmp_path / "o.png"
    save_oriented(path, arr, orientation)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im))
    assert decode_image(path)[1] == orientation
    np.testing.assert_array_equal(read_image_layers(path).colour, want)
    np.testing.assert_array_equal(apply_orientation(arr, orientation), want)
    np.testing.assert_array_equal(read_image(path), arr)  # read_image: pixels as stored


def test_jpeg_orientation_6_is_upright(tmp_path):
    path = tmp_path / "phone.jpg"
    save_oriented(path, rng_image((6, 10, 3)), 6, quality=95)
    with Image.open(path) as im:
        stored = np.asarray(im)
        upright = np.asarray(ImageOps.exif_transpose(im))
    layers = read_image_layers(path)
    assert layers.colour.shape == (10, 6, 3)
    np.testing.assert_array_equal(layers.colour, upright)
    np.testing.assert_array_equal(layers.colour, np.rot90(stored, -1))  # 90 deg clockwise


def test_bad_orientation_is_refused():
    with pytest.raises(ValueError, match="orientation: expected an EXIF orientation 1..8, got 9"):
        apply_orientation(np.zeros((2, 2)), 9)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_alpha_keeps_its_layout_and_alpha(tmp_path, dtype):
    arr = rng_image((5, 4, 2), dtype, seed=2)
    src = tmp_path / "la.png"
    if dtype == np.uint8:
        Image.fromarray(arr).save(src)
    else:
        src.write_bytes(encode_png16(arr))
    layers = read_image_layers(src)
    assert layers.colour.shape == (5, 4, 1) and layers.alpha.shape == (5, 4)
    np.testing.assert_array_equal(layers.alpha, arr[:, :, 1])
    out = tmp_path / "out.png"
    write_image_layers(
        out, layers.replace(255 - layers.colour if dtype == np.uint8 else layers.colour)
    )
    back, _ = decode_image(out)
    assert back.shape == (5, 4, 2) and back.dtype == dtype
    np.testing.assert_array_equal(back[:, :, 1], arr[:, :, 1])
    if dtype == np.uint8:
        with Image.open(out) as im:
            assert im.mode == "LA"
        np.testing.assert_array_equal(back[:, :, 0], 255 - arr[:, :, 0])


def test_one_bit_stays_one_bit_thresholded_at_128(tmp_path):
    bits = rng_image((4, 6), seed=5) > 127
    src = tmp_path / "b.png"
    Image.fromarray(bits).save(src)
    layers = read_image_layers(src)
    assert layers.bilevel and layers.colour.dtype == np.uint8
    np.testing.assert_array_equal(layers.colour[:, :, 0], bits * np.uint8(255))
    grey = np.array([[0, 127, 128, 255, 200, 3]] * 4, np.uint8)[:, :, None]
    write_image_layers(tmp_path / "o.png", layers.replace(grey))
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "1"
        np.testing.assert_array_equal(np.asarray(im), grey[:, :, 0] >= 128)


def test_replace_refuses_another_shape():
    layers = ImageLayers(np.zeros((2, 3, 1), np.uint8))
    with pytest.raises(ValueError, match=r"colour: expected uint8 \(2, 3, 1\), got uint16"):
        layers.replace(np.zeros((2, 3, 1), np.uint16))


def test_multi_page_tiff_is_refused_naming_the_pages(tmp_path):
    pages = [Image.fromarray(rng_image((4, 4), seed=s)) for s in range(2)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    for reader in (read_image, read_image_layers):
        with pytest.raises(ImageReadError, match=r"stack.tif: holds 2 pages; .*own file"):
            reader(path)


def test_scan_names_dangling_links_loops_and_folders(tmp_path):
    Image.fromarray(rng_image((4, 4))).save(tmp_path / "good.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    (tmp_path / "x.png").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    files, problems = scan_images([tmp_path])
    assert files == [tmp_path / "good.png"]
    assert problems == [
        f"{tmp_path / 'dangling.png'}: a dangling symbolic link to {tmp_path / 'gone.png'}; "
        "remove or fix the link",
        f"{tmp_path / 'loop.png'}: a symbolic link loop; remove or fix the link",
        f"{tmp_path / 'x.png'}: a folder, not an image file; rename it",
    ]
