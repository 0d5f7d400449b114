"""FGSM: the fast gradient sign method (Goodfellow et al., ICLR 2015), and its L2 variant.

One step of size ``eps`` along the sign (L-inf) or the normalised gradient (L2) of the
per-pixel cross-entropy: PGD with one step of size ``eps`` and no random start (the
same loop, :mod:`segshield.attacks.pgd`), so it attacks segmentation models and
classifiers alike.
"""

from __future__ import annotations

from segshield.attacks.pgd import PGD

__all__ = ["FGSM"]


class FGSM(PGD):
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
        >>> import torch
        >>> model = torch.nn.Conv2d(1, 2, 1)
        >>> x = torch.full((1, 1, 4, 4), 0.5); y = torch.ones(1, 4, 4, dtype=torch.long)
        >>> r = FGSM(eps=0.1)(model, x, y)
        >>> round(float((r.adversarial - x).abs().max()), 4)
        0.1
    """

    name = "fgsm"

    def __init__(self, eps: float = 8 / 255, norm: str = "linf") -> None:
        super().__init__(eps=eps, alpha=eps, steps=1, norm=norm, random_start=False)
