"""Block DCT machinery shared by Frequency Refinement, Feature Distillation and tuning.

Reference: Liu et al., "Defending Deep Learning-based Biomedical Image Segmentation
from Adversarial Attacks: A Low-cost Frequency Refinement Approach", MICCAI 2020
(SPEC §2 steps 1-3): images are split into non-overlapping 8x8 blocks and each block B
is transformed as ``C = D B Dᵀ`` with ``D`` the orthonormal DCT-II matrix.

Everything here is vectorised: the transforms run as two small matrix products over
the whole image (rows within each block, then columns within each block), so there is
no Python loop over blocks or images. Coefficient index ``[..., u, v]`` is the
(row, column) frequency.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from segshield._checks import check_choice, check_images, check_number

__all__ = [
    "dct_matrix",
    "block_dct",
    "block_idct",
    "pad_to_multiple",
    "zigzag_order",
    "PAD_MODES",
]

#: Padding modes understood by :func:`pad_to_multiple`.
PAD_MODES = ("edge", "zero", "crop")


@functools.lru_cache(maxsize=64)
def _dct_matrix_cached(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Cached DCT-II matrix; computed in float64 then cast. Callers must not modify it."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = math.sqrt(2.0 / n) * torch.cos(math.pi * (2.0 * i + 1.0) * k / (2.0 * n))
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


def _device(device: torch.device | str | None) -> torch.device:
    dev = torch.device("cpu") if device is None else torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def dct_matrix(
    n: int = 8,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Orthonormal ``n``-point DCT-II matrix ``D`` (SPEC §2 step 3).

    Row ``k`` is ``sqrt(2/n) * cos(pi * (2i + 1) * k / (2n))`` with row 0 scaled by
    ``1/sqrt(2)``, so ``D @ D.T == I`` and ``D @ b`` is ``scipy.fft.dct(b, norm="ortho")``.

    Args:
        n: transform size, an integer >= 1 (default 8, the JPEG/FR block size).
        dtype: floating dtype of the result (default float64; values are computed in
            float64 and then cast).
        device: device of the result (default CPU).

    Shape:
        Output: ``(n, n)``.

    Returns:
        A new tensor (safe to modify).

    Raises:
        TypeError: ``n`` is not an integer.
        ValueError: ``n`` < 1.

    Example:
        >>> d = dct_matrix(8)
        >>> bool(torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64)))
        True
    """
    check_number("n", n, low=1, integer=True)
    return _dct_matrix_cached(int(n), dtype, _device(device)).clone()


def _check_blockable(x: torch.Tensor, name: str) -> None:
    check_images(x, name)
    h, w = x.shape[-2:]
    if h % 8 or w % 8:
        raise ValueError(
            f"{name}: expected height and width that are multiples of 8, got {h}x{w}; "
            "pad first with pad_to_multiple(x, 8)"
        )


def _rows_cols(x: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Per 8x8 block ``left @ block @ right`` on an image ``(..., H, W)``, keeping layout.

    The result has the image layout: block ``(i, j)``'s entry ``(u, v)`` lies at
    ``(8i + u, 8j + v)``.
    """
    *lead, h, w = x.shape
    # Rows: view as (..., H/8, 8, W) and multiply by `left` from the left.
    y = torch.matmul(left, x.reshape(*lead, h // 8, 8, w))
    # Columns: view as (..., H, W/8, 8) and multiply by `right` from the right.
    y = torch.matmul(y.reshape(*lead, h, w // 8, 8), right)
    return y.reshape(*lead, h, w)


def _image_to_blocks(y: torch.Tensor) -> torch.Tensor:
    b, c, h, w = y.shape
    return y.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)


def _blocks_to_image(z: torch.Tensor) -> torch.Tensor:
    b, c, nh, nw = z.shape[:4]
    return z.permute(0, 1, 2, 4, 3, 5).reshape(b, c, nh * 8, nw * 8)


def block_dct(x: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II of every non-overlapping 8x8 block: ``C = D B Dᵀ`` (SPEC §2 steps 2-3).

    Args:
        x: images ``(B, C, H, W)`` of any floating dtype and value scale, H and W
            multiples of 8 (use :func:`pad_to_multiple` first).

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H // 8, W // 8, 8, 8)``; ``[..., i, j, u, v]`` is frequency
          (row ``u``, column ``v``) of block row ``i``, block column ``j``.

    Returns:
        Coefficients with the dtype and device of ``x``.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: ``x`` is not 4-D or H, W are not multiples of 8.

    Example:
        >>> x = torch.full((1, 1, 8, 16), 0.5)
        >>> c = block_dct(x)
        >>> tuple(c.shape), round(float(c[0, 0, 0, 1, 0, 0]), 6)
        ((1, 1, 1, 2, 8, 8), 4.0)
    """
    _check_blockable(x, "x")
    d = _dct_matrix_cached(8, x.dtype, _device(x.device))
    return _image_to_blocks(_rows_cols(x, d, d.T))


def block_idct(coeffs: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`block_dct`: ``B = Dᵀ C D`` per block, reassembled into images.

    Args:
        coeffs: block coefficients ``(B, C, H // 8, W // 8, 8, 8)``, floating dtype.

    Shape:
        - Input: ``(B, C, nh, nw, 8, 8)``.
        - Output: ``(B, C, 8 * nh, 8 * nw)``.

    Returns:
        Images with the dtype and device of ``coeffs``.

    Raises:
        TypeError: ``coeffs`` is not a floating-point tensor.
        ValueError: ``coeffs`` is not 6-D with trailing ``(8, 8)``.

    Example:
        >>> x = torch.rand(2, 3, 16, 24, dtype=torch.float64)
        >>> bool(torch.allclose(block_idct(block_dct(x)), x))
        True
    """
    if not isinstance(coeffs, torch.Tensor) or not coeffs.is_floating_point():
        raise TypeError(
            "coeffs: expected a floating-point tensor (B, C, H/8, W/8, 8, 8), got "
            f"{type(coeffs).__name__}"
            + (f" of dtype {coeffs.dtype}" if isinstance(coeffs, torch.Tensor) else "")
            + "; pass the output of block_dct"
        )
    if coeffs.ndim != 6 or tuple(coeffs.shape[-2:]) != (8, 8):
        raise ValueError(
            "coeffs: expected shape (B, C, H/8, W/8, 8, 8), got "
            f"{tuple(coeffs.shape)}; pass the output of block_dct"
        )
    d = _dct_matrix_cached(8, coeffs.dtype, _device(coeffs.device))
    return _rows_cols(_blocks_to_image(coeffs), d.T, d)


def pad_to_multiple(
    x: torch.Tensor, multiple: int = 8, mode: str = "edge"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (or crop) the bottom and right of images so H and W are multiples of ``multiple``.

    SPEC §2 step 1: the paper pads with zeros at the bottom and right (``mode="zero"``,
    *paper-faithful*); edge replication (``"edge"``, default) avoids the dark seam this
    creates; ``"crop"`` drops the last partial block row/column instead.

    Args:
        x: images ``(B, C, H, W)``, floating dtype.
        multiple: block size, integer >= 1 (default 8).
        mode: ``"edge"`` (default), ``"zero"`` or ``"crop"``.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H', W')`` with ``H'``, ``W'`` multiples of ``multiple``
          (rounded up, or down for ``"crop"``).

    Returns:
        ``(padded, (H, W))``: the padded tensor (``x`` itself when nothing changes) and
        the original size, to crop back with ``y[..., :H, :W]``.

    Raises:
        TypeError: ``x`` is not a floating tensor, or ``multiple`` not an integer.
        ValueError: bad ``mode``, ``multiple`` < 1, or ``"crop"`` on an image smaller
            than one block.

    Example:
        >>> y, size = pad_to_multiple(torch.rand(1, 3, 223, 191))
        >>> tuple(y.shape), size
        ((1, 3, 224, 192), (223, 191))
    """
    check_images(x, "x")
    check_number("multiple", multiple, low=1, integer=True)
    check_choice("mode", mode, PAD_MODES)
    return _pad_unchecked(x, int(multiple), mode)


def _pad_unchecked(x: torch.Tensor, m: int, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`pad_to_multiple` without argument checks (for hot paths)."""
    h, w = x.shape[-2:]
    if mode == "crop":
        hh, ww = (h // m) * m, (w // m) * m
        if hh == 0 or ww == 0:
            raise ValueError(
                f"x: mode='crop' needs images of at least {m}x{m}, got {h}x{w}; "
                "use mode='edge' or mode='zero'"
            )
        return x[..., :hh, :ww], (h, w)
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "zero":
        return F.pad(x, (0, pw, 0, ph), mode="constant", value=0.0), (h, w)
    return F.pad(x, (0, pw, 0, ph), mode="replicate"), (h, w)


@functools.lru_cache(maxsize=8)
def _zigzag_list(n: int) -> tuple[int, ...]:
    order: list[int] = []
    for s in range(2 * n - 1):
        lo, hi = max(0, s - n + 1), min(s, n - 1)
        rows = range(lo, hi + 1) if s % 2 else range(hi, lo - 1, -1)
        order.extend(u * n + (s - u) for u in rows)
    return tuple(order)


def zigzag_order(n: int = 8) -> torch.Tensor:
    """JPEG zig-zag scan order of an ``n x n`` block as flat indices ``u * n + v``.

    Starts ``(0,0), (0,1), (1,0), (2,0), (1,1), (0,2), ...`` with ``(u, v)`` = (row,
    column) frequency, as in the JPEG standard (ITU T.81, figure 5).

    Args:
        n: block size, integer >= 1 (default 8).

    Shape:
        Output: ``(n * n,)``, int64.

    Returns:
        ``order`` such that ``table.flatten()[order]`` lists a table in zig-zag order.

    Raises:
        TypeError: ``n`` is not an integer.
        ValueError: ``n`` < 1.

    Example:
        >>> zigzag_order(8)[:6].tolist()
        [0, 1, 8, 16, 9, 2]
    """
    check_number("n", n, low=1, integer=True)
    return torch.tensor(_zigzag_list(int(n)), dtype=torch.long)
