"""Adaptive attacks: attack the defended model itself (Athalye et al., ICML 2018).

``Defended(model, defense)`` is a model: ``forward(x) = model(defense(x))``. Any attack
given it is adaptive. Gradients follow the defence's own policy (``defense.gradient``,
one of :data:`segshield.gradients.GRADIENTS`): ``"exact"`` (differentiable), ``"bpda"``
(straight-through: forward = defence, backward = identity) or ``"smooth"`` (a
differentiable surrogate); the defences implement these themselves. For randomised
defences (``defense.randomized``) set ``eot_samples = N``: the attacks average their
loss over N forward passes (Expectation over Transformation), see
:func:`segshield.attacks.base.loss_gradient`.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from segshield._checks import check_number
from segshield._deprecation import moved_names
from segshield.gradients import GRADIENTS

__all__ = ["Defended"]

log = logging.getLogger(__name__)

__getattr__ = moved_names(
    __name__, {"GRADIENT_POLICIES": ("segshield.gradients.GRADIENTS", lambda: GRADIENTS)}
)


class Defended(nn.Module):
    """A model behind a defence, attacked as one model (BPDA / smooth surrogate / EOT).

    Args:
        model: ``nn.Module`` taking ``[0, 1]`` images and returning logits.
        defense: ``nn.Module`` mapping ``(B, C, H, W)`` ``[0, 1]`` images to the same
            shape, with attributes ``gradient`` (one of ``"exact"``, ``"bpda"``,
            ``"smooth"``) and ``randomized`` (bool).
        eot_samples: forward passes the attacks average their loss over (EOT), >= 1.
            Default 1. A randomised defence with 1 sample is allowed but logged as a
            warning (the attack is then not adaptive to the randomness).

    Shape:
        ``(B, C, H, W)`` -> the model's logits.

    Raises:
        TypeError: ``model`` or ``defense`` is not an ``nn.Module``, or ``defense`` lacks
            a valid ``gradient``/``randomized`` attribute.
        ValueError: ``eot_samples`` < 1, or a ``gradient`` policy not in the list.

    Example:
        >>> class Halve(nn.Module):
        ...     gradient, randomized = "exact", False
        ...     def forward(self, x):
        ...         return x / 2
        >>> m = Defended(nn.Conv2d(1, 1, 1, bias=False), Halve())
        >>> m(torch.ones(1, 1, 2, 2)).shape, m.is_defended
        (torch.Size([1, 1, 2, 2]), True)
    """

    is_defended = True

    def __init__(self, model: nn.Module, defense: nn.Module, eot_samples: int = 1) -> None:
        super().__init__()
        for name, obj in (("model", model), ("defense", defense)):
            if not isinstance(obj, nn.Module):
                raise TypeError(f"{name}: expected a torch.nn.Module, got {type(obj).__name__}")
        gradient = getattr(defense, "gradient", None)
        if gradient is None:
            raise TypeError(
                f"defense: expected a segshield Defense with a 'gradient' attribute, got "
                f"{type(defense).__name__} without one; build it with get_defense(...)"
            )
        if gradient not in GRADIENTS:
            valid = ", ".join(repr(g) for g in GRADIENTS)
            raise ValueError(f"defense.gradient: expected one of {valid}, got {gradient!r}")
        randomized = getattr(defense, "randomized", None)
        if not isinstance(randomized, bool):
            raise TypeError(
                f"defense.randomized: expected True or False, got {randomized!r}; the "
                "defence must say whether it is random (EOT needed)"
            )
        self.eot_samples = int(check_number("eot_samples", eot_samples, low=1, integer=True))
        if randomized and self.eot_samples == 1:
            log.warning(
                "defense %s is randomised but eot_samples=1: the attack averages over one "
                "draw only; use eot_samples >= 10 for an adaptive (EOT) evaluation",
                type(defense).__name__,
            )
        if not randomized and self.eot_samples > 1:
            log.info("defense is deterministic; eot_samples=%d repeats the same pass", eot_samples)
        self.model = model
        self.defense = defense
        self.train(model.training)  # a wrapper of an eval-mode model is in eval mode

    @property
    def gradient(self) -> str:
        """The defence's gradient policy (``"exact"``, ``"bpda"`` or ``"smooth"``)."""
        return self.defense.gradient

    @property
    def supports_gradients(self) -> bool:
        """Whether the wrapped model provides gradients (False for ONNX models)."""
        return bool(getattr(self.model, "supports_gradients", True))

    @property
    def num_classes(self) -> int | None:
        """The wrapped model's ``num_classes`` when it has one."""
        return getattr(self.model, "num_classes", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model on the defended image: ``model(defense(x))``."""
        return self.model(self.defense(x))
