"""The robustness-curve figure: recovered Dice and target IoU against perturbation size.

The target IoU is the one after the defence (``recovered_target_iou``).

Drawn in :data:`~segshield.plotting.STYLE`; see :mod:`segshield.plotting.base` for output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from segshield.plotting.base import _style, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["curves_figure", "CURVE_PANELS", "LINE_KEYS"]

#: ``(x key, y key, x label, y label)`` of the four panels, row by row.
CURVE_PANELS = (
    ("linf", "recovered_dice", "mean L-inf of the perturbation", "recovered Dice"),
    (
        "linf",
        "recovered_target_iou",
        "mean L-inf of the perturbation",
        "target IoU after the defence",
    ),
    ("l2", "recovered_dice", "mean L2 of the perturbation", "recovered Dice"),
    ("l2", "recovered_target_iou", "mean L2 of the perturbation", "target IoU after the defence"),
)
#: The lists a line of :func:`curves_figure` holds: the x keys, then the y keys of the panels.
LINE_KEYS = tuple(dict.fromkeys([p[0] for p in CURVE_PANELS] + [p[1] for p in CURVE_PANELS]))


def curves_figure(title: str, lines: Sequence[Mapping[str, Any]]) -> Figure:
    """Four panels: recovered Dice and target IoU after the defence against L-inf and L2.

    One line per entry of ``lines``; colour = defence, solid for an attack on the bare
    model, dashed for an adaptive one (through the defence); the lines of no defence
    (``none``) lie beneath the others, so a defence that changes nothing stays visible.
    Points whose x or y is NaN are left out of their panel. y is clipped to ``[0, 1]``.

    Args:
        title: caption.
        lines: dicts with ``defense`` (str), ``adaptive`` (bool) and equal-length
            lists under :data:`LINE_KEYS` (``linf``, ``l2``, ``recovered_dice``,
            ``recovered_target_iou``; sorted by the sweep, e.g. by L-inf).

    Returns:
        The figure.

    Raises:
        ValueError: a line whose lists differ in length.

    Example:
        >>> line = dict(defense="fr", adaptive=False, linf=[0.01, 0.02], l2=[1.0, 2.0],
        ...             recovered_dice=[0.8, 0.6], recovered_target_iou=[0.3, float("nan")])
        >>> fig = curves_figure("m / d / pgd:eps=*", [line])
        >>> len(fig.axes), [t.get_text() for t in fig.legends[0].get_texts()]
        (4, ['fr'])
    """
    import matplotlib

    for line in lines:
        if len({len(line[k]) for k in LINE_KEYS}) != 1:
            raise ValueError(
                f"lines: {line['defense']}: expected lists of one length for {', '.join(LINE_KEYS)}"
            )
    defences = list(dict.fromkeys(str(line["defense"]) for line in lines))
    cmap = matplotlib.colormaps["tab10"]
    colours = {d: cmap(i % 10) for i, d in enumerate(defences)}
    rows = math.ceil(len({(str(ln["defense"]), ln["adaptive"]) for ln in lines}) / 2)
    fig = new_figure(8.0, 6.6 + 0.2 * rows, layout="constrained")
    handles: dict[str, Any] = {}
    with _style():
        axes = fig.subplots(2, 2)
        for ax, (xk, yk, xlabel, ylabel) in zip(axes.flat, CURVE_PANELS, strict=True):
            for line in lines:
                pts = [
                    (x, min(max(y, 0.0), 1.0))
                    for x, y in zip(line[xk], line[yk], strict=True)
                    if not (math.isnan(x) or math.isnan(y))
                ]
                label = f"{line['defense']}{' (adaptive)' if line['adaptive'] else ''}"
                (h,) = ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    color=colours[str(line["defense"])],
                    ls="--" if line["adaptive"] else "-",
                    marker="o",
                    ms=4,
                    lw=1.5,
                    zorder=1.5 if line["defense"] == "none" else 2.5,
                )
                handles.setdefault(label, h)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_ylim(-0.02, 1.02)
        fig.suptitle(title, x=0.01, ha="left", fontweight="bold")
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=min(len(handles), 2),
        )
    return fig
