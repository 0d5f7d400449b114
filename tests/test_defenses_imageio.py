"""16-bit colour PNG codec and bit-depth-preserving image I/O (used by ``segshield defend``)."""

from __future__ import annotations

import io
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from segshield.utils.imageio import (
    ImageReadError,
    decode_png16,
    encode_png16,
    read_image,
    write_png,
)


def rand16(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, shape).astype(np.uint16)


def reference_png(arr: np.ndarray, filters: list[int]) -> bytes:
    """Independent, slow PNG writer: per-row filter types 0..4 straight from the spec."""
    h, w, c = arr.shape
    bpp = 2 * c
    raw = arr.astype(">u2").tobytes()
    stride = w * bpp
    out = bytearray()
    prev = [0] * stride
    for r in range(h):
        line = list(raw[r * stride : (r + 1) * stride])
        f = filters[r % len(filters)]
        enc = []
        for i, x in enumerate(line):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) // 2
            else:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else cc
            enc.append((x - pred) % 256)
        out += bytes([f] + enc)
        prev = line

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(out)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_decode_all_filter_types(channels):
    arr = rand16((7, 5, channels), seed=channels)
    for filters in ([0], [1], [2], [3], [4], [0, 1, 2, 3, 4]):
        np.testing.assert_array_equal(decode_png16(reference_png(arr, filters)), arr)


@pytest.mark.parametrize("channels", [3, 4])
def test_encoder_is_read_by_pillow(channels):
    arr = rand16((6, 9, channels), seed=10 + channels)
    with Image.open(io.BytesIO(encode_png16(arr))) as im:  # Pillow checks CRCs; 8-bit view
        assert im.mode == ("RGB" if channels == 3 else "RGBA")
        np.testing.assert_array_equal(np.asarray(im), (arr >> 8).astype(np.uint8))
    grey = arr[:, :, 0]
    with Image.open(io.BytesIO(encode_png16(grey))) as im:  # grey 16-bit is exact in Pillow
        np.testing.assert_array_equal(np.asarray(im), grey)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((5, 6, 3), np.uint16), ((5, 6, 4), np.uint16), ((5, 6), np.uint16), ((5, 6, 1), np.uint16),
     ((5, 6, 3), np.uint8), ((5, 6, 4), np.uint8), ((5, 6), np.uint8)],
)  # fmt: skip
def test_write_read_round_trip_keeps_depth_and_channels(tmp_path, shape, dtype):
    arr = rand16(shape).astype(dtype) if dtype == np.uint16 else rand16(shape).astype(np.uint8)
    path = tmp_path / "x.png"
    write_png(path, arr)
    back = read_image(path)
    assert back.dtype == dtype
    want = arr if arr.ndim == 3 else arr[:, :, None]
    np.testing.assert_array_equal(back, want)


def test_grey_alpha_16_becomes_rgba(tmp_path):
    arr = rand16((4, 3, 2))
    path = tmp_path / "la.png"
    path.write_bytes(encode_png16(arr))
    back = read_image(path)
    assert back.shape == (4, 3, 4) and back.dtype == np.uint16
    np.testing.assert_array_equal(back[:, :, 0], arr[:, :, 0])
    np.testing.assert_array_equal(back[:, :, 2], arr[:, :, 0])
    np.testing.assert_array_equal(back[:, :, 3], arr[:, :, 1])


def test_corrupt_16_bit_png_is_named(tmp_path):
    data = bytearray(encode_png16(rand16((8, 8, 3))))
    data[60] ^= 0xFF  # inside IDAT: the CRC no longer matches
    path = tmp_path / "bad16.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="bad16.png.*CRC"):
        read_image(path)
    path.write_bytes(encode_png16(rand16((8, 8, 3)))[:50])
    with pytest.raises(ImageReadError, match="bad16.png"):
        read_image(path)


def minimal_tiff_rgb16(arr: np.ndarray) -> bytes:
    """Uncompressed little-endian RGB 16-bit TIFF written by hand (Pillow cannot)."""
    h, w, _ = arr.shape
    pixels = arr.astype("<u2").tobytes()
    n_tags = 9
    ifd_off = 8
    bps_off = ifd_off + 2 + n_tags * 12 + 4
    data_off = bps_off + 6
    tags = [
        (256, 3, 1, w),
        (257, 3, 1, h),
        (258, 3, 3, bps_off),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, data_off),
        (277, 3, 1, 3),
        (278, 3, 1, h),
        (279, 4, 1, len(pixels)),
    ]
    out = b"II*\x00" + struct.pack("<I", ifd_off) + struct.pack("<H", n_tags)
    for tag, typ, count, value in tags:
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    return out + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + pixels


def test_tiff_support(tmp_path):
    p16 = tmp_path / "rgb16.tif"
    rgb16 = rand16((4, 5, 3))
    p16.write_bytes(minimal_tiff_rgb16(rgb16))
    back = read_image(p16)  # libtiff: the 16 bits are kept (Pillow would drop them)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, rgb16)
    grey = rand16((6, 7))
    Image.fromarray(grey).save(tmp_path / "g16.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.tif")[:, :, 0], grey)
    rgb = rand16((6, 7, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb8.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb8.tif"), rgb)


def _png8() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: encode_png16(np.zeros((2, 2), np.uint8)), "uint16"),
        (lambda: encode_png16(np.zeros((2, 2, 5), np.uint16)), "C in 1..4"),
        (lambda: decode_png16(b"GIF89a"), "signature"),
        (lambda: decode_png16(b"\x89PNG\r\n\x1a\n"), "IHDR"),
        (lambda: decode_png16(_png8()), "16-bit"),
    ],
)
def test_codec_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the libpng/libtiff path (imagecodecs) ------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize(
    ("shape", "compression"),
    [((6, 7, 3), "deflate"), ((6, 7, 3), "lzw"), ((5, 4, 4), None), ((5, 4, 4), "packbits")],
)  # Pillow identifies contiguous samples only (planar "separate" stays unreadable, as before)
def test_tiff16_colour_layouts_read_exactly(tmp_path, shape, compression):
    imagecodecs = pytest.importorskip("imagecodecs")
    arr = rand16(shape, seed=shape[2])
    path = tmp_path / "c16.tiff"
    data = imagecodecs.tiff_encode(arr, compression=compression)
    path.write_bytes(data)
    back = read_image(path)
    assert back.dtype == np.uint16 and back.shape == shape
    np.testing.assert_array_equal(back, arr)


def test_png16_transparent_colour_keeps_three_channels(tmp_path):
    # tRNS names one RGB colour as transparent; like 8-bit RGB PNG (Pillow) the image stays
    # RGB and keeps its values (libpng alone would add an alpha channel)
    arr = rand16((5, 6, 3), seed=3)
    png = encode_png16(arr)
    ihdr_end = 8 + 25
    path = tmp_path / "trns.png"
    path.write_bytes(
        png[:ihdr_end] + _chunk(b"tRNS", arr[0, 0].astype(">u2").tobytes()) + png[ihdr_end:]
    )
    back = read_image(path)
    assert back.shape == (5, 6, 3)
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize("shape", [(9, 8, 3), (9, 8, 4), (9, 8, 2), (9, 8)])
def test_encoder_writes_16_bit_sub_filtered_rows(shape):
    arr = rand16(shape, seed=len(shape))
    data = encode_png16(arr)
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    assert (w, h, depth) == (8, 9, 16)
    assert ctype == {(9, 8): 0, (9, 8, 2): 4, (9, 8, 3): 2, (9, 8, 4): 6}[shape]
    idat = b"".join(
        data[i + 4 : i + 4 + struct.unpack(">I", data[i - 4 : i])[0]]
        for i in range(len(data)) if data[i : i + 4] == b"IDAT"
    )  # fmt: skip
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(9, -1)
    assert set(rows[:, 0].tolist()) == {1}  # "Sub" on every row
    np.testing.assert_array_equal(decode_png16(data)[..., 0], arr if arr.ndim == 2 else arr[..., 0])


@pytest.mark.parametrize(
    "arr",
    [rand16((7, 9, 3)).astype(np.uint8), rand16((7, 9, 4)).astype(np.uint8),
     rand16((7, 9)).astype(np.uint8), rand16((7, 9))],
    ids=["rgb8", "rgba8", "grey8", "grey16"],
)  # fmt: skip
def test_pillow_files_are_byte_identical_to_pillow(tmp_path, arr):
    # 8-bit and 16-bit grey PNGs are Pillow's bytes, as before imagecodecs came in
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    write_png(tmp_path / "x.png", arr)
    assert (tmp_path / "x.png").read_bytes() == buf.getvalue()


def test_without_imagecodecs_16_bit_colour_names_the_package(tmp_path, monkeypatch):
    rgb16 = rand16((4, 5, 3))
    (tmp_path / "c.png").write_bytes(encode_png16(rgb16))
    (tmp_path / "c.tif").write_bytes(minimal_tiff_rgb16(rgb16))
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import now fails
    for name in ("c.png", "c.tif"):
        with pytest.raises(ImageReadError, match=rf"{name}.*pip install imagecodecs"):
            read_image(tmp_path / name)
    with pytest.raises(ImportError, match=r"package imagecodecs: pip install imagecodecs"):
        write_png(tmp_path / "out.png", rgb16)
    assert not (tmp_path / "out.png").exists()
    for arr in (rgb16.astype(np.uint8), rgb16[:, :, 0]):  # Pillow still does 8-bit and grey
        write_png(tmp_path / "p.png", arr)
        np.testing.assert_array_equal(
            read_image(tmp_path / "p.png")[..., 0], arr.reshape(4, 5, -1)[..., 0]
        )


def test_corrupt_image_data_with_good_crcs_is_named(tmp_path):
    arr = rand16((8, 8, 3))
    png = encode_png16(arr)
    ihdr_end = 8 + 25
    junk = _chunk(b"IDAT", b"not zlib data at all")
    path = tmp_path / "junk16.png"
    path.write_bytes(png[:ihdr_end] + junk + _chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match="junk16.png.*corrupt PNG image data"):
        read_image(path)
