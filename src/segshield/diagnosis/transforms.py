"""Target masks that flip a diagnosis: enlarge the optic cup, shrink the lesion.

Targeted attacks (ASMA, docs/ALGORITHMS.md §4) push the prediction towards a target mask. These pure
mask transforms build targets with a clinical meaning: a larger cup raises the vertical
cup-to-disc ratio over the glaucoma threshold, a smaller lesion hides a melanoma's size.
Both scale a region about the centre of its bounding box with nearest-neighbour
sampling, so its vertical extent scales by ``factor`` (up to one pixel of rounding).
"""

from __future__ import annotations

import logging

import torch

from segshield._checks import check_masks, check_number
from segshield.diagnosis.cdr import CUP, DISC
from segshield.diagnosis.lesion import LESION
from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = ["scale_region", "enlarge_cup", "shrink_lesion"]

log = logging.getLogger(__name__)


def scale_region(region: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale each sample's boolean region about its bounding-box centre by ``factor``.

    Args:
        region: boolean ``(B, H, W)``.
        factor: scale, > 0 (1 = unchanged, 2 = twice as tall and wide).

    Returns:
        Boolean ``(B, H, W)``; an empty region stays empty; pixels mapped from outside
        the image are outside the region.

    Raises:
        TypeError: ``region`` is not boolean ``(B, H, W)``.
        ValueError: ``factor`` is not positive.

    Example:
        >>> r = torch.zeros(1, 8, 8, dtype=torch.bool); r[0, 3:5, 3:5] = True
        >>> int(scale_region(r, 2.0).sum())
        16
    """
    check_masks(region, "region")
    if region.dtype != torch.bool:
        raise TypeError(f"region: expected a boolean (B, H, W) mask, got dtype {region.dtype}")
    check_number("factor", factor, low=0.0, low_inclusive=False)
    b, h, w = region.shape
    dev = region.device
    ys = torch.arange(h, device=dev, dtype=torch.float64)
    xs = torch.arange(w, device=dev, dtype=torch.float64)
    rows, cols = region.any(-1), region.any(-2)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=dev)
    cy = (torch.where(rows, ys, inf).amin(-1) + torch.where(rows, ys, -inf).amax(-1)) / 2  # (B,)
    cx = (torch.where(cols, xs, inf).amin(-1) + torch.where(cols, xs, -inf).amax(-1)) / 2
    empty = ~rows.any(-1)
    cy = torch.where(empty, torch.zeros_like(cy), cy)
    cx = torch.where(empty, torch.zeros_like(cx), cx)
    # Inverse map: output pixel q takes the value at c + (q - c) / factor.
    sy = torch.round(cy[:, None] + (ys[None, :] - cy[:, None]) / factor).long()  # (B, H)
    sx = torch.round(cx[:, None] + (xs[None, :] - cx[:, None]) / factor).long()  # (B, W)
    iny = (sy >= 0) & (sy < h)
    inx = (sx >= 0) & (sx < w)
    sy = sy.clamp(0, h - 1)
    sx = sx.clamp(0, w - 1)
    bidx = torch.arange(b, device=dev)[:, None, None]
    out = region[bidx, sy[:, :, None], sx[:, None, :]]
    return out & iny[:, :, None] & inx[:, None, :]


def enlarge_cup(
    mask: torch.Tensor,
    factor: float = 1.5,
    disc: tuple[int, ...] = DISC,
    cup: tuple[int, ...] = CUP,
) -> torch.Tensor:
    """Fundus target mask with the optic cup scaled by ``factor`` inside the disc.

    Paper: target masks for targeted segmentation attacks (ASMA, Ozbulak et al., MICCAI
    2019) chosen to flip the glaucoma call (docs/ALGORITHMS.md §5).

    The cup is scaled about the centre of its bounding box and clipped to the disc, so
    the disc is unchanged and the vertical CDR grows about ``factor``-fold (at most to
    1). Pixels leaving the cup become rim (class 1); the ignore index is kept. A sample
    with no cup (or no disc) is returned unchanged, and logged at debug level.

    Args:
        mask: fundus class ids ``(B, H, W)`` (0 background, 1 rim, 2 cup).
        factor: cup scale, > 0; > 1 enlarges (the attack's goal), < 1 shrinks. Default 1.5.
        disc: classes forming the disc. Default ``(1, 2)``.
        cup: classes forming the cup. Default ``(2,)``; the new cup gets ``cup[0]``.

    Returns:
        int64 ``(B, H, W)`` target mask on the input's device; the input is not modified.

    Raises:
        TypeError: non-integer masks.
        ValueError: wrong shape or ``factor`` not positive.

    Example:
        >>> m = torch.zeros(1, 40, 40, dtype=torch.long); m[0, 5:35, 5:35] = 1
        >>> m[0, 15:25, 15:25] = 2
        >>> from segshield.diagnosis import cdr_from_mask
        >>> cdr_from_mask(enlarge_cup(m, 2.0)).tolist()
        [0.6666666666666666]
    """
    check_masks(mask, "mask")
    if mask.dtype == torch.bool:
        raise TypeError("mask: expected fundus class ids (0, 1, 2), got a boolean mask")
    check_number("factor", factor, low=0.0, low_inclusive=False)
    d = torch.zeros_like(mask, dtype=torch.bool)
    for c in disc:
        d |= mask == c
    cp = torch.zeros_like(d)
    for c in cup:
        cp |= mask == c
    new_cup = scale_region(cp, factor) & d
    out = torch.where(d, torch.full_like(mask, _rim(disc, cup)), mask)
    out = torch.where(new_cup, torch.full_like(mask, cup[0]), out)
    unchanged = ~cp.flatten(1).any(-1)
    if log.isEnabledFor(logging.DEBUG) and bool(unchanged.any()):
        log.debug("enlarge_cup: %d sample(s) without a cup left unchanged", int(unchanged.sum()))
    out = torch.where(unchanged[:, None, None], mask, out)
    return torch.where(mask == IGNORE_INDEX, mask, out)


def _rim(disc: tuple[int, ...], cup: tuple[int, ...]) -> int:
    rim = [c for c in disc if c not in cup]
    if not rim:
        raise ValueError(f"disc: expected a rim class not in cup {cup}, got disc {disc}")
    return rim[0]


def shrink_lesion(
    mask: torch.Tensor, factor: float = 0.5, lesion: tuple[int, ...] = LESION
) -> torch.Tensor:
    """Lesion target mask with the lesion scaled by ``factor`` about its centre.

    Paper: target masks for targeted segmentation attacks (ASMA, Ozbulak et al., MICCAI
    2019) chosen to shrink the lesion; the area scales by about ``factor^2``.

    Args:
        mask: binary class ids ``(B, H, W)`` (0 background, 1 lesion; 255 kept).
        factor: scale in ``(0, 1]``. Default 0.5.
        lesion: classes forming the lesion; the new lesion gets ``lesion[0]``. Default
            ``(1,)``.

    Returns:
        int64 ``(B, H, W)`` target mask; pixels leaving the lesion become 0. An empty
        lesion stays empty.

    Raises:
        TypeError: non-integer masks.
        ValueError: wrong shape or ``factor`` outside ``(0, 1]``.

    Example:
        >>> m = torch.zeros(1, 20, 20, dtype=torch.long); m[0, 2:18, 2:18] = 1
        >>> int(shrink_lesion(m, 0.5).sum())
        64
    """
    check_masks(mask, "mask")
    if mask.dtype == torch.bool:
        raise TypeError("mask: expected class ids (0 background, 1 lesion), got a boolean mask")
    check_number("factor", factor, low=0.0, high=1.0, low_inclusive=False)
    les = torch.zeros_like(mask, dtype=torch.bool)
    for c in lesion:
        les |= mask == c
    small = scale_region(les, factor)
    out = torch.where(les, torch.zeros_like(mask), mask)
    out = torch.where(small, torch.full_like(mask, lesion[0]), out)
    return torch.where(mask == IGNORE_INDEX, mask, out)
