"""Quantisation tables for the block-DCT defences: FR's three bands, zig-zag bands, scaling.

Reference: Liu et al., "Defending Deep Learning-based Biomedical Image Segmentation from
Adversarial Attacks: A Low-cost Frequency Refinement Approach", MICCAI 2020
(docs/ALGORITHMS.md §2). One place for the paper's table and its bands: FR, the tuner and
the CLI read :data:`PAPER_STEPS`, :data:`PAPER_BANDS` and :data:`PAPER_SPEC` from here.

Example:
    >>> from segshield.defenses import get_defense
    >>> PAPER_SPEC
    'fr:pd=30,ac=5,gd=60'
    >>> fr = get_defense(PAPER_SPEC)
    >>> (fr.table[0, 0].item(), fr.table[3, 3].item(), fr.table[7, 7].item())
    (30.0, 5.0, 60.0)
"""

from __future__ import annotations

from typing import Any

import torch

from segshield._checks import check_choice, check_number
from segshield._spec import format_value
from segshield.defenses.dct import zigzag_order

__all__ = [
    "PAPER_STEPS",
    "PAPER_BANDS",
    "PAPER_SPEC",
    "TABLE_LAYOUTS",
    "band_table",
    "check_table",
    "scale_table",
    "zigzag_table",
    "IJG_LUMA",
    "IJG_CHROMA",
    "ijg_table",
    "jpeg_quality_table",
]

#: The FR paper's steps ``(pd, ac, gd)`` on the 0..255 scale (its demo script; the class
#: default uses gd = 80).
PAPER_STEPS: tuple[float, float, float] = (30.0, 5.0, 60.0)
#: The FR paper's band sizes ``(pd_size, ac_size)``, square layout.
PAPER_BANDS: tuple[int, int] = (2, 4)
#: The FR defence spec with :data:`PAPER_STEPS` (``"fr:pd=30,ac=5,gd=60"``): the default
#: defence of ``segshield evaluate`` and the first one of the demo.
PAPER_SPEC: str = "fr:" + ",".join(
    f"{key}={format_value(step)}" for key, step in zip(("pd", "ac", "gd"), PAPER_STEPS, strict=True)
)
#: The IJG (libjpeg) standard luminance table, ITU T.81 Annex K.1, row-major ``[u, v]``:
#: JPEG's quality 50 luma table.
IJG_LUMA: tuple[int, ...] = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
#: The IJG standard chrominance table, ITU T.81 Annex K.1 (JPEG's quality 50 chroma table).
IJG_CHROMA: tuple[int, ...] = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip
#: Band layouts of :func:`band_table`.
TABLE_LAYOUTS = ("square", "zigzag")


def band_table(
    pd: float = PAPER_STEPS[0],
    ac: float = PAPER_STEPS[1],
    gd: float = PAPER_STEPS[2],
    pd_size: int = PAPER_BANDS[0],
    ac_size: int = PAPER_BANDS[1],
    layout: str = "square",
) -> torch.Tensor:
    """The three-band FR table (docs/ALGORITHMS.md §2) as an ``(8, 8)`` float64 tensor.

    Reference: Liu et al., MICCAI 2020 (the defaults are the paper's demo table).

    Args:
        pd: priority-defence step (default 30), > 0.
        ac: accuracy-compensation step (default 5), > 0.
        gd: global-defence step everywhere else (default 60; the paper's class default
            is 80), > 0.
        pd_size: PD band size (default 2). ``"square"``: PD where ``u < pd_size and
            v < pd_size``, an integer in [0, 8]; ``"zigzag"``: the first ``pd_size``
            coefficients in JPEG zig-zag order, an integer in [1, 62].
        ac_size: AC band size (default 4), outside PD. ``"square"``: an integer in
            [pd_size, 8]; ``"zigzag"``: zig-zag indices below ``ac_size``, in
            [pd_size + 1, 63].
        layout: ``"square"`` (the paper's) or ``"zigzag"``.

    Shape:
        Output: ``(8, 8)``, ``[u, v]`` = (row, column) frequency.

    Returns:
        The table of quantisation steps.

    Raises:
        TypeError: a non-numeric step or non-integer size.
        ValueError: a step <= 0 or sizes out of range.

    Example:
        >>> t = band_table()
        >>> t[0, 0].item(), t[3, 3].item(), t[4, 0].item()
        (30.0, 5.0, 60.0)
    """
    check_choice("layout", layout, TABLE_LAYOUTS)
    for name, v in (("pd", pd), ("ac", ac), ("gd", gd)):
        check_number(name, v, low=0, low_inclusive=False)
    if layout == "zigzag":
        check_number("pd_size", pd_size, low=1, high=62, integer=True)
        check_number("ac_size", ac_size, low=pd_size + 1, high=63, integer=True)
        return zigzag_table((pd, ac, gd), (int(pd_size), int(ac_size)))
    check_number("pd_size", pd_size, low=0, high=8, integer=True)
    check_number("ac_size", ac_size, low=pd_size, high=8, integer=True)
    t = torch.full((8, 8), float(gd), dtype=torch.float64)
    t[: int(ac_size), : int(ac_size)] = float(ac)
    t[: int(pd_size), : int(pd_size)] = float(pd)
    return t


def scale_table(table: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-style (IJG libjpeg) quality scaling of a quantisation table.

    ``s = 5000 / q`` for ``q < 50`` else ``200 - 2 q``; each step becomes
    ``floor((s · Q + 50) / 100)``, at least 1. ``q = 50`` leaves integer tables unchanged.

    Args:
        table: steps ``(8, 8)`` or ``(C, 8, 8)``, > 0.
        quality: integer in [1, 100].

    Shape:
        Output: same as ``table`` (float64).

    Returns:
        The scaled table.

    Raises:
        TypeError: ``quality`` not an integer.
        ValueError: ``quality`` out of range or a bad table.

    Example:
        >>> scale_table(band_table(), 75)[0, 0].item()
        15.0
    """
    check_number("quality", quality, low=1, high=100, integer=True)
    t = check_table(table)
    q = int(quality)
    s = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return torch.clamp(torch.floor((s * t + 50.0) / 100.0), min=1.0)


def zigzag_table(steps: Any, bounds: Any = None) -> torch.Tensor:
    """A table from steps in JPEG zig-zag order, or from bands of zig-zag indices.

    Args:
        steps: without ``bounds``, 64 steps in zig-zag order; with ``bounds``, one step
            per band (``len(bounds) + 1`` values), all > 0.
        bounds: increasing zig-zag indices in [1, 63] where a new band starts, e.g.
            ``(3, 10)`` gives bands ``0..2``, ``3..9``, ``10..63``. Default None.

    Shape:
        Output: ``(8, 8)`` float64.

    Returns:
        The table with ``table.flatten()[zigzag_order()] == per-index steps``.

    Raises:
        ValueError: wrong number of steps, or bounds not increasing within [1, 63].

    Example:
        >>> t = zigzag_table((30, 5, 60), bounds=(3, 10))
        >>> t[0, 1].item(), t[1, 1].item(), t[7, 7].item()
        (30.0, 5.0, 60.0)
    """
    steps_t = torch.as_tensor(steps, dtype=torch.float64).flatten()
    if bounds is None:
        if steps_t.numel() != 64:
            raise ValueError(
                f"steps: expected 64 steps in zig-zag order, got {steps_t.numel()}; "
                "or pass bounds=(...) with one step per band"
            )
        per_index = steps_t
    else:
        b = [int(v) for v in bounds]
        if b != sorted(set(b)) or not b or b[0] < 1 or b[-1] > 63:
            raise ValueError(
                f"bounds: expected strictly increasing zig-zag indices in [1, 63], got {bounds}"
            )
        if steps_t.numel() != len(b) + 1:
            raise ValueError(
                f"steps: expected {len(b) + 1} steps for {len(b)} bounds, got {steps_t.numel()}"
            )
        band = torch.bucketize(torch.arange(64), torch.tensor(b), right=True)
        per_index = steps_t[band]
    flat = torch.empty(64, dtype=torch.float64)
    flat[zigzag_order(8)] = per_index
    return check_table(flat.reshape(8, 8))


def check_table(table: Any) -> torch.Tensor:
    """A quantisation table as a CPU float64 tensor, checked.

    Args:
        table: ``(8, 8)`` or ``(C, 8, 8)`` steps (tensor, array or nested lists).

    Returns:
        The table, float64 on the CPU.

    Raises:
        ValueError: another shape, or a step that is not finite and > 0.

    Example:
        >>> check_table([[1.0] * 8] * 8).dtype
        torch.float64
    """
    t = torch.as_tensor(table, dtype=torch.float64).detach().cpu()
    if t.ndim not in (2, 3) or tuple(t.shape[-2:]) != (8, 8) or t.numel() == 0:
        raise ValueError(
            f"table: expected shape (8, 8) or (C, 8, 8), got {tuple(t.shape)}; "
            "one step per (row, column) frequency of an 8x8 block"
        )
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(
            f"table: expected finite steps > 0, got min {float(t.min()):g}; "
            "a zero step would divide by zero"
        )
    return t


def ijg_table(kind: str, quality: int | None = None) -> torch.Tensor:
    """The IJG standard luma or chroma table, optionally at a JPEG quality.

    Reference: ITU T.81 Annex K.1; libjpeg's quality scaling (:func:`jpeg_quality_table`),
    so ``ijg_table("luma", q)`` is the table libjpeg (and Pillow) writes at quality ``q``.

    Args:
        kind: ``"luma"`` or ``"chroma"``.
        quality: integer in [1, 100], or None (the standard table, quality 50).

    Shape:
        Output: ``(8, 8)`` float64.

    Returns:
        The table.

    Raises:
        ValueError: a bad ``kind`` or ``quality``.

    Example:
        >>> ijg_table("luma")[0, 0].item(), ijg_table("chroma", 90)[0, 0].item()
        (16.0, 3.0)
    """
    check_choice("kind", kind, ("luma", "chroma"))
    t = torch.tensor(IJG_LUMA if kind == "luma" else IJG_CHROMA, dtype=torch.float64)
    t = t.reshape(8, 8)
    return t if quality is None else jpeg_quality_table(t, quality)


def jpeg_quality_table(table: Any, quality: int) -> torch.Tensor:
    """libjpeg's quality scaling exactly: integer factor, baseline steps (1..255).

    ``s = 5000 // q`` for ``q < 50`` else ``200 - 2 q``; each step becomes
    ``(s · Q + 50) // 100`` clipped to [1, 255] (``jpeg_set_quality`` with
    ``force_baseline``, as Pillow calls it). It differs from :func:`scale_table` (the
    float factor ``5000 / q``, no upper cap; FR's ``quality`` in RGB) only below quality
    50 where 5000 / q is not an integer, and where a step would exceed 255. FR in YCbCr
    scales with this one.

    Args:
        table: steps ``(8, 8)`` or ``(C, 8, 8)``, > 0.
        quality: integer in [1, 100].

    Shape:
        Output: same as ``table`` (float64).

    Returns:
        The scaled table.

    Raises:
        TypeError: ``quality`` not an integer.
        ValueError: ``quality`` out of range or a bad table.

    Example:
        >>> jpeg_quality_table(ijg_table("luma"), 30)[0, 0].item()  # (166 * 16 + 50) // 100
        27.0
    """
    check_number("quality", quality, low=1, high=100, integer=True)
    t = check_table(table)
    q = int(quality)
    s = 5000 // q if q < 50 else 200 - 2 * q
    return torch.clamp(torch.floor((s * t + 50.0) / 100.0), min=1.0, max=255.0)
