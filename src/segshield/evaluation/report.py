"""Self-contained HTML report of an evaluation run (no external files, no JavaScript).

Sections: the worst case per image when the run stored it (worst-case recovered Dice per
defence, which attacks entered and which won how often), what was run (attacks, which
were adaptive, seed, configuration, versions, machine), the summary (a compact pivot per
model and dataset, then the full table with mean ± std, n, NaN counts), per-defence
bars, the benign-loss vs recovered-Dice scatter (the trade-off of Liu et al., MICCAI
2020), diagnosis downstream, and example panels (image, adversarial, amplified
perturbation, defended; masks: ground truth, target, clean, attacked, recovered)
embedded as PNG data URIs. The figures are drawn by :mod:`segshield.plotting` and
embedded as inline SVG; :func:`render_report` also writes each one as PDF and PNG in a
folder beside the page.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segshield.evaluation.curves import curve_section
from segshield.evaluation.store import ResultStore
from segshield.evaluation.summary import GROUP_COLUMNS, MAIN_COLUMNS, run_notes, summarize
from segshield.evaluation.worst_case import WORST_CASE, worst_case_html
from segshield.plotting import bars_figure, figure_svg, save_figure, tradeoff_figure
from segshield.utils.imageio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Pivot", "render_report", "report_html", "summary_pivots"]

#: Columns of the classifier table (means of per-sample 0/1 are accuracies).
CLASSIFIER_COLUMNS = (
    "clean_acc",
    "benign_acc",
    "attacked_acc",
    "recovered_acc",
    "attack_success",
    "linf",
)
_TILE_CAPTIONS = {
    "image": "image",
    "adversarial": "adversarial",
    "perturbation": "perturbation (amplified)",
    "defended": "defended adversarial",
    "mask_gt": "ground truth",
    "mask_target": "target",
    "mask_clean": "clean prediction",
    "mask_attacked": "attacked prediction",
    "mask_recovered": "recovered prediction",
}
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f0f0f0}td.k,th.k{text-align:left}
caption{text-align:left;font-weight:bold;padding:2px 0}
th.adaptive{background:#fde7c8}
.wide{overflow-x:auto}
.note{background:#fff6dd;border-left:4px solid #e0a800;padding:.5em 1em}
.panel{display:flex;flex-wrap:wrap;gap:6px;margin:.5em 0 1.5em}
.panel figure{margin:0;text-align:center;font-size:11px}
.panel img{width:112px;height:112px;image-rendering:pixelated;border:1px solid #999}
figure.plot{margin:.5em 0 1.5em}figure.plot svg{max-width:100%;height:auto}
figure.plot figcaption{font-size:11px;color:#555}
pre{background:#f7f7f7;padding:.5em;font-size:12px;overflow:auto}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return _e(v)


def _attack_label(attack: str, adaptive: bool) -> str:
    return f"{attack} (adaptive)" if adaptive else attack


@dataclass
class Pivot:
    """The compact summary of one model and dataset: defences x attacks.

    Attributes:
        model, dataset: the pair summarised.
        defenses: row names, in the order of the summary.
        attacks: column keys ``(attack, adaptive)``, in the order of the summary.
        cells: ``(defense, attack, adaptive)`` -> ``(recovered_dice, benign_loss)``
            means (NaN where the summary lacks the column).
    """

    model: str
    dataset: str
    defenses: list[str] = field(default_factory=list)
    attacks: list[tuple[str, bool]] = field(default_factory=list)
    cells: dict[tuple[str, str, bool], tuple[float, float]] = field(default_factory=dict)


def summary_pivots(summary: Sequence[dict[str, Any]]) -> list[Pivot]:
    """One :class:`Pivot` per (model, dataset) of :func:`summarize` rows.

    Args:
        summary: rows of :func:`~segshield.evaluation.summary.summarize`.

    Returns:
        The pivots, in the order the pairs first appear.

    Example:
        >>> rows = [dict(model="m", dataset="d", attack="asma", adaptive=True,
        ...              defense="fr", recovered_dice=0.7, benign_loss=0.01)]
        >>> summary_pivots(rows)[0].cells
        {('fr', 'asma', True): (0.7, 0.01)}
    """
    pivots: dict[tuple[str, str], Pivot] = {}
    for r in summary:
        p = pivots.setdefault((r["model"], r["dataset"]), Pivot(r["model"], r["dataset"]))
        attack = (r["attack"], bool(r["adaptive"]))
        if r["defense"] not in p.defenses:
            p.defenses.append(r["defense"])
        if attack not in p.attacks:
            p.attacks.append(attack)
        value = (r.get("recovered_dice", math.nan), r.get("benign_loss", math.nan))
        p.cells[(r["defense"], *attack)] = value
    return list(pivots.values())


def _pivot_table(p: Pivot) -> str:
    head = '<th class="k">defence</th>' + "".join(
        f'<th class="adaptive">{_e(_attack_label(a, True))}</th>' if adap else f"<th>{_e(a)}</th>"
        for a, adap in p.attacks
    )
    body = []
    for d in p.defenses:
        cells = f'<td class="k">{_e(d)}</td>'
        for a, adap in p.attacks:
            rec, loss = p.cells.get((d, a, adap), (None, None))
            cells += (
                "<td>&ndash;</td>"
                if rec is None
                else f"<td><b>{_num(rec)}</b><br><small>loss {_num(loss)}</small></td>"
            )
        body.append(f"<tr>{cells}</tr>")
    caption = f"<caption>{_e(p.model)} / {_e(p.dataset)}</caption>"
    return f'<table class="pivot">{caption}<tr>{head}</tr>{"".join(body)}</table>'


def _summary_table(summary: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(c in r for r in summary)]
    head = "".join(f"<th>{_e(c)}</th>" for c in (*GROUP_COLUMNS, "n", *cols))
    body = []
    for r in summary:
        cells = "".join(
            f'<td class="k">{_e("yes" if r[c] is True else "no" if r[c] is False else r[c])}</td>'
            for c in GROUP_COLUMNS
        )
        cells += f"<td>{r['n']}</td>"
        for c in cols:
            mean, std, nan = r.get(c, math.nan), r.get(f"{c}_std", math.nan), r.get(f"{c}_nan", 0)
            text = _num(mean)
            if isinstance(std, float) and not math.isnan(std):
                text += f" ± {_num(std)}"
            if nan:
                text += f' <span title="NaN samples">({nan} NaN)</span>'
            cells += f"<td>{text}</td>"
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(body)}</table></div>'


class _Figures:
    """Collects the report's figures under unique file names and embeds them as SVG."""

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self.figures: dict[str, Figure] = {}

    def embed(self, name: str, fig: Figure) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120] or "figure"
        unique, i = stem, 1
        while unique in self.figures:
            i += 1
            unique = f"{stem}_{i}"
        self.figures[unique] = fig
        where = f"{self.folder}/{unique}" if self.folder else None
        caption = f"<figcaption>{_e(where)}.pdf, .png</figcaption>" if where else ""
        return f'<figure class="plot">{figure_svg(fig)}{caption}</figure>'


def _run_section(summary: list[dict[str, Any]], manifest: dict[str, Any]) -> list[str]:
    """What was run: the attacks (adaptive or not), seed, versions, machine."""
    attacks = [(r["attack"], r["adaptive"]) for r in summary if r["attack"] != WORST_CASE]
    plain = sorted({a for a, adaptive in attacks if not adaptive})
    adaptive = sorted({a for a, adaptive in attacks if adaptive})
    cfg = manifest.get("config", {})
    parts = [
        "<h2>What was run</h2><ul>",
        "<li>Non-adaptive attacks (computed once on the bare model, reused by every "
        f"defence): {_e(', '.join(plain) or 'none')}.</li>",
    ]
    if adaptive:
        grads = ", ".join(f"{d}: {g}" for d, g in manifest.get("defense_gradients", {}).items())
        parts.append(
            f"<li>Adaptive attacks (run through each defence; gradient per defence: "
            f"{_e(grads or 'see manifest')}): {_e(', '.join(adaptive))}.</li>"
        )
    parts += [f"<li>{_e(note)}.</li>" for note in run_notes(manifest)]
    parts.append("</ul>")
    if not adaptive:
        parts.append(
            '<p class="note">No adaptive attack was run: this defence evaluation is '
            "incomplete (Athalye et al., ICML 2018); scores under non-adaptive attacks "
            "overstate robustness.</p>"
        )
    else:
        parts.append(
            '<p class="note">Rows marked adaptive = yes (columns marked (adaptive) in the '
            "compact tables) attack the defended model itself; they are the honest measure "
            "of robustness.</p>"
        )
    versions, machine = manifest.get("versions", {}), manifest.get("machine", {})
    parts.append(
        "<ul>"
        f"<li>Seed: {_e(manifest.get('seed', cfg.get('seed', '?')))}; target masks: "
        f"{_e(cfg.get('target', '?'))}; 8-bit PNG round trip of adversarial images: "
        f"{_e(cfg.get('png_roundtrip', '?'))}</li>"
        f"<li>Versions: {_e(', '.join(f'{k} {v}' for k, v in versions.items() if v))}; "
        f"git commit: {_e(manifest.get('git_commit') or 'unknown')}</li>"
        f"<li>Machine: {_e(machine.get('platform', '?'))}, {_e(machine.get('cpu_count', '?'))} "
        f"CPUs, torch threads {_e(machine.get('torch_threads', '?'))}, CUDA: "
        f"{_e(machine.get('cuda') or 'none')}</li></ul>"
    )
    return parts


def _classifier_section(clf_summary: list[dict[str, Any]]) -> list[str]:
    if not clf_summary:
        return []
    return [
        "<h2>Classifiers</h2><p>Accuracy on clean, defended clean (benign), ",
        "attacked and defended attacked (recovered) images.</p>",
        _summary_table(clf_summary, CLASSIFIER_COLUMNS),
    ]


def _summary_section(summary: list[dict[str, Any]]) -> list[str]:
    """The compact pivots first, then the full table and the diagnosis columns."""
    parts = [
        "<h2>Summary</h2><p>Per model and dataset: recovered Dice (bold) and, below it, "
        "the benign Dice loss of each defence (rows) under each attack (columns; adaptive "
        "attacks marked). The full table follows.</p>",
        *(_pivot_table(p) for p in summary_pivots(summary)),
        "<h3>All scores</h3><p>Mean ± standard deviation over samples; NaN samples ",
        "(empty ground truth, where Dice is undefined) are counted and left out of the means.</p>",
        _summary_table(summary, MAIN_COLUMNS),
    ]
    dx = [c for c in summary[0] if c.startswith("dx_") and not c.endswith(("_std", "_nan"))]
    if dx:
        parts += ["<h2>Diagnosis downstream</h2>", _summary_table(summary, dx)]
    return parts


def _plot_sections(summary: list[dict[str, Any]], figures: _Figures) -> list[str]:
    """Per-defence bars per (model, dataset, attack), one trade-off scatter per pair."""
    parts = ["<h2>Per-defence scores</h2>"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in summary:
        groups.setdefault((r["model"], r["dataset"], r["attack"], r["adaptive"]), []).append(r)
    for (model, dataset, attack, adaptive), members in groups.items():
        series = {
            f"{m} dice": [r.get(f"{m}_dice", math.nan) for r in members]
            for m in ("benign", "attacked", "recovered")
        }
        label = f"{model} / {dataset} / {_attack_label(attack, adaptive)}"
        fig = bars_figure(
            label, [r["defense"] for r in members], series, members[0].get("clean_dice", math.nan)
        )
        name = f"scores_{model}_{dataset}_{attack}{'_adaptive' if adaptive else ''}"
        parts.append(figures.embed(name, fig))
    parts.append("<h2>Trade-off: benign loss vs recovered Dice</h2>")
    by_data: dict[tuple[str, str], list[tuple[str, float, float, str]]] = {}
    for r in summary:
        by_data.setdefault((r["model"], r["dataset"]), []).append(
            (
                r["defense"],
                r.get("benign_loss", math.nan),
                r.get("recovered_dice", math.nan),
                _attack_label(r["attack"], r["adaptive"]),
            )
        )
    for (model, dataset), points in by_data.items():
        fig = tradeoff_figure(f"{model} / {dataset}", points)
        parts.append(figures.embed(f"tradeoff_{model}_{dataset}", fig))
    return parts


def _spread(examples: list, limit: int) -> list:
    """Up to ``limit`` examples taken round-robin over (model, dataset, attack, adaptive)."""
    groups: dict[tuple, list] = {}
    for item in examples:
        groups.setdefault(item[0][:4], []).append(item)
    out: list = []
    queues = list(groups.values())
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _examples_section(examples: list) -> list[str]:
    parts = ["<h2>Examples</h2>"] if examples else []
    for key, tiles in examples:
        model, dataset, attack, adap, defense, sample = key
        parts.append(
            f"<h3>{_e(sample)}: {_e(model)} / {_e(dataset)} / "
            f"{_e(_attack_label(attack, adap))} / {_e(defense)}</h3>"
        )
        figs = "".join(
            f"<figure>{_img(png, kind)}<figcaption>{_e(_TILE_CAPTIONS.get(kind, kind))}"
            "</figcaption></figure>"
            for kind, png in tiles.items()
        )
        parts.append(f'<div class="panel">{figs}</div>')
    return parts


def _page(
    store: ResultStore,
    max_examples: int,
    title: str,
    sections: Sequence[str],
    figure_folder: str | None,
) -> tuple[str, dict[str, Figure]]:
    """The report's HTML and its figures (name -> figure)."""
    rows, clf_rows = store.rows(), store.rows("classifier")
    if not rows and not clf_rows:
        raise ValueError(f"results: {store.folder} holds no rows yet; run `segshield evaluate`")
    manifest = store.manifest() or {}
    summary, clf_summary = summarize(rows), summarize(clf_rows)
    figures = _Figures(figure_folder)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>",
        *worst_case_html(rows, summary, _e),
        *_run_section(summary + clf_summary, manifest),
        *_classifier_section(clf_summary),
    ]
    if summary:
        parts += _summary_section(summary)
        parts += _plot_sections(summary, figures)
        parts += curve_section(summary, figures.embed)  # robustness curves of sweeps
        parts += _examples_section(_spread(store.examples(), max_examples))
        parts += sections
        cfg = json.dumps(manifest.get("config", {}), indent=2, default=str)
        parts += ["<h2>Configuration</h2><pre>", _e(cfg), "</pre></body></html>"]
    else:
        parts += [*sections, "</body></html>"]
    return "\n".join(parts), figures.figures


def report_html(
    store: ResultStore,
    max_examples: int = 12,
    title: str = "segshield report",
    sections: Sequence[str] = (),
) -> str:
    """Build the report of a results store as one HTML string.

    Args:
        store: an open :class:`ResultStore`.
        max_examples: at most this many example panels (>= 0). Default 12.
        title: page title. Default ``"segshield report"``.
        sections: extra HTML ``<section>`` fragments appended before the configuration,
            e.g. :func:`segshield.tuning.analysis_html` and
            :func:`segshield.tuning.tuning_html`. Default none.

    Returns:
        A complete HTML document with every image and figure embedded.

    Raises:
        ValueError: the store has no rows.

    Example:
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> store.add([dict(model="m", dataset="d", attack="asma", adaptive=0, defense="none",
        ...                 sample="s", clean_dice=0.9, benign_dice=0.9, recovered_dice=0.5)])
        >>> report_html(store).startswith("<!DOCTYPE html>")
        True
    """
    return _page(store, max_examples, title, sections, None)[0]


def render_report(
    results: str | Path | ResultStore,
    output: str | Path,
    max_examples: int = 12,
    title: str = "segshield report",
    sections: Sequence[str] = (),
    figures: dict[str, Figure] | None = None,
) -> Path:
    """Write the self-contained HTML report of a results folder, and its figures.

    Each figure of the page (and each of ``figures``) is also written as PDF and PNG
    to ``<output stem>_figures/`` beside the page (e.g. ``report_figures/``), for use in
    a paper. Every file is written atomically.

    Args:
        results: results folder written by ``run_evaluation`` (or an open store).
        output: HTML file to write (parent folders are created). Must not be a file
            inside the results folder's database.
        max_examples: at most this many example panels (>= 0). Default 12.
        title: page title.
        sections: extra HTML fragments (see :func:`report_html`).
        figures: extra figures to write beside the page, name -> figure, e.g. those of
            ``sections`` (:func:`segshield.tuning.html.analysis_figures`). Default none.

    Returns:
        The path of the HTML page.

    Raises:
        FileNotFoundError: ``results`` holds no results database.
        ValueError: no rows yet, or an extra figure's name is taken by the page's.

    Example:
        >>> render_report("results/", "report.html")  # doctest: +SKIP
    """
    output = Path(output)
    folder = output.with_name(f"{output.stem}_figures")
    store = results if isinstance(results, ResultStore) else ResultStore(results, readonly=True)
    try:
        text, own = _page(store, max_examples, title, sections, folder.name)
    finally:
        if store is not results:
            store.close()
    clash = sorted(set(own) & set(figures or {}))
    if clash:
        raise ValueError(f"figures: the names {clash} are taken by the report's own figures")
    for name, fig in {**own, **(figures or {})}.items():
        save_figure(fig, folder / name)
    atomic_write_bytes(output, text.encode("utf-8"))
    return output
