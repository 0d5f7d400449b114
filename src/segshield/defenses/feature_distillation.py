"""Feature Distillation: FR's block-DCT quantiser with a two-band table.

Reference: Liu et al., "Feature Distillation: DNN-Oriented JPEG Compression Against
Adversarial Examples", CVPR 2019 (docs/ALGORITHMS.md §2, "Related"): the same
per-channel 8x8 block-DCT quantiser as Frequency Refinement
(:func:`segshield.defenses.dct.quantize_blocks`), with step 25 in the top-left 4x4 and
30 elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch

from segshield._checks import check_number
from segshield.defenses.fr import FrequencyRefinement

__all__ = ["FeatureDistillation", "distillation_table"]


def distillation_table(low: float = 25, high: float = 30, low_size: int = 4) -> torch.Tensor:
    """The two-band Feature Distillation table ``(8, 8)``, float64.

    Args:
        low: step for ``u < low_size and v < low_size`` (default 25), > 0.
        high: step elsewhere (default 30), > 0.
        low_size: size of the low band, integer in [0, 8] (default 4).

    Shape:
        Output: ``(8, 8)``.

    Returns:
        The table.

    Raises:
        TypeError, ValueError: a bad step or size.

    Example:
        >>> t = distillation_table()
        >>> t[3, 3].item(), t[0, 4].item()
        (25.0, 30.0)
    """
    check_number("low", low, low=0, low_inclusive=False)
    check_number("high", high, low=0, low_inclusive=False)
    check_number("low_size", low_size, low=0, high=8, integer=True)
    t = torch.full((8, 8), float(high), dtype=torch.float64)
    t[: int(low_size), : int(low_size)] = float(low)
    return t


class FeatureDistillation(FrequencyRefinement):
    """Feature Distillation defence (Liu et al., CVPR 2019): FR with a two-band table.

    Args:
        low: low-band step (default 25), > 0.
        high: step elsewhere (default 30), > 0.
        low_size: low band ``u, v < low_size`` (default 4), integer in [0, 8].
        pad: ``"edge"`` (default) or ``"zero"``; output cropped back to the input size.
        clip: clip to [0, 1] (default True).
        gradient: ``"bpda"`` (default) or ``"smooth"``.

    Shape:
        Input and output: ``(B, C, H, W)`` float in [0, 1] (or a numpy uint8/uint16 image).

    Raises:
        TypeError, ValueError: bad settings.

    Example:
        >>> fd = FeatureDistillation()
        >>> fd.table[0, 0].item(), fd(torch.rand(1, 1, 20, 20)).shape
        (25.0, torch.Size([1, 1, 20, 20]))
        >>> fd.spec()
        'fd:low=25,high=30,low_size=4,pad=edge,clip=true,gradient=bpda'
    """

    name = "fd"

    def __init__(
        self,
        low: float = 25,
        high: float = 30,
        low_size: int = 4,
        pad: str = "edge",
        clip: bool = True,
        gradient: str = "bpda",
    ) -> None:
        table = distillation_table(low, high, low_size)
        super().__init__(table=table, pad=pad, clip=clip, gradient=gradient)
        self._fd = {"low": low, "high": high, "low_size": int(low_size)}

    @classmethod
    def from_table(cls, table: Any, **kwargs: Any) -> FrequencyRefinement:
        """A custom table is plain FR: returns a :class:`FrequencyRefinement`, not FD.

        Args:
            table: ``(8, 8)`` or ``(C, 8, 8)`` steps, > 0.
            **kwargs: as in :meth:`FrequencyRefinement.from_table`.

        Returns:
            A new :class:`FrequencyRefinement`.

        Example:
            >>> type(FeatureDistillation.from_table(torch.full((8, 8), 9.0))).__name__
            'FrequencyRefinement'
        """
        return FrequencyRefinement.from_table(table, **kwargs)

    def spec_params(self) -> dict[str, Any]:
        return {**self._fd, "pad": self.pad, "clip": self.clip, "gradient": self.gradient}
