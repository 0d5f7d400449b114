"""Pad images at the bottom and right to a multiple of a block size or a network stride.

One padding helper for the whole package: the block-DCT defences pad to multiples of 8
(docs/ALGORITHMS.md §2 step 1) and the segmentation models pad to their down-sampling
stride. It lives in ``utils`` so that ``models`` and ``defenses`` both use it without
importing each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segshield._checks import check_choice, check_images, check_number

__all__ = ["PAD_MODES", "pad_to_multiple"]

#: Padding modes understood by :func:`pad_to_multiple`.
PAD_MODES = ("edge", "zero", "crop")


def pad_to_multiple(
    x: torch.Tensor, multiple: int = 8, mode: str = "edge"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (or crop) the bottom and right of images so H and W are multiples of ``multiple``.

    docs/ALGORITHMS.md §2 step 1: the FR paper pads with zeros at the bottom and right
    (``mode="zero"``, *paper-faithful*); edge replication (``"edge"``, default) avoids the
    dark seam this creates; ``"crop"`` drops the last partial block row/column instead.

    Args:
        x: images ``(B, C, H, W)``, floating dtype.
        multiple: block size or stride, integer >= 1 (default 8).
        mode: ``"edge"`` (default), ``"zero"`` or ``"crop"``.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H', W')`` with ``H'``, ``W'`` multiples of ``multiple``
          (rounded up, or down for ``"crop"``).

    Returns:
        ``(padded, (H, W))``: the padded tensor (``x`` itself when nothing changes) and
        the original size, to crop back with ``y[..., :H, :W]``.

    Raises:
        TypeError: ``x`` is not a floating tensor, or ``multiple`` not an integer.
        ValueError: bad ``mode``, ``multiple`` < 1, or ``"crop"`` on an image smaller
            than one block.

    Example:
        >>> y, size = pad_to_multiple(torch.rand(1, 3, 223, 191))
        >>> tuple(y.shape), size
        ((1, 3, 224, 192), (223, 191))
    """
    check_images(x, "x", check_range=False)  # also pads normalised or 0..255-scaled images
    check_number("multiple", multiple, low=1, integer=True)
    check_choice("mode", mode, PAD_MODES)
    return _pad_unchecked(x, int(multiple), mode)


def _pad_unchecked(x: torch.Tensor, m: int, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`pad_to_multiple` without argument checks (for hot paths)."""
    h, w = x.shape[-2:]
    if mode == "crop":
        hh, ww = (h // m) * m, (w // m) * m
        if hh == 0 or ww == 0:
            raise ValueError(
                f"x: mode='crop' needs images of at least {m}x{m}, got {h}x{w}; "
                "use mode='edge' or mode='zero'"
            )
        return x[..., :hh, :ww], (h, w)
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "zero":
        return F.pad(x, (0, pw, 0, ph), mode="constant", value=0.0), (h, w)
    return F.pad(x, (0, pw, 0, ph), mode="replicate"), (h, w)
