"""SegPGD (Gu et al., ECCV 2022): PGD whose pixel weights move from correct to wrong pixels.

At step ``t = 1..T`` the loss is
``L_t = (1 - lambda_t)/N sum_{correct} CE + lambda_t/N sum_{wrong} CE`` with
``lambda_t = (t - 1) / (2T)`` and N the number of (non-ignored) pixels: early steps
push the still-correct pixels over the boundary, later steps keep the wrong ones wrong.
"""

from __future__ import annotations

import torch

from segshield.attacks.losses import predict
from segshield.attacks.pgd import PGD, PixelWeights

__all__ = ["SegPGD", "segpgd_weights"]


def segpgd_weights(t: int, steps: int, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel SegPGD weights at step ``t`` of ``steps`` (Gu et al., ECCV 2022, eq. 5).

    Args:
        t: current step, ``1..steps``.
        steps: total steps T.
        logits: ``(B, K, H, W)`` current logits.
        labels: ``(B, H, W)`` ground truth.

    Returns:
        ``(B, H, W)`` weights: ``1 - lambda_t`` on correctly classified pixels, ``lambda_t``
        on the others, ``lambda_t = (t - 1) / (2 * steps)``.

    Example:
        >>> z = torch.tensor([[[[1.0, -1.0]]]])
        >>> segpgd_weights(2, 2, z, torch.tensor([[[1, 1]]])).tolist()
        [[[0.75, 0.25]]]
    """
    lam = (t - 1) / (2 * steps)
    correct = predict(logits) == labels
    return torch.where(
        correct,
        torch.full_like(labels, 1 - lam, dtype=logits.dtype),
        torch.full_like(labels, lam, dtype=logits.dtype),
    )


class SegPGD(PGD):
    """SegPGD: untargeted L-inf/L2 PGD with the SegPGD pixel weighting (Gu et al., ECCV 2022).

    Args:
        eps: budget on the ``[0, 1]`` scale, > 0. Default 8/255.
        alpha: step size, > 0; None means ``2.5 * eps / steps``. Default None.
        steps: iterations T, >= 1. Default 10.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        random_start: random start in the eps-ball. Default True.
        seed: seed of the random start, >= 0. Default 0.

    Shape:
        images ``(B, C, H, W)``; masks ``(B, H, W)`` (or None: the clean prediction).

    Returns:
        ``AttackResult``.

    Raises:
        TypeError, ValueError: bad settings or inputs; target masks given (SegPGD is
            untargeted); a classifier model.

    Example:
        >>> model = torch.nn.Conv2d(3, 2, 1)
        >>> x = torch.rand(1, 3, 8, 8)
        >>> SegPGD(steps=2)(model, x).stats["steps"].tolist()
        [2]
    """

    name = "segpgd"
    supports_classifiers = False
    allows_target = False

    def _pixel_weights(self, targeted: bool) -> PixelWeights | None:
        return segpgd_weights
