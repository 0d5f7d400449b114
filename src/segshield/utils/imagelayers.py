"""An image file split into what a defence changes (grey or colour) and what it must not.

``segshield defend`` reads a file with :func:`read_image_layers`, defends
:attr:`ImageLayers.colour` and writes the result back with :func:`write_image_layers`
in the file's own layout: grey stays grey, grey+alpha stays grey+alpha, RGB(A) stays
RGB(A), 1-bit stays 1-bit, 8 and 16 bits stay 8 and 16 bits, and the alpha channel is
written back bit for bit. The image is turned upright by its EXIF orientation, as
image viewers show it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segshield.utils.imageio import decode_image, write_png

__all__ = ["ImageLayers", "read_image_layers", "write_image_layers", "apply_orientation"]

#: A defended grey value ``v`` of a 1-bit image is written as white when ``v >= 128``.
BILEVEL_THRESHOLD = 128


@dataclass(frozen=True)
class ImageLayers:
    """One image: the channels a defence transforms, and the rest of the file's layout.

    Attributes:
        colour: ``(H, W, 1)`` grey or ``(H, W, 3)`` RGB, uint8 or uint16 (a 1-bit image
            as uint8 0/255).
        alpha: ``(H, W)`` alpha of the same dtype, or None; never defended.
        bilevel: the file was 1-bit: :func:`write_image_layers` thresholds the grey
            channel at ``BILEVEL_THRESHOLD`` (128) and writes 1-bit again.

    Example:
        >>> layers = ImageLayers(np.zeros((2, 2, 1), np.uint8), np.full((2, 2), 9, np.uint8))
        >>> layers.pixels().shape
        (2, 2, 2)
    """

    colour: np.ndarray
    alpha: np.ndarray | None = None
    bilevel: bool = False

    def replace(self, colour: np.ndarray) -> ImageLayers:
        """The same layout with new colour channels (same shape and dtype).

        Raises:
            ValueError: ``colour`` has another shape or dtype.
        """
        if colour.shape != self.colour.shape or colour.dtype != self.colour.dtype:
            raise ValueError(
                f"colour: expected {self.colour.dtype} {self.colour.shape}, got "
                f"{colour.dtype} {colour.shape}; a defence keeps shape and dtype"
            )
        return dataclasses.replace(self, colour=colour)

    def pixels(self) -> np.ndarray:
        """The image as the file stores it: ``(H, W, C)``, C = colour + alpha channels.

        A 1-bit image comes back as bool ``(H, W, 1)``: grey ``>= 128`` is white.
        """
        if self.bilevel:
            return self.colour >= BILEVEL_THRESHOLD
        if self.alpha is None:
            return self.colour
        return np.concatenate([self.colour, self.alpha[:, :, None]], axis=2)


def apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``(H, W, ...)`` pixels upright by an EXIF orientation tag, as viewers do.

    The same transposition as Pillow's ``ImageOps.exif_transpose``: 2 mirror, 3 rotate
    180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90
    counter-clockwise; 1 leaves the image as it is.

    Args:
        arr: pixels ``(H, W)`` or ``(H, W, C)``.
        orientation: EXIF tag 0x0112, integer 1..8.

    Returns:
        The upright pixels (a view when possible), ``(W, H, ...)`` for 5..8.

    Raises:
        ValueError: ``orientation`` not in 1..8.

    Example:
        >>> apply_orientation(np.array([[1, 2], [3, 4]]), 6).tolist()
        [[3, 1], [4, 2]]
    """
    if orientation not in range(1, 9):
        raise ValueError(f"orientation: expected an EXIF orientation 1..8, got {orientation}")
    if orientation in (5, 6, 7, 8):
        arr = arr.swapaxes(0, 1)  # transpose; then 6, 7, 8 flip it
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation in (2, 3):
        arr = arr[:, ::-1]
    if orientation in (3, 4):
        arr = arr[::-1]
    return arr


def read_image_layers(path: str | Path) -> ImageLayers:
    """Read an image file upright, split into colour and alpha (see the module docstring).

    Args:
        path: a single-page PNG, JPEG, BMP or TIFF file, 1, 8 or 16 bits.

    Returns:
        The :class:`ImageLayers`; the EXIF orientation applied.

    Raises:
        ImageReadError: missing, corrupt, unsupported, or more than one page (the
            message names the file).

    Example:
        >>> import tempfile
        >>> from segshield.utils.imageio import write_png
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_png(f"{d}/la.png", np.zeros((2, 3, 2), np.uint8))
        ...     layers = read_image_layers(f"{d}/la.png")
        >>> layers.colour.shape, layers.alpha.shape
        ((2, 3, 1), (2, 3))
    """
    arr, orientation = decode_image(path)
    arr = np.ascontiguousarray(apply_orientation(arr, orientation))
    if arr.dtype == np.bool_:
        return ImageLayers(arr.astype(np.uint8) * 255, bilevel=True)
    if arr.shape[2] in (2, 4):
        return ImageLayers(np.ascontiguousarray(arr[:, :, :-1]), arr[:, :, -1].copy())
    return ImageLayers(arr)


def write_image_layers(path: str | Path, layers: ImageLayers) -> None:
    """Write :class:`ImageLayers` as lossless PNG in the layout they were read with, atomically.

    Raises:
        ValueError: unsupported dtype or channel count.
        ImportError: 16-bit colour or grey+alpha without imagecodecs installed.
    """
    write_png(path, layers.pixels())
