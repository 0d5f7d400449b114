"""Carlini-Wagner L2 attack on classifiers (Carlini & Wagner, IEEE S&P 2017).

Minimises ``||x' - x||_2^2 + c * f(x')`` over ``x' = (tanh(w) + 1) / 2`` (the
change of variables keeps ``x'`` in ``[0, 1]`` without clipping) with Adam, where ``f``
is the margin loss ``max(Z_y - max_{i != y} Z_i + kappa, 0)`` (untargeted, ``y`` the
label) or ``max(max_{i != t} Z_i - Z_t + kappa, 0)`` (targeted, ``t`` the target) on the
logits ``Z``. A binary search over ``c`` per sample finds the smallest perturbation:
after a round that succeeded ``c`` is halved towards the last failure, after a failure
it is raised towards the last success (or multiplied by 10 while none). The smallest
successful perturbation over all rounds is returned; a sample never attacked
successfully is returned unchanged.

Everything is per sample (per-sample ``c``, Adam is elementwise, early abort is per
sample), so a batched attack equals per-sample attacks. There is no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from segshield._checks import check_number, checked_entry
from segshield._registry import signature_params
from segshield.attacks.base import Attack
from segshield.attacks.losses import two_class_logits

__all__ = ["CarliniWagnerL2", "cw_l2", "cw_margin"]

_BIG = 1e10
_B1, _B2, _EPS = 0.9, 0.999, 1e-8


def cw_margin(
    logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool, confidence: float = 0.0
) -> torch.Tensor:
    """The Carlini-Wagner margin loss ``f`` per sample (their objective f6).

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
    IEEE S&P 2017, Sec. V (f6 with confidence kappa).

    Args:
        logits: ``(B, K)`` classifier logits (K = 1 is a sigmoid classifier, taken as
            ``[0, z]``).
        labels: ``(B,)`` true labels (untargeted) or target labels (targeted).
        targeted: whether ``labels`` are targets.
        confidence: margin kappa >= 0 by which the wrong class must win. Default 0.

    Returns:
        ``(B,)`` loss, 0 once the attack has succeeded with margin ``confidence``.

    Example:
        >>> cw_margin(torch.tensor([[2.0, 0.5]]), torch.tensor([0]), targeted=False).tolist()
        [1.5]
    """
    z = two_class_logits(logits)
    own = z.gather(1, labels.view(-1, 1)).squeeze(1)
    others = z.scatter(1, labels.view(-1, 1), float("-inf")).amax(dim=1)
    gap = others - own if targeted else own - others
    return (gap + confidence).clamp_min(0.0)


@checked_entry("images")
def cw_l2(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    target: torch.Tensor | None = None,
    confidence: float = 0.0,
    c_init: float = 1e-2,
    search_steps: int = 5,
    steps: int = 100,
    lr: float = 1e-2,
    abort_early: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the Carlini-Wagner L2 attack (the pure function behind :class:`CarliniWagnerL2`).

    Paper: Carlini & Wagner, IEEE S&P 2017 (L2 attack: tanh box, binary search over c,
    Adam).

    Args:
        model: classifier taking ``[0, 1]`` images, returning ``(B, K)`` logits (eval mode).
        images: ``(B, C, H, W)`` in ``[0, 1]``.
        labels: ``(B,)`` true labels (used when untargeted).
        target: ``(B,)`` target labels for a targeted attack, or None. Default None.
        confidence: kappa >= 0. Default 0.
        c_init: initial trade-off constant, > 0. Default 1e-2.
        search_steps: binary-search rounds over c, >= 1. Default 5.
        steps: Adam iterations per round, >= 1. Default 100.
        lr: Adam learning rate on ``w``, > 0. Default 1e-2.
        abort_early: stop a sample's round when its loss has not decreased by 0.01 %
            over the last ``ceil(steps / 10)`` iterations (one host sync per check).
            Default True.

    Shape:
        images ``(B, C, H, W)``; labels, target ``(B,)``.

    Returns:
        ``(adversarial, steps_used)``: the smallest successful adversarial images (the
        clean image where none succeeded), in ``[0, 1]``, and ``(B,)`` int64 Adam
        iterations run per sample over all rounds.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.full((1, 1, 2, 2), 0.5)
        >>> adv, used = cw_l2(model.eval(), x, torch.tensor([0]), steps=10, search_steps=2)
        >>> bool(adv.min() >= 0 and adv.max() <= 1), used.shape
        (True, torch.Size([1]))
    """
    b = images.shape[0]
    dev, dt = images.device, images.dtype
    view = (-1,) + (1,) * (images.ndim - 1)
    goal = target if target is not None else labels
    targeted = target is not None
    x0 = images.detach()
    w0 = torch.atanh((2 * x0 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    lower = torch.zeros(b, dtype=torch.float64, device=dev)
    upper = torch.full((b,), _BIG, dtype=torch.float64, device=dev)
    c = torch.full((b,), float(c_init), dtype=torch.float64, device=dev)
    best_l2 = torch.full((b,), math.inf, dtype=dt, device=dev)
    best_adv = x0.clone()
    used = torch.zeros(b, dtype=torch.long, device=dev)
    check_every = max(1, math.ceil(steps / 10))
    for _ in range(search_steps):
        w = w0.clone()
        m1 = torch.zeros_like(w)
        m2 = torch.zeros_like(w)
        active = torch.ones(b, dtype=torch.bool, device=dev)
        succeeded = torch.zeros(b, dtype=torch.bool, device=dev)
        prev = torch.full((b,), math.inf, dtype=dt, device=dev)
        cc = c.to(dt)
        for it in range(steps):
            with torch.enable_grad():
                wr = w.requires_grad_(True)
                x = (torch.tanh(wr) + 1) / 2
                logits = model(x)
                l2sq = (x - x0).flatten(1).pow(2).sum(1)
                margin = cw_margin(logits, goal, targeted=targeted, confidence=confidence)
                loss = l2sq + cc * margin
                (grad,) = torch.autograd.grad(loss.sum(), wr)  # model parameters untouched
            w = w.detach()
            with torch.no_grad():
                ok = _is_adversarial(logits.detach(), goal, targeted, confidence)
                l2 = l2sq.detach().sqrt()
                better = ok & active & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best_adv = torch.where(better.view(view), x.detach(), best_adv)
                succeeded |= ok & active
                used += active.long()
                # Adam (Kingma & Ba 2015, default betas), frozen for stopped samples
                on = active.view(view)
                m1 = torch.where(on, _B1 * m1 + (1 - _B1) * grad, m1)
                m2 = torch.where(on, _B2 * m2 + (1 - _B2) * grad * grad, m2)
                t = it + 1
                step = lr * (m1 / (1 - _B1**t)) / ((m2 / (1 - _B2**t)).sqrt() + _EPS)
                w = torch.where(on, w - step, w)
                if abort_early and (it + 1) % check_every == 0:
                    cur = loss.detach()
                    active &= ~(cur > prev * 0.9999)
                    prev = torch.where(active, cur, prev)
                    if not bool(active.any()):
                        break
        upper = torch.where(succeeded, torch.minimum(upper, c), upper)
        lower = torch.where(succeeded, lower, torch.maximum(lower, c))
        bounded = upper < _BIG
        c = torch.where(bounded, (lower + upper) / 2, c * 10)
    return best_adv.clamp(0.0, 1.0), used


def _is_adversarial(
    logits: torch.Tensor, goal: torch.Tensor, targeted: bool, confidence: float
) -> torch.Tensor:
    z = two_class_logits(logits)
    own = z.gather(1, goal.view(-1, 1)).squeeze(1)
    others = z.scatter(1, goal.view(-1, 1), float("-inf")).amax(dim=1)
    if targeted:
        return own > others + confidence
    return others > own + confidence


#: The settings' defaults, declared once (by :func:`cw_l2`).
_DEFAULTS = {name: p.default for name, p in signature_params(cw_l2).items()}


class CarliniWagnerL2(Attack):
    """Carlini-Wagner L2 attack for classifiers (registry name ``cw``).

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
    IEEE S&P 2017. Minimal-L2 adversarial examples with the tanh change of variables,
    a per-sample binary search over the constant ``c`` and Adam; see :func:`cw_l2`.

    Untargeted (``target_masks=None``) moves each image off its label (``masks``, or
    the clean prediction when None); targeted moves it onto ``target_masks`` (labels).

    Args:
        confidence: kappa, the logit margin the wrong class must win by, >= 0. Default 0.
        c_init: initial trade-off constant c, > 0. Default 1e-2.
        search_steps: binary-search rounds over c, in ``[1, 50]``. Default 5.
        steps: Adam iterations per round, >= 1. Default 100.
        lr: Adam learning rate, > 0. Default 1e-2.
        abort_early: per-sample early stop when the loss stalls. Default True.

    Shape:
        images ``(B, C, H, W)`` in ``[0, 1]``; masks, target_masks ``(B,)`` labels;
        the model returns ``(B, K)`` logits.

    Returns:
        ``AttackResult`` (classifier statistics: ``gt_iou`` 1/0 for a kept/changed
        label, ``l2``, ``linf``, ``steps`` = Adam iterations over all rounds,
        ``success``).

    Raises:
        TypeError, ValueError: bad settings (in ``__init__``); bad inputs or a
            segmentation model (on call).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
        >>> x = torch.full((2, 1, 2, 2), 0.5)
        >>> r = CarliniWagnerL2(steps=20, search_steps=3)(model, x)
        >>> r.adversarial.shape, r.attack
        (torch.Size([2, 1, 2, 2]), 'cw')
    """

    name = "cw"
    supports_classifiers = True

    def __init__(
        self,
        confidence: float = _DEFAULTS["confidence"],
        c_init: float = _DEFAULTS["c_init"],
        search_steps: int = _DEFAULTS["search_steps"],
        steps: int = _DEFAULTS["steps"],
        lr: float = _DEFAULTS["lr"],
        abort_early: bool = _DEFAULTS["abort_early"],
    ) -> None:
        self.confidence = float(check_number("confidence", confidence, low=0.0))
        self.c_init = float(check_number("c_init", c_init, low=0.0, low_inclusive=False))
        self.search_steps = int(
            check_number("search_steps", search_steps, low=1, high=50, integer=True)
        )
        self.steps = int(check_number("steps", steps, low=1, integer=True))
        self.lr = float(check_number("lr", lr, low=0.0, low_inclusive=False))
        if not isinstance(abort_early, bool):
            raise TypeError(f"abort_early: expected True or False, got {abort_early!r}")
        self.abort_early = abort_early

    def _run(self, model, images, labels, target, classifier):
        if not classifier:
            raise ValueError(
                "model: cw attacks classifiers (logits (B, K)), got a segmentation model "
                "(logits (B, K, H, W)); use asma, pgd, dag or segpgd for segmentation"
            )
        return cw_l2(model, images, labels, target=target, **self.config())
