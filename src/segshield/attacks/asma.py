"""ASMA: Adaptive Segmentation Mask Attack (Ozbulak et al., MICCAI 2019), batched.

docs/ALGORITHMS.md §4 describes the algorithm. Per iteration, on the current image ``X``
(``X_0`` the clean image) and target ``Y^t``:
``J = L(X) - ||X - X_0||_2^2`` with ``L`` the prediction loss of
:func:`segshield.attacks.losses.asma_prediction_loss`; ``X' = X + m * grad_X J`` (raw
gradient); ``m = beta * IoU(P(X'), Y^t) + tau`` measured on the model's prediction for
the unclamped ``X'``; ``X <- clamp(X', 0, 1)``. ``m`` starts at ``tau``. This is the
order of the authors' public one-image code, run here on a batch with one multiplier
per sample, so sample ``b`` of a batch follows exactly the one-image trajectory.

The multiplier's IoU is by default the authors' mask similarity
(:func:`authors_iou`: ``sum(P * Y^t) / #{P != 0 or Y^t != 0}``, the foreground IoU for
binary masks, their formula verbatim for multi-class ones); ``iou="mean"`` uses the
mean IoU over the foreground classes instead. Target pixels equal to 255 are left out.
Where both foreground sets are empty the IoU is 1 (the authors' code divides 0 by 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segshield._checks import (
    check_choice,
    check_images,
    check_masks,
    check_number,
    checked_entry,
)
from segshield.attacks.base import Attack, loss_gradient
from segshield.attacks.losses import asma_prediction_loss, predict
from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = [
    "ASMA",
    "asma",
    "authors_iou",
    "mean_foreground_iou",
    "MULTIPLIER_IOUS",
]


def authors_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mask similarity of the authors' ASMA code, per sample, target 255 ignored.

    ``sum(pred * target) / #{pred != 0 or target != 0}`` on class ids: the foreground IoU
    for binary masks; for multi-class masks the products weigh matches of higher classes
    more (values may exceed 1), exactly as in the published code. 1 when both are empty
    (the published code divides 0 by 0 there).

    Shape:
        pred, target: ``(B, H, W)``; returns ``(B,)`` float64.

    Example:
        >>> authors_iou(torch.tensor([[[2, 1, 0]]]), torch.tensor([[[2, 0, 0]]])).tolist()
        [2.0]
    """
    valid = target != IGNORE_INDEX
    p = torch.where(valid, pred, torch.zeros_like(pred))
    t = torch.where(valid, target, torch.zeros_like(target))
    inter = (p * t).flatten(1).sum(1).double()
    union = ((p != 0) | (t != 0)).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mean_foreground_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean IoU over the foreground classes ``1..K-1`` present in ``pred`` or ``target``.

    Target 255 ignored; 1 when no foreground class is present. Equals
    :func:`authors_iou` for binary masks.

    Shape:
        pred, target: ``(B, H, W)``; returns ``(B,)`` float64.

    Example:
        >>> p = torch.tensor([[[2, 1, 0]]]); t = torch.tensor([[[2, 2, 0]]])
        >>> mean_foreground_iou(p, t, 3).tolist()
        [0.25]
    """
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    cls = torch.arange(1, max(num_classes, 2), device=pred.device).view(1, -1, 1, 1)
    p = (pred.unsqueeze(1) == cls) & valid
    t = (target.unsqueeze(1) == cls) & valid
    inter = (p & t).flatten(2).sum(2).double()
    union = (p | t).flatten(2).sum(2).double()
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(union))
    n = present.sum(1)
    return torch.where(n > 0, iou.sum(1) / n.clamp_min(1), torch.ones_like(iou[:, 0]))


#: multiplier IoU name -> function(pred, target, num_classes)
MULTIPLIER_IOUS = {
    "authors": lambda p, t, k: authors_iou(p, t),
    "mean": mean_foreground_iou,
}


@checked_entry("images")
def asma(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    target: torch.Tensor,
    *,
    tau: float = 1e-7,
    beta: float = 1e-6,
    steps: int = 1000,
    stop_at_iou: float | None = None,
    iou: str = "authors",
    check_every: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run batched ASMA (the pure function behind :class:`ASMA`).

    Args:
        model: returns logits ``(B, K, H, W)`` for ``[0, 1]`` images (eval mode).
        images: ``(B, C, H, W)`` clean images in ``[0, 1]``.
        target: ``(B, H, W)`` target class ids.
        tau: base multiplier (> 0). Default 1e-7.
        beta: IoU multiplier scale (>= 0). Default 1e-6.
        steps: iterations (>= 0). Default 1000.
        stop_at_iou: freeze a sample once its IoU with the target reaches this (in
            ``(0, 1]``); None runs every step. Default None.
        iou: IoU of the multiplier (and of ``stop_at_iou``): ``"authors"`` (the published
            code's mask similarity, see :func:`authors_iou`) or ``"mean"`` (mean IoU over
            foreground classes, :func:`mean_foreground_iou`); equal for binary masks.
            Default ``"authors"``.
        check_every: with ``stop_at_iou``, how often (steps) the host checks which samples
            are done and drops them from the batch. Default 10.

    Returns:
        ``(adversarial (B, C, H, W), steps_used (B,) int64)``.

    Raises:
        TypeError, ValueError: bad images, target or ``check_every`` (settings are
            validated by :class:`ASMA`).

    Example:
        >>> model = torch.nn.Conv2d(1, 2, 1)
        >>> x = torch.rand(2, 1, 4, 4); t = torch.ones(2, 4, 4, dtype=torch.long)
        >>> adv, used = asma(model, x, t, steps=5, stop_at_iou=1.0, check_every=2)
        >>> adv.shape, bool((used <= 5).all())
        (torch.Size([2, 1, 4, 4]), True)
    """
    check_images(images)
    check_masks(target, "target", like=images)
    check_number("check_every", check_every, low=1, integer=True)
    check_choice("iou", iou, MULTIPLIER_IOUS)
    measure = MULTIPLIER_IOUS[iou]
    x0 = images.detach()
    b = x0.shape[0]
    x = x0.clone()
    mult = torch.full((b,), float(tau), dtype=torch.float64, device=x0.device)
    used = torch.zeros(b, dtype=torch.long, device=x0.device)
    active = torch.ones(b, dtype=torch.bool, device=x0.device)
    idx = None  # indices of the sub-batch still running; None = all

    for t in range(steps):
        if stop_at_iou is not None and t > 0 and t % check_every == 0:
            if not bool(active.any()):
                break
            idx = active.nonzero().squeeze(1)
            if idx.numel() == b:
                idx = None
        xs, x0s, ts, ms = (
            (x, x0, target, mult) if idx is None else (x[idx], x0[idx], target[idx], mult[idx])
        )

        def objective(logits, xr, _x0=x0s, _t=ts):
            pl = asma_prediction_loss(logits, _t, predict(logits.detach()))
            return pl - (xr - _x0).pow(2).flatten(1).sum(1)

        grad, _ = loss_gradient(model, xs, objective)
        pert = xs + grad * ms.view(-1, 1, 1, 1).to(xs.dtype)
        with torch.no_grad():
            pout = model(pert)
            score = measure(predict(pout), ts, pout.shape[1])
        new_x = pert.clamp(0, 1)
        new_m = beta * score + tau
        if stop_at_iou is None:
            x, mult = new_x, new_m
            used += 1
            continue
        act = active if idx is None else active[idx]
        new_x = torch.where(act.view(-1, 1, 1, 1), new_x, xs)
        new_m = torch.where(act, new_m, ms)
        done = act & (score >= stop_at_iou)
        if idx is None:
            x, mult = new_x, new_m
            used += act.long()
            active = act & ~done
        else:
            x = x.index_copy(0, idx, new_x)
            mult = mult.index_copy(0, idx, new_m)
            used = used.index_add(0, idx, act.long())
            active = active.index_copy(0, idx, act & ~done)
    return x.detach(), used


class ASMA(Attack):
    """Adaptive Segmentation Mask Attack (Ozbulak et al., MICCAI 2019), batched; targeted.

    Sample by sample equal to the authors' one-image algorithm (docs/ALGORITHMS.md §4; see the
    module docstring for the exact order of operations). Works for K = 1 sigmoid models (binary
    single-channel loss) and K >= 2 softmax models.

    Args:
        tau: base step multiplier, > 0. Default 1e-7.
        beta: IoU-dependent multiplier scale, >= 0. Default 1e-6.
        steps: iterations, >= 1. Default 1000 (FR paper demo: 1001; ASMA code: 2501).
        stop_at_iou: per-sample early stop once IoU(prediction, target) >= this, in
            ``(0, 1]``; None (default) runs all steps like the published code.
        iou: IoU of the multiplier and of ``stop_at_iou``: ``"authors"`` (default, the
            published code's formula) or ``"mean"`` (mean foreground-class IoU, better
            for multi-class targets such as fundus rim/cup); equal for binary masks.

    Shape:
        images ``(B, C, H, W)``; target_masks ``(B, H, W)`` (required).

    Returns:
        ``AttackResult`` (``stats["steps"]`` records when each sample stopped).

    Raises:
        TypeError, ValueError: bad settings (in ``__init__``) or inputs (on call), missing
            target masks, or a classifier model.

    Example:
        >>> model = torch.nn.Conv2d(3, 2, 1)
        >>> x = torch.rand(2, 3, 8, 8); t = torch.zeros(2, 8, 8, dtype=torch.long)
        >>> ASMA(steps=3)(model, x, target_masks=t).adversarial.shape
        torch.Size([2, 3, 8, 8])
    """

    name = "asma"
    requires_target = True

    def __init__(
        self,
        tau: float = 1e-7,
        beta: float = 1e-6,
        steps: int = 1000,
        stop_at_iou: float | None = None,
        iou: str = "authors",
    ) -> None:
        self.tau = float(check_number("tau", tau, low=0.0, low_inclusive=False))
        self.beta = float(check_number("beta", beta, low=0.0))
        self.steps = int(check_number("steps", steps, low=1, integer=True))
        if stop_at_iou is not None:
            stop_at_iou = float(
                check_number("stop_at_iou", stop_at_iou, low=0.0, high=1.0, low_inclusive=False)
            )
        self.stop_at_iou = stop_at_iou
        self.iou = check_choice("iou", iou, MULTIPLIER_IOUS)

    def _run(self, model, images, labels, target, classifier):
        return asma(model, images, target, **self.config())
