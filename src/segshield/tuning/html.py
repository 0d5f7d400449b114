"""HTML fragments for the evaluation report: frequency analysis and tuned-table sections.

Both section functions return a self-contained ``<section>`` (heatmaps inlined as
base64 PNG, the Pareto plot as inline SVG), to be embedded in the report page; their
figures (:mod:`segshield.plotting`) come from :func:`analysis_figures` and
:func:`tuning_figures`, so the report can also write them as PDF and PNG files. They
accept either the result objects or their JSON dicts (``analysis.json`` / the
``segshield tune`` JSON), so the report can be rebuilt from files.
"""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from segshield.plotting import figure_png, figure_svg, heatmap_figure, pareto_figure
from segshield.tuning.report import tables_beating_paper

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["analysis_figures", "analysis_html", "tuning_figures", "tuning_html", "MAP_TITLES"]

#: Heatmaps of the analysis section: key -> (title, log colour, signed colour).
MAP_TITLES: dict[str, tuple[str, bool, bool]] = {
    "perturbation_energy_pooled": ("Perturbation energy per coefficient", True, False),
    "clean_energy_pooled": ("Clean-image energy per coefficient", True, False),
    "energy_ratio_pooled": ("Perturbation / clean energy", True, False),
    "relative_ratio": ("Perturbation share / clean share", True, False),
    "benign_drop": ("Benign Dice drop (only this coefficient quantised)", False, True),
    "recovered_gain": ("Recovered Dice gain (only this coefficient quantised)", False, True),
}


def _as_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    to_dict = getattr(result, "to_dict", None)
    if to_dict is None:
        raise TypeError(
            f"result: expected a result object with to_dict() or its JSON dict, got "
            f"{type(result).__name__}"
        )
    return to_dict()


def _map(values: Any) -> np.ndarray:
    arr = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    if arr.shape != (8, 8):
        raise ValueError(f"expected an 8x8 map, got shape {arr.shape}")
    return arr


def _img(fig: Figure, title: str) -> str:
    b64 = base64.b64encode(figure_png(fig, dpi=100)).decode("ascii")
    return (
        f'<figure style="display:inline-block;margin:4px"><img alt="{escape(title)}" '
        f'src="data:image/png;base64,{b64}"/><figcaption>{escape(title)}</figcaption></figure>'
    )


def analysis_figures(result: Any) -> dict[str, Figure]:
    """The six heatmaps of a frequency analysis, keyed as :data:`MAP_TITLES`.

    Args:
        result: a :class:`~segshield.tuning.analysis.FrequencyAnalysis` or its
            ``to_dict()``.

    Returns:
        ``key -> figure`` (:func:`segshield.plotting.heatmap_figure`).

    Raises:
        TypeError: ``result`` is neither.
        KeyError: a map is missing from the dict.
        ValueError: a map is not 8x8.
    """
    d = _as_dict(result)
    return {
        key: heatmap_figure(_map(d[key]), title, log=log, signed=signed)
        for key, (title, log, signed) in MAP_TITLES.items()
    }


def analysis_html(result: Any, figures: dict[str, Figure] | None = None) -> str:
    """The report section of a frequency analysis (Liu et al., MICCAI 2020, made measurable).

    Args:
        result: a :class:`~segshield.tuning.analysis.FrequencyAnalysis` or its
            ``to_dict()`` (the ``analysis.json`` written by ``segshield analyze``).
        figures: its :func:`analysis_figures`, when already drawn. Default: drawn here.

    Returns:
        An HTML ``<section>`` string with six heatmaps and a short summary.

    Raises:
        TypeError: ``result`` is neither.
        KeyError: a map is missing from the dict.

    Example:
        >>> import torch
        >>> from segshield.tuning.analysis import frequency_analysis
        >>> x = torch.rand(2, 1, 16, 16); m = (x[:, 0] > 0.5).long()
        >>> res = frequency_analysis(torch.nn.Conv2d(1, 1, 1), x, m, x.flip(-1))
        >>> analysis_html(res).startswith("<section")
        True
    """
    d = _as_dict(result)
    ratio = _map(d["relative_ratio"])
    top = np.argsort(np.nan_to_num(-ratio, nan=np.inf), axis=None)[:5]
    top_txt = ", ".join(f"({i // 8},{i % 8})" for i in top)
    parts = [
        '<section class="segshield-frequency-analysis">',
        "<h2>Frequency analysis (8x8 block DCT, 0..255 scale)</h2>",
        f"<p>{int(d['n_images'])} images; clean Dice {d['clean_dice']:.4f}, adversarial Dice "
        f"{d['adversarial_dice']:.4f}; sensitivity maps quantise one coefficient at step "
        f"{d['step']:g} and leave the other 63 untouched. Coefficients where the "
        f"perturbation is most over-represented: {escape(top_txt)}.</p>",
    ]
    figures = figures if figures is not None else analysis_figures(d)
    for key, (title, _, _) in MAP_TITLES.items():
        parts.append(_img(figures[key], title))
    parts.append("</section>")
    return "\n".join(parts)


def tuning_figures(result: Any) -> dict[str, Figure]:
    """The figure of a tuned table's section: ``{"pareto": figure}`` (held-out split).

    Args:
        result: a :class:`~segshield.tuning.search.TuneResult` or the JSON written by
            ``segshield tune``.

    Returns:
        ``name -> figure`` (:func:`segshield.plotting.pareto_figure`).

    Raises:
        TypeError: ``result`` is neither.
    """
    rows = _as_dict(result).get("pareto", [])
    return {"pareto": pareto_figure(rows, "held-out: recovered Dice vs benign loss")}


def tuning_html(result: Any, figures: dict[str, Figure] | None = None) -> str:
    """The report section of a tuned table: held-out comparison and the Pareto plot.

    Args:
        result: a :class:`~segshield.tuning.search.TuneResult` or the JSON written by
            ``segshield tune``.
        figures: its :func:`tuning_figures`, when already drawn. Default: drawn here.

    Returns:
        An HTML ``<section>`` string.

    Raises:
        TypeError: ``result`` is neither.

    Example:
        >>> row = {"benign_loss": 0.0, "recovered_dice": 0.5, "clean_dice": 0.9}
        >>> html = tuning_html({"table": [[1.0] * 8] * 8, "heldout": {"paper": row},
        ...     "pareto": [], "config": {}})
        >>> "<table" in html
        True
    """
    d = _as_dict(result)
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{r['benign_loss']:.4f}</td>"
        f"<td>{r['recovered_dice']:.4f}</td></tr>"
        for name, r in d["heldout"].items()
    )
    steps = np.asarray(d["table"], dtype=np.float64)
    per_channel = steps.ndim == 3
    grids = []
    for c, grid in enumerate(steps if per_channel else steps[None]):
        caption = f"<caption>channel {c}</caption>" if per_channel else ""
        body = "".join(
            "<tr>" + "".join(f"<td>{v:g}</td>" for v in row) + "</tr>" for row in grid.tolist()
        )
        grids.append(f"<table>{caption}{body}</table>")
    diff = d.get("heldout_difference")
    paired = ""
    if diff:
        ben, rec = diff["benign_loss"], diff["recovered_dice"]
        paired = (
            f"<p>Tuned minus paper table, per held-out image (n = {ben['n']}; mean &plusmn; "
            f"standard error): benign Dice loss {ben['mean']:+.4f} &plusmn; {ben['se']:.4f}, "
            f"recovered Dice {rec['mean']:+.4f} &plusmn; {rec['se']:.4f}.</p>"
        )
    if any(r.get("label") == "paper" for r in d.get("pareto", [])):
        beating, n_tables = tables_beating_paper(d["pareto"])
        paired += (
            f"<p>On the held-out split, {len(beating)} of the {n_tables} other tables scored "
            "there beat the paper table (lower or equal benign loss and higher or equal "
            "recovered Dice, one strictly).</p>"
        )
    adaptive = d.get("config", {}).get("adaptive")
    note = (
        "tuned with the adaptive (BPDA) objective"
        if adaptive
        else "tuned against a non-adaptive attacker only; an adaptive (BPDA) evaluation is "
        "still needed"
    )
    return "\n".join(
        [
            '<section class="segshield-tuned-table">',
            "<h2>Tuned FR table</h2>",
            f"<p>Held-out split; {escape(note)}.</p>",
            "<table><tr><th>defence</th><th>benign Dice loss</th><th>recovered Dice</th></tr>"
            f"{rows}</table>",
            paired,
            *grids,
            figure_svg((figures if figures is not None else tuning_figures(d))["pareto"]),
            "</section>",
        ]
    )
