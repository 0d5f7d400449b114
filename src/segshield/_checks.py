"""One place for input checks, so every error says what was expected, what came, and the fix.

All public entry points call these helpers on entry (kornia-style shape checks). They
never synchronise with the device unless ``check_range=True`` is asked for explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "check_images",
    "check_masks",
    "check_logits",
    "check_choice",
    "check_number",
    "check_same_batch",
]


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def check_images(x: Any, name: str = "images", *, check_range: bool = False) -> torch.Tensor:
    """Check a batch of images in docs/ALGORITHMS.md §1 layout.

    Args:
        x: candidate tensor.
        name: argument name used in the error message.
        check_range: also verify values lie in ``[0, 1]`` (one host sync; keep out of
            hot loops).

    Returns:
        ``x`` unchanged.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: ``x`` is not 4-D ``(B, C, H, W)``, is empty, or (with
            ``check_range``) has values outside ``[0, 1]``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name}: expected a float tensor of shape (B, C, H, W) with values in [0, 1], "
            f"got {_describe(x)}; convert with torch.as_tensor(...).float() / 255"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor with values in [0, 1], got dtype "
            f"{x.dtype}; for uint8 images use x.float() / 255"
        )
    if x.ndim != 4:
        hint = "add a batch axis with x.unsqueeze(0)" if x.ndim == 3 else "reshape to (B, C, H, W)"
        raise ValueError(f"{name}: expected shape (B, C, H, W), got {tuple(x.shape)}; {hint}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty batch, got shape {tuple(x.shape)}")
    if check_range:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name}: expected values in [0, 1], got min {lo:.4g} and max {hi:.4g}; "
                "segshield images are not normalised (divide uint8 by 255, and let the "
                "model wrapper normalise)"
            )
    return x


def check_masks(m: Any, name: str = "masks", *, like: torch.Tensor | None = None) -> torch.Tensor:
    """Check a batch of integer masks ``(B, H, W)``.

    Args:
        m: candidate tensor of class ids (255 = ignore).
        name: argument name used in the error message.
        like: optional image or logit batch ``(B, *, H, W)`` whose batch and spatial
            sizes the masks must match.

    Returns:
        ``m`` unchanged.

    Raises:
        TypeError: ``m`` is not an integer or boolean tensor.
        ValueError: wrong number of dimensions or sizes that do not match ``like``.
    """
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name}: expected an integer tensor (B, H, W), got {_describe(m)}")
    if m.is_floating_point() or m.is_complex():
        raise TypeError(
            f"{name}: expected integer class ids, got dtype {m.dtype}; use m.round().long()"
        )
    if m.ndim != 3:
        hint = "add a batch axis with m.unsqueeze(0)" if m.ndim == 2 else "squeeze the channel axis"
        raise ValueError(f"{name}: expected shape (B, H, W), got {tuple(m.shape)}; {hint}")
    if like is not None:
        want = (like.shape[0], like.shape[-2], like.shape[-1])
        if tuple(m.shape) != want:
            raise ValueError(
                f"{name}: expected shape {want} to match the images, got {tuple(m.shape)}; "
                "resize masks with nearest-neighbour interpolation to the image size"
            )
    return m


def check_logits(z: Any, name: str = "logits") -> torch.Tensor:
    """Check model output logits ``(B, K, H, W)``.

    Raises:
        TypeError: not a float tensor.
        ValueError: not 4-D.
    """
    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise TypeError(f"{name}: expected float logits (B, K, H, W), got {_describe(z)}")
    if z.ndim != 4:
        raise ValueError(
            f"{name}: expected shape (B, K, H, W), got {tuple(z.shape)}; a model must return "
            "one logit map per class (K=1 for a sigmoid model)"
        )
    return z


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``.

    Raises:
        ValueError: naming the argument, the value and the valid choices.
    """
    choices = list(choices)
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}: expected one of {valid}, got {value!r}")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Check a numeric setting lies in a range.

    Raises:
        TypeError: not a number (or not an integer when ``integer``).
        ValueError: outside the range, with the range in the message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name}: expected {kind}, got {value!r}")
    if integer and not float(value).is_integer():
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if value != value:  # NaN
        raise ValueError(f"{name}: expected a number, got NaN")
    bad_low = low is not None and (value < low if low_inclusive else value <= low)
    bad_high = high is not None and (value > high if high_inclusive else value >= high)
    if bad_low or bad_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        lb = "[" if low_inclusive else "("
        hb = "]" if high_inclusive else ")"
        raise ValueError(f"{name}: expected a value in {lb}{lo}, {hi}{hb}, got {value!r}")
    return value


def check_same_batch(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """Check two tensors have the same batch size.

    Raises:
        ValueError: naming both arguments and their batch sizes.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names[1]}: expected batch size {a.shape[0]} to match {names[0]}, got {b.shape[0]}"
        )
