"""Reading and writing image files: one loader for every command, atomic lossless writes.

Images come back as numpy arrays ``(H, W, C)`` with their native integer dtype
(uint8 or uint16), so 16-bit data keep their depth through a defence.

Pillow reads 16-bit colour PNG as 8-bit and cannot write it, so 16-bit RGB/RGBA (and
grey+alpha) PNGs are read and written by a small numpy + zlib codec here
(:func:`encode_png16`, :func:`decode_png16`); everything else goes through Pillow.
16-bit colour TIFF is refused with a clear error (Pillow would drop it to 8 bits).
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "read_image",
    "read_mask",
    "write_png",
    "atomic_write_bytes",
    "list_images",
    "from_tensor",
    "encode_png16",
    "decode_png16",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file."""


def list_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    Folders are searched recursively for the suffixes in ``IMAGE_SUFFIXES``.

    Raises:
        FileNotFoundError: a named path does not exist.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder; check the path")
        if p.is_dir():
            out.extend(
                sorted(
                    q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
                )
            )
        else:
            out.append(p)
    return out


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, C)`` uint8 or uint16, C in {1, 3, 4}.

    Palette images are expanded to RGB(A); 16-bit grey stays uint16; 1-bit becomes 0/255.

    Raises:
        ImageReadError: the file is missing, corrupt or in an unsupported mode.
    """
    path = Path(path)
    arr16 = _read_png16_if_colour(path)
    if arr16 is not None:
        return arr16
    try:
        with Image.open(path) as im:
            _refuse_lossy_tiff(im, path)
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in ("1", "L;16", "LA", "CMYK", "YCbCr", "PA"):
                im = im.convert(
                    {"1": "L", "L;16": "I;16", "LA": "RGBA", "PA": "RGBA"}.get(mode, "RGB")
                )
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc}); is the file complete?") from exc
    if (
        arr.dtype in (np.int32, np.uint32)
        or str(arr.dtype).startswith(">u2")
        or arr.dtype == np.int16
    ):
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageReadError(f"{path}: {arr.dtype} values outside 0..65535 are not supported")
        arr = arr.astype(np.uint16)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"{path}: unsupported pixel type {arr.dtype} (mode {mode}); "
            "expected 8- or 16-bit grey, RGB or RGBA"
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageReadError(f"{path}: unsupported layout {arr.shape}; expected grey, RGB or RGBA")
    return arr


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label image as ``(H, W)`` integers without any colour conversion.

    Palette PNGs keep their indices; RGB masks with identical channels use channel 0.

    Raises:
        ImageReadError: unreadable, or RGB channels that differ.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read mask ({exc}); is the file complete?") from exc
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        if not all(
            np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(3, arr.shape[2]))
        ):
            raise ImageReadError(
                f"{path}: colour mask with differing channels; expected a label image "
                "(grey or palette) with one class id per pixel"
            )
        arr = arr[..., 0]
    return arr.astype(np.int64)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | Path, arr: np.ndarray) -> None:
    """Write ``(H, W, C)`` or ``(H, W)`` uint8/uint16 as lossless PNG, atomically.

    The bit depth is kept: uint16 colour (C = 2, 3, 4) goes through :func:`encode_png16`.

    Raises:
        ValueError: unsupported dtype or channel count.
    """
    import io

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint16:
        if arr.ndim != 2:
            # Pillow cannot write 16-bit colour PNG: use the numpy + zlib encoder.
            atomic_write_bytes(path, encode_png16(arr))
            return
        im = Image.fromarray(arr.astype(np.uint16))
    elif arr.dtype == np.uint8:
        im = Image.fromarray(arr)
    else:
        raise ValueError(f"{path}: expected uint8 or uint16 pixels, got {arr.dtype}")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def from_tensor(x, dtype=np.uint8) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` float tensor in [0, 1] to ``(H, W, C)`` integers.

    Values are rounded to nearest, then clipped (never truncated).
    """
    if x.ndim == 4:
        x = x[0]
    scale = 65535.0 if dtype == np.uint16 else 255.0
    a = (x.detach().float().cpu().clamp(0, 1) * scale).round().permute(1, 2, 0).numpy()
    return np.clip(a, 0, scale).astype(dtype)


# --- 16-bit colour PNG (numpy + zlib) -------------------------------------------------------

_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_CHANNELS = {v: k for k, v in _COLOUR_TYPES.items()}


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png16(arr: np.ndarray, *, level: int = 6) -> bytes:
    """Encode a uint16 image as a 16-bit PNG (grey, grey+alpha, RGB or RGBA).

    PNG specification (ISO/IEC 15948): big-endian samples, one filter byte per row
    (here "Sub", computed for the whole image at once), zlib-compressed IDAT.

    Args:
        arr: ``(H, W)`` or ``(H, W, C)`` uint16, C in {1, 2, 3, 4}.
        level: zlib level 0..9 (default 6).

    Returns:
        The PNG file as bytes.

    Raises:
        ValueError: wrong dtype, shape or channel count.

    Example:
        >>> a = np.arange(24, dtype=np.uint16).reshape(2, 4, 3) * 2000
        >>> bool((decode_png16(encode_png16(a)) == a).all())
        True
    """
    if arr.dtype != np.uint16:
        raise ValueError(f"arr: expected uint16 pixels, got {arr.dtype}; use write_png for uint8")
    hwc = arr[:, :, None] if arr.ndim == 2 else arr
    if hwc.ndim != 3 or hwc.shape[2] not in _COLOUR_TYPES or hwc.shape[0] * hwc.shape[1] == 0:
        raise ValueError(f"arr: expected (H, W) or (H, W, C) with C in 1..4, got {arr.shape}")
    h, w, c = hwc.shape
    bpp = 2 * c
    raw = np.ascontiguousarray(hwc, dtype=">u2").view(np.uint8).reshape(h, w * bpp)
    sub = raw.copy()
    sub[:, bpp:] -= raw[:, :-bpp]  # uint8 arithmetic wraps modulo 256 as PNG requires
    rows = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1)  # filter type 1 = Sub
    ihdr = struct.pack(">IIBBBBB", w, h, 16, _COLOUR_TYPES[c], 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + _chunk(b"IEND", b"")
    )


def _paeth_row(line: np.ndarray, prev: np.ndarray, bpp: int) -> None:
    """Undo the Paeth filter in place (sequential along the row by definition)."""
    out = line.astype(np.int32)
    up = prev.astype(np.int32)
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = up[i]
        c = up[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
        out[i] = (out[i] + pred) & 0xFF
    line[:] = out


def _average_row(line: np.ndarray, prev: np.ndarray, bpp: int) -> None:
    out = line.astype(np.int32)
    up = prev.astype(np.int32)
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        out[i] = (out[i] + ((a + up[i]) >> 1)) & 0xFF
    line[:] = out


def decode_png16(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 16-bit PNG (any colour type but palette) to uint16.

    Args:
        data: the PNG file bytes.

    Returns:
        ``(H, W, C)`` uint16 with C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA).

    Raises:
        ValueError: not a PNG, a bad CRC or truncated data, not 16-bit, interlaced, or an
            unknown filter type.

    Example:
        >>> a = np.full((3, 2), 65535, dtype=np.uint16)
        >>> decode_png16(encode_png16(a)).shape
        (3, 2, 1)
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    pos, idat, ihdr = len(_PNG_SIGNATURE), [], None
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
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or not idat:
        raise ValueError("PNG without IHDR or IDAT (truncated file?)")
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 16 or ctype not in _CHANNELS:
        raise ValueError(f"expected a 16-bit non-palette PNG, got depth {depth}, type {ctype}")
    if interlace:
        raise ValueError("interlaced 16-bit PNG is not supported; re-save it non-interlaced")
    c = _CHANNELS[ctype]
    bpp, stride = 2 * c, 2 * c * w
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ValueError(f"corrupt PNG image data ({exc})") from exc
    if len(raw) != h * (stride + 1):
        raise ValueError(f"PNG image data has {len(raw)} bytes, expected {h * (stride + 1)}")
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    filters, img = rows[:, 0], rows[:, 1:].copy()
    if filters.max(initial=0) > 4:
        raise ValueError(f"unknown PNG filter type {int(filters.max())}")
    if (filters == 0).all():
        pass  # all "None": nothing to undo
    elif (filters == 1).all():  # whole image "Sub" (what encode_png16 writes): vectorised
        img = np.cumsum(img.reshape(h, w, bpp), axis=1, dtype=np.uint8).reshape(h, stride)
    else:
        zero = np.zeros(stride, np.uint8)
        for r in range(h):
            prev = img[r - 1] if r else zero
            f = filters[r]
            if f == 1:
                img[r] = np.cumsum(img[r].reshape(w, bpp), axis=0, dtype=np.uint8).ravel()
            elif f == 2:
                img[r] += prev
            elif f == 3:
                _average_row(img[r], prev, bpp)
            elif f == 4:
                _paeth_row(img[r], prev, bpp)
    return img.view(">u2").reshape(h, w, c).astype(np.uint16)


def _read_png16_if_colour(path: Path) -> np.ndarray | None:
    """16-bit colour PNGs (which Pillow drops to 8 bits) via decode_png16, else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
            if not (head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR"):
                return None
            if head[24] != 16 or head[25] not in (2, 4, 6):
                return None
            data = head + fh.read()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from exc
    try:
        arr = decode_png16(data)
    except ValueError as exc:
        raise ImageReadError(
            f"{path}: cannot read 16-bit PNG ({exc}); is the file complete?"
        ) from exc
    if arr.shape[2] == 2:  # grey + alpha -> RGBA, as read_image does for 8-bit "LA"
        arr = np.concatenate([arr[:, :, :1].repeat(3, axis=2), arr[:, :, 1:]], axis=2)
    return arr


def _refuse_lossy_tiff(im: Image.Image, path: Path) -> None:
    """Pillow decodes 16-bit colour TIFF as 8-bit RGB; refuse instead of losing bits."""
    if im.format != "TIFF" or im.mode not in ("RGB", "RGBA"):
        return
    bits = im.tag_v2.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    if max(bits) > 8:
        raise ImageReadError(
            f"{path}: {max(bits)}-bit colour TIFF is not supported (Pillow would drop it to "
            "8 bits); convert it to 16-bit PNG"
        )
