"""DAG: Dense Adversary Generation (Xie et al., ICCV 2017).

Every pixel gets an adversarial label ``l'``. At iteration m only the pixels still
predicted as their true label ``l`` (and whose ``l' != l``) are active; the step is the
gradient of ``sum_active (f_{l'} - f_l)`` (``f`` the logits), normalised by its L-inf
norm and scaled by ``gamma``: ``r <- r + gamma * g / ||g||_inf``. A sample stops when
no pixel is active (all flipped) or after ``steps`` iterations. Images are kept in
``[0, 1]`` (the paper does not clip).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segshield._checks import check_images, check_masks, check_number, checked_entry
from segshield.attacks.base import Attack, loss_gradient
from segshield.attacks.losses import predict, two_class_logits
from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = ["DAG", "dag", "default_adversarial_labels"]


def default_adversarial_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Untargeted DAG labels: ``l' = (l + 1) mod K`` (a fixed class permutation), 255 kept.

    Example:
        >>> default_adversarial_labels(torch.tensor([[[0, 1, 255]]]), 2).tolist()
        [[[1, 0, 255]]]
    """
    k = max(num_classes, 2)
    return torch.where(labels == IGNORE_INDEX, labels, (labels + 1) % k)


@checked_entry("images")
def dag(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    adv_labels: torch.Tensor,
    *,
    gamma: float = 0.5 / 255,
    steps: int = 200,
    check_every: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run DAG on a batch (the pure function behind :class:`DAG`).

    Args:
        model: returns logits ``(B, K, H, W)``.
        images: ``(B, C, H, W)`` clean images in ``[0, 1]``.
        labels: true labels ``(B, H, W)`` (255 ignored).
        adv_labels: adversarial labels ``(B, H, W)`` (255 ignored).
        gamma: step size on the ``[0, 1]`` scale (paper: 0.5 on 0..255). Default 0.5/255.
        steps: maximum iterations. Default 200.
        check_every: how often (iterations) the host checks whether every sample is done.

    Returns:
        ``(adversarial (B, C, H, W), iterations used (B,) int64)``.

    Raises:
        TypeError, ValueError: bad images, labels or ``check_every``.

    Example:
        >>> model = torch.nn.Conv2d(1, 2, 1)
        >>> x = torch.rand(1, 1, 4, 4); y = torch.zeros(1, 4, 4, dtype=torch.long)
        >>> adv, used = dag(model, x, y, 1 - y, gamma=0.01, steps=3)
        >>> adv.shape, int(used[0]) <= 3
        (torch.Size([1, 1, 4, 4]), True)
    """
    check_images(images)
    check_masks(labels, "labels", like=images)
    check_masks(adv_labels, "adv_labels", like=images)
    check_number("check_every", check_every, low=1, integer=True)
    x0 = images.detach()
    x = x0
    b = x0.shape[0]
    valid = (labels != IGNORE_INDEX) & (adv_labels != IGNORE_INDEX) & (adv_labels != labels)
    lab = torch.where(valid, labels, torch.zeros_like(labels))
    adv = torch.where(valid, adv_labels, torch.zeros_like(adv_labels))
    running = torch.ones(b, dtype=torch.bool, device=x0.device)
    used = torch.zeros(b, dtype=torch.long, device=x0.device)
    for m in range(steps):
        if m > 0 and m % check_every == 0 and not bool(running.any()):
            break

        def objective(logits, xr):
            f = two_class_logits(logits)
            active = valid & (predict(logits.detach()) == labels)
            diff = f.gather(1, adv.unsqueeze(1)) - f.gather(1, lab.unsqueeze(1))
            return (diff.squeeze(1) * active).flatten(1).sum(1)

        grad, logits = loss_gradient(model, x, objective)
        has_active = (valid & (predict(logits) == labels)).flatten(1).any(1)
        running = running & has_active
        scale = grad.flatten(1).abs().amax(1).clamp_min(1e-12)
        step = gamma * grad / scale.view(-1, 1, 1, 1)
        x = (x + step * running.view(-1, 1, 1, 1).to(step.dtype)).clamp(0, 1).detach()
        used += running.long()
    return x, used


class DAG(Attack):
    """Dense Adversary Generation (Xie et al., ICCV 2017) for segmentation models.

    Targeted with ``target_masks`` as the per-pixel adversarial labels; untargeted
    (``target_masks=None``) uses ``l' = (l + 1) mod K``. The true labels are ``masks``
    or, when None, the clean prediction.

    Args:
        gamma: step size on the ``[0, 1]`` scale, > 0. Default 0.5/255 (the paper's 0.5
            on the 0..255 scale).
        steps: maximum iterations, >= 1. Default 200 (the paper's limit).

    Shape:
        images ``(B, C, H, W)``; masks, target_masks ``(B, H, W)``.

    Returns:
        ``AttackResult`` (``steps`` = iterations until every active pixel flipped).

    Raises:
        TypeError, ValueError: bad settings or inputs, or a classifier model.

    Example:
        >>> model = torch.nn.Conv2d(3, 2, 1)
        >>> x = torch.rand(1, 3, 8, 8)
        >>> r = DAG(steps=5)(model, x)
        >>> r.adversarial.shape
        torch.Size([1, 3, 8, 8])
    """

    name = "dag"

    def __init__(self, gamma: float = 0.5 / 255, steps: int = 200) -> None:
        self.gamma = float(check_number("gamma", gamma, low=0.0, low_inclusive=False))
        self.steps = int(check_number("steps", steps, low=1, integer=True))

    def _run(self, model, images, labels, target, classifier):
        if target is None:
            with torch.no_grad():
                k = int(model(images[:1]).shape[1])
            target = default_adversarial_labels(labels, k)
        return dag(model, images, labels, target, gamma=self.gamma, steps=self.steps)
