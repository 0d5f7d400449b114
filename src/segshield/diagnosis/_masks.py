"""Shared input handling for the diagnosis functions: numpy or torch, one image or a batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from segshield.metrics.segmentation import IGNORE_INDEX

__all__ = ["as_batch", "restore", "region"]


def as_batch(x: Any, name: str) -> tuple[torch.Tensor, bool, bool]:
    """Turn an ``(H, W)`` or ``(B, H, W)`` bool/integer mask into a ``(B, H, W)`` tensor.

    Args:
        x: numpy array or torch tensor of booleans or integer class ids.
        name: argument name used in error messages.

    Returns:
        ``(tensor, was_numpy, was_single)``: the batched tensor and how to restore the
        caller's layout with :func:`restore`.

    Raises:
        TypeError: not an array/tensor, or floating-point values.
        ValueError: not 2-D or 3-D.
    """
    was_numpy = isinstance(x, np.ndarray)
    if was_numpy:
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name}: expected a boolean or integer mask (H, W) or (B, H, W) as a torch tensor "
            f"or numpy array, got {type(x).__name__}; convert with torch.as_tensor(...)"
        )
    if x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"{name}: expected a boolean or integer mask, got dtype {x.dtype}; threshold "
            "probabilities first (p > 0.5) or use segshield.metrics.logits_to_mask"
        )
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{name}: expected shape (H, W) or (B, H, W), got {tuple(x.shape)}; "
            "squeeze the channel axis"
        )
    single = x.ndim == 2
    return (x.unsqueeze(0) if single else x), was_numpy, single


def restore(t: torch.Tensor, was_numpy: bool, single: bool) -> Any:
    """Undo :func:`as_batch` on a per-sample result ``(B,)`` (or a mask ``(B, H, W)``)."""
    if single:
        t = t[0]
    if was_numpy:
        out = t.cpu().numpy()
        return out[()] if out.ndim == 0 else out
    return t


def region(masks: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    """Boolean mask of pixels whose class id is in ``classes`` (bool input is used as is).

    The ignore index (255) never belongs to a region.
    """
    if masks.dtype == torch.bool:
        return masks
    out = torch.zeros(masks.shape, dtype=torch.bool, device=masks.device)
    for c in classes:
        if c == IGNORE_INDEX:
            raise ValueError(f"classes: {IGNORE_INDEX} is the ignore index, not a class")
        out |= masks == c
    return out
