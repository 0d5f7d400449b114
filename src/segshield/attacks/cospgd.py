"""CosPGD (Agnihotri & Keuper, ICML 2024): PGD with cosine-similarity pixel weights.

Each pixel's cross-entropy is weighted by the cosine similarity between the class
probabilities and the one-hot label (docs/ALGORITHMS.md §4). Untargeted, the weight is
``cos`` with the ground truth: pixels the model still gets right weigh more. Targeted,
it is ``1 - cos`` with the target: pixels already close to the target weigh less. The
weights are constants of each step (no gradient flows through them).
"""

from __future__ import annotations

import functools

import torch

from segshield.attacks.losses import onehot_cosine
from segshield.attacks.pgd import PGD, PixelWeights
from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = ["CosPGD", "cospgd_weights"]


def cospgd_weights(
    t: int, steps: int, logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False
) -> torch.Tensor:
    """Per-pixel CosPGD weights (Agnihotri & Keuper, ICML 2024, Algorithm 1).

    Args:
        t: current step (unused: the weights depend on the prediction only).
        steps: total steps (unused).
        logits: ``(B, K, H, W)`` current logits (K = 1: sigmoid model).
        labels: ``(B, H, W)`` ground truth (untargeted) or target (targeted); 255 ignored.
        targeted: return ``1 - cos`` instead of ``cos``. Default False.

    Returns:
        ``(B, H, W)`` weights in ``[0, 1]``; 0 on ignored pixels.

    Example:
        >>> z = torch.tensor([[[[0.0]], [[0.0]]]])
        >>> round(cospgd_weights(1, 1, z, torch.tensor([[[1]]]), targeted=True).item(), 4)
        0.2929
    """
    cos = onehot_cosine(logits, labels)
    if not targeted:
        return cos
    return (1 - cos) * (labels != IGNORE_INDEX)


class CosPGD(PGD):
    """CosPGD: L-inf/L2 PGD, targeted or untargeted, with cosine pixel weights.

    Agnihotri & Keuper, "CosPGD: an efficient white-box adversarial attack for pixel-wise
    prediction tasks", ICML 2024. The loop, projection, step and random start are PGD's
    (:class:`~segshield.attacks.PGD`); only the per-pixel weights differ.

    Args:
        eps: budget on the ``[0, 1]`` scale, > 0. Default 8/255.
        alpha: step size, > 0; None means ``2.5 * eps / steps``. Default None.
        steps: iterations, >= 1. Default 10.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        random_start: random start in the eps-ball. Default True.
        seed: seed of the random start, >= 0. Default 0.

    Shape:
        images ``(B, C, H, W)``; masks, target_masks ``(B, H, W)``.

    Returns:
        ``AttackResult``.

    Raises:
        TypeError, ValueError: bad settings or inputs; a classifier model.

    Example:
        >>> model = torch.nn.Conv2d(3, 2, 1)
        >>> x = torch.rand(1, 3, 8, 8)
        >>> r = CosPGD(eps=4 / 255, steps=2)(model, x)
        >>> bool((r.adversarial - x).abs().max() <= 4 / 255 + 1e-6)
        True
    """

    name = "cospgd"
    supports_classifiers = False

    def _pixel_weights(self, targeted: bool) -> PixelWeights | None:
        return functools.partial(cospgd_weights, targeted=targeted)
