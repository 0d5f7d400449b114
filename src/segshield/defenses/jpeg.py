"""JPEG compression through libjpeg (Pillow), the classic input-transformation baseline.

Reference: Dziugaite et al. 2016 / Guo et al., ICLR 2018 (JPEG as a defence); docs/ALGORITHMS.md §3:
standard libjpeg pipeline, quality q, YCbCr with 4:2:0 chroma subsampling for RGB.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from segshield._checks import check_images, check_number
from segshield.defenses.base import Defense

__all__ = ["Jpeg", "jpeg_roundtrip"]


def _check_quality(quality: int) -> int:
    check_number("quality", quality, low=1, high=100, integer=True)
    return int(quality)


def _roundtrip_u8(arr: np.ndarray, quality: int) -> np.ndarray:
    """Encode + decode one ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 image."""
    buf = io.BytesIO()
    if arr.ndim == 2:
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    else:
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality, subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("L" if arr.ndim == 2 else "RGB"))


def jpeg_roundtrip(x: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """JPEG encode + decode with libjpeg (Pillow) at ``quality``, image by image.

    Values are quantised to 8 bits (round, then clip) before encoding. C = 3 uses the
    standard YCbCr 4:2:0 pipeline; C = 1 is coded as a greyscale JPEG; any other C
    (e.g. RGBA) codes each channel independently as a greyscale JPEG.

    Args:
        x: images ``(B, C, H, W)`` in [0, 1], any device (coded on the CPU).
        quality: libjpeg quality, integer in [1, 100] (default 75; the papers use 10..95).

    Shape:
        Output: same as ``x``.

    Returns:
        Decoded images on the dtype and device of ``x``, multiples of 1/255.

    Raises:
        TypeError, ValueError: bad ``x`` or ``quality``.

    Example:
        >>> y = jpeg_roundtrip(torch.rand(2, 3, 16, 16), 75)
        >>> y.shape, bool((y * 255 - (y * 255).round()).abs().max() < 1e-4)
        (torch.Size([2, 3, 16, 16]), True)
    """
    check_images(x, "x")
    q = _check_quality(quality)
    u8 = (x.detach() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    out = np.empty_like(u8)
    b, c = u8.shape[:2]
    for i in range(b):
        if c == 3:
            out[i] = _roundtrip_u8(np.ascontiguousarray(u8[i].transpose(1, 2, 0)), q).transpose(
                2, 0, 1
            )
        else:
            for j in range(c):
                out[i, j] = _roundtrip_u8(np.ascontiguousarray(u8[i, j]), q)
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype) / 255.0


class Jpeg(Defense):
    """JPEG-compression defence through libjpeg (docs/ALGORITHMS.md §3).

    Args:
        quality: libjpeg quality, integer in [1, 100] (default 75).
        gradient: ``"bpda"`` (the only choice: libjpeg is not differentiable).

    Shape:
        Input and output: ``(B, C, H, W)`` float in [0, 1] (or a numpy uint8/uint16
        image; 16-bit input is coded at 8-bit precision).

    Raises:
        TypeError: ``quality`` is not an integer.
        ValueError: ``quality`` outside [1, 100], or a ``gradient`` other than ``"bpda"``.

    Example:
        >>> Jpeg(50).spec()
        'jpeg:q=50,gradient=bpda'
    """

    name = "jpeg"
    gradients = ("bpda",)
    spec_keys = {"q": "quality"}

    def __init__(self, quality: int = 75, gradient: str = "bpda") -> None:
        super().__init__(gradient)
        self.quality = _check_quality(quality)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return jpeg_roundtrip(x, self.quality)
