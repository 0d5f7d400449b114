"""Block DCT machinery: the one block-DCT code of FR, Feature Distillation and tuning.

Reference: Liu et al., "Defending Deep Learning-based Biomedical Image Segmentation
from Adversarial Attacks: A Low-cost Frequency Refinement Approach", MICCAI 2020
(docs/ALGORITHMS.md §2 steps 1-5): images are split into non-overlapping 8x8 blocks,
each block B is transformed as ``C = D B Dᵀ`` with ``D`` the orthonormal DCT-II matrix,
and :func:`quantize_blocks` replaces ``C`` by ``round(C / Q) · Q``.

Everything here is vectorised: the transforms run as two batched matrix products over
the whole image in its own layout (``D`` multiplies stacks of 8, or 16 = two blocks,
rows from the left and ``Dᵀ`` runs of 8 or 16 columns from the right), so there is no
gather of blocks and no Python loop over blocks or images. The coefficients lie at
``(8i + u, 8j + v)``; quantising is an elementwise product with the table tiled along
a row of blocks. Coefficient index ``[..., u, v]`` is the (row, column) frequency.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

from segshield._checks import check_choice, check_images, check_number
from segshield.defenses.rounding import smooth_round
from segshield.utils.padding import PAD_MODES, _pad_unchecked, pad_to_multiple

__all__ = [
    "quantize_blocks",
    "QUANTIZE_PAD_MODES",
    "block_dct",
    "block_idct",
    "dct_matrix",
    "zigzag_order",
    "pad_to_multiple",
    "PAD_MODES",
]

#: Padding modes of :func:`quantize_blocks` (``"crop"`` would change the image size).
QUANTIZE_PAD_MODES = ("edge", "zero")
_COMPUTE_DTYPES = (None, torch.float32, torch.float64)


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
    """Orthonormal ``n``-point DCT-II matrix ``D`` (docs/ALGORITHMS.md §2 step 3).

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
    check_images(x, name, check_range=False)  # also transforms 0..255-scaled images
    h, w = x.shape[-2:]
    if h % 8 or w % 8:
        raise ValueError(
            f"{name}: expected height and width that are multiples of 8, got {h}x{w}; "
            "pad first with pad_to_multiple(x, 8)"
        )


def _rows_cols(
    x: torch.Tensor, left: torch.Tensor, right: torch.Tensor, images: int, height: int, width: int
) -> torch.Tensor:  # fmt: skip
    """Per block ``left @ block @ right`` on contiguous images ``height x width``, in layout.

    ``x`` holds ``images`` images in any contiguous shape of that size (e.g. ``(B, C,
    height / 8, 8, width)``, ``images = B * C``). ``left`` is ``(r, r)`` and ``right``
    ``(s, s)`` (8, or 16 for a block-diagonal pair of 8x8 matrices: two blocks per
    product); ``r`` divides the height and ``s`` the width. The result is ``(images,
    height, width / s, s)``; reshaped to ``(..., height, width)``, block ``(i, j)``'s
    entry ``(u, v)`` lies at ``(8i + u, 8j + v)``. Every size is given (no ``-1``), so
    this also traces with symbolic sizes (:func:`_quantize_traceable`).
    """
    rh, rw = left.shape[0], right.shape[0]
    # Rows: view as (N * H/r, r, W) and multiply by `left` from the left.
    y = torch.matmul(left, x.reshape(images * (height // rh), rh, width))
    # Columns: view as (N, H, W/s, s) and multiply by `right` from the right.
    return torch.matmul(y.reshape(images, height, width // rw, rw), right)


def _image_to_blocks(y: torch.Tensor) -> torch.Tensor:
    b, c, h, w = y.shape
    return y.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)


def _blocks_to_image(z: torch.Tensor) -> torch.Tensor:
    b, c, nh, nw = z.shape[:4]
    return z.permute(0, 1, 2, 4, 3, 5).reshape(b, c, nh * 8, nw * 8)


def block_dct(x: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II of every 8x8 block: ``C = D B Dᵀ`` (docs/ALGORITHMS.md §2 steps 2-3).

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
    n = x.shape[0] * x.shape[1]
    return _image_to_blocks(_rows_cols(x, d, d.T, n, *x.shape[-2:]).reshape(x.shape))


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
    x = _blocks_to_image(coeffs)
    n = x.shape[0] * x.shape[1]
    return _rows_cols(x, d.T, d, n, *x.shape[-2:]).reshape(x.shape)


@functools.lru_cache(maxsize=64)
def _transforms(
    scale: float, dtype: torch.dtype, device: torch.device, height: int, width: int
) -> tuple[torch.Tensor, ...]:
    """``(left, right, left_inv, right_inv)`` for padded images of ``height x width``.

    ``_rows_cols(x, left, right, ...)`` gives ``scale · D B Dᵀ`` for every block and
    ``_rows_cols(c, left_inv, right_inv, ...)`` gives ``Dᵀ C D / scale``; the matrices are
    block-diagonal 16x16 (two blocks per product) where the size allows, else 8x8. Built
    in float64, then cast.
    """
    d = _dct_matrix_cached(8, torch.float64, torch.device("cpu"))
    rh, rw = (16 if height % 16 == 0 else 8), (16 if width % 16 == 0 else 8)

    def diag(m: torch.Tensor, r: int) -> torch.Tensor:
        return torch.block_diag(*([m] * (r // 8)))

    ops = (diag(d * scale, rh), diag(d.T, rw), diag(d.T, rh), diag(d / scale, rw))
    return tuple(t.to(dtype=dtype, device=device).contiguous() for t in ops)


def _tiles(
    key: tuple[float, ...], shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """``(inv_tile, tile, keep)``: the table laid out like a row of blocks, for broadcasting.

    ``tile[..., u, 8j + v] = Q[..., u, v]`` against coefficients ``(..., H/8, 8, W)``:
    shape ``(8, W)`` for one table, ``(C, 1, 8, W)`` per channel, ``(V, 1, C', 1, 8, W)``
    for a batch. ``keep`` marks the zero steps (coefficients left as they are), or is
    None when there are none. Built in float64, then cast.
    """
    q = torch.tensor(key, dtype=torch.float64).reshape(shape)
    if q.ndim == 2:
        q = q.unsqueeze(0)
    tile = q.repeat(*([1] * (q.ndim - 1)), width // 8)
    if len(shape) == 2:
        tile = tile[0]
    elif len(shape) == 3:
        tile = tile.unsqueeze(1)
    else:
        tile = tile.unsqueeze(2).unsqueeze(1)
    keep = tile == 0
    inv = torch.where(keep, torch.zeros_like(tile), 1 / tile)
    out = tuple(t.to(dtype=dtype, device=device).contiguous() for t in (inv, tile))
    return out[0], out[1], keep.to(device) if 0.0 in key else None


@functools.lru_cache(maxsize=64)
def _operands(
    key: tuple[float, ...],
    shape: tuple[int, ...],
    scale: float,
    dtype: torch.dtype,
    device: torch.device,
    height: int,
    width: int,
) -> tuple[torch.Tensor | None, ...]:
    """``_transforms(...) + _tiles(...)``: everything one table needs, in one cache lookup."""
    return _transforms(scale, dtype, device, height, width) + _tiles(
        key, shape, dtype, device, width
    )


def _compute_dtype(x: torch.Tensor, pad: str, compute_dtype: torch.dtype | None) -> torch.dtype:
    if compute_dtype is not None:
        return compute_dtype
    if pad == "zero" or x.dtype == torch.float64:
        return torch.float64
    return torch.float32


def _check_steps(table: Any) -> torch.Tensor:
    t = torch.as_tensor(table, dtype=torch.float64).detach().cpu()
    if t.ndim not in (2, 3, 4) or tuple(t.shape[-2:]) != (8, 8) or t.numel() == 0:
        raise ValueError(
            f"table: expected shape (8, 8), (C, 8, 8) or a batch (V, C, 8, 8), got "
            f"{tuple(t.shape)}; one step per (row, column) frequency of an 8x8 block"
        )
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(
            f"table: expected finite steps >= 0 (0 leaves a coefficient untouched), got "
            f"min {float(t.min()):g}"
        )
    return t


def quantize_blocks(
    x: torch.Tensor,
    table: Any,
    *,
    pad: str = "edge",
    clip: bool = True,
    smooth: bool = False,
    compute_dtype: torch.dtype | None = None,
    scale: float = 255.0,
    traceable: bool = False,
) -> torch.Tensor:
    """Block-DCT quantisation ``round(C / Q) · Q`` of images, for one table or a batch.

    Reference: Liu et al., MICCAI 2020 (docs/ALGORITHMS.md §2 steps 1-5). Per channel,
    on the 0..``scale`` grey scale: pad to multiples of 8, 8x8 block DCT ``C = D B Dᵀ``,
    ``Ĉ = round(C / Q) · Q`` (half to even), inverse DCT, crop back, clip to
    ``[0, scale]``, divide by ``scale``. A step of 0 leaves its coefficient untouched.
    Frequency Refinement, Feature Distillation and the tuner's batched tables all run
    here, so a table batch gives, table by table, exactly the numbers FR gives.

    Args:
        x: images ``(B, C, H, W)`` in ``[0, 1]`` (values ``v`` stand for ``v * scale``
            grey levels), any C, H, W.
        table: steps ``>= 0`` on the 0..``scale`` scale: ``(8, 8)`` for every channel,
            ``(C, 8, 8)`` one per channel, or a batch ``(V, C', 8, 8)`` of V tables with
            ``C'`` = 1 or C (tensor, array or nested lists).
        pad: ``"edge"`` (default) or ``"zero"`` (*paper-faithful*); the output is always
            cropped back to ``H x W``.
        clip: clip the result to ``[0, 1]`` (default True). Without it the quantiser is
            idempotent, ``q(q(x)) == q(x)`` up to float error, when H and W are multiples
            of 8 (at a padded border the second pass sees different padding).
        smooth: replace rounding by the differentiable surrogate ``r + (t - r)**3``
            (default False: exact rounding, half to even).
        compute_dtype: ``torch.float32``, ``torch.float64`` or None (default: float64
            for ``pad="zero"`` or float64 input, float32 otherwise).
        scale: grey levels of value 1.0, > 0 (default 255.0).
        traceable: build it for graph export (``torch.export``, ONNX), default False;
            the same numbers up to float summation order (see ``_quantize``).

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``, or ``(V, B, C, H, W)`` for a batch of tables; dtype
          and device of ``x``.

    Returns:
        The quantised images.

    Raises:
        TypeError: ``x`` is not a float tensor.
        ValueError: bad shapes, a negative or non-finite step, a table channel count
            that is neither 1 nor C, or a bad ``pad``, ``compute_dtype`` or ``scale``.

    Example:
        >>> x = torch.rand(2, 3, 30, 17)
        >>> quantize_blocks(x, torch.full((8, 8), 16.0)).shape
        torch.Size([2, 3, 30, 17])
        >>> quantize_blocks(x, torch.full((4, 1, 8, 8), 16.0)).shape
        torch.Size([4, 2, 3, 30, 17])
        >>> y = quantize_blocks(x, torch.zeros(8, 8), clip=False)  # 0: untouched
        >>> bool(torch.allclose(y, x, atol=1e-5))
        True
    """
    check_images(x, "x")
    check_choice("pad", pad, QUANTIZE_PAD_MODES)
    check_choice("compute_dtype", compute_dtype, _COMPUTE_DTYPES)
    check_number("scale", scale, low=0, low_inclusive=False)
    t = _check_steps(table)
    key = tuple(t.flatten().tolist())
    return _quantize(
        x, key, tuple(t.shape), pad, clip, smooth, compute_dtype, float(scale), traceable
    )


def _quantize(
    x: torch.Tensor,
    key: tuple[float, ...],
    shape: tuple[int, ...],
    pad: str,
    clip: bool,
    smooth: bool,
    compute_dtype: torch.dtype | None,
    scale: float,
    traceable: bool = False,
) -> torch.Tensor:
    """:func:`quantize_blocks` on checked arguments (the table as a flat tuple + shape).

    The same arithmetic (the same D, ``1 / Q`` and ``Q``) two ways. Eager: operands
    cached per padded size, 16x16 block-diagonal matrices where the size allows, the
    table tiled along a block row, in-place rounding when autograd allows, no pad or
    crop for multiples of 8. Traceable (:func:`_quantize_traceable`, graph export):
    nothing in Python depends on the size: padding computed from the (symbolic) size
    and always applied, fixed 8x8 matrices, the table broadcast per block, no in-place.
    """
    b, c = x.shape[:2]
    channels = shape[-3] if len(shape) >= 3 else 1
    if channels != 1 and channels != c:
        raise ValueError(
            f"table: expected one table per channel ({c}), got {channels}; "
            "pass an (8, 8) table to use the same steps for every channel"
        )
    batched = len(shape) == 4
    dtype = _compute_dtype(x, pad, compute_dtype)
    dev = _device(x.device)
    if traceable:
        ops = _operands(key, shape, scale, dtype, dev, 8, 8)
        return _quantize_traceable(x, ops, shape[0] if batched else None, pad, clip, smooth)
    xp, (h, w) = _pad_unchecked(x.to(dtype), 8, pad)
    hp, wp = xp.shape[-2:]
    # A batch is not cached: the tuner sends new tables every call.
    operands = _operands.__wrapped__ if batched else _operands
    left, right, left_inv, right_inv, inv_tile, tile, keep = operands(
        key, shape, scale, dtype, dev, hp, wp
    )
    # [.., i, u, 8j + v]: block (i, j), frequency (u, v)
    coeff = _rows_cols(xp, left, right, b * c, hp, wp).reshape(b, c, hp // 8, 8, wp)
    fresh = smooth or (torch.is_grad_enabled() and coeff.requires_grad)  # autograd: no in-place
    if smooth:
        levels = smooth_round(coeff * inv_tile)
    elif fresh:
        levels = torch.round(coeff * inv_tile)
    elif batched or keep is not None:
        levels = torch.mul(coeff, inv_tile).round_()
    else:
        levels = coeff.mul_(inv_tile).round_()
    levels = levels * tile if fresh else levels.mul_(tile)
    if keep is not None:
        levels = torch.where(keep, coeff, levels)
    lead = (shape[0], b, c) if batched else (b, c)
    y = _rows_cols(levels, left_inv, right_inv, math.prod(lead), hp, wp).reshape(*lead, hp, wp)
    if hp != h or wp != w:
        y = y[..., :h, :w]
    if clip:
        y = y.clamp(0.0, 1.0) if fresh else y.clamp_(0.0, 1.0)
    return y.to(x.dtype).contiguous()


def _quantize_traceable(
    x: torch.Tensor,
    operands: tuple[torch.Tensor | None, ...],
    tables: int | None,
    pad: str,
    clip: bool,
    smooth: bool,
) -> torch.Tensor:
    """The traceable path of :func:`_quantize`, on its 8x8 operands (see there).

    Every size is an expression of the input size (``nh = ceil(H / 8)``), never a
    Python branch on it; the crop is a negative pad, which traces for any size.
    """
    left, right, left_inv, right_inv, inv_tile, tile, keep = operands
    b, c, h, w = x.shape
    nh, nw = (h + 7) // 8, (w + 7) // 8
    hp, wp = 8 * nh, 8 * nw
    mode = "replicate" if pad == "edge" else "constant"
    xp = F.pad(x.to(left.dtype), (0, wp - w, 0, hp - h), mode=mode)
    # [..., i, u, j, v]: block (i, j), frequency (u, v); the table broadcasts over i, j
    coeff = _rows_cols(xp, left, right, b * c, hp, wp).reshape(b, c, nh, 8, nw, 8)
    t = coeff * inv_tile.unsqueeze(-2)
    levels = (smooth_round(t) if smooth else torch.round(t)) * tile.unsqueeze(-2)
    if keep is not None:
        levels = torch.where(keep.unsqueeze(-2), coeff, levels)
    lead = (b, c) if tables is None else (tables, b, c)
    y = _rows_cols(levels, left_inv, right_inv, math.prod(lead), hp, wp)
    y = F.pad(y.reshape(*lead, hp, wp), (0, w - wp, 0, h - hp))
    if clip:
        y = y.clamp(0.0, 1.0)
    return y.to(x.dtype)


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
