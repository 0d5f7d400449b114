"""Reading and writing image files: one loader for every command, atomic lossless writes.

Images come back as numpy arrays ``(H, W, C)`` with their native integer dtype
(uint8 or uint16), so 16-bit data keep their depth through a defence.

Pillow reads and writes 8-bit images and 16-bit grey. It reads 16-bit colour PNG and
TIFF as 8 bits and cannot write 16-bit colour PNG, so those go through libpng and
libtiff by way of `imagecodecs <https://github.com/cgohlke/imagecodecs>`_
(:func:`encode_png16`, :func:`decode_png16`), a dependency of segshield imported only
when such a file is met.
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

    Palette images are expanded to RGB(A); 16-bit grey stays uint16; 1-bit becomes 0/255;
    grey+alpha becomes RGBA. 16-bit colour PNG and TIFF keep their 16 bits (through
    imagecodecs).

    Raises:
        ImageReadError: the file is missing, corrupt or in an unsupported mode, or a
            16-bit colour file without imagecodecs installed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_png(f"{d}/a.png", np.full((2, 3), 7, np.uint8))
        ...     read_image(f"{d}/a.png").shape
        (2, 3, 1)
    """
    path = Path(path)
    arr16 = _read_png16_if_colour(path)
    if arr16 is not None:
        return arr16
    try:
        with Image.open(path) as im:
            deep_tiff = _is_deep_colour_tiff(im)
            mode = im.mode
            if not deep_tiff:
                im.load()
                if mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif mode in ("1", "L;16", "LA", "CMYK", "YCbCr", "PA"):
                    im = im.convert(
                        {"1": "L", "L;16": "I;16", "LA": "RGBA", "PA": "RGBA"}.get(mode, "RGB")
                    )
                arr = np.array(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc}); is the file complete?") from exc
    if deep_tiff:
        arr = _read_tiff16(path)
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

    The bit depth is kept: uint8 and 16-bit grey go through Pillow, uint16 colour
    (C = 2, 3, 4) through :func:`encode_png16`.

    Raises:
        ValueError: unsupported dtype or channel count.
        ImportError: uint16 colour without imagecodecs installed (the message names the
            extra).
    """
    import io

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint16:
        if arr.ndim != 2:
            # Pillow cannot write 16-bit colour PNG: libpng through imagecodecs.
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


# --- 16-bit colour PNG and TIFF (imagecodecs: libpng, libtiff) -----------------------------

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
    except ImportError as exc:
        raise ImageReadError(f"{path}: cannot read 16-bit colour PNG ({exc})") from exc
    except ValueError as exc:
        raise ImageReadError(
            f"{path}: cannot read 16-bit PNG ({exc}); is the file complete?"
        ) from exc
    if arr.shape[2] == 2:  # grey + alpha -> RGBA, as read_image does for 8-bit "LA"
        arr = np.concatenate([arr[:, :, :1].repeat(3, axis=2), arr[:, :, 1:]], axis=2)
    return arr


def _is_deep_colour_tiff(im: Image.Image) -> bool:
    """Pillow decodes 16-bit colour TIFF as 8-bit RGB(A): such files go to libtiff."""
    if im.format != "TIFF" or im.mode not in ("RGB", "RGBA"):
        return False
    bits = im.tag_v2.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) > 8


def _read_tiff16(path: Path) -> np.ndarray:
    """First page of a deep colour TIFF through libtiff (imagecodecs), samples as stored."""
    try:
        codecs = _imagecodecs()
    except ImportError as exc:
        raise ImageReadError(f"{path}: cannot read 16-bit colour TIFF ({exc})") from exc
    try:
        return codecs.tiff_decode(path.read_bytes())
    except (OSError, codecs.TiffError) as exc:
        raise ImageReadError(f"{path}: cannot read TIFF ({exc}); is the file complete?") from exc
