"""No defence: the identity transform, always reported as the reference (docs/ALGORITHMS.md §3)."""

from __future__ import annotations

from typing import Any

import torch

from segshield.defenses.base import Defense

__all__ = ["Identity"]


class Identity(Defense):
    """The identity "defence" (docs/ALGORITHMS.md §3: no defence, always reported).

    Shape:
        Input and output: ``(B, C, H, W)`` float in [0, 1] (or a numpy uint8/uint16 image).

    Example:
        >>> x = torch.rand(1, 3, 5, 5)
        >>> bool(torch.equal(Identity()(x), x)), Identity().spec()
        (True, 'none')
    """

    name = "none"
    gradients = ("exact",)
    tile_block = 1

    def __init__(self) -> None:
        super().__init__("exact")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def spec_params(self) -> dict[str, Any]:
        return {}
