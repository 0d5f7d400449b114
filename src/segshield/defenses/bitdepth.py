"""Bit-depth reduction (feature squeezing).

Reference: Xu, Evans and Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep
Neural Networks", NDSS 2018 (docs/ALGORITHMS.md §3): every value becomes the nearest of ``2**bits``
evenly spaced levels in [0, 1].
"""

from __future__ import annotations

import torch

from segshield._checks import check_number
from segshield.defenses.base import Defense
from segshield.defenses.rounding import smooth_round

__all__ = ["BitDepth", "reduce_bit_depth"]


def _check_bits(bits: int) -> int:
    check_number("bits", bits, low=1, high=16, integer=True)
    return int(bits)


def reduce_bit_depth(x: torch.Tensor, bits: int, *, smooth: bool = False) -> torch.Tensor:
    """Quantise ``[0, 1]`` values to ``2**bits`` levels: ``round(x · L) / L``, ``L = 2**bits - 1``.

    Args:
        x: images ``(B, C, H, W)`` in [0, 1] (any shape works).
        bits: integer in [1, 16].
        smooth: use the differentiable surrogate of rounding (default False).

    Shape:
        Output: same as ``x``.

    Returns:
        The quantised images (values outside [0, 1] are clipped first).

    Raises:
        TypeError, ValueError: ``bits`` not an integer in [1, 16].

    Example:
        >>> reduce_bit_depth(torch.tensor([0.2, 0.3, 0.9]), 1).tolist()
        [0.0, 0.0, 1.0]
    """
    levels = float(2 ** _check_bits(bits) - 1)
    t = x.clamp(0.0, 1.0) * levels
    return (smooth_round(t) if smooth else torch.round(t)) / levels


class BitDepth(Defense):
    """Bit-depth reduction defence (Xu et al., NDSS 2018).

    Args:
        bits: bits per channel, integer in [1, 16] (default 4).
        gradient: ``"bpda"`` (default) or ``"smooth"`` (cubic rounding surrogate).

    Shape:
        Input and output: ``(B, C, H, W)`` float in [0, 1] (or a numpy uint8/uint16 image).

    Raises:
        TypeError: ``bits`` is not an integer.
        ValueError: ``bits`` outside [1, 16], or an unknown ``gradient``.

    Example:
        >>> BitDepth(1)(torch.tensor([[[[0.2, 0.8]]]])).tolist()
        [[[[0.0, 1.0]]]]
    """

    name = "bitdepth"
    gradients = ("bpda", "smooth")
    tile_block = 1  # pixelwise: forward_numpy may cut large images anywhere
    spec_keys = {"bits": "bits"}

    def __init__(self, bits: int = 4, gradient: str = "bpda") -> None:
        super().__init__(gradient)
        self.bits = _check_bits(bits)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return reduce_bit_depth(x, self.bits, smooth=self.gradient == "smooth")
