"""The plotting base: style, figures outside ``pyplot``, file output, label placement.

Figures are :class:`matplotlib.figure.Figure` objects with an Agg canvas attached,
never registered with ``pyplot``; the style (:data:`STYLE`) is applied with a
``matplotlib.rc_context`` around creation and saving only, so nothing global changes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segshield._checks import check_number
from segshield.utils.imageio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation

__all__ = ["STYLE", "figure_png", "figure_svg", "new_figure", "place_labels", "save_figure"]

log = logging.getLogger(__name__)

#: matplotlib settings of every figure: text as paths in SVG (the page needs no font),
#: TrueType in PDF (editable), fixed SVG ids (the same data give the same file).
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "svg.fonttype": "path",
    "svg.hashsalt": "segshield",
    "pdf.fonttype": 42,
}
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float, dpi: float = 100, **kw: Any) -> Figure:
    """A ``Figure`` of ``width`` x ``height`` inches with an Agg canvas, outside ``pyplot``.

    Args:
        width, height: size in inches, > 0.
        dpi: pixels per inch of :func:`figure_png` by default. Default 100.
        **kw: passed to :class:`matplotlib.figure.Figure` (e.g. ``layout="constrained"``).

    Returns:
        The figure (created under :data:`STYLE`).

    Example:
        >>> new_figure(2, 1).get_size_inches().tolist()
        [2.0, 1.0]
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_number("width", width, low=0, low_inclusive=False)
    check_number("height", height, low=0, low_inclusive=False)
    with _style():
        fig = Figure(figsize=(width, height), dpi=dpi, **kw)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, fmt: str, dpi: float | None = None) -> bytes:
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format=fmt, dpi=dpi or fig.dpi, metadata=_METADATA[fmt])
    return buf.getvalue()


def figure_png(fig: Figure, dpi: float | None = None) -> bytes:
    """RGB PNG bytes of ``fig`` at ``dpi`` (default: the figure's own).

    Example:
        >>> from PIL import Image
        >>> Image.open(io.BytesIO(figure_png(new_figure(2, 1), dpi=50))).size
        (100, 50)
    """
    from PIL import Image

    rgba = Image.open(io.BytesIO(_save(fig, "png", dpi)))
    buf = io.BytesIO()
    rgba.convert("RGB").save(buf, format="PNG")  # figures are opaque: alpha is dropped
    return buf.getvalue()


def figure_svg(fig: Figure) -> str:
    """``fig`` as an ``<svg>`` element string for inline HTML (no XML prolog or doctype).

    Example:
        >>> figure_svg(new_figure(1, 1))[:4]
        '<svg'
    """
    text = _save(fig, "svg").decode("utf-8")
    return text[text.index("<svg") :]


def save_figure(
    fig: Figure, stem: str | Path, formats: Sequence[str] = ("pdf", "png"), dpi: float = 200
) -> list[Path]:
    """Write ``fig`` as ``stem.pdf``, ``stem.png`` (and/or ``stem.svg``), each atomically.

    Args:
        fig: the figure.
        stem: path without suffix; parent folders are created.
        formats: any of ``"pdf"``, ``"png"``, ``"svg"``. Default PDF and PNG.
        dpi: PNG resolution. Default 200.

    Returns:
        The paths written, in ``formats`` order.

    Raises:
        ValueError: an unknown format.

    Example:
        >>> import tempfile
        >>> paths = save_figure(new_figure(2, 1), Path(tempfile.mkdtemp()) / "fig")
        >>> [p.name for p in paths]
        ['fig.pdf', 'fig.png']
    """
    out = []
    for fmt in formats:
        if fmt not in _METADATA:
            raise ValueError(f"formats: expected pdf, png or svg, got {fmt!r}")
        path = Path(f"{stem}.{fmt}")
        data = figure_png(fig, dpi) if fmt == "png" else _save(fig, fmt)
        atomic_write_bytes(path, data)
        out.append(path)
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Overlap areas of box ``a`` ``(4,)`` with boxes ``b`` ``(N, 4)`` (x0, y0, x1, y1)."""
    w = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])
    h = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _candidates(rings: int, step: float) -> Iterator[tuple[float, float, str, str]]:
    """Label offsets (points) by distance: right, upper right, lower right, up, ..."""
    for k in range(rings):
        r = 4 + k * step
        for deg in (0, 45, -45, 90, -90, 180, 135, -135, 22, -22, 158, -158):
            dx, dy = math.cos(math.radians(deg)), math.sin(math.radians(deg))
            ha = "left" if dx > 0.3 else "right" if dx < -0.3 else "center"
            va = "bottom" if dy > 0.3 else "top" if dy < -0.3 else "center"
            yield r * dx, r * dy, ha, va


def place_labels(
    ax: Axes,
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str],
    *,
    colors: Sequence[Any] | None = None,
    fontsize: float = 8,
    rings: int = 40,
) -> list[Annotation]:
    """Label points so that no label overlaps another label, a point or the axes' edge.

    Greedy: each label takes the nearest free offset (12 directions on rings of growing
    radius, 6 points apart); a label moved off its point gets a thin leader line. Call it
    after the axes' limits and the figure's layout are final (offsets are in points, so
    the result holds at any dpi). When no free place exists within ``rings``, the
    least-overlapping one is used and a warning is logged.

    Args:
        ax: axes holding the points.
        x, y: data coordinates of the points.
        labels: one text per point.
        colors: one text colour per point. Default black.
        fontsize: in points. Default 8.
        rings: how far to search, in 6-point steps, >= 1. Default 40.

    Returns:
        The annotations, in input order.

    Raises:
        ValueError: lengths differ, or ``rings`` < 1.

    Example:
        >>> fig = new_figure(3, 2); ax = fig.add_subplot()
        >>> len(place_labels(ax, [0.5, 0.5], [0.5, 0.5], ["a", "b"]))
        2
    """
    if not len(x) == len(y) == len(labels) or (colors is not None and len(colors) != len(x)):
        raise ValueError("x, y, labels, colors: expected one entry per point")
    check_number("rings", rings, low=1, integer=True)
    renderer = ax.figure.canvas.get_renderer()
    px = ax.transData.transform(np.column_stack([x, y])) if len(x) else np.zeros((0, 2))
    scale = ax.figure.dpi / 72  # points -> pixels
    r = 3 * scale
    taken = np.column_stack([px - r, px + r]) if len(x) else np.zeros((0, 4))
    frame = ax.bbox.extents
    out = []
    with _style():
        for i, label in enumerate(labels):
            colour = colors[i] if colors is not None else "black"
            probe = ax.text(0, 0, label, fontsize=fontsize)
            bb = probe.get_window_extent(renderer)
            probe.remove()
            best, best_cost = None, math.inf
            for dx, dy, ha, va in _candidates(rings, 6):
                x0 = px[i, 0] + dx * scale - {"left": 0, "center": 0.5, "right": 1}[ha] * bb.width
                y0 = px[i, 1] + dy * scale - {"bottom": 0, "center": 0.5, "top": 1}[va] * bb.height
                box = np.array([x0 - 1, y0 - 1, x0 + bb.width + 1, y0 + bb.height + 1])
                inside = box[0] >= frame[0] and box[1] >= frame[1]
                inside = inside and box[2] <= frame[2] and box[3] <= frame[3]
                cost = float(_overlap(box, taken).sum()) + (0.0 if inside else 1e9)
                if cost < best_cost:
                    best, best_cost = (dx, dy, ha, va, box), cost
                if cost == 0:
                    break
            if best_cost > 0:
                log.warning("place_labels: no free place for %r; it overlaps", label)
            dx, dy, ha, va, box = best
            far = math.hypot(dx, dy) > 12
            arrow = {"arrowstyle": "-", "color": colour, "lw": 0.5, "shrinkB": 3} if far else None
            ann = ax.annotate(
                label, (x[i], y[i]), xytext=(dx, dy), textcoords="offset points", ha=ha,
                va=va, fontsize=fontsize, color=colour, arrowprops=arrow, zorder=5,
            )  # fmt: skip
            out.append(ann)
            taken = np.vstack([taken, box])
    return out
