"""16-bit PNG codec: libpng through imagecodecs, every chunk's CRC checked first.

Pillow reads 16-bit colour PNG as 8 bits and cannot write it; these functions keep the
16 bits. `imagecodecs <https://github.com/cgohlke/imagecodecs>`_ is a dependency of
segshield imported only when such a file is met. :mod:`segshield.utils.imageio`
re-exports both functions.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["encode_png16", "decode_png16"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXTRA = "pip install imagecodecs (a dependency of segshield; the install is incomplete)"
_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # PNG colour type -> channels


def _imagecodecs():
    """Import imagecodecs (16-bit colour PNG and TIFF) lazily: it is large."""
    try:
        import imagecodecs
    except ImportError as exc:
        raise ImportError(
            f"16-bit colour PNG and TIFF need the package imagecodecs: {_EXTRA}"
        ) from exc
    return imagecodecs


def encode_png16(arr: np.ndarray, *, level: int = 6) -> bytes:
    """Encode a uint16 image as a 16-bit PNG (grey, grey+alpha, RGB or RGBA).

    libpng through imagecodecs: big-endian
    samples as the PNG specification (ISO/IEC 15948) requires, every row "Sub"
    filtered, zlib-compressed at ``level``.

    Args:
        arr: ``(H, W)`` or ``(H, W, C)`` uint16, C in {1, 2, 3, 4}.
        level: zlib level 0..9 (default 6).

    Returns:
        The PNG file as bytes.

    Raises:
        ValueError: wrong dtype, shape or channel count.
        ImportError: imagecodecs is not installed (the message names the extra).

    Example:
        >>> a = np.arange(24, dtype=np.uint16).reshape(2, 4, 3) * 2000
        >>> bool((decode_png16(encode_png16(a)) == a).all())
        True
    """
    if arr.dtype != np.uint16:
        raise ValueError(f"arr: expected uint16 pixels, got {arr.dtype}; use write_png for uint8")
    hwc = arr[:, :, None] if arr.ndim == 2 else arr
    if hwc.ndim != 3 or hwc.shape[2] not in (1, 2, 3, 4) or hwc.shape[0] * hwc.shape[1] == 0:
        raise ValueError(f"arr: expected (H, W) or (H, W, C) with C in 1..4, got {arr.shape}")
    codecs = _imagecodecs()
    pixels = np.ascontiguousarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
    return codecs.png_encode(pixels, level=level, filter=codecs.PNG.FILTER.SUB)


def _png_header(data: bytes) -> tuple[int, ...]:
    """IHDR fields of a PNG after checking every chunk's length and CRC up to IEND."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    pos, ihdr, has_idat = len(_PNG_SIGNATURE), None, False
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise ValueError(f"truncated PNG chunk {kind!r}")
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ValueError(f"PNG chunk {kind!r} has a bad CRC (corrupt file)")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        has_idat |= kind == b"IDAT"
        if kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or not has_idat:
        raise ValueError("PNG without IHDR or IDAT (truncated file?)")
    return ihdr


def decode_png16(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 16-bit PNG (any colour type but palette) to uint16.

    Every chunk's CRC is checked first (a corrupt file is named as such), then libpng
    through imagecodecs decodes the pixels. No
    colour transform is applied (gamma, sBIT and a ``tRNS`` transparent colour are
    ignored), so the channels are the file's colour type's.

    Args:
        data: the PNG file bytes.

    Returns:
        ``(H, W, C)`` uint16 with C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA).

    Raises:
        ValueError: not a PNG, a bad CRC or truncated data, not 16-bit, interlaced, or
            corrupt image data.
        ImportError: imagecodecs is not installed (the message names the extra).

    Example:
        >>> a = np.full((3, 2), 65535, dtype=np.uint16)
        >>> decode_png16(encode_png16(a)).shape
        (3, 2, 1)
    """
    w, h, depth, ctype, _, _, interlace = _png_header(data)
    if depth != 16 or ctype not in _CHANNELS:
        raise ValueError(f"expected a 16-bit non-palette PNG, got depth {depth}, type {ctype}")
    if interlace:  # refused as before (libpng would read it, warning on stderr)
        raise ValueError("interlaced 16-bit PNG is not supported; re-save it non-interlaced")
    codecs = _imagecodecs()
    try:
        arr = codecs.png_decode(data)
    except codecs.PngError as exc:
        raise ValueError(f"corrupt PNG image data ({exc})") from exc
    c = _CHANNELS[ctype]
    arr = arr.reshape(h, w, -1)[:, :, :c]  # libpng turns a tRNS colour into alpha: drop it
    if arr.dtype != np.uint16 or arr.shape[2] != c:
        raise ValueError(f"PNG decoded as {arr.dtype} {arr.shape}, expected uint16 with C={c}")
    return arr
