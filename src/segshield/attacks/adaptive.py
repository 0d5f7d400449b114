"""Adaptive attacks: attack the defended model itself (Athalye et al., ICML 2018).

``Defended(model, defense)`` is a model: ``forward(x) = model(defense(x))``. Any attack
given it is adaptive. Gradients follow the defence's own policy (``defense.gradient``,
one of :data:`segshield.gradients.GRADIENTS`): ``"exact"`` (differentiable), ``"bpda"``
(straight-through: forward = defence, backward = identity) or ``"smooth"`` (a
differentiable surrogate); the defences implement these themselves. For randomised
defences (``defense.randomized``) set ``eot_samples = N``: the attacks average their
loss over N forward passes (Expectation over Transformation), see
:func:`segshield.attacks.base.loss_gradient`. ``eot="grid-shift"`` adds EOT over the
alignment of the 8x8 block grid (docs/ALGORITHMS.md §4): each pass defends the image
shifted by a random ``(dy, dx)``, for an attacker who does not know where the grid lies.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from segshield._checks import check_choice, check_number
from segshield._deprecation import moved_names
from segshield.gradients import GRADIENTS

__all__ = ["Defended", "EOT_MODES", "grid_shift"]

#: Transformations :class:`Defended` can average over (besides a random defence's own).
EOT_MODES = ("grid-shift",)

log = logging.getLogger(__name__)

__getattr__ = moved_names(
    __name__, {"GRADIENT_POLICIES": ("segshield.gradients.GRADIENTS", lambda: GRADIENTS)}
)


def grid_shift(
    defense: nn.Module, x: torch.Tensor, dy: int, dx: int
) -> torch.Tensor:  # fmt: skip
    """Defend ``x`` with its block grid moved by ``(dy, dx)`` pixels, in ``x``'s frame.

    Pads ``dy`` rows at the top and ``dx`` columns at the left (edge values), defends,
    and crops the padding off again, so the defence's 8x8 blocks start at rows
    ``-dy + 8k`` and columns ``-dx + 8k`` of ``x``. ``(0, 0)`` is ``defense(x)``.

    Args:
        defense: maps ``(B, C, H, W)`` images to the same shape.
        x: ``(B, C, H, W)`` images.
        dy: rows, integer >= 0.
        dx: columns, integer >= 0.

    Returns:
        ``(B, C, H, W)``; differentiable as far as ``defense`` is.

    Example:
        >>> from segshield.defenses import get_defense
        >>> x = torch.rand(1, 1, 16, 16)
        >>> fr = get_defense("fr")
        >>> bool(torch.equal(grid_shift(fr, x, 0, 0), fr(x)))
        True
    """
    if dy == 0 and dx == 0:
        return defense(x)
    y = defense(F.pad(x, (dx, 0, dy, 0), mode="replicate"))
    return y[..., dy:, dx:]


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
        eot: ``None`` (default) or ``"grid-shift"``: every forward pass defends the
            image with the 8x8 block grid shifted by a random ``(dy, dx)``
            (:func:`grid_shift`), one draw per pass for the whole batch.
        offsets: with ``eot="grid-shift"``, ``dy`` and ``dx`` are drawn uniformly from
            ``0..offsets-1``; integer in [1, 8], default 8 (all 64 grid offsets); 1 is
            the unshifted grid.
        seed: seed of the shifts (>= 0, default 0); :meth:`reseed` restarts the
            sequence (attacks such as DCT-PGD do so with their own seed).

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

    def __init__(
        self,
        model: nn.Module,
        defense: nn.Module,
        eot_samples: int = 1,
        *,
        eot: str | None = None,
        offsets: int = 8,
        seed: int = 0,
    ) -> None:
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
        self.eot = check_choice("eot", eot, (None, *EOT_MODES))
        self.offsets = int(check_number("offsets", offsets, low=1, high=8, integer=True))
        self.seed = int(check_number("seed", seed, low=0, integer=True))
        self._gen = torch.Generator().manual_seed(self.seed)
        randomized = randomized or (self.eot is not None and self.offsets > 1)
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

    def reseed(self, seed: int) -> None:
        """Restart the grid-shift draws from ``seed`` (>= 0), so that an attack repeats."""
        self.seed = int(check_number("seed", seed, low=0, integer=True))
        self._gen.manual_seed(self.seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model on the defended image: ``model(defense(x))``.

        With ``eot="grid-shift"``: ``model(grid_shift(defense, x, dy, dx))`` for a
        ``(dy, dx)`` drawn from this model's generator.
        """
        if self.eot is None:
            return self.model(self.defense(x))
        dy, dx = torch.randint(0, self.offsets, (2,), generator=self._gen).tolist()
        return self.model(grid_shift(self.defense, x, dy, dx))
