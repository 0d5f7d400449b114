"""Input-transformation defences: Frequency Refinement and its baselines (docs/ALGORITHMS.md §2-3).

Every defence is a :class:`Defense` (``torch.nn.Module``) mapping ``(B, C, H, W)``
float images in ``[0, 1]`` to images of the same shape, dtype and device, with a
declared ``gradient`` policy; :func:`get_defense` builds one from a spec string such
as ``"fr:pd=30,ac=5,gd=60"`` and :func:`list_defenses` describes them all.

Example:
    >>> import torch
    >>> from segshield.defenses import FrequencyRefinement, get_defense
    >>> x = torch.rand(2, 3, 64, 64)
    >>> y = FrequencyRefinement(pd=30, ac=5, gd=60, pad="zero")(x)
    >>> y.shape == x.shape
    True
    >>> get_defense("jpeg:q=75")
    Jpeg(jpeg:q=75,gradient=bpda)
"""

from segshield.defenses.base import Defense
from segshield.defenses.bitdepth import BitDepth, reduce_bit_depth
from segshield.defenses.dct import (
    block_dct,
    block_idct,
    dct_matrix,
    pad_to_multiple,
    quantize_blocks,
    zigzag_order,
)
from segshield.defenses.feature_distillation import FeatureDistillation, distillation_table
from segshield.defenses.fr import (
    FrequencyRefinement,
    band_table,
    frequency_refine,
    scale_table,
    zigzag_table,
)
from segshield.defenses.gaussian import Gaussian, gaussian_blur
from segshield.defenses.identity import Identity
from segshield.defenses.jpeg import Jpeg, jpeg_roundtrip
from segshield.defenses.median import Median, median_filter
from segshield.defenses.registry import get_defense, list_defenses, parse_spec
from segshield.defenses.rounding import GRADIENTS, smooth_round, straight_through

__all__ = [
    "Defense",
    "FrequencyRefinement",
    "FeatureDistillation",
    "Jpeg",
    "BitDepth",
    "Median",
    "Gaussian",
    "Identity",
    "get_defense",
    "list_defenses",
    "parse_spec",
    "frequency_refine",
    "band_table",
    "scale_table",
    "zigzag_table",
    "distillation_table",
    "jpeg_roundtrip",
    "reduce_bit_depth",
    "median_filter",
    "gaussian_blur",
    "dct_matrix",
    "block_dct",
    "block_idct",
    "quantize_blocks",
    "pad_to_multiple",
    "zigzag_order",
    "straight_through",
    "smooth_round",
    "GRADIENTS",
]
