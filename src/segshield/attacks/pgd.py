"""PGD: projected gradient descent on the per-pixel cross-entropy (Madry et al., ICLR 2018).

One loop serves FGSM (one step, no random start), PGD, SegPGD (per-pixel weights) and
classifiers: when the model returns ``(B, K)`` logits the labels are ``(B,)`` and the
per-pixel loss is the ordinary per-sample cross-entropy. Untargeted attacks ascend the
mean cross-entropy with the labels; targeted ones descend the cross-entropy with the
target. Every quantity is per sample (the loss is summed over the batch and steps are
normalised per sample), so a batched attack equals per-sample attacks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segshield._checks import check_choice, check_images, check_number, checked_entry
from segshield.attacks.base import Attack, loss_gradient
from segshield.attacks.losses import per_sample_mean, pixel_cross_entropy

__all__ = ["PGD", "pgd", "random_start", "NORMS"]

NORMS = ("linf", "l2")
_TINY = 1e-12

PixelWeights = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (v.ndim - 1)))


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = delta.flatten(1).norm(dim=1).view(-1, *([1] * (delta.ndim - 1)))
    return delta * torch.clamp(eps / n.clamp_min(_TINY), max=1.0)


def random_start(images: torch.Tensor, eps: float, norm: str, seed: int) -> torch.Tensor:
    """Random initial perturbation inside the eps-ball, reproducible under ``seed``.

    Drawn on the CPU (same numbers on every device): uniform in ``[-eps, eps]`` for L-inf;
    a uniformly random direction with radius ``eps * U(0, 1)`` for L2.

    Shape:
        images ``(B, C, H, W)``; returns a perturbation of the same shape, dtype, device.

    Example:
        >>> d = random_start(torch.zeros(1, 1, 4, 4), 0.1, "linf", seed=0)
        >>> bool(d.abs().max() <= 0.1)
        True
    """
    gen = torch.Generator().manual_seed(int(seed))
    shape = images.shape
    if norm == "linf":
        d = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * eps
    else:
        d = torch.randn(shape, generator=gen, dtype=torch.float64)
        r = torch.rand(shape[0], generator=gen, dtype=torch.float64) * eps
        d = d / _per_sample_norm(d) * r.view(-1, *([1] * (len(shape) - 1)))
    return d.to(device=images.device, dtype=images.dtype)


@checked_entry("images")
def pgd(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    norm: str = "linf",
    start: torch.Tensor | None = None,
    pixel_weights: PixelWeights | None = None,
) -> torch.Tensor:
    """Run projected gradient steps (the pure function behind FGSM, PGD and SegPGD).

    Args:
        model: returns logits ``(B, K, H, W)`` or classifier logits ``(B, K)``.
        images: ``(B, C, H, W)`` clean images in ``[0, 1]``.
        labels: ground truth ``(B, H, W)`` (or ``(B,)``), 255 ignored.
        target: target labels for a targeted attack, or None (untargeted).
        eps: radius of the threat model (> 0). Default 8/255.
        alpha: step size (> 0). Default 2/255.
        steps: number of steps (>= 1). Default 10.
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised gradient steps).
        start: initial perturbation (e.g. :func:`random_start`), or None for zero.
        pixel_weights: ``f(t, steps, logits, labels) -> weights`` like the per-pixel loss,
            for ``t = 1..steps`` (SegPGD); None weights every pixel 1.

    Returns:
        ``(B, C, H, W)`` adversarial images in ``[0, 1]`` within ``eps`` of ``images``.

    Raises:
        TypeError, ValueError: bad images or ``steps`` (the other settings are validated
            by :class:`PGD`).

    Example:
        >>> model = torch.nn.Conv2d(1, 2, 1)
        >>> x = torch.rand(1, 1, 4, 4); y = torch.zeros(1, 4, 4, dtype=torch.long)
        >>> adv = pgd(model, x, y, eps=0.1, alpha=0.05, steps=3, norm="l2")
        >>> bool((adv - x).norm() <= 0.1 + 1e-6)
        True
    """
    check_images(images)
    check_number("steps", steps, low=1, integer=True)
    x0 = images.detach()
    x = x0 if start is None else (x0 + _project(start, eps, norm)).clamp(0, 1)
    ref = labels if target is None else target
    sign = 1.0 if target is None else -1.0
    for t in range(1, steps + 1):

        def objective(logits, xr, _t=t):
            loss = pixel_cross_entropy(logits, ref)
            if pixel_weights is not None:
                loss = loss * pixel_weights(_t, steps, logits.detach(), ref)
            return sign * per_sample_mean(loss, ref)

        grad, _ = loss_gradient(model, x, objective)
        if norm == "linf":
            step = grad.sign()
        else:
            step = grad / _per_sample_norm(grad)
        x = (x0 + _project(x + alpha * step - x0, eps, norm)).clamp(0, 1).detach()
    return x


class PGD(Attack):
    """Projected gradient descent, L-inf or L2, targeted or untargeted (Madry et al., 2018).

    Untargeted (``target_masks=None``): maximise the mean per-pixel cross-entropy with the
    ground truth (or the clean prediction when ``masks`` is None). Targeted: minimise the
    cross-entropy with ``target_masks``. Labels 255 are ignored. Also attacks
    CLASSIFIERS: when the model returns ``(B, K)`` logits, ``masks``/``target_masks`` hold
    labels ``(B,)`` and the loss is the per-sample cross-entropy (same loop).

    Args:
        eps: perturbation budget on the ``[0, 1]`` scale, > 0. Default 8/255.
        alpha: step size, > 0; None means ``2.5 * eps / steps``. Default None.
        steps: iterations, >= 1. Default 10.
        norm: ``"linf"`` or ``"l2"``. Default ``"linf"``.
        random_start: start from a random point of the eps-ball. Default True.
        seed: seed of the random start (>= 0); the same seed gives the same result.
            Default 0.

    Shape:
        images ``(B, C, H, W)``; masks, target_masks ``(B, H, W)`` or classifier ``(B,)``.

    Returns:
        ``AttackResult``.

    Raises:
        TypeError, ValueError: bad settings (in ``__init__``) or inputs (on call).

    Example:
        >>> model = torch.nn.Conv2d(3, 2, 1)
        >>> x = torch.rand(2, 3, 8, 8); y = torch.zeros(2, 8, 8, dtype=torch.long)
        >>> r = PGD(eps=4 / 255, steps=2)(model, x, y)
        >>> bool((r.adversarial - x).abs().max() <= 4 / 255 + 1e-6)
        True
    """

    name = "pgd"
    supports_classifiers = True

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float | None = None,
        steps: int = 10,
        norm: str = "linf",
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        self.eps = float(check_number("eps", eps, low=0.0, low_inclusive=False))
        self.steps = int(check_number("steps", steps, low=1, integer=True))
        if alpha is None:
            alpha = 2.5 * self.eps / self.steps
        self.alpha = float(check_number("alpha", alpha, low=0.0, low_inclusive=False))
        self.norm = check_choice("norm", norm, NORMS)
        if not isinstance(random_start, bool):
            raise TypeError(f"random_start: expected True or False, got {random_start!r}")
        self.random_start = random_start
        self.seed = int(check_number("seed", seed, low=0, integer=True))

    def _pixel_weights(self, targeted: bool) -> PixelWeights | None:
        return None

    def _run(self, model, images, labels, target, classifier):
        start = random_start(images, self.eps, self.norm, self.seed) if self.random_start else None
        adv = pgd(
            model,
            images,
            labels,
            target=target,
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            norm=self.norm,
            start=start,
            pixel_weights=self._pixel_weights(target is not None),
        )
        return adv, torch.full((images.shape[0],), self.steps, dtype=torch.long)
