"""The tuning figures as images and files: 8x8 coefficient heatmaps and the Pareto plot.

Thin adapters over :mod:`segshield.plotting` (matplotlib), which draws them: heatmaps
show one value per block-DCT frequency ``(u, v)`` (row u, column v, DC at the top
left), as in the frequency analysis behind the FR table (Liu et al., MICCAI 2020); the
Pareto plot shows benign Dice loss (x, lower is better) against recovered Dice (y,
higher is better) for FR tables and the JPEG baselines.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from segshield._checks import check_number
from segshield.plotting import figure_png, figure_svg, heatmap_figure, pareto_figure
from segshield.utils.imageio import atomic_write_bytes

__all__ = ["heatmap_image", "heatmap_png", "pareto_image", "pareto_png", "pareto_svg"]


def heatmap_image(
    values: torch.Tensor | np.ndarray,
    title: str = "",
    *,
    log: bool = False,
    signed: bool = False,
    cell: int = 44,
) -> Image.Image:
    """Render an 8x8 map (:func:`segshield.plotting.heatmap_figure`) as an RGB image.

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
    fig = heatmap_figure(values, title, log=log, signed=signed, cell=cell)
    return Image.open(io.BytesIO(figure_png(fig, dpi=100))).convert("RGB")


def heatmap_png(path: str | Path | None, values, title: str = "", **kw: Any) -> bytes:
    """Render :func:`heatmap_image` as PNG bytes; also write them atomically to ``path``."""
    data = figure_png(heatmap_figure(values, title, **kw), dpi=100)
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def _pareto(rows: Sequence[dict[str, Any]], title: str, width: int, height: int):
    check_number("width", width, low=200, integer=True)
    check_number("height", height, low=200, integer=True)
    return pareto_figure(rows, title, width=width / 100, height=height / 100)


def pareto_image(
    rows: Sequence[dict[str, Any]], title: str = "", width: int = 640, height: int = 440
) -> Image.Image:
    """Pareto plot of ``rows`` (dicts with ``label``, ``benign_loss``, ``recovered_dice``).

    Drawn by :func:`segshield.plotting.pareto_figure`: named rows (``paper``, ``tuned``,
    ``identity``, ``jpeg:q=..``) are labelled without overlaps; rows with ``kind``
    ``"front"`` are grey dots, ``"scored"`` light grey ones (drawn first); rows with
    ``on_front`` are joined by a line.

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
    fig = _pareto(rows, title, width, height)
    return Image.open(io.BytesIO(figure_png(fig, dpi=100))).convert("RGB")


def pareto_png(path: str | Path | None, rows: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """:func:`pareto_image` as PNG bytes, also written atomically to ``path`` if given."""
    data = figure_png(_pareto(rows, title, 640, 440), dpi=100)
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
    return figure_svg(_pareto(rows, title, width, height))
