"""Training: one loop for every task, with the task's loss and validation as small parts.

- :func:`fit` (:mod:`~segshield.training.loop`): epochs, batches, optimiser, logging,
  best checkpoint, resume;
- :func:`train_segmentation`: Dice + CE, augmentation, region scores;
- :func:`fit_classifier`: class-weighted cross-entropy, flips, accuracy.

Example:
    >>> import torch
    >>> from segshield.training import dice_ce_loss
    >>> float(dice_ce_loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2, dtype=torch.long))) > 0
    True
"""

from segshield._deprecation import moved_names
from segshield.training.augment import Augment, augment_pair
from segshield.training.classify import classifier_accuracy, fit_classifier
from segshield.training.loop import fit
from segshield.training.losses import DiceCELoss, dice_ce_loss
from segshield.training.segmentation import evaluate_segmentation, train_segmentation
from segshield.training.state import state_paths
from segshield.utils.device import resolve_device as _resolve_device

__all__ = [
    "Augment",
    "augment_pair",
    "DiceCELoss",
    "dice_ce_loss",
    "classifier_accuracy",
    "evaluate_segmentation",
    "fit",
    "fit_classifier",
    "state_paths",
    "train_segmentation",
]

__getattr__ = moved_names(
    __name__,
    {"resolve_device": ("segshield.utils.device.resolve_device", lambda: _resolve_device)},
)
