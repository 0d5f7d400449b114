"""Training segmentation models: Dice + CE loss, augmentation, train/validate loop.

Example:
    >>> import torch
    >>> from segshield.training import dice_ce_loss
    >>> float(dice_ce_loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2, dtype=torch.long))) > 0
    True
"""

from segshield.training.augment import Augment, augment_pair
from segshield.training.loop import (
    evaluate_segmentation,
    resolve_device,
    state_paths,
    train_segmentation,
)
from segshield.training.losses import DiceCELoss, dice_ce_loss

__all__ = [
    "Augment",
    "augment_pair",
    "DiceCELoss",
    "dice_ce_loss",
    "evaluate_segmentation",
    "resolve_device",
    "state_paths",
    "train_segmentation",
]
