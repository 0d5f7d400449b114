"""APGD for segmentation: Auto-PGD's step-size schedule with the SEA per-pixel losses.

Auto-PGD (Croce & Hein, ICML 2020) replaces PGD's fixed step by a budget-aware schedule:
the step starts at ``2 eps`` and is halved at checkpoints where the loss has stopped
rising, restarting from the best point so far; steps carry momentum 0.75. The losses are
those SEA (Croce, Singh & Hein, ECCV 2024) uses for segmentation: cross-entropy,
masked cross-entropy, balanced masked cross-entropy and Jensen-Shannon divergence
(:data:`segshield.attacks.losses.SEG_LOSSES`). docs/ALGORITHMS.md §4 states the
algorithm. Every quantity is per sample, so a batched attack equals per-sample attacks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segshield._checks import check_choice, check_images, check_number, checked_entry
from segshield.attacks.base import Attack, loss_gradient
from segshield.attacks.losses import SEG_LOSSES, per_sample_mean, predict
from segshield.attacks.pgd import NORMS, _per_sample_norm, _project, random_start

__all__ = ["APGD", "apgd", "apgd_checkpoints", "LOSSES"]

#: Names of the per-pixel losses (``loss=`` setting).
LOSSES = tuple(SEG_LOSSES)
MOMENTUM = 0.75
RHO = 0.75


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step (Croce & Hein, ICML 2020, §3.2).

    ``w_j = ceil(p_j * steps)`` for ``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` while ``p_j <= 1``; ``w_0 = 0``
    is left out and repeated values are kept once. The ``p_j`` are computed in exact
    hundredths, so no rounding error moves a checkpoint.

    Raises:
        TypeError, ValueError: ``steps`` is not an integer >= 1.

    Example:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    steps = int(check_number("steps", steps, low=1, integer=True))
    prev, cur = 0, 22  # hundredths
    out: list[int] = []
    while cur <= 100:
        w = -(-cur * steps // 100)
        if w > 0 and (not out or w != out[-1]):
            out.append(w)
        prev, cur = cur, cur + max(cur - prev - 3, 6)
    return out


def _objective(loss: str, ref: torch.Tensor, targeted: bool) -> Callable[..., torch.Tensor]:
    fn = SEG_LOSSES[loss]
    sign = -1.0 if targeted else 1.0

    def objective(logits: torch.Tensor, _x: torch.Tensor | None = None) -> torch.Tensor:
        return sign * per_sample_mean(fn(logits, ref, targeted), ref)

    return objective


def _score(logits: torch.Tensor, ref: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-sample score to maximise: pixel accuracy vs the target, or minus vs the truth."""
    acc = per_sample_mean((predict(logits) == ref).to(logits.dtype), ref)
    return acc if targeted else -acc


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def _apply(
    x0: torch.Tensor, x: torch.Tensor, d: torch.Tensor, eps: float, norm: str
) -> torch.Tensor:
    return (x0 + _project(x + d - x0, eps, norm)).clamp(0, 1)


@checked_entry("images")
def apgd(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    eps: float = 8 / 255,
    steps: int = 100,
    norm: str = "linf",
    loss: str = "ce",
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run APGD (Croce & Hein, ICML 2020, Algorithm 1) on a per-pixel loss.

    The step size, restarts and checkpoints follow the loss; the image returned for each
    sample is the iterate with the best score (lowest pixel accuracy with ``labels``,
    untargeted; highest with ``target``, targeted), as SEA keeps its worst case by
    accuracy. Earlier iterates win ties.

    Args:
        model: returns logits ``(B, K, H, W)`` (K = 1: sigmoid model).
        images: ``(B, C, H, W)`` clean images in ``[0, 1]``.
        labels: ground truth ``(B, H, W)``, 255 ignored.
        target: target masks for a targeted attack (the loss is descended), or None.
        eps: radius of the L-inf or L2 ball (> 0). Default 8/255.
        steps: iterations N (>= 1), one gradient each after the first. Default 100.
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised gradient steps).
        loss: ``"ce"``, ``"mce"``, ``"bmce"`` or ``"js"`` (:data:`LOSSES`).
        start: initial perturbation, or None for the clean image.

    Returns:
        ``(adversarial, score, eta)``: ``(B, C, H, W)`` images in ``[0, 1]`` within
        ``eps`` of ``images``, the ``(B,)`` best score (pixel accuracy, negated when
        untargeted) and the ``(B,)`` final step sizes.

    Raises:
        TypeError, ValueError: bad images, ``steps``, ``norm`` or ``loss``.

    Example:
        >>> model = torch.nn.Conv2d(1, 2, 1)
        >>> x = torch.rand(1, 1, 4, 4); y = torch.zeros(1, 4, 4, dtype=torch.long)
        >>> adv, _, _ = apgd(model, x, y, eps=0.1, steps=5, loss="js")
        >>> bool((adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """
    check_images(images)
    checkpoints = set(apgd_checkpoints(steps))
    check_choice("norm", norm, NORMS)
    check_choice("loss", loss, LOSSES)
    targeted = target is not None
    ref = target if targeted else labels
    objective = _objective(loss, ref, targeted)
    x0 = images.detach()
    x = x0 if start is None else _apply(x0, x0, start, eps, norm)

    def evaluate(xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g, logits = loss_gradient(model, xi, objective)
        g = g.sign() if norm == "linf" else g / _per_sample_norm(g)
        return g, objective(logits), _score(logits, ref, targeted)

    grad, f, s = evaluate(x)
    x_prev, best_x, best_s, max_x, max_f, max_g = x, x, s, x, f, grad
    eta = torch.full_like(f, 2 * eps)
    improved = torch.zeros_like(f)
    ckpt_eta, ckpt_f, last_w = eta.clone(), max_f.clone(), 0
    for k in range(steps):
        z = _apply(x0, x, _view(eta, x) * grad, eps, norm)
        if k > 0:
            z = _apply(x0, x, MOMENTUM * (z - x) + (1 - MOMENTUM) * (x - x_prev), eps, norm)
        x_prev, x, f_prev = x, z.detach(), f
        grad, f, s = evaluate(x)
        improved += (f > f_prev).to(f.dtype)
        up = f > max_f
        max_x, max_g = torch.where(_view(up, x), x, max_x), torch.where(_view(up, x), grad, max_g)
        max_f = torch.where(up, f, max_f)
        better = s > best_s
        best_x, best_s = torch.where(_view(better, x), x, best_x), torch.where(better, s, best_s)
        if k + 1 in checkpoints:
            stalled = improved < RHO * (k + 1 - last_w)
            stuck = (ckpt_eta == eta) & (ckpt_f == max_f)
            halve = stalled | stuck
            eta = torch.where(halve, eta / 2, eta)
            h = _view(halve, x)
            x, grad, f = (
                torch.where(h, max_x, x),
                torch.where(h, max_g, grad),
                torch.where(halve, max_f, f),
            )
            improved.zero_()
            ckpt_eta, ckpt_f, last_w = eta.clone(), max_f.clone(), k + 1
    return best_x.detach(), best_s, eta


class APGD(Attack):
    """APGD for segmentation with the SEA losses, L-inf or L2, targeted or untargeted.

    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", ICML 2020 (the step-size schedule); Croce, Singh &
    Hein, "Towards reliable evaluation and fast training of robust semantic segmentation
    models", ECCV 2024 (the losses). Softmax (K >= 2) and sigmoid (K = 1) models.

    Args:
        eps: budget on the ``[0, 1]`` scale, > 0. Default 8/255.
        steps: iterations, >= 1. Default 100.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        loss: per-pixel loss: ``"ce"`` cross-entropy, ``"mce"`` masked cross-entropy
            (pixels not yet won), ``"bmce"`` balanced masked cross-entropy, ``"js"``
            Jensen-Shannon divergence. Default ``"ce"``.
        random_start: start from a random point of the eps-ball (as PGD). Default True.
        seed: seed of the random start, >= 0. Default 0.

    Shape:
        images ``(B, C, H, W)``; masks, target_masks ``(B, H, W)``.

    Returns:
        ``AttackResult``.

    Raises:
        TypeError, ValueError: bad settings (in ``__init__``) or inputs (on call); a
            classifier model.

    Example:
        >>> model = torch.nn.Conv2d(3, 2, 1)
        >>> x = torch.rand(2, 3, 8, 8)
        >>> r = APGD(eps=4 / 255, steps=3, loss="bmce")(model, x)
        >>> bool((r.adversarial - x).abs().max() <= 4 / 255 + 1e-6)
        True
    """

    name = "apgd"
    supports_classifiers = False

    def __init__(
        self,
        eps: float = 8 / 255,
        steps: int = 100,
        norm: str = "linf",
        loss: str = "ce",
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        self.eps = float(check_number("eps", eps, low=0.0, low_inclusive=False))
        self.steps = int(check_number("steps", steps, low=1, integer=True))
        self.norm = check_choice("norm", norm, NORMS)
        self.loss = check_choice("loss", loss, LOSSES)
        if not isinstance(random_start, bool):
            raise TypeError(f"random_start: expected True or False, got {random_start!r}")
        self.random_start = random_start
        self.seed = int(check_number("seed", seed, low=0, integer=True))

    def _run(self, model, images, labels, target, classifier):
        start = random_start(images, self.eps, self.norm, self.seed) if self.random_start else None
        adv, _, _ = apgd(
            model,
            images,
            labels,
            target=target,
            eps=self.eps,
            steps=self.steps,
            norm=self.norm,
            loss=self.loss,
            start=start,
        )
        return adv, torch.full((images.shape[0],), self.steps, dtype=torch.long)
