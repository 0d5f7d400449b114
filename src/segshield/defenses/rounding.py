"""Gradient helpers for non-differentiable defences (docs/ALGORITHMS.md §2, "Gradient").

Reference: Athalye et al., "Obfuscated Gradients Give a False Sense of Security",
ICML 2018 (BPDA / straight-through); Liu et al., MICCAI 2020 (FR's rounding).
"""

from __future__ import annotations

import torch

from segshield.gradients import GRADIENTS

__all__ = ["straight_through", "smooth_round", "GRADIENTS"]


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return ``y`` in the forward pass with the identity gradient to ``x`` (BPDA).

    Args:
        x: the defence input.
        y: the defence output, same shape as ``x`` (its own graph is ignored).

    Shape:
        ``x``, ``y`` and the output: any, all equal.

    Returns:
        ``x + (y - x).detach()``: equal to ``y`` up to one float rounding, with
        ``d out / d x = I``. When ``x`` does not require grad, ``y`` is returned as is.

    Raises:
        ValueError: the shapes differ.

    Example:
        >>> x = torch.tensor([0.2, 0.7], requires_grad=True)
        >>> straight_through(x, torch.round(x)).sum().backward()
        >>> x.grad.tolist()
        [1.0, 1.0]
    """
    if x.shape != y.shape:
        raise ValueError(
            f"y: expected the shape of x {tuple(x.shape)}, got {tuple(y.shape)}; "
            "a defence must preserve the image shape"
        )
    if not x.requires_grad:
        return y
    return x + (y.detach() - x.detach())


def smooth_round(x: torch.Tensor) -> torch.Tensor:
    """Differentiable surrogate of rounding: ``r + (x - r)**3`` with ``r = round(x)``.

    docs/ALGORITHMS.md §2 (b): the value is within 0.125 of ``round(x)`` and its gradient
    ``3 (x - r)**2`` is nonzero except at integers. ``r`` uses round-half-to-even and is
    detached (rounding itself has zero gradient).

    Args:
        x: any floating tensor.

    Shape:
        Output: same as ``x``.

    Returns:
        The surrogate values.

    Example:
        >>> smooth_round(torch.tensor([1.5, 2.0, -0.25])).tolist()
        [1.875, 2.0, -0.015625]
    """
    r = torch.round(x).detach()
    return r + (x - r) ** 3
