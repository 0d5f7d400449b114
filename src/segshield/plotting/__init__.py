"""Every figure segshield draws, with matplotlib, in one style (the one plotting package).

Figure functions return a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no
global figure registry; an Agg canvas is attached), so figures never leak state into
each other. :func:`figure_svg` gives the inline ``<svg>`` the HTML report embeds,
:func:`figure_png` PNG bytes, and :func:`save_figure` writes PDF and PNG files for a
paper (atomically). matplotlib is imported inside the functions: importing segshield
does not need it.

Figures: the 8x8 block-DCT heatmap (:func:`heatmap_figure`), the Pareto plot of
tuned tables (:func:`pareto_figure`), per-defence bars (:func:`bars_figure`) and the
benign-loss vs recovered-Dice trade-off (:func:`tradeoff_figure`; the trade-off of
Liu et al., MICCAI 2020) and the robustness curves of an attack sweep
(:func:`curves_figure`). Point labels are placed by :func:`place_labels` so that no
two labels overlap.
"""

from segshield.plotting.base import (
    STYLE,
    figure_png,
    figure_svg,
    new_figure,
    place_labels,
    save_figure,
)
from segshield.plotting.curves import curves_figure
from segshield.plotting.figures import bars_figure, heatmap_figure, pareto_figure, tradeoff_figure

__all__ = [
    "STYLE",
    "bars_figure",
    "curves_figure",
    "figure_png",
    "figure_svg",
    "heatmap_figure",
    "new_figure",
    "pareto_figure",
    "place_labels",
    "save_figure",
    "tradeoff_figure",
]
