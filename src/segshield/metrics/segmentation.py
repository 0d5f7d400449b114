"""Per-sample, per-class segmentation metrics with the empty-mask rules of docs/ALGORITHMS.md §5.

Rules (per sample and class): empty ground truth and empty prediction gives IoU = Dice
= 1; empty ground truth with a non-empty prediction gives NaN (flagged, never silently
0 or 1: aggregate with ``nanmean`` and report the count); pixels whose target is the
ignore index (255) count nowhere.
"""

from __future__ import annotations

import torch

from segshield._checks import check_logits, check_masks, check_number

__all__ = [
    "IGNORE_INDEX",
    "logits_to_mask",
    "confusion",
    "compute_iou",
    "compute_dice",
    "pixel_accuracy",
    "region_mask",
    "region_scores",
]

IGNORE_INDEX = 255


def logits_to_mask(logits: torch.Tensor) -> torch.Tensor:
    """Hard prediction from logits (docs/ALGORITHMS.md §1).

    Args:
        logits: ``(B, K, H, W)``; K = 1 means sigmoid (foreground where logit > 0),
            K >= 2 means argmax over classes.

    Returns:
        ``(B, H, W)`` int64 class ids.

    Example:
        >>> logits_to_mask(torch.tensor([[[[-1.0, 2.0]]]])).tolist()
        [[[0, 1]]]
    """
    check_logits(logits)
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def confusion(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives per sample and class.

    Args:
        pred: ``(B, H, W)`` predicted class ids.
        target: ``(B, H, W)`` ground-truth class ids; ``ignore_index`` pixels are skipped.
        num_classes: K >= 2 (a sigmoid model has K = 2 here: background and foreground).
        ignore_index: target value to skip. Default 255.

    Returns:
        ``(tp, fp, fn)``, each ``(B, K)`` float64 counts.

    Raises:
        ValueError: shapes differ or ``num_classes`` < 2.
    """
    check_masks(pred, "pred")
    check_masks(target, "target", like=pred)
    check_number("num_classes", num_classes, low=2, integer=True)
    valid = target != ignore_index
    classes = torch.arange(num_classes, device=pred.device).view(1, -1, 1, 1)
    p = (pred.unsqueeze(1) == classes) & valid.unsqueeze(1)
    t = (target.unsqueeze(1) == classes) & valid.unsqueeze(1)
    tp = (p & t).flatten(2).sum(-1).double()
    fp = (p & ~t).flatten(2).sum(-1).double()
    fn = (~p & t).flatten(2).sum(-1).double()
    return tp, fp, fn


def _ratio(num: torch.Tensor, den: torch.Tensor, gt_count: torch.Tensor) -> torch.Tensor:
    out = num / den.clamp_min(1)
    both_empty = den == 0
    gt_empty_only = (gt_count == 0) & ~both_empty
    out = torch.where(both_empty, torch.ones_like(out), out)
    return torch.where(gt_empty_only, torch.full_like(out, float("nan")), out)


def _iou(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    return _ratio(tp, tp + fp + fn, tp + fn)


def _dice(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    return _ratio(2 * tp, 2 * tp + fp + fn, tp + fn)


def compute_iou(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Intersection over union (Jaccard) per sample and class: ``TP / (TP + FP + FN)``.

    Empty-mask rules of docs/ALGORITHMS.md §5 (module docstring): 1 where both masks are
    empty, NaN where only the ground truth is.

    Args:
        pred: predicted class ids.
        target: ground-truth class ids; ``ignore_index`` pixels count nowhere.
        num_classes: K >= 2.
        ignore_index: target value to skip. Default 255.

    Shape:
        pred, target: ``(B, H, W)``; returns ``(B, K)`` float64.

    Raises:
        ValueError: shapes differ or ``num_classes`` < 2.

    Example:
        >>> p = torch.tensor([[[0, 1], [1, 1]]]); t = torch.tensor([[[0, 1], [0, 1]]])
        >>> compute_iou(p, t, 2)[0, 1].item()
        0.6666666666666666
    """
    return _iou(*confusion(pred, target, num_classes, ignore_index))


def compute_dice(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Dice (F1) per sample and class: ``2 TP / (2 TP + FP + FN)``.

    Arguments, shapes, errors and empty-mask rules as :func:`compute_iou`; per sample and
    class ``dice = 2 iou / (1 + iou)``.

    Example:
        >>> pred = torch.tensor([[[0, 2], [2, 1]]]); gt = torch.tensor([[[0, 2], [1, 1]]])
        >>> compute_dice(pred, gt, 3).tolist()
        [[1.0, 0.6666666666666666, 0.6666666666666666]]
    """
    return _dice(*confusion(pred, target, num_classes, ignore_index))


def pixel_accuracy(
    pred: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Fraction of non-ignored pixels predicted correctly, per sample.

    Returns:
        ``(B,)`` float64; NaN for a sample whose pixels are all ignored.
    """
    check_masks(pred, "pred")
    check_masks(target, "target", like=pred)
    valid = target != ignore_index
    correct = ((pred == target) & valid).flatten(1).sum(-1).double()
    n = valid.flatten(1).sum(-1).double()
    return torch.where(n > 0, correct / n.clamp_min(1), torch.full_like(n, float("nan")))


def region_mask(masks: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    """Binary mask of the union of ``classes``, keeping the ignore index.

    Used for fundus scores: disc = classes (1, 2), cup = (2,) (docs/ALGORITHMS.md §1).
    """
    out = torch.zeros_like(masks)
    for c in classes:
        out = torch.where(masks == c, torch.ones_like(masks), out)
    return torch.where(masks == IGNORE_INDEX, masks, out)


def region_scores(
    pred: torch.Tensor,
    target: torch.Tensor,
    regions: dict[str, tuple[int, ...]],
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, dict[str, torch.Tensor]]:
    """IoU and Dice of named foreground regions, per sample.

    Args:
        pred, target: ``(B, H, W)`` class ids.
        regions: name to the classes forming that region, e.g.
            ``{"lesion": (1,)}`` or ``{"disc": (1, 2), "cup": (2,)}``.

    Returns:
        ``{region: {"iou": (B,), "dice": (B,)}}`` float64 tensors.

    Example:
        >>> p = torch.tensor([[[0, 1], [2, 2]]]); t = torch.tensor([[[1, 1], [2, 0]]])
        >>> region_scores(p, t, {"disc": (1, 2)})["disc"]["dice"].item()
        0.6666666666666666
    """
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, classes in regions.items():
        tp, fp, fn = confusion(
            region_mask(pred, classes), region_mask(target, classes), 2, ignore_index
        )
        out[name] = {"iou": _iou(tp, fp, fn)[:, 1], "dice": _dice(tp, fp, fn)[:, 1]}
    return out
