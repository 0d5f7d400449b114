"""Target specs (``"shift:dx=2"``, ``"other-gt"``, ``"none"``) and target masks across images.

A target spec names a kind of :func:`segshield.attacks.make_targets` with its
parameters, or ``"none"`` for an untargeted attack. :func:`parse_target` checks one,
:func:`check_attack_target` checks it against an attack, and :func:`resize_mask` brings
another image's mask (the ``other-gt`` target of the ASMA and FR papers, taken across a
data set) to the attacked image's size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from segshield.attacks.registry import parse_spec
from segshield.attacks.targets import list_targets
from segshield.choices import UNTARGETED

__all__ = ["UNTARGETED", "parse_target", "check_attack_target", "resize_mask"]


def parse_target(text: str, arg: str = "target") -> tuple[str, dict[str, Any]]:
    """Split a target spec into its kind and parameters, checking both.

    Args:
        text: ``"KIND[:k=v,...]"`` with a kind of ``list_targets()``, or ``"none"``.
        arg: the argument's name in error messages (e.g. ``"--target"``).

    Returns:
        ``(kind, params)``; ``("none", {})`` for an untargeted attack.

    Raises:
        ValueError: an unknown kind or parameter (the valid ones are listed), or
            parameters given to ``"none"``.

    Example:
        >>> parse_target("shift:dx=2,dy=-1")
        ('shift', {'dx': 2, 'dy': -1})
        >>> parse_target("none")
        ('none', {})
    """
    kind, params = parse_spec(text)
    if kind == UNTARGETED:
        if params:
            raise ValueError(f"{arg}: 'none' takes no parameters, got {text!r}")
        return kind, params
    kinds = list_targets()
    if kind not in kinds:
        raise ValueError(
            f"{arg}: unknown kind {kind!r}; expected one of {', '.join(kinds)} or 'none'"
        )
    unknown = sorted(set(params) - set(kinds[kind]))
    if unknown:
        raise ValueError(
            f"{arg}: unknown parameter(s) {', '.join(unknown)} for {kind}; "
            f"valid: {', '.join(kinds[kind]) or 'none'}"
        )
    return kind, params


def check_attack_target(attack: Any, kind: str, arg: str = "target") -> None:
    """Check that a targeted attack gets a target kind and an untargeted one ``"none"``.

    Args:
        attack: an attack (its ``name``, ``requires_target`` and ``allows_target``).
        kind: the target kind from :func:`parse_target`.
        arg: the argument's name in error messages.

    Raises:
        ValueError: the attack and the target kind do not fit.

    Example:
        >>> from segshield.attacks import get_attack
        >>> check_attack_target(get_attack("segpgd"), "empty")
        Traceback (most recent call last):
        ...
        ValueError: target: segpgd is untargeted; use target none
    """
    if attack.requires_target and kind == UNTARGETED:
        raise ValueError(f"{arg}: {attack.name} is targeted; choose a target kind, not 'none'")
    if not attack.allows_target and kind != UNTARGETED:
        raise ValueError(f"{arg}: {attack.name} is untargeted; use {arg} none")


def resize_mask(mask: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """A mask resized to ``size`` by nearest neighbour (class ids and 255 kept).

    Args:
        mask: ``(H, W)`` integer class ids.
        size: ``(H', W')``.

    Shape:
        ``(H, W)`` -> ``(H', W')``.

    Returns:
        ``mask`` itself when it already has that size, else a new int64 mask.

    Example:
        >>> resize_mask(torch.tensor([[0, 1], [2, 255]]), (4, 4))[0].tolist()
        [0, 0, 1, 1]
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    m = F.interpolate(mask[None, None].float(), size=tuple(size), mode="nearest")
    return m[0, 0].round().long()
