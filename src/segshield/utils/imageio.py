"""Reading and writing image files: one loader for every command, atomic lossless writes.

Images come back as numpy arrays ``(H, W, C)`` with their native integer dtype
(uint8 or uint16), so 16-bit data keep their depth through a defence.
"""

from __future__ import annotations

import os
import tempfile
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
    "to_tensor",
    "from_tensor",
]

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
    try:
        with Image.open(path) as im:
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | Path, arr: np.ndarray) -> None:
    """Write ``(H, W, C)`` or ``(H, W)`` uint8/uint16 as lossless PNG, atomically.

    Raises:
        ValueError: unsupported dtype or channel count.
    """
    import io

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint16:
        if arr.ndim != 2:
            # Pillow cannot write 16-bit colour PNG; keep depth per channel is not possible,
            # so refuse rather than silently dropping to 8 bits.
            raise ValueError(
                f"{path}: 16-bit colour PNG is not supported by Pillow; "
                "convert to 8-bit or write one grey channel per file"
            )
        im = Image.fromarray(arr.astype(np.uint16))
    elif arr.dtype == np.uint8:
        im = Image.fromarray(arr)
    else:
        raise ValueError(f"{path}: expected uint8 or uint16 pixels, got {arr.dtype}")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def to_tensor(arr: np.ndarray):
    """``(H, W, C)`` uint8/uint16 array to a ``(1, C, H, W)`` float tensor in [0, 1]."""
    import torch

    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32) / scale)
    return t.permute(2, 0, 1).unsqueeze(0)


def from_tensor(x, dtype=np.uint8) -> np.ndarray:
    """``(1, C, H, W)`` or ``(C, H, W)`` float tensor in [0, 1] to ``(H, W, C)`` integers.

    Values are rounded to nearest, then clipped (never truncated).
    """
    if x.ndim == 4:
        x = x[0]
    scale = 65535.0 if dtype == np.uint16 else 255.0
    a = (x.detach().float().cpu().clamp(0, 1) * scale).round().permute(1, 2, 0).numpy()
    return np.clip(a, 0, scale).astype(dtype)
