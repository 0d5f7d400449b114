"""Dice + cross-entropy segmentation loss, for K = 1 (sigmoid) and K >= 2 (softmax).

Cross-entropy is binary (``binary_cross_entropy_with_logits``) for one channel and
categorical for several. The soft Dice term (Milletari et al., 3DV 2016) is computed
over the whole batch per foreground class (for K = 1 the single foreground; for K >= 2
the classes 1..K-1), ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``, averaged over
classes. Pixels whose mask is the ignore index (255) count in neither term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segshield._checks import check_logits, check_masks, check_number
from segshield.metrics import IGNORE_INDEX

__all__ = ["dice_ce_loss", "DiceCELoss"]


def dice_ce_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    eps: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """``dice_weight * soft_dice_loss + ce_weight * cross_entropy`` (scalar, mean).

    Args:
        logits: ``(B, K, H, W)``; K = 1 is sigmoid binary, K >= 2 softmax.
        masks: ``(B, H, W)`` integer class ids in ``0..max(K, 2) - 1`` or ``ignore_index``.
        dice_weight: weight of the Dice term, >= 0. Default 1.
        ce_weight: weight of the cross-entropy term, >= 0. Default 1.
        eps: Dice smoothing, > 0. Default 1.
        ignore_index: mask value excluded from both terms. Default 255.

    Returns:
        A scalar tensor (0 when every pixel is ignored).

    Raises:
        TypeError, ValueError: malformed logits or masks, or masks that do not match.

    Example:
        >>> z = torch.tensor([[[[10.0, -10.0]]]]); m = torch.tensor([[[1, 0]]])
        >>> float(dice_ce_loss(z, m)) < 0.01
        True
    """
    check_logits(logits)
    check_masks(masks, like=logits)
    check_number("dice_weight", dice_weight, low=0)
    check_number("ce_weight", ce_weight, low=0)
    check_number("eps", eps, low=0, low_inclusive=False)
    valid = masks != ignore_index
    target = torch.where(valid, masks, torch.zeros_like(masks))
    w = valid.to(logits.dtype)
    n = w.sum().clamp_min(1.0)
    k = logits.shape[1]
    if k == 1:
        z = logits[:, 0]
        t = target.to(logits.dtype)
        ce = (F.binary_cross_entropy_with_logits(z, t, reduction="none") * w).sum() / n
        p = torch.sigmoid(z) * w
        inter = (p * t).sum()
        dice = 1 - (2 * inter + eps) / (p.sum() + (t * w).sum() + eps)
    else:
        ce = (F.cross_entropy(logits, target, reduction="none") * w).sum() / n
        p = torch.softmax(logits, dim=1) * w.unsqueeze(1)
        t = F.one_hot(target, k).permute(0, 3, 1, 2).to(logits.dtype) * w.unsqueeze(1)
        dims = (0, 2, 3)
        inter = (p * t).sum(dims)[1:]
        dice = (1 - (2 * inter + eps) / (p.sum(dims)[1:] + t.sum(dims)[1:] + eps)).mean()
    return dice_weight * dice + ce_weight * ce


class DiceCELoss(nn.Module):
    """Module form of :func:`dice_ce_loss` holding its settings.

    Args:
        dice_weight: weight of the Dice term, >= 0. Default 1.
        ce_weight: weight of the cross-entropy term, >= 0. Default 1.
        eps: Dice smoothing, > 0. Default 1.
        ignore_index: mask value excluded from the loss. Default 255.

    Shape:
        logits ``(B, K, H, W)``, masks ``(B, H, W)``; returns a scalar.

    Raises:
        TypeError, ValueError: a setting has the wrong type or range.

    Example:
        >>> DiceCELoss()(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)).ndim
        0
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        eps: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        check_number("dice_weight", dice_weight, low=0)
        check_number("ce_weight", ce_weight, low=0)
        check_number("eps", eps, low=0, low_inclusive=False)
        check_number("ignore_index", ignore_index, integer=True)
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)
        self.eps = float(eps)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return dice_ce_loss(
            logits,
            masks,
            dice_weight=self.dice_weight,
            ce_weight=self.ce_weight,
            eps=self.eps,
            ignore_index=self.ignore_index,
        )
