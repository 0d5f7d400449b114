"""Per-sample downstream effects of a predicted mask against the ground truth.

What an attack does to the clinical decision (docs/ALGORITHMS.md §5): for fundus masks the
absolute error of the vertical cup-to-disc ratio and whether the glaucoma call flips;
for lesion masks the relative error of the lesion area. The evaluation harness calls
these once per batch for the clean, attacked and recovered predictions.
"""

from __future__ import annotations

import torch

from segshield._checks import check_masks, check_number
from segshield.diagnosis._masks import region
from segshield.diagnosis.cdr import CUP, DISC, _extent, _ratio, glaucoma_call
from segshield.diagnosis.lesion import LESION

__all__ = ["downstream_fundus", "downstream_lesion"]


def _pair(pred: torch.Tensor, gt: torch.Tensor) -> None:
    check_masks(pred, "pred")
    check_masks(gt, "gt", like=pred)
    if pred.dtype == torch.bool or gt.dtype == torch.bool:
        raise TypeError(
            "pred, gt: expected integer class ids (B, H, W), got a boolean mask; "
            "use m.long() (True = class 1)"
        )


def downstream_fundus(
    pred: torch.Tensor,
    gt: torch.Tensor,
    threshold: float = 0.6,
    disc: tuple[int, ...] = DISC,
    cup: tuple[int, ...] = CUP,
) -> dict[str, torch.Tensor]:
    """Vertical CDR of prediction and ground truth, its absolute error, and call flips.

    Paper: the glaucoma downstream of docs/ALGORITHMS.md §5 (absolute CDR error, glaucoma
    call at a CDR threshold), following the downstream evaluation of Liu et al.
    (MICCAI 2020).

    Args:
        pred: predicted fundus class ids (0 background, 1 rim, 2 cup).
        gt: ground-truth class ids of the same shape; 255 is ignored.
        threshold: CDR at and above which the call is glaucoma, in ``[0, 1]``. Default 0.6.
        disc: classes forming the disc. Default ``(1, 2)``.
        cup: classes forming the cup. Default ``(2,)``.

    Shape:
        pred, gt: ``(B, H, W)`` integer; every output is ``(B,)`` on ``pred``'s device.

    Returns:
        ``cdr_pred``, ``cdr_gt``, ``cdr_abs_error`` (float64; NaN where either disc is
        empty), ``call_pred``, ``call_gt`` (bool; False where the CDR is NaN), and
        ``call_flipped`` (float64 1.0 / 0.0; NaN where either CDR is NaN, so a vanished
        disc is flagged rather than counted as a flip or a non-flip).

    Raises:
        TypeError: non-integer masks.
        ValueError: wrong shapes, or ``threshold`` outside ``[0, 1]``.

    Example:
        >>> gt = torch.zeros(1, 20, 20, dtype=torch.long); gt[0, 2:12, 2:12] = 1
        >>> gt[0, 4:8, 4:8] = 2  # CDR 0.4
        >>> pred = gt.clone(); pred[0, 3:11, 4:8] = 2  # CDR 0.8
        >>> out = downstream_fundus(pred, gt)
        >>> round(out["cdr_abs_error"].item(), 6), out["call_flipped"].item()
        (0.4, 1.0)
    """
    _pair(pred, gt)
    check_number("threshold", threshold, low=0.0, high=1.0)
    gt = gt.to(pred.device)
    cdr_p = _ratio(_extent(region(pred, disc)), _extent(region(pred, cup)))
    cdr_g = _ratio(_extent(region(gt, disc)), _extent(region(gt, cup)))
    call_p = glaucoma_call(cdr_p, threshold)
    call_g = glaucoma_call(cdr_g, threshold)
    undefined = torch.isnan(cdr_p) | torch.isnan(cdr_g)
    flipped = torch.where(
        undefined, torch.full_like(cdr_p, float("nan")), (call_p != call_g).double()
    )
    return {
        "cdr_pred": cdr_p,
        "cdr_gt": cdr_g,
        "cdr_abs_error": (cdr_p - cdr_g).abs(),
        "call_pred": call_p,
        "call_gt": call_g,
        "call_flipped": flipped,
    }


def downstream_lesion(
    pred: torch.Tensor, gt: torch.Tensor, lesion: tuple[int, ...] = LESION
) -> dict[str, torch.Tensor]:
    """Lesion area of prediction and ground truth and the relative area error.

    Paper: a downstream measure for dermoscopy (lesion area, the "D"/size input of
    the ABCD rule, Stolz et al., 1994).

    Args:
        pred: predicted class ids ``(B, H, W)`` (binary 0/1).
        gt: ground-truth class ids of the same shape; pixels that are 255 in ``gt`` are
            ignored in both masks.
        lesion: classes forming the lesion. Default ``(1,)``.

    Returns:
        ``area_pred``, ``area_gt`` (float64 pixel counts), ``area_rel_error``
        (``(pred - gt) / gt``, signed: negative when the lesion shrank) and
        ``area_abs_rel_error``; both errors are NaN where the ground truth is empty.

    Raises:
        TypeError: non-integer masks.
        ValueError: wrong shapes.

    Example:
        >>> gt = torch.zeros(1, 10, 10, dtype=torch.long); gt[0, :4, :5] = 1
        >>> pred = torch.zeros_like(gt); pred[0, :2, :5] = 1
        >>> downstream_lesion(pred, gt)["area_rel_error"].item()
        -0.5
    """
    _pair(pred, gt)
    gt = gt.to(pred.device)
    valid = gt != 255
    a_p = (region(pred, lesion) & valid).flatten(1).sum(-1).double()
    a_g = region(gt, lesion).flatten(1).sum(-1).double()
    rel = torch.where(a_g > 0, (a_p - a_g) / a_g.clamp_min(1), torch.full_like(a_g, float("nan")))
    return {
        "area_pred": a_p,
        "area_gt": a_g,
        "area_rel_error": rel,
        "area_abs_rel_error": rel.abs(),
    }
