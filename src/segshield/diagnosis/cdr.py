"""Vertical cup-to-disc ratio (CDR) and the glaucoma call (docs/ALGORITHMS.md §5).

The vertical CDR is the classic glaucoma screening measure: the vertical diameter of the
optic cup divided by the vertical diameter of the optic disc (e.g. Garway-Heath et al.,
Br J Ophthalmol 1998; the CDR threshold of 0.6 is the usual screening cut-off, also used
by the FR paper's downstream evaluation, Liu et al., MICCAI 2020). Here the vertical
diameter of a region is its vertical extent: the number of image rows from its topmost
to its bottommost pixel (the height of its bounding box), so holes or several
components do not shorten it.
"""

from __future__ import annotations

from typing import Any

import torch

from segshield._checks import check_number
from segshield.diagnosis._masks import as_batch, region, restore

__all__ = ["vertical_extent", "vertical_cdr", "cdr_from_mask", "glaucoma_call", "DISC", "CUP"]

#: Fundus class ids forming the disc and the cup (docs/ALGORITHMS.md §1: 1 = rim, 2 = cup).
DISC: tuple[int, ...] = (1, 2)
CUP: tuple[int, ...] = (2,)


def vertical_extent(mask: Any) -> Any:
    """Number of rows spanned by a binary mask (bounding-box height), per sample.

    Args:
        mask: boolean (or 0/1 integer, non-zero = inside) mask ``(H, W)`` or ``(B, H, W)``,
            torch tensor or numpy array.

    Shape:
        ``(H, W)`` gives a scalar, ``(B, H, W)`` gives ``(B,)``.

    Returns:
        int64 row counts (0 for an empty mask), as a tensor for tensor input and as numpy
        for numpy input.

    Raises:
        TypeError: floating-point or non-array input.
        ValueError: not 2-D or 3-D.

    Example:
        >>> m = torch.zeros(10, 10, dtype=torch.bool); m[2:7, 4] = True
        >>> int(vertical_extent(m))
        5
    """
    m, was_numpy, single = as_batch(mask, "mask")
    return restore(_extent(m != 0), was_numpy, single)


def _extent(m: torch.Tensor) -> torch.Tensor:
    rows = m.any(dim=-1)  # (B, H)
    h = rows.shape[-1]
    idx = torch.arange(h, device=m.device).expand_as(rows)
    first = torch.where(rows, idx, torch.full_like(idx, h)).amin(dim=-1)
    last = torch.where(rows, idx, torch.full_like(idx, -1)).amax(dim=-1)
    return (last - first + 1).clamp_min(0)


def vertical_cdr(disc: Any, cup: Any) -> Any:
    """Vertical cup-to-disc ratio: rows spanned by the cup over rows spanned by the disc.

    Paper: vertical CDR as in Garway-Heath et al. (1998), the downstream measure of
    Liu et al. (MICCAI 2020); see docs/ALGORITHMS.md §5.

    Args:
        disc: boolean disc mask ``(H, W)`` or ``(B, H, W)`` (the whole disc, cup included),
            torch tensor or numpy array; integer masks count non-zero as inside.
        cup: boolean cup mask of the same shape.

    Shape:
        ``(H, W)`` gives a scalar, ``(B, H, W)`` gives ``(B,)``.

    Returns:
        float64 ratio (tensor for tensor input, numpy for numpy input). An empty disc gives
        NaN (no disc, no ratio: flag it, never read it as 0); an empty cup with a disc
        gives 0. The cup is not clipped to the disc, so inconsistent masks may exceed 1.

    Raises:
        TypeError: floating-point or non-array input.
        ValueError: shapes differ, or not 2-D / 3-D.

    Example:
        >>> disc = torch.zeros(200, 200, dtype=torch.bool); disc[50:150, 50:150] = True
        >>> cup = torch.zeros_like(disc); cup[75:125, 75:125] = True
        >>> float(vertical_cdr(disc, cup))
        0.5
    """
    d, was_numpy, single = as_batch(disc, "disc")
    c, _, _ = as_batch(cup, "cup")
    if d.shape != c.shape:
        raise ValueError(
            f"cup: expected the shape of disc {tuple(d.shape)}, got {tuple(c.shape)}; "
            "disc and cup masks must come from the same image"
        )
    return restore(_ratio(_extent(d != 0), _extent(c.to(d.device) != 0)), was_numpy, single)


def _ratio(disc_rows: torch.Tensor, cup_rows: torch.Tensor) -> torch.Tensor:
    d = disc_rows.double()
    out = cup_rows.double() / d.clamp_min(1)
    return torch.where(d > 0, out, torch.full_like(out, float("nan")))


def cdr_from_mask(mask: Any, disc: tuple[int, ...] = DISC, cup: tuple[int, ...] = CUP) -> Any:
    """Vertical CDR of a fundus class mask (docs/ALGORITHMS.md §1: 0 background, 1 rim, 2 cup).

    Args:
        mask: integer class ids ``(H, W)`` or ``(B, H, W)``; 255 (ignore) is neither.
        disc: classes forming the disc. Default ``(1, 2)``.
        cup: classes forming the cup. Default ``(2,)``.

    Shape:
        ``(H, W)`` gives a scalar, ``(B, H, W)`` gives ``(B,)``.

    Returns:
        float64 vertical CDR, NaN where the disc is empty (see :func:`vertical_cdr`).

    Raises:
        TypeError: boolean, floating-point or non-array input.
        ValueError: not 2-D or 3-D.

    Example:
        >>> m = torch.zeros(20, 20, dtype=torch.long); m[2:12, 2:12] = 1; m[4:8, 4:8] = 2
        >>> float(cdr_from_mask(m))
        0.4
    """
    m, was_numpy, single = as_batch(mask, "mask")
    if m.dtype == torch.bool:
        raise TypeError(
            "mask: expected integer class ids (0 background, 1 rim, 2 cup), got a boolean "
            "mask; for separate disc and cup masks call vertical_cdr(disc, cup)"
        )
    cdr = _ratio(_extent(region(m, disc)), _extent(region(m, cup)))
    return restore(cdr, was_numpy, single)


def glaucoma_call(cdr: Any, threshold: float = 0.6) -> Any:
    """Glaucoma suspect when the vertical CDR reaches the threshold: ``cdr >= threshold``.

    Reference: docs/ALGORITHMS.md §5 (threshold 0.6 by default, configurable).

    Args:
        cdr: vertical CDR values, a float, numpy array or tensor of any shape.
        threshold: CDR at and above which the call is "glaucoma", in ``[0, 1]``.
            Default 0.6.

    Returns:
        Boolean of the same type and shape. A NaN CDR (no disc found) gives False: no call
        can be made there, so check ``isnan(cdr)`` to flag those samples (the downstream
        helpers report such flips as NaN).

    Raises:
        TypeError, ValueError: ``threshold`` is not a number in ``[0, 1]``.

    Example:
        >>> glaucoma_call(torch.tensor([0.4, 0.6, 0.7])).tolist()
        [False, True, True]
    """
    check_number("threshold", threshold, low=0.0, high=1.0)
    return cdr >= threshold
