"""The attack contract: ``attack(model, images, masks=None, target_masks=None) -> AttackResult``.

Every attack is a small class holding validated settings; ``__call__`` checks the inputs,
runs the attack's pure function (``_run``) and measures per-sample statistics. Models
take ``[0, 1]`` images and return logits ``(B, K, H, W)`` (K = 1 sigmoid, K >= 2
softmax) or, for the attacks that support classifiers (FGSM, PGD), ``(B, K)``. Models
must be in eval mode (no batch coupling), so a batched attack equals per-sample attacks.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from segshield._checks import check_images, check_masks, check_same_batch, checked_entry
from segshield._registry import signature_params
from segshield.attacks.losses import predict
from segshield.metrics.segmentation import IGNORE_INDEX, compute_iou

__all__ = ["Attack", "AttackResult", "SUCCESS_IOU", "target_iou", "loss_gradient"]

log = logging.getLogger(__name__)

#: Targeted success: IoU with the target >= this; untargeted: IoU with ground truth < this.
SUCCESS_IOU = 0.5


@dataclasses.dataclass
class AttackResult:
    """Adversarial images and per-sample statistics of one attack call.

    Attributes:
        adversarial: ``(B, C, H, W)`` images in ``[0, 1]`` (detached).
        stats: ``(B,)`` tensors on the CPU: ``target_iou`` (mean IoU over the foreground
            classes of the prediction on the adversarial image vs the target mask; NaN
            when untargeted), ``gt_iou`` (same vs ``masks``, or vs the clean prediction
            when no masks were given), ``l2`` and ``linf`` of the perturbation on the
            ``[0, 1]`` scale, ``steps`` used, ``success`` (targeted: ``target_iou >=
            0.5``; untargeted: ``gt_iou < 0.5``). For classifiers the IoUs are 1.0 for a
            matching label and 0.0 otherwise.
        attack: registry name of the attack.
        config: the attack's settings.
        adaptive: True when the model was a ``Defended`` model (attack through a defence).
    """

    adversarial: torch.Tensor
    stats: dict[str, torch.Tensor]
    attack: str
    config: dict[str, Any]
    adaptive: bool = False


def target_iou(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean IoU over foreground classes ``1..K-1`` per sample (empty masks: docs/ALGORITHMS.md §5).

    Args:
        pred: ``(B, H, W)`` predicted class ids.
        ref: ``(B, H, W)`` reference (target or ground truth) ids; 255 ignored.
        num_classes: K of the logits (1 is treated as 2).

    Returns:
        ``(B,)`` float64; NaN when every foreground class is empty in ``ref`` but not in
        ``pred``.

    Example:
        >>> p = torch.tensor([[[0, 1], [1, 1]]]); t = torch.tensor([[[0, 1], [0, 1]]])
        >>> round(target_iou(p, t, 2).item(), 4)
        0.6667
    """
    iou = compute_iou(pred, ref, max(num_classes, 2), IGNORE_INDEX)[:, 1:]
    return torch.nanmean(iou, dim=1)


def loss_gradient(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of a per-sample loss w.r.t. the images, with EOT for randomised defences.

    When ``model`` has ``eot_samples = N > 1`` (a ``Defended`` model), the loss is averaged
    over N forward passes (Athalye et al., ICML 2018), so the gradient is the mean of the N
    draws' gradients. Only the input gradient is computed (model parameters untouched).

    Args:
        model: callable returning logits.
        x: ``(B, C, H, W)`` images.
        loss_fn: ``loss_fn(logits, x) -> (B,)`` loss to maximise.

    Returns:
        ``(grad, logits)``: gradient like ``x`` and the logits of the last draw (detached).
    """
    n = int(getattr(model, "eot_samples", 1))
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        total = None
        for _ in range(n):
            logits = model(xr)
            term = loss_fn(logits, xr).sum()
            total = term if total is None else total + term
        (grad,) = torch.autograd.grad(total / n, xr)
    return grad, logits.detach()


@functools.cache
def _setting_names(cls: type) -> tuple[str, ...]:
    return tuple(signature_params(cls))


class Attack:
    """Base class: input checks, the clean forward pass and the statistics.

    Subclasses set ``name``, ``supports_classifiers`` and ``requires_target`` and implement
    ``_run(model, images, labels, target, classifier) -> (adversarial, steps)`` where
    ``labels`` are the ground truth (or the clean prediction when no masks were given),
    ``target`` the target masks or None, and ``steps`` a ``(B,)`` int64 tensor.
    """

    name: str = "attack"
    supports_classifiers: bool = False
    requires_target: bool = False
    allows_target: bool = True

    def config(self) -> dict[str, Any]:
        """The attack's settings as a plain dict: each constructor parameter, in order.

        The constructor stores every setting under its parameter's name (after its
        checks, e.g. PGD's default ``alpha`` resolved).

        Example:
            >>> from segshield.attacks import DAG
            >>> DAG(steps=5).config()
            {'gamma': 0.00196078431372549, 'steps': 5}
        """
        return {name: getattr(self, name) for name in _setting_names(type(self))}

    def applies_to(self, defense: Any) -> bool:
        """Whether this attack can run through ``defense`` as an adaptive attack.

        Every attack can, except those that read something from the defence (DCT-PGD needs
        a quantisation table); the harness skips the pairs that cannot run, and says so.

        Example:
            >>> from segshield.attacks import PGD
            >>> PGD().applies_to(None)
            True
        """
        return True

    def spec(self) -> str:
        """Registry string that rebuilds this attack, e.g. ``"asma:steps=100,tau=1e-07"``."""
        cfg = self.config()
        if not cfg:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in cfg.items())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    @checked_entry("images")
    def __call__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        masks: torch.Tensor | None = None,
        target_masks: torch.Tensor | None = None,
    ) -> AttackResult:
        """Attack a batch.

        Args:
            model: ``nn.Module`` (eval mode) taking ``[0, 1]`` images, returning logits.
            images: ``(B, C, H, W)`` float in ``[0, 1]``.
            masks: ground truth ``(B, H, W)`` int64 (classifiers: labels ``(B,)``), or None
                to attack the clean prediction.
            target_masks: target masks ``(B, H, W)`` (classifiers: ``(B,)``) for a
                targeted attack, or None for an untargeted one.

        Returns:
            ``AttackResult``.

        Raises:
            TypeError, ValueError: bad images (shape, dtype, values outside ``[0, 1]``) or
                masks (shape, dtype), a target missing for
                a targeted-only attack, given to an untargeted-only one, a classifier
                passed to a segmentation-only attack, or a model without gradients
                (``model.supports_gradients`` False, e.g. an ONNX model).
        """
        check_images(images, check_range=True)
        if getattr(model, "supports_gradients", True) is False:
            raise ValueError(
                f"model: {self.name} needs gradients, but this model has none "
                "(supports_gradients is False, e.g. an ONNX model run through onnxruntime); "
                "attack a PyTorch or TorchScript copy and transfer the adversarial images"
            )
        if isinstance(model, torch.nn.Module) and model.training:
            log.warning(
                "%s: the model is in training mode (batch norm/dropout couple or randomise "
                "samples); call model.eval() first",
                self.name,
            )
        if self.requires_target and target_masks is None:
            raise ValueError(
                f"target_masks: {self.name} is a targeted attack and needs target masks "
                "(B, H, W), got None; build them with segshield.attacks.make_targets"
            )
        if not self.allows_target and target_masks is not None:
            raise ValueError(
                f"target_masks: {self.name} is untargeted, expected None, got a tensor; "
                "use PGD or ASMA for targeted attacks"
            )
        images = images.detach()
        with torch.no_grad():
            clean_logits = model(images)
        if not isinstance(clean_logits, torch.Tensor) or clean_logits.ndim not in (2, 4):
            got = tuple(clean_logits.shape) if isinstance(clean_logits, torch.Tensor) else None
            raise ValueError(
                f"model: expected logits (B, K, H, W) or classifier logits (B, K), got {got}"
            )
        classifier = clean_logits.ndim == 2
        if classifier and not self.supports_classifiers:
            raise ValueError(
                f"model: {self.name} attacks segmentation models (logits (B, K, H, W)), got "
                f"classifier logits {tuple(clean_logits.shape)}; use FGSM or PGD"
            )
        labels = self._check_labels(masks, images, classifier, "masks")
        target = self._check_labels(target_masks, images, classifier, "target_masks")
        if labels is None:
            labels = predict(clean_logits)
        adv, steps = self._run(model, images, labels, target, classifier)
        adv = adv.detach()
        with torch.no_grad():
            adv_logits = model(adv)
        k = max(int(clean_logits.shape[1]), 2)
        stats = self._stats(images, adv, predict(adv_logits), labels, target, steps, k, classifier)
        return AttackResult(
            adversarial=adv,
            stats=stats,
            attack=self.name,
            config=self.config(),
            adaptive=bool(getattr(model, "is_defended", False)),
        )

    @staticmethod
    def _check_labels(
        m: torch.Tensor | None, images: torch.Tensor, classifier: bool, name: str
    ) -> torch.Tensor | None:
        if m is None:
            return None
        if classifier:
            if not isinstance(m, torch.Tensor) or m.is_floating_point() or m.ndim != 1:
                got = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
                raise ValueError(
                    f"{name}: expected integer class labels (B,) for a classifier, got {got}"
                )
            check_same_batch(images, m, ("images", name))
        else:
            check_masks(m, name, like=images)
        return m.to(device=images.device, dtype=torch.long)

    @staticmethod
    def _stats(
        x0: torch.Tensor,
        adv: torch.Tensor,
        pred: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        steps: torch.Tensor,
        k: int,
        classifier: bool,
    ) -> dict[str, torch.Tensor]:
        b = x0.shape[0]
        if classifier:
            gt = (pred == labels).double()
            tg = (pred == target).double() if target is not None else None
        else:
            gt = target_iou(pred, labels, k)
            tg = target_iou(pred, target, k) if target is not None else None
        diff = (adv - x0).flatten(1).double()
        nan = torch.full((b,), math.nan, dtype=torch.float64)
        if tg is not None:
            success = torch.nan_to_num(tg, nan=0.0) >= SUCCESS_IOU
        else:
            success = torch.nan_to_num(gt, nan=1.0) < SUCCESS_IOU
        return {
            "target_iou": (tg if tg is not None else nan).cpu(),
            "gt_iou": gt.cpu(),
            "l2": diff.norm(dim=1).cpu(),
            "linf": diff.abs().amax(dim=1).cpu(),
            "steps": steps.to(torch.long).cpu(),
            "success": success.cpu(),
        }

    def _run(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None,
        classifier: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
