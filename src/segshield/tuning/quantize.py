"""Many FR quantisation tables applied to one batch at once, with "step 0 = untouched".

The frequency analysis and the table search evaluate dozens of tables on the same
images. Instead of building one :class:`~segshield.defenses.FrequencyRefinement` per
table, the whole batch of tables goes through one call of
:func:`segshield.defenses.dct.quantize_blocks`, the very code FR runs, so a table is
scored on the numbers it gives once deployed (Liu et al., MICCAI 2020;
docs/ALGORITHMS.md §2). A step of 0 means "leave that coefficient untouched", which
expresses single-coefficient quantisation without a sentinel step.
"""

from __future__ import annotations

import torch

from segshield._checks import check_choice, check_images, check_number
from segshield.defenses.dct import QUANTIZE_PAD_MODES, block_dct, pad_to_multiple, quantize_blocks

__all__ = ["PAD_MODES", "apply_tables", "single_coefficient_tables", "image_coefficients"]

PAD_MODES = QUANTIZE_PAD_MODES

# Upper bound on the elements of one chunk of variants (each variant's padded images).
_CHUNK_ELEMENTS = 32 * 1024 * 1024


def _check_tables(tables: torch.Tensor, channels: int) -> torch.Tensor:
    if not isinstance(tables, torch.Tensor) or not tables.is_floating_point():
        raise TypeError(
            "tables: expected a float tensor (V, 8, 8) or (V, C, 8, 8), got "
            f"{type(tables).__name__}; build one with torch.tensor(..., dtype=torch.float32)"
        )
    if tables.ndim == 3:
        tables = tables.unsqueeze(1)
    if tables.ndim != 4 or tuple(tables.shape[-2:]) != (8, 8) or tables.shape[0] == 0:
        raise ValueError(
            f"tables: expected shape (V, 8, 8) or (V, C, 8, 8) with V >= 1, got "
            f"{tuple(tables.shape)}; stack 8x8 tables with torch.stack"
        )
    if tables.shape[1] not in (1, channels):
        raise ValueError(
            f"tables: expected 1 or {channels} tables per variant (one per image channel), "
            f"got {tables.shape[1]}"
        )
    if bool((tables < 0).any()) or not bool(torch.isfinite(tables).all()):
        raise ValueError(
            "tables: expected finite steps >= 0 (0 leaves a coefficient untouched), got a "
            "negative or non-finite step"
        )
    return tables


def image_coefficients(images: torch.Tensor, pad: str = "edge") -> torch.Tensor:
    """Block-DCT coefficients of images on the 0..255 scale (docs/ALGORITHMS.md §2 steps 1-3).

    Args:
        images: ``(B, C, H, W)`` float in ``[0, 1]``; or perturbations (any sign).
        pad: how H and W are padded up to multiples of 8: ``"edge"`` (replicate, the
            project default) or ``"zero"`` (paper-faithful). Default ``"edge"``.

    Shape:
        Returns ``(B, C, ceil(H/8), ceil(W/8), 8, 8)`` indexed ``[..., u, v]``.

    Raises:
        TypeError, ValueError: bad images or padding mode.

    Example:
        >>> c = image_coefficients(torch.full((1, 1, 8, 8), 0.5))
        >>> round(c[0, 0, 0, 0, 0, 0].item(), 3)  # DC = 8 x block mean (127.5)
        1020.0
    """
    check_images(images, check_range=False)  # perturbations (any sign) too
    check_choice("pad", pad, PAD_MODES)
    padded, _ = pad_to_multiple(images * 255.0, 8, mode=pad)
    return block_dct(padded)


def apply_tables(
    images: torch.Tensor,
    tables: torch.Tensor,
    *,
    pad: str = "edge",
    clip: bool = True,
) -> torch.Tensor:
    """Frequency Refinement with V tables at once; step 0 leaves a coefficient untouched.

    Equal, bit for bit, to ``FrequencyRefinement.from_table(t, pad=pad, clip=clip)(images)``
    for every table ``t`` with positive steps (Liu et al., MICCAI 2020; docs/ALGORITHMS.md
    §2): the tables go through :func:`~segshield.defenses.dct.quantize_blocks`, FR's own
    code, with FR's compute dtype (float64 for ``pad="zero"`` or float64 images, float32
    otherwise). Per channel, 0..255 scale, pad to multiples of 8, block DCT,
    ``round(C / Q) * Q`` (half to even), inverse DCT, crop, clip, divide by 255.

    Args:
        images: ``(B, C, H, W)`` float in ``[0, 1]``.
        tables: ``(V, 8, 8)`` (same table for every channel) or ``(V, C, 8, 8)`` steps
            ``>= 0``; a 0 step keeps that coefficient as is.
        pad: ``"edge"`` (default) or ``"zero"`` (paper-faithful), see
            :func:`image_coefficients`.
        clip: clip the result to ``[0, 1]``. Default True.

    Shape:
        Returns ``(V, B, C, H, W)``, same dtype and device as ``images``.

    Returns:
        The refined images for every table.

    Raises:
        TypeError: images or tables are not float tensors.
        ValueError: bad shapes, negative or non-finite steps, or a bad ``pad``.

    Example:
        >>> x = torch.rand(2, 1, 16, 16)
        >>> apply_tables(x, torch.zeros(3, 8, 8)).shape
        torch.Size([3, 2, 1, 16, 16])
    """
    check_images(images)
    tables = _check_tables(tables, images.shape[1])  # (V, C', 8, 8)
    b, c, h, w = images.shape
    per_variant = b * c * (h + (-h) % 8) * (w + (-w) % 8)
    chunk = max(1, _CHUNK_ELEMENTS // per_variant)
    out = [
        quantize_blocks(images, tables[start : start + chunk], pad=pad, clip=clip)
        for start in range(0, tables.shape[0], chunk)
    ]
    return torch.cat(out, 0)


def single_coefficient_tables(step: float, channels: int | None = None) -> torch.Tensor:
    """The 64 tables that quantise exactly one coefficient ``(u, v)`` at ``step``.

    Table ``8 * u + v`` has ``step`` at ``(u, v)`` and 0 (untouched) elsewhere; with
    ``channels`` it is repeated per channel (every channel quantised at that coefficient).

    Args:
        step: quantisation step on the 0..255 scale, ``> 0``.
        channels: optional channel count C for ``(64, C, 8, 8)`` output. Default None.

    Shape:
        Returns ``(64, 8, 8)`` or ``(64, C, 8, 8)`` float32.

    Raises:
        TypeError, ValueError: ``step`` not a positive number or bad ``channels``.

    Example:
        >>> t = single_coefficient_tables(30.0)
        >>> t[9, 1, 1].item(), t[9].sum().item()
        (30.0, 30.0)
    """
    check_number("step", step, low=0, low_inclusive=False)
    tables = torch.eye(64, dtype=torch.float32).reshape(64, 8, 8) * float(step)
    if channels is not None:
        check_number("channels", channels, low=1, integer=True)
        tables = tables.unsqueeze(1).repeat(1, int(channels), 1, 1)
    return tables
