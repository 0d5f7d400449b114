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

import errno
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segshield.utils.png16 import _PNG_SIGNATURE, _imagecodecs, decode_png16, encode_png16

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "read_image",
    "decode_image",
    "read_mask",
    "write_png",
    "atomic_write_bytes",
    "remove_stale_temp_files",
    "scan_images",
    "list_images",
    "from_tensor",
    "encode_png16",
    "decode_png16",
]

log = logging.getLogger("segshield.imageio")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file."""


def list_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    Folders are searched recursively for the suffixes in ``IMAGE_SUFFIXES``. Entries
    with such a suffix that are not readable files are logged as warnings (use
    :func:`scan_images` to collect them).

    Raises:
        FileNotFoundError: a named path does not exist.
    """
    files, problems = scan_images(paths)
    for problem in problems:
        log.warning("%s", problem)
    return files


def scan_images(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Expand files and folders into image files, naming the entries that cannot be read.

    Folders are searched recursively for names ending in one of ``IMAGE_SUFFIXES``
    (symbolic links to folders are not followed). An entry with such a name that is not
    a readable file (a dangling symbolic link, a link loop, a folder named ``x.png``) is
    not returned but described in ``problems``.

    Args:
        paths: files and folders.

    Returns:
        ``(files, problems)``: image files (each folder's sorted) and one message per
        unusable entry, naming it.

    Raises:
        FileNotFoundError: a named path does not exist.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); os.mkdir(f"{d}/x.png")
        >>> scan_images([d])[1][0].endswith("x.png: a folder, not an image file; rename it")
        True
    """
    out: list[Path] = []
    problems: list[str] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder; check the path")
        if not p.is_dir():
            out.append(p)
            continue
        for q in sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES):
            if q.is_file():
                out.append(q)
            else:
                problems.append(f"{q}: {_not_a_file(q)}")
    return out, problems


def _not_a_file(path: Path) -> str:
    """Why ``path`` (which is not a regular file) cannot be read as an image."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop as RuntimeError
            return "a symbolic link loop; remove or fix the link"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "a symbolic link loop; remove or fix the link"
            return f"a dangling symbolic link to {os.readlink(path)}; remove or fix the link"
    if path.is_dir():
        return "a folder, not an image file; rename it"
    return "not a regular file (device, pipe or socket); remove it"


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, C)`` uint8 or uint16, C in {1, 3, 4}.

    Palette images are expanded to RGB(A); 16-bit grey stays uint16; 1-bit becomes 0/255;
    grey+alpha becomes RGBA. 16-bit colour PNG and TIFF keep their 16 bits (through
    imagecodecs). The pixels are as stored: an EXIF orientation is not applied (see
    :func:`segshield.utils.imagelayers.read_image_layers`, which does).

    Raises:
        ImageReadError: the file is missing, corrupt, in an unsupported mode or holds
            more than one page, or a 16-bit colour file without imagecodecs installed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_png(f"{d}/a.png", np.full((2, 3), 7, np.uint8))
        ...     read_image(f"{d}/a.png").shape
        (2, 3, 1)
    """
    arr, _ = decode_image(path)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.shape[2] == 2:  # grey + alpha -> RGBA
        return np.concatenate([arr[:, :, :1].repeat(3, axis=2), arr[:, :, 1:]], axis=2)
    return arr


def decode_image(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an image file's pixels as stored, and its EXIF orientation.

    The layer under :func:`read_image`: grey+alpha stays two channels and 1-bit images
    come back as bool.

    Args:
        path: a single-page PNG, JPEG, BMP or TIFF file.

    Returns:
        ``(pixels, orientation)``: ``(H, W, C)`` uint8, uint16 or bool (1-bit) pixels
        with C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA), and the EXIF
        orientation tag 1..8 (1 when absent or invalid; not applied to the pixels).

    Raises:
        ImageReadError: missing, corrupt, unsupported, or more than one page.
    """
    path = Path(path)
    arr16 = _read_png16_if_colour(path)
    try:
        with Image.open(path) as im:
            pages = getattr(im, "n_frames", 1)
            orientation = _orientation(im)
            deep_tiff = arr16 is None and pages == 1 and _is_deep_colour_tiff(im)
            mode = im.mode
            if arr16 is None and pages == 1 and not deep_tiff:
                arr = _pillow_pixels(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc}); is the file complete?") from exc
    if pages > 1:
        raise ImageReadError(
            f"{path}: holds {pages} pages; segshield reads single-page images only. Save "
            "each page as its own file (e.g. with tifffile or Pillow's ImageSequence)"
        )
    if arr16 is not None:
        return arr16, orientation
    if deep_tiff:
        arr = _read_tiff16(path)
    return _check_pixels(path, arr, mode), orientation


def _pillow_pixels(im: Image.Image) -> np.ndarray:
    """Pixels of an open single-page Pillow image; palette and exotic modes converted."""
    im.load()
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("L;16", "CMYK", "YCbCr", "PA"):
        im = im.convert({"L;16": "I;16", "PA": "RGBA"}.get(mode, "RGB"))
    return np.array(im)


def _check_pixels(path: Path, arr: np.ndarray, mode: str) -> np.ndarray:
    """Integer pixels as ``(H, W, C)`` uint8/uint16/bool, C in 1..4, or a named error."""
    if (
        arr.dtype in (np.int32, np.uint32)
        or str(arr.dtype).startswith(">u2")
        or arr.dtype == np.int16
    ):
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageReadError(f"{path}: {arr.dtype} values outside 0..65535 are not supported")
        arr = arr.astype(np.uint16)
    if arr.dtype not in (np.uint8, np.uint16, np.bool_):
        raise ImageReadError(
            f"{path}: unsupported pixel type {arr.dtype} (mode {mode}); "
            "expected 8- or 16-bit grey, RGB or RGBA"
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported layout {arr.shape}; expected grey, RGB or RGBA")
    return arr


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8 (as Pillow's ``ImageOps.exif_transpose`` reads it), else 1."""
    value = im.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


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


#: Temporary files of :func:`atomic_write_bytes`: ``.NAME.segshield-PID.RANDOM.tmp``.
_TEMP_RE = re.compile(r"^\..+\.segshield-(\d+)\.[A-Za-z0-9_]+\.tmp$")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename).

    The temporary file is named ``.NAME.segshield-PID.RANDOM.tmp``, so that a later run
    can recognise one left by a killed process (:func:`remove_stale_temp_files`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.segshield-{os.getpid()}.", suffix=".tmp"
    )
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


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder`` (recursively).

    Only files named as :func:`atomic_write_bytes` names them are considered, and only
    those whose writing process (the PID in the name) no longer runs on this machine;
    other files, and the temporary files of live processes, are left alone.

    Args:
        folder: the folder to clean; a missing folder is nothing to clean.

    Returns:
        The removed files.

    Example:
        >>> import tempfile
        >>> remove_stale_temp_files(tempfile.mkdtemp())
        []
    """
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for p in root.rglob(".*.tmp"):
        match = _TEMP_RE.match(p.name)
        if match and p.is_file() and not _pid_alive(int(match.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_png(path: str | Path, arr: np.ndarray) -> None:
    """Write ``(H, W, C)`` or ``(H, W)`` uint8/uint16/bool as lossless PNG, atomically.

    The bit depth and channels are kept (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA): bool
    (a 1-bit image), uint8 and 16-bit grey go through Pillow, uint16 with C = 2, 3, 4
    through :func:`encode_png16`.

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
    elif arr.dtype == np.uint8 or (arr.dtype == np.bool_ and arr.ndim == 2):
        im = Image.fromarray(arr)
    else:
        raise ValueError(
            f"{path}: expected uint8 or uint16 pixels (or bool grey), got {arr.dtype} {arr.shape}"
        )
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
