"""FGSM: the fast gradient sign method (Goodfellow et al., ICLR 2015), and its L2 variant.

One step of size ``eps`` along the sign (L-inf) or the normalised gradient (L2) of the
per-pixel cross-entropy; the same loop as :mod:`segshield.attacks.pgd`, so it attacks
segmentation models and classifiers alike.
"""

from __future__ import annotations

from typing import Any

import torch

from segshield._checks import check_choice, check_number
from segshield.attacks.base import Attack
from segshield.attacks.pgd import NORMS, pgd

__all__ = ["FGSM"]


class FGSM(Attack):
    """Fast gradient sign method: one ``eps`` step on the per-pixel cross-entropy.

    Untargeted (``target_masks=None``) raises the cross-entropy with the ground truth (or
    the clean prediction); targeted lowers it with the target. CLASSIFIERS: when the model
    returns ``(B, K)`` logits, the masks are labels ``(B,)`` and the loss is the
    cross-entropy per sample.

    Args:
        eps: step and budget on the ``[0, 1]`` scale, > 0. Default 8/255.
        norm: ``"linf"`` (sign of the gradient) or ``"l2"`` (gradient scaled to L2 norm
            ``eps``). Default ``"linf"``.

    Shape:
        images ``(B, C, H, W)``; masks, target_masks ``(B, H, W)`` or classifier ``(B,)``.

    Returns:
        ``AttackResult`` (``steps`` = 1).

    Raises:
        TypeError, ValueError: bad settings (in ``__init__``) or inputs (on call).

    Example:
        >>> model = torch.nn.Conv2d(1, 2, 1)
        >>> x = torch.full((1, 1, 4, 4), 0.5); y = torch.ones(1, 4, 4, dtype=torch.long)
        >>> r = FGSM(eps=0.1)(model, x, y)
        >>> round(float((r.adversarial - x).abs().max()), 4)
        0.1
    """

    name = "fgsm"
    supports_classifiers = True

    def __init__(self, eps: float = 8 / 255, norm: str = "linf") -> None:
        self.eps = float(check_number("eps", eps, low=0.0, low_inclusive=False))
        self.norm = check_choice("norm", norm, NORMS)

    def config(self) -> dict[str, Any]:
        return {"eps": self.eps, "norm": self.norm}

    def _run(self, model, images, labels, target, classifier):
        adv = pgd(
            model,
            images,
            labels,
            target=target,
            eps=self.eps,
            alpha=self.eps,
            steps=1,
            norm=self.norm,
        )
        return adv, torch.ones(images.shape[0], dtype=torch.long)
