"""FR in luma and chroma: the JFIF YCbCr conversion, 2x2 chroma subsampling, and FR there.

Reference: docs/ALGORITHMS.md §2 (colour space). Frequency Refinement (Liu et al.,
MICCAI 2020) quantises the RGB channels; JPEG (ITU T.81, JFIF 1.02) quantises luma Y
and chroma Cb, Cr, with coarser chroma steps and, usually, chroma at half resolution
(4:2:0). :func:`ycbcr_refine` is FR in that colour space: convert with the JFIF matrix
on the 0..255 scale, round to 8-bit samples and level-shift by 128 (as JPEG does before
its DCT), quantise Y with the luma table and Cb, Cr with the chroma table (optionally on
2x2 box averages, brought back by bilinear up-sampling, libjpeg's "fancy" up-sampling),
shift back, convert back and clip. The block quantiser is the one of FR and Feature Distillation
(:mod:`segshield.defenses.dct`). One pure function per unit; every function traces
for graph export.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from segshield.defenses.dct import _quantize
from segshield.defenses.rounding import smooth_round

__all__ = [
    "SUBSAMPLINGS",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "subsample_chroma",
    "upsample_chroma",
    "ycbcr_refine",
]

#: Chroma subsampling modes: ``"444"`` (none) or ``"420"`` (2x2, JPEG's default).
SUBSAMPLINGS = ("444", "420")

# JFIF 1.02: Y = 0.299 R + 0.587 G + 0.114 B; Cb, Cr around 128 on the 0..255 scale.
_JFIF = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
_OFFSET = (0.0, 128.0, 128.0)


# the exact inverse (not JFIF's rounded one): a round trip is exact up to float error
_JFIF_INVERSE = tuple(
    map(tuple, torch.linalg.inv(torch.tensor(_JFIF, dtype=torch.float64)).tolist())
)


@functools.lru_cache(maxsize=16)
def _constants(inverse: bool, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The 1x1 convolution weights and the offsets (cached: constants of an exported graph)."""
    m = torch.tensor(_JFIF_INVERSE if inverse else _JFIF, dtype=torch.float64)
    offset = torch.tensor(_OFFSET, dtype=torch.float64).view(1, 3, 1, 1)
    return m.view(3, 3, 1, 1).to(device, dtype), offset.to(device, dtype)


def _matrix(inverse: bool, like: torch.Tensor) -> torch.Tensor:
    return _constants(inverse, like.dtype, like.device)[0]


def _offset(like: torch.Tensor) -> torch.Tensor:
    return _constants(False, like.dtype, like.device)[1]


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out[:, i] = sum_j m[i, j] x[:, j]`` as a 1x1 convolution (traces for any size)."""
    return F.conv2d(x, m)


def _check_rgb(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{name}: expected RGB images (B, 3, H, W) for the YCbCr colour space, got "
            f"shape {tuple(x.shape)}; use space='rgb' for grey or other images"
        )


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """RGB to YCbCr with the JFIF matrix, on the 0..255 scale (Cb, Cr centred on 128).

    Reference: JFIF 1.02 (docs/ALGORITHMS.md §2, colour space); Pillow's
    ``convert("YCbCr")`` computes the same, rounded to 8 bits.

    Args:
        x: RGB images ``(B, 3, H, W)`` on the 0..255 scale (float).

    Shape:
        Output: ``(B, 3, H, W)`` channels Y, Cb, Cr, dtype and device of ``x``.

    Returns:
        The YCbCr images (not rounded, not clipped).

    Raises:
        ValueError: not ``(B, 3, H, W)``.

    Example:
        >>> rgb_to_ycbcr(torch.full((1, 3, 1, 1), 255.0)).flatten().tolist()
        [255.0, 128.0, 128.0]
    """
    _check_rgb(x, "x")
    return _mix(_matrix(False, x), x) + _offset(x)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """YCbCr (JFIF, 0..255, Cb and Cr centred on 128) back to RGB: the exact inverse.

    Args:
        x: YCbCr images ``(B, 3, H, W)`` on the 0..255 scale (float).

    Shape:
        Output: ``(B, 3, H, W)`` R, G, B, dtype and device of ``x``.

    Returns:
        The RGB images (not clipped).

    Raises:
        ValueError: not ``(B, 3, H, W)``.

    Example:
        >>> x = torch.rand(1, 3, 4, 4, dtype=torch.float64) * 255
        >>> bool(torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x))
        True
    """
    _check_rgb(x, "x")
    return _mix(_matrix(True, x), x - _offset(x))


def subsample_chroma(c: torch.Tensor) -> torch.Tensor:
    """2x2 box average of chroma planes (JPEG's 4:2:0 down-sampling); odd sizes edge-padded.

    Args:
        c: planes ``(B, K, H, W)``, any scale.

    Shape:
        Output: ``(B, K, ceil(H / 2), ceil(W / 2))``.

    Returns:
        The averaged planes.

    Example:
        >>> subsample_chroma(torch.arange(16.0).view(1, 1, 4, 4)).flatten().tolist()
        [2.5, 4.5, 10.5, 12.5]
    """
    b, k, h, w = c.shape
    hc, wc = (h + 1) // 2, (w + 1) // 2
    # one replicated row and column, then the even part: traces for any (symbolic) size
    c = F.pad(F.pad(c, (0, 1, 0, 1), mode="replicate"), (0, 2 * wc - w - 1, 0, 2 * hc - h - 1))
    return c.reshape(b, k, hc, 2, wc, 2).mean((3, 5))


def upsample_chroma(c: torch.Tensor, height: Any, width: Any) -> torch.Tensor:
    """Bilinear 2x up-sampling back to ``height x width`` (libjpeg's "fancy" up-sampling).

    Each output pixel weighs its half-resolution neighbours 9/16, 3/16, 3/16, 1/16
    (``align_corners=False``, edges replicated), as libjpeg's ``h2v2_fancy_upsample``.

    Args:
        c: planes ``(B, K, h, w)`` with ``h = ceil(height / 2)``, ``w = ceil(width / 2)``.
        height, width: the full-resolution size (may be symbolic while tracing).

    Shape:
        Output: ``(B, K, height, width)``.

    Returns:
        The up-sampled planes.

    Example:
        >>> upsample_chroma(torch.tensor([[[[0.0, 4.0]]]]), 1, 3).flatten().tolist()
        [0.0, 1.0, 3.0]
    """
    up = _double(_double(c, -2), -1)
    # crop as a negative pad: it traces for any (symbolic) size
    return F.pad(up, (0, width - up.shape[-1], 0, height - up.shape[-2]))


def _double(c: torch.Tensor, dim: int) -> torch.Tensor:
    """2x along ``dim`` (-2 or -1): samples ``3/4 c[i] + 1/4 c[i -+ 1]``, edges replicated."""
    pad = (0, 0, 1, 1) if dim == -2 else (1, 1, 0, 0)
    p = F.pad(c, pad, mode="replicate")
    n = c.shape[dim]
    before, after = p.narrow(dim, 0, n), p.narrow(dim, 2, n)
    pair = torch.stack([0.75 * c + 0.25 * before, 0.75 * c + 0.25 * after], dim)
    b, k, h, w = c.shape
    return pair.reshape(b, k, 2 * h, w) if dim == -2 else pair.reshape(b, k, h, 2 * w)


def _plane_steps(table: Any) -> tuple[tuple[float, ...], ...]:
    """The Y, Cb and Cr steps as three flat tuples (no tensor op: it traces for export).

    Raises:
        ValueError: a table that is neither ``(8, 8)`` nor ``(3, 8, 8)``.
    """
    nested = table.tolist() if isinstance(table, torch.Tensor) else table
    if hasattr(nested, "tolist"):  # numpy
        nested = nested.tolist()
    flat = [float(v) for v in _flatten(nested)]
    if len(flat) not in (64, 192):
        raise ValueError(
            f"table: expected (8, 8) or (3, 8, 8) (Y, Cb, Cr) steps, got {len(flat)} steps"
        )
    if len(flat) == 64:
        return (tuple(flat),) * 3
    return tuple(tuple(flat[64 * i : 64 * (i + 1)]) for i in range(3))


def _flatten(values: Any) -> list[Any]:
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in _flatten(item)]
    return [values]


def _refine_planes(planes: torch.Tensor, steps: tuple[tuple[float, ...], ...], settings: dict):
    """Quantise level-shifted planes (0..255 minus 128) with FR's block quantiser."""
    same = all(s == steps[0] for s in steps)
    key = steps[0] if same else tuple(v for s in steps for v in s)
    out = _quantize(
        planes / 255.0,
        key,
        (8, 8) if same else (len(steps), 8, 8),
        settings["pad"],
        False,
        settings["smooth"],
        planes.dtype,
        255.0,
        settings["traceable"],
    )
    return out * 255.0


def ycbcr_refine(
    x: torch.Tensor,
    table: Any,
    *,
    subsample: str = "444",
    pad: str = "edge",
    clip: bool = True,
    smooth: bool = False,
    compute_dtype: torch.dtype | None = None,
    traceable: bool = False,
) -> torch.Tensor:
    """Frequency Refinement in the JFIF YCbCr colour space (docs/ALGORITHMS.md §2).

    Reference: Liu et al., MICCAI 2020 (FR) with JPEG's colour handling (ITU T.81,
    JFIF 1.02). On the 0..255 scale: RGB to YCbCr (:func:`rgb_to_ycbcr`), rounded to
    integers (8-bit samples, as a JPEG encoder stores them), minus 128;
    Y through FR's block quantiser with ``table[0]``; Cb and Cr with ``table[1]``,
    ``table[2]``, after :func:`subsample_chroma` and before :func:`upsample_chroma` for
    ``subsample="420"``; clip each plane to the 8-bit range (as a JPEG decoder); plus
    128, back to RGB, clip to ``[0, 1]``.

    Args:
        x: RGB images ``(B, 3, H, W)`` in ``[0, 1]``.
        table: steps > 0 on the 0..255 scale, ``(8, 8)`` for Y, Cb and Cr or
            ``(3, 8, 8)`` for Y, Cb, Cr (tensor, array or nested lists; the values are
            checked by the caller, e.g. :class:`~segshield.defenses.fr.FrequencyRefinement`).
        subsample: ``"444"`` (default) or ``"420"``.
        pad: ``"edge"`` (default) or ``"zero"`` padding of each plane to multiples of 8.
        clip: clip the planes and the output (default True).
        smooth: the differentiable rounding surrogate instead of rounding (default False).
        compute_dtype: ``torch.float32``/``torch.float64`` or None (float64 for
            ``pad="zero"`` or float64 input, else float32).
        traceable: the graph-export form of the quantiser (default False).

    Shape:
        - Input: ``(B, 3, H, W)``.
        - Output: ``(B, 3, H, W)``, dtype and device of ``x``.

    Returns:
        The refined images.

    Raises:
        ValueError: not 3 channels, a table of another shape, or a bad ``subsample``.

    Example:
        >>> x = torch.rand(2, 3, 20, 13)
        >>> y = ycbcr_refine(x, torch.ones(8, 8), subsample="444")
        >>> bool((y - x).abs().mean() <= 1 / 255)  # steps of 1: the identity up to rounding
        True
        >>> ycbcr_refine(x, torch.full((8, 8), 16.0), subsample="420").shape
        torch.Size([2, 3, 20, 13])
    """
    _check_rgb(x, "x")
    if subsample not in SUBSAMPLINGS:
        raise ValueError(f"subsample: expected one of {list(SUBSAMPLINGS)}, got {subsample!r}")
    steps = _plane_steps(table)
    dtype = compute_dtype or (torch.float64 if pad == "zero" or x.dtype == torch.float64 else None)
    ycc = rgb_to_ycbcr(x.to(dtype or torch.float32) * 255.0)
    # 8-bit samples, as a JPEG encoder stores them before its DCT
    ycc = (smooth_round(ycc) if smooth else torch.round(ycc)) - 128.0
    settings = {"pad": pad, "smooth": smooth, "traceable": traceable}
    if subsample == "444":
        planes = _refine_planes(ycc, steps, settings)
    else:
        h, w = x.shape[-2:]
        luma = _refine_planes(ycc[:, :1], steps[:1], settings)
        chroma = _refine_planes(subsample_chroma(ycc[:, 1:]), steps[1:], settings)
        if clip:
            chroma = chroma.clamp(-128.0, 127.0)
        planes = torch.cat([luma, upsample_chroma(chroma, h, w)], 1)
    if clip:
        planes = planes.clamp(-128.0, 127.0)
    y = ycbcr_to_rgb(planes + 128.0) / 255.0
    if clip:
        y = y.clamp(0.0, 1.0)
    return y.to(x.dtype)
