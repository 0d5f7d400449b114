"""Figures without matplotlib: 8x8 coefficient heatmaps (PNG) and Pareto plots (PNG, SVG).

Heatmaps show one value per block-DCT frequency ``(u, v)`` (row u, column v, DC at the
top left), as in the frequency analysis behind the FR table (Liu et al., MICCAI 2020).
The Pareto plot shows benign Dice loss (x, lower is better) against recovered Dice
(y, higher is better) for FR tables and the JPEG baselines.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from segshield._checks import check_number
from segshield.utils.imageio import atomic_write_bytes

__all__ = ["heatmap_image", "heatmap_png", "pareto_image", "pareto_png", "pareto_svg"]

# Viridis anchors (sequential) and a blue-white-red ramp (signed values).
_VIRIDIS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float
)
_DIVERGING = np.array([[33, 102, 172], [247, 247, 247], [178, 24, 43]], dtype=float)

_COLOURS = {
    "identity": (110, 110, 110),
    "paper": (31, 119, 180),
    "tuned": (214, 39, 40),
    "jpeg": (255, 127, 14),
    "front": (160, 160, 160),
    "scored": (215, 215, 215),
}
_DOTS = ("front", "scored")  # unlabelled small dots: tables of the search


def _ramp(anchors: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp; ``t`` in ``[0, 1]`` (NaN -> light grey)."""
    nan = np.isnan(t)
    t = np.clip(np.nan_to_num(t), 0.0, 1.0) * (len(anchors) - 1)
    i = np.minimum(np.floor(t).astype(int), len(anchors) - 2)
    f = (t - i)[..., None]
    rgb = anchors[i] * (1 - f) + anchors[i + 1] * f
    rgb[nan] = (220, 220, 220)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _fmt(v: float) -> str:
    if v != v:
        return "nan"
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-2):
        return f"{v:.1e}"
    return f"{v:.3g}" if a >= 1 else f"{v:.3f}"


def heatmap_image(
    values: torch.Tensor | np.ndarray,
    title: str = "",
    *,
    log: bool = False,
    signed: bool = False,
    cell: int = 44,
) -> Image.Image:
    """Render an 8x8 map as an RGB image with values written in the cells.

    Args:
        values: ``(8, 8)`` numbers indexed ``[u, v]``.
        title: caption drawn above the grid. Default "".
        log: colour by ``log10`` (for energies; non-positive values show grey).
            Default False.
        signed: diverging colours centred at 0 (for Dice changes). Default False.
        cell: pixel size of one cell, 16..200. Default 44.

    Returns:
        A ``PIL.Image.Image`` in mode RGB.

    Raises:
        ValueError: ``values`` is not 8x8, or ``cell`` out of range.

    Example:
        >>> heatmap_image(torch.rand(8, 8), "energy").size
        (380, 408)
    """
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, float)
    if v.shape != (8, 8):
        raise ValueError(f"values: expected an 8x8 map, got shape {v.shape}")
    check_number("cell", cell, low=16, high=200, integer=True)
    colour_v = v.copy()
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            colour_v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    finite = colour_v[np.isfinite(colour_v)]
    if signed:
        span = float(np.abs(finite).max()) if finite.size else 1.0
        span = span if span > 0 else 1.0
        rgb = _ramp(_DIVERGING, (colour_v / span + 1) / 2)
    else:
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        rgb = _ramp(_VIRIDIS, (colour_v - lo) / (hi - lo if hi > lo else 1.0))
    pad_l, pad_t, pad_b = 20, 36, 20
    size = (pad_l + 8 * cell + 8, pad_t + 8 * cell + pad_b)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((pad_l, 6), title, fill="black", font=font)
    draw.text((pad_l, 20), "v (column) ->", fill="black", font=font)
    for u in range(8):
        draw.text((4, pad_t + u * cell + cell // 2 - 5), str(u), fill="black", font=font)
        for w in range(8):
            x0, y0 = pad_l + w * cell, pad_t + u * cell
            colour = tuple(int(c) for c in rgb[u, w])
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour)
            lum = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            draw.text(
                (x0 + 3, y0 + cell // 2 - 5),
                _fmt(float(v[u, w])),
                fill="black" if lum > 128 else "white",
                font=font,
            )
    note = "log10 colour" if log else ("0 = white" if signed else "linear colour")
    draw.text((pad_l, pad_t + 8 * cell + 4), f"u (row) down; {note}", fill="black", font=font)
    return img


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def heatmap_png(path: str | Path | None, values, title: str = "", **kw: Any) -> bytes:
    """Render :func:`heatmap_image` as PNG bytes; also write them atomically to ``path``."""
    data = _png_bytes(heatmap_image(values, title, **kw))
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def _kind(row: dict[str, Any]) -> str:
    label = str(row.get("label", ""))
    if row.get("kind") in _DOTS:
        return row["kind"]
    if label.startswith("jpeg"):
        return "jpeg"
    return label if label in _COLOURS else "front"


def _draw_order(row: dict[str, Any]) -> int:
    """Light dots first, then grey ones, named defences on top."""
    return {"scored": 0, "front": 1}.get(_kind(row), 2)


class _Axes:
    """Maps data coordinates to pixels with a margin; shared by PNG and SVG."""

    def __init__(self, rows: Sequence[dict[str, Any]], width: int, height: int):
        xs = [r["benign_loss"] for r in rows if _finite(r)]
        ys = [r["recovered_dice"] for r in rows if _finite(r)]
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        dx, dy = (x1 - x0) or 0.01, (y1 - y0) or 0.01
        self.x0, self.x1 = x0 - 0.08 * dx, x1 + 0.08 * dx
        self.y0, self.y1 = y0 - 0.08 * dy, y1 + 0.08 * dy
        self.left, self.right, self.top, self.bottom = 70, width - 20, 30, height - 50
        self.width, self.height = width, height

    def px(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.x0) / (self.x1 - self.x0)
        fy = (y - self.y0) / (self.y1 - self.y0)
        return (
            self.left + fx * (self.right - self.left),
            self.bottom - fy * (self.bottom - self.top),
        )

    def ticks(self, lo: float, hi: float) -> list[float]:
        return [lo + (hi - lo) * i / 4 for i in range(5)]


def _finite(r: dict[str, Any]) -> bool:
    return all(
        isinstance(r.get(k), (int, float)) and math.isfinite(r[k])
        for k in ("benign_loss", "recovered_dice")
    )


def _front_line(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    on = [r for r in rows if r.get("on_front") and _finite(r)]
    return sorted(on, key=lambda r: r["benign_loss"])


def pareto_image(
    rows: Sequence[dict[str, Any]], title: str = "", width: int = 640, height: int = 440
) -> Image.Image:
    """Pareto plot of ``rows`` (dicts with ``label``, ``benign_loss``, ``recovered_dice``).

    Named rows (``paper``, ``tuned``, ``identity``, ``jpeg:q=..``) are labelled; rows
    with ``kind`` ``"front"`` are grey dots, ``"scored"`` light grey ones (drawn first);
    rows with ``on_front`` are joined by a line.

    Args:
        rows: points to plot, e.g. ``TuneResult.pareto``.
        title: caption. Default "".
        width, height: image size in pixels, >= 200. Defaults 640 x 440.

    Returns:
        An RGB ``PIL.Image.Image``.

    Raises:
        ValueError: width or height below 200.

    Example:
        >>> pareto_image([{"label": "paper", "benign_loss": 0.01, "recovered_dice": 0.7}]).size
        (640, 440)
    """
    check_number("width", width, low=200, integer=True)
    check_number("height", height, low=200, integer=True)
    ax = _Axes(rows, width, height)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.rectangle([ax.left, ax.top, ax.right, ax.bottom], outline="black")
    for t in ax.ticks(ax.x0, ax.x1):
        x, _ = ax.px(t, ax.y0)
        draw.line([x, ax.bottom, x, ax.bottom + 4], fill="black")
        draw.text((x - 18, ax.bottom + 6), f"{t:.3f}", fill="black", font=font)
    for t in ax.ticks(ax.y0, ax.y1):
        _, y = ax.px(ax.x0, t)
        draw.line([ax.left - 4, y, ax.left, y], fill="black")
        draw.text((ax.left - 44, y - 5), f"{t:.3f}", fill="black", font=font)
    draw.text((ax.left, height - 20), "benign Dice loss (lower is better)", fill="black", font=font)
    draw.text((ax.left, 10), title or "recovered Dice (higher is better)", fill="black", font=font)
    line = _front_line(rows)
    if len(line) > 1:
        draw.line([ax.px(r["benign_loss"], r["recovered_dice"]) for r in line], fill="gray")
    for r in sorted(rows, key=_draw_order):
        if not _finite(r):
            continue
        x, y = ax.px(r["benign_loss"], r["recovered_dice"])
        kind = _kind(r)
        rad = 3 if kind in _DOTS else 5
        draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=_COLOURS[kind], outline="black")
        if kind not in _DOTS:
            draw.text((x + 7, y - 6), str(r["label"]), fill=_COLOURS[kind], font=font)
    return img


def pareto_png(path: str | Path | None, rows: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """:func:`pareto_image` as PNG bytes, also written atomically to ``path`` if given."""
    data = _png_bytes(pareto_image(rows, title))
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def pareto_svg(
    rows: Sequence[dict[str, Any]], title: str = "", width: int = 640, height: int = 440
) -> str:
    """The Pareto plot of :func:`pareto_image` as an inline ``<svg>`` element string.

    Example:
        >>> pareto_svg([{"label": "tuned", "benign_loss": 0.0, "recovered_dice": 0.8}])[:4]
        '<svg'
    """
    check_number("width", width, low=200, integer=True)
    check_number("height", height, low=200, integer=True)
    ax = _Axes(rows, width, height)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect x="{ax.left}" y="{ax.top}" width="{ax.right - ax.left}" '
        f'height="{ax.bottom - ax.top}" fill="white" stroke="black"/>',
    ]
    for t in ax.ticks(ax.x0, ax.x1):
        x, _ = ax.px(t, ax.y0)
        parts.append(f'<text x="{x:.1f}" y="{ax.bottom + 16}" text-anchor="middle">{t:.3f}</text>')
    for t in ax.ticks(ax.y0, ax.y1):
        _, y = ax.px(ax.x0, t)
        parts.append(f'<text x="{ax.left - 6}" y="{y + 4:.1f}" text-anchor="end">{t:.3f}</text>')
    parts.append(
        f'<text x="{(ax.left + ax.right) / 2:.0f}" y="{height - 12}" text-anchor="middle">'
        "benign Dice loss (lower is better)</text>"
    )
    parts.append(
        f'<text x="{ax.left}" y="18">{escape(title or "recovered Dice (higher is better)")}</text>'
    )
    line = _front_line(rows)
    if len(line) > 1:
        pts = " ".join(
            "{:.1f},{:.1f}".format(*ax.px(r["benign_loss"], r["recovered_dice"])) for r in line
        )
        parts.append(f'<polyline points="{pts}" fill="none" stroke="gray"/>')
    for r in sorted(rows, key=_draw_order):
        if not _finite(r):
            continue
        x, y = ax.px(r["benign_loss"], r["recovered_dice"])
        kind = _kind(r)
        colour = "rgb({},{},{})".format(*_COLOURS[kind])
        label = escape(str(r["label"]))
        tip = f"{label}: loss {r['benign_loss']:.4f}, recovered {r['recovered_dice']:.4f}"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{3 if kind in _DOTS else 5}" '
            f'fill="{colour}" stroke="black"><title>{tip}</title></circle>'
        )
        if kind not in _DOTS:
            parts.append(f'<text x="{x + 7:.1f}" y="{y - 6:.1f}" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
