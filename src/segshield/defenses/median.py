"""Median filter ``k x k`` per channel (feature squeezing, Xu et al. 2018).

A baseline defence of docs/ALGORITHMS.md §3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segshield._checks import check_images, check_number
from segshield.defenses.base import Defense

__all__ = ["Median", "median_filter"]


def _check_window(k: int) -> int:
    check_number("k", k, low=1, high=31, integer=True)
    if int(k) % 2 == 0:
        raise ValueError(f"k: expected an odd window size, got {k}; use {int(k) + 1}")
    return int(k)


def median_filter(x: torch.Tensor, k: int) -> torch.Tensor:
    """Median over each ``k x k`` window of every channel, edges replicated.

    Reference: Xu, Evans and Qi, NDSS 2018 (median smoothing as feature squeezing).
    Equals ``scipy.ndimage.median_filter(x, size=(1, 1, k, k), mode="nearest")``.
    Vectorised with ``unfold`` (memory ``k**2`` times the image).

    Args:
        x: images ``(B, C, H, W)``, floating dtype.
        k: window size, odd integer in [1, 31].

    Shape:
        Output: same as ``x``.

    Returns:
        The filtered images (differentiable: the gradient goes to the median element).

    Raises:
        TypeError, ValueError: bad ``x`` or ``k`` (even, or out of range).

    Example:
        >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 2, 2] = 1.0
        >>> float(median_filter(x, 3).max())
        0.0
    """
    check_images(x, "x")
    k = _check_window(k)
    if k == 1:
        return x
    r = k // 2
    xp = F.pad(x, (r, r, r, r), mode="replicate")
    win = xp.unfold(2, k, 1).unfold(3, k, 1)  # (B, C, H, W, k, k) view
    return win.reshape(*x.shape, k * k).median(dim=-1).values


class Median(Defense):
    """Median-filter defence.

    Args:
        k: window size, odd integer in [1, 31] (default 3).
        gradient: ``"exact"`` (default; the median is piecewise linear, its gradient
            flows to the selected pixel) or ``"bpda"``.

    Shape:
        Input and output: ``(B, C, H, W)`` float in [0, 1] (or a numpy uint8/uint16 image).

    Raises:
        TypeError: ``k`` is not an integer.
        ValueError: ``k`` even or outside [1, 31], or an unknown ``gradient``.

    Example:
        >>> Median(3).spec()
        'median:k=3,gradient=exact'
        >>> Median(4)
        Traceback (most recent call last):
        ...
        ValueError: k: expected an odd window size, got 4; use 5
    """

    name = "median"
    gradients = ("exact", "bpda")
    spec_keys = {"k": "k"}
    tile_block = 1  # local: forward_numpy cuts large images with a halo of k // 2 rows

    def __init__(self, k: int = 3, gradient: str = "exact") -> None:
        super().__init__(gradient)
        self.k = _check_window(k)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return median_filter(x, self.k)

    def tile_halo(self) -> int:
        return self.k // 2
