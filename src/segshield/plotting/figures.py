"""The figures: block-DCT heatmap, Pareto plot, per-defence bars, trade-off scatter.

Each returns a :class:`matplotlib.figure.Figure` drawn in :data:`~segshield.plotting.STYLE`
(see :mod:`segshield.plotting.base` for output to SVG, PNG and PDF).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from segshield._checks import check_number
from segshield.plotting.base import _style, new_figure, place_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["bars_figure", "heatmap_figure", "pareto_figure", "tradeoff_figure"]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
_KIND_COLOURS = {
    "identity": "#6e6e6e",
    "paper": "#1f77b4",
    "tuned": "#d62728",
    "jpeg": "#ff7f0e",
    "front": "#a0a0a0",
    "scored": "#d7d7d7",
}
_DOTS = ("front", "scored")  # unlabelled small dots: tables of the search


def _fmt(v: float) -> str:
    if v != v:
        return "nan"
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-2):
        return f"{v:.1e}"
    return f"{v:.0f}" if a >= 100 else f"{v:.3g}" if a >= 1 else f"{v:.3f}"


def heatmap_figure(
    values: Any, title: str = "", *, log: bool = False, signed: bool = False, cell: int = 44
) -> Figure:
    """One value per block-DCT frequency ``(u, v)``: row u, column v, DC at the top left.

    The frequency analysis behind the FR table (Liu et al., MICCAI 2020); values are
    written in the cells. The grid starts 20 px from the left and 36 px from the top
    (at the figure's 100 dpi), each cell ``cell`` px square.

    Args:
        values: ``(8, 8)`` numbers indexed ``[u, v]`` (array or tensor).
        title: caption above the grid. Default "".
        log: colour by ``log10`` (for energies; non-positive values show grey).
            Default False.
        signed: diverging colours centred at 0 (for Dice changes). Default False.
        cell: pixel size of one cell at 100 dpi, 16..200. Default 44.

    Returns:
        The figure, ``(8 * cell + 28) x (8 * cell + 56)`` px at 100 dpi.

    Raises:
        ValueError: ``values`` is not 8x8, or ``cell`` out of range.

    Example:
        >>> heatmap_figure(np.arange(64.0).reshape(8, 8), "x").bbox.size.round().tolist()
        [380.0, 408.0]
    """
    import matplotlib

    v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, float)
    if v.shape != (8, 8):
        raise ValueError(f"values: expected an 8x8 map, got shape {v.shape}")
    check_number("cell", cell, low=16, high=200, integer=True)
    colour_v = v.copy()
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            colour_v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    finite = colour_v[np.isfinite(colour_v)]
    w, h = 8 * cell + 28, 8 * cell + 56
    fig = new_figure(w / 100, h / 100)
    with _style():
        ax = fig.add_axes((20 / w, 20 / h, 8 * cell / w, 8 * cell / h))
        if signed:
            span = float(np.abs(finite).max()) if finite.size else 1.0
            cmap, lo, hi = "RdBu_r", -(span or 1.0), span or 1.0
        else:
            lo = float(finite.min()) if finite.size else 0.0
            hi = float(finite.max()) if finite.size else 1.0
            cmap, hi = "viridis", hi if hi > lo else lo + 1.0
        cmap = matplotlib.colormaps[cmap].with_extremes(bad="#dcdcdc")
        im = ax.imshow(np.ma.masked_invalid(colour_v), cmap=cmap, vmin=lo, vmax=hi)
        rgba = im.to_rgba(np.ma.masked_invalid(colour_v))
        for (u, c), value in np.ndenumerate(v):
            lum = rgba[u, c, :3] @ np.array([0.299, 0.587, 0.114])
            text = _fmt(float(value))
            size = min(6.5, 0.85 * cell * 0.72 / (0.6 * len(text)))  # fits the cell
            colour = "black" if lum > 0.5 else "white"
            ax.text(c, u, text, ha="center", va="center", fontsize=size, color=colour)
        ax.set_xticks(range(8))
        ax.set_yticks(range(8))
        ax.tick_params(length=0, labelsize=7, pad=2, top=True, labeltop=True, labelbottom=False)
        ax.grid(False)
        fig.text(20 / w, 1 - 8 / h, title, fontsize=9, va="top")
        note = "log10 colour" if log else ("0 = white" if signed else "linear colour")
        fig.text(20 / w, 4 / h, f"row u down, column v across; {note}", fontsize=7)
    return fig


def _finite(r: Mapping[str, Any]) -> bool:
    return all(
        isinstance(r.get(k), (int, float)) and math.isfinite(r[k])
        for k in ("benign_loss", "recovered_dice")
    )


def _kind(row: Mapping[str, Any]) -> str:
    label = str(row.get("label", ""))
    if row.get("kind") in _DOTS:
        return row["kind"]
    if label.startswith("jpeg"):
        return "jpeg"
    return label if label in _KIND_COLOURS else "front"


def _limits(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    d = (hi - lo) or 0.01
    return lo - 0.08 * d, hi + 0.08 * d


def pareto_figure(
    rows: Sequence[Mapping[str, Any]], title: str = "", width: float = 6.4, height: float = 4.4
) -> Figure:
    """Pareto plot of tuned tables: benign Dice loss (x) against recovered Dice (y).

    Named rows (``paper``, ``tuned``, ``identity``, ``jpeg:q=..``) are labelled (labels
    never overlap, :func:`place_labels`); rows with ``kind`` ``"front"`` are grey dots,
    ``"scored"`` light grey ones drawn below; rows with ``on_front`` are joined by a line.

    Args:
        rows: dicts with ``label``, ``benign_loss``, ``recovered_dice`` (e.g.
            ``TuneResult.pareto``); rows with a non-finite value are left out.
        title: caption. Default "".
        width, height: size in inches, >= 2. Defaults 6.4 x 4.4.

    Returns:
        The figure.

    Raises:
        ValueError: width or height below 2.

    Example:
        >>> fig = pareto_figure([{"label": "paper", "benign_loss": 0.01, "recovered_dice": 0.7}])
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['paper']
    """
    check_number("width", width, low=2)
    check_number("height", height, low=2)
    good = [r for r in rows if _finite(r)]
    fig = new_figure(width, height)
    with _style():
        fig.subplots_adjust(left=0.11, right=0.97, top=0.91, bottom=0.12)
        ax = fig.add_subplot()
        ax.set_xlim(*_limits([r["benign_loss"] for r in good]))
        ax.set_ylim(*_limits([r["recovered_dice"] for r in good]))
        ax.locator_params(axis="x", nbins=6)
        ax.set_title(title, loc="left")
        ax.set_xlabel("benign Dice loss (lower is better)")
        ax.set_ylabel("recovered Dice (higher is better)")
        line = sorted((r for r in good if r.get("on_front")), key=lambda r: r["benign_loss"])
        if len(line) > 1:
            xy = [(r["benign_loss"], r["recovered_dice"]) for r in line]
            ax.plot(*zip(*xy, strict=True), color="grey", lw=1, zorder=1)
        named = []
        for z, kinds in enumerate((("scored",), ("front",), None)):
            pts = [r for r in good if (_kind(r) in kinds if kinds else _kind(r) not in _DOTS)]
            if not pts:
                continue
            ax.scatter(
                [r["benign_loss"] for r in pts],
                [r["recovered_dice"] for r in pts],
                s=18 if kinds else 36,
                c=[_KIND_COLOURS[_kind(r)] for r in pts],
                edgecolors="black",
                linewidths=0.5,
                zorder=2 + z,
            )
            named = pts if kinds is None else named
        place_labels(
            ax,
            [r["benign_loss"] for r in named],
            [r["recovered_dice"] for r in named],
            [str(r["label"]) for r in named],
            colors=[_KIND_COLOURS[_kind(r)] for r in named],
        )
    return fig


def bars_figure(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], ref: float
) -> Figure:
    """Horizontal grouped bars in ``[0, 1]`` per label, ``ref`` as a dashed line.

    Args:
        title: caption.
        labels: one group per label (e.g. defences), top to bottom.
        series: name -> one value per label (NaN is written "n/a").
        ref: reference value, e.g. the clean Dice (NaN: no line).

    Returns:
        The figure.

    Raises:
        ValueError: a series does not have one value per label.

    Example:
        >>> fig = bars_figure("t", ["a", "b"], {"dice": [0.5, float("nan")]}, 0.9)
        >>> [t.get_text() for t in fig.axes[0].texts]
        ['0.500', 'n/a']
    """
    if any(len(v) != len(labels) for v in series.values()):
        raise ValueError("series: expected one value per label")
    n, k = len(labels), max(len(series), 1)
    fig = new_figure(7.0, 0.9 + 0.14 * k * max(n, 1) + 0.1 * n, layout="constrained")
    with _style():
        ax = fig.add_subplot()
        height = 0.8 / k
        for j, (name, values) in enumerate(series.items()):
            pos = np.arange(n) + (j - (k - 1) / 2) * height
            vals = np.asarray(values, float)
            colour = _PALETTE[j % len(_PALETTE)]
            ax.barh(pos, np.clip(np.nan_to_num(vals), 0, 1), height * 0.9, color=colour, label=name)
            for p, v in zip(pos, vals, strict=True):
                text = "n/a" if math.isnan(v) else f"{v:.3f}"
                at = (min(max(v, 0), 1) if v == v else 0, p)
                ax.annotate(
                    text, at, xytext=(2, 0), textcoords="offset points", va="center", fontsize=7
                )
        if not math.isnan(ref):
            ax.axvline(min(max(ref, 0), 1), color="black", ls="--", lw=1, label="clean dice")
        ax.set_yticks(range(n), labels)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlim(0, 1.12)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        ax.grid(axis="y", visible=False)
        ax.set_title(title, loc="left", fontweight="bold")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def tradeoff_figure(title: str, points: Sequence[tuple[str, float, float, str]]) -> Figure:
    """Benign Dice loss (x) vs recovered Dice (y): colour = defence, marker = series.

    The trade-off of Liu et al. (MICCAI 2020). Points are named by a legend (one entry
    per defence, one per series, e.g. the attack), not by labels beside them, so that
    the many points of one defence (same benign loss, one per attack) stay readable.

    Args:
        title: caption.
        points: ``(defence, benign_loss, recovered_dice, series)``; NaN points are left
            out (their legend entries stay).

    Returns:
        The figure.

    Example:
        >>> fig = tradeoff_figure("m / d", [("fr", 0.01, 0.8, "asma"), ("none", 0, 0.1, "asma")])
        >>> [t.get_text() for t in fig.legends[0].get_texts()]
        ['defence', 'fr', 'none', 'attack', 'asma']
    """
    from matplotlib.lines import Line2D

    defences = list(dict.fromkeys(p[0] for p in points))
    series = list(dict.fromkeys(p[3] for p in points))
    colours = {d: _colour(i) for i, d in enumerate(defences)}
    markers = {s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(series)}
    good = [p for p in points if not (math.isnan(p[1]) or math.isnan(p[2]))]
    longest = max((len(n) for n in [*defences, *series]), default=0)
    width = 5.2 + 0.3 + 0.07 * longest  # axes 4.5 in after a 0.7 in margin, then the legend
    fig = new_figure(width, 4.2)
    with _style():
        fig.subplots_adjust(left=0.7 / width, right=5.2 / width, top=0.9, bottom=0.13)
        ax = fig.add_subplot()
        for s in series:
            pts = [p for p in good if p[3] == s]
            ax.scatter(
                [p[1] for p in pts],
                [min(max(p[2], 0), 1) for p in pts],
                c=[colours[p[0]] for p in pts],
                marker=markers[s],
                s=40,
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
            )
        xs = [p[1] for p in good] or [0.0]
        x_lo, x_hi = min(0.0, min(xs)), max(0.02, max(xs))
        ax.set_xlim(x_lo - 0.04 * (x_hi - x_lo), x_hi + 0.08 * (x_hi - x_lo))
        ax.set_ylim(0, 1.02)
        ax.locator_params(axis="x", nbins=6)
        ax.set_title(title, loc="left", fontweight="bold")
        ax.set_xlabel("benign Dice loss (lower is better)")
        ax.set_ylabel("recovered Dice (higher is better)")
        blank = Line2D([], [], ls="none")
        handles = [blank] + [_handle(colours[d], "o") for d in defences]
        handles += [blank] + [_handle("white", markers[s]) for s in series]
        names = ["defence", *defences, "attack", *series]
        legend = fig.legend(handles, names, loc="upper left", bbox_to_anchor=(5.3 / width, 0.9))
        for i in (0, len(defences) + 1):
            legend.texts[i].set_fontweight("bold")
    return fig


def _colour(i: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10" if i < 10 else "tab20"](i if i < 10 else (i - 10) % 20)


def _handle(colour: Any, marker: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D(
        [], [], ls="none", marker=marker, markerfacecolor=colour, markeredgecolor="black", ms=6
    )
