"""Self-contained HTML report of an evaluation run (no external files, no JavaScript).

Sections: what was run (attacks, which were adaptive, seed, configuration, versions,
machine), the summary table (mean ± std, n, NaN counts), per-defence bars, the
benign-loss vs recovered-Dice scatter (the trade-off of Liu et al., MICCAI 2020),
diagnosis downstream, and example panels (image, adversarial, amplified perturbation,
defended; masks: ground truth, target, clean, attacked, recovered) embedded as PNG
data URIs. Plots are hand-written inline SVG.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segshield.evaluation.store import ResultStore
from segshield.evaluation.summary import GROUP_COLUMNS, MAIN_COLUMNS, summarize
from segshield.utils.imageio import atomic_write_bytes

__all__ = ["render_report", "report_html"]

#: Columns of the classifier table (means of per-sample 0/1 are accuracies).
CLASSIFIER_COLUMNS = (
    "clean_acc",
    "benign_acc",
    "attacked_acc",
    "recovered_acc",
    "attack_success",
    "linf",
)
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
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
th{background:#f0f0f0}td.k{text-align:left}
.note{background:#fff6dd;border-left:4px solid #e0a800;padding:.5em 1em}
.panel{display:flex;flex-wrap:wrap;gap:6px;margin:.5em 0 1.5em}
.panel figure{margin:0;text-align:center;font-size:11px}
.panel img{width:112px;height:112px;image-rendering:pixelated;border:1px solid #999}
pre{background:#f7f7f7;padding:.5em;font-size:12px;overflow:auto}
svg{font-family:system-ui,sans-serif;font-size:11px}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return _e(v)


def _group_label(r: dict[str, Any]) -> str:
    tag = " (adaptive)" if r["adaptive"] else ""
    return f"{r['model']} / {r['dataset']} / {r['attack']}{tag}"


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
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _bars(title: str, labels: list[str], series: dict[str, list[float]], ref: float) -> str:
    """Horizontal grouped bars in [0, 1]; ``ref`` (clean score) drawn as a dashed line."""
    left, width, bar_h = 190, 380, 11
    group_h = bar_h * len(series) + 8
    height = 40 + group_h * len(labels) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 150}" height="{height}">'
    ]
    out.append(f'<text x="4" y="14" font-weight="bold">{_e(title)}</text>')
    for i, label in enumerate(labels):
        y0 = 30 + i * group_h
        out.append(
            f'<text x="{left - 6}" y="{y0 + group_h / 2}" text-anchor="end">{_e(label)}</text>'
        )
        for j, (name, values) in enumerate(series.items()):
            v = values[i]
            y = y0 + j * bar_h
            colour = _COLOURS[j % len(_COLOURS)]
            if math.isnan(v):
                out.append(f'<text x="{left + 2}" y="{y + 9}">n/a</text>')
                continue
            w = max(0.0, min(1.0, v)) * width
            out.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}">'
                f"<title>{_e(name)}: {v:.4f}</title></rect>"
            )
            out.append(f'<text x="{left + w + 3:.1f}" y="{y + 9}">{v:.3f}</text>')
    axis_y = 30 + group_h * len(labels)
    out.append(f'<line x1="{left}" y1="26" x2="{left}" y2="{axis_y}" stroke="#333"/>')
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x = left + t * width
        out.append(f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{t:g}</text>')
    if not math.isnan(ref):
        x = left + max(0.0, min(1.0, ref)) * width
        out.append(
            f'<line x1="{x:.1f}" y1="26" x2="{x:.1f}" y2="{axis_y}" stroke="#000" '
            f'stroke-dasharray="4,3"><title>clean: {ref:.4f}</title></line>'
        )
    for j, name in enumerate(series):
        y = 30 + j * 14
        colour = _COLOURS[j % len(_COLOURS)]
        out.append(
            f'<rect x="{left + width + 30}" y="{y}" width="10" height="10" fill="{colour}"/>'
        )
        out.append(f'<text x="{left + width + 44}" y="{y + 9}">{_e(name)}</text>')
    out.append(
        f'<text x="{left + width + 30}" y="{30 + len(series) * 14 + 9}">--- clean dice</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _scatter(title: str, points: list[tuple[str, float, float, str]]) -> str:
    """Benign loss (x) vs recovered Dice (y); points ``(label, x, y, series)``."""
    good = [p for p in points if not (math.isnan(p[1]) or math.isnan(p[2]))]
    w, h, pad = 520, 340, 50
    xs = [p[1] for p in good] or [0.0]
    x_lo, x_hi = min(0.0, min(xs)), max(0.02, max(xs))
    x_hi += 0.08 * (x_hi - x_lo)
    series = list(dict.fromkeys(p[3] for p in points))

    def sx(v: float) -> float:
        return pad + (v - x_lo) / (x_hi - x_lo) * (w - 2 * pad)

    def sy(v: float) -> float:
        return h - pad - max(0.0, min(1.0, v)) * (h - 2 * pad)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 220}" height="{h}">']
    out.append(f'<text x="4" y="14" font-weight="bold">{_e(title)}</text>')
    out.append(
        f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" '
        'fill="none" stroke="#333"/>'
    )
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<text x="{pad - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for k in range(5):
        v = x_lo + k * (x_hi - x_lo) / 4
        out.append(f'<text x="{sx(v):.1f}" y="{h - pad + 14}" text-anchor="middle">{v:.3f}</text>')
    out.append(
        f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">'
        "benign Dice loss (lower is better)</text>"
    )
    out.append(
        f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle">'
        "recovered Dice (higher is better)</text>"
    )
    for label, x, y, s in good:
        colour = _COLOURS[series.index(s) % len(_COLOURS)]
        out.append(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}">'
            f"<title>{_e(s)} | {_e(label)}: loss {x:.4f}, recovered {y:.4f}</title></circle>"
        )
        out.append(
            f'<text x="{sx(x) + 6:.1f}" y="{sy(y) + 3:.1f}" font-size="9">{_e(label)}</text>'
        )
    for j, s in enumerate(series):
        colour = _COLOURS[j % len(_COLOURS)]
        out.append(f'<circle cx="{w + 10}" cy="{pad + j * 16}" r="4" fill="{colour}"/>')
        out.append(f'<text x="{w + 18}" y="{pad + j * 16 + 4}">{_e(s)}</text>')
    out.append("</svg>")
    return "".join(out)


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
        A complete HTML document with every image embedded.

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
    rows = store.rows()
    clf_rows = store.rows("classifier")
    if not rows and not clf_rows:
        raise ValueError(f"results: {store.folder} holds no rows yet; run `segshield evaluate`")
    manifest = store.manifest() or {}
    summary = summarize(rows)
    clf_summary = summarize(clf_rows)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>",
    ]
    plain = sorted({r["attack"] for r in summary + clf_summary if not r["adaptive"]})
    adaptive = sorted({r["attack"] for r in summary + clf_summary if r["adaptive"]})
    cfg = manifest.get("config", {})
    gradients = manifest.get("defense_gradients", {})
    parts.append("<h2>What was run</h2><ul>")
    parts.append(
        "<li>Non-adaptive attacks (computed once on the bare model, reused by every "
        f"defence): {_e(', '.join(plain) or 'none')}.</li>"
    )
    if adaptive:
        grads = ", ".join(f"{d}: {g}" for d, g in gradients.items())
        parts.append(
            f"<li>Adaptive attacks (run through each defence; gradient per defence: "
            f"{_e(grads or 'see manifest')}): {_e(', '.join(adaptive))}.</li>"
        )
    parts.append("</ul>")
    if not adaptive:
        parts.append(
            '<p class="note">No adaptive attack was run: this defence evaluation is '
            "incomplete (Athalye et al., ICML 2018); scores under non-adaptive attacks "
            "overstate robustness.</p>"
        )
    else:
        parts.append(
            '<p class="note">Rows marked adaptive = yes attack the defended model itself; '
            "they are the honest measure of robustness.</p>"
        )
    versions = manifest.get("versions", {})
    machine = manifest.get("machine", {})
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
    if clf_summary:
        parts.append("<h2>Classifiers</h2><p>Accuracy on clean, defended clean (benign), ")
        parts.append("attacked and defended attacked (recovered) images (issue 7).</p>")
        parts.append(_summary_table(clf_summary, CLASSIFIER_COLUMNS))
    if not summary:
        parts.extend(sections)
        parts.append("</body></html>")
        return "\n".join(parts)
    parts.append("<h2>Summary</h2><p>Mean ± standard deviation over samples; NaN samples ")
    parts.append("(empty ground truth, SPEC §5) are counted and left out of the means.</p>")
    parts.append(_summary_table(summary, MAIN_COLUMNS))
    dx = [c for c in summary[0] if c.startswith("dx_") and not c.endswith(("_std", "_nan"))]
    if dx:
        parts.append("<h2>Diagnosis downstream</h2>")
        parts.append(_summary_table(summary, dx))
    parts.append("<h2>Per-defence scores</h2>")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in summary:
        groups.setdefault(_group_label(r), []).append(r)
    for label, members in groups.items():
        series = {
            "benign dice": [m.get("benign_dice", math.nan) for m in members],
            "attacked dice": [m.get("attacked_dice", math.nan) for m in members],
            "recovered dice": [m.get("recovered_dice", math.nan) for m in members],
        }
        ref = members[0].get("clean_dice", math.nan)
        parts.append(_bars(label, [m["defense"] for m in members], series, ref))
    parts.append("<h2>Trade-off: benign loss vs recovered Dice</h2>")
    by_data: dict[str, list[tuple[str, float, float, str]]] = {}
    for r in summary:
        s = f"{r['attack']}{' (adaptive)' if r['adaptive'] else ''}"
        by_data.setdefault(f"{r['model']} / {r['dataset']}", []).append(
            (r["defense"], r.get("benign_loss", math.nan), r.get("recovered_dice", math.nan), s)
        )
    for label, points in by_data.items():
        parts.append(_scatter(label, points))
    examples = _spread(store.examples(), max_examples)
    if examples:
        parts.append("<h2>Examples</h2>")
    for key, tiles in examples:
        model, dataset, attack, adap, defense, sample = key
        tag = " (adaptive)" if adap else ""
        parts.append(
            f"<h3>{_e(sample)}: {_e(model)} / {_e(dataset)} / {_e(attack)}{tag} / "
            f"{_e(defense)}</h3>"
        )
        figs = "".join(
            f"<figure>{_img(png, kind)}<figcaption>{_e(_TILE_CAPTIONS.get(kind, kind))}"
            "</figcaption></figure>"
            for kind, png in tiles.items()
        )
        parts.append(f'<div class="panel">{figs}</div>')
    parts.extend(sections)
    parts.append("<h2>Configuration</h2><pre>")
    parts.append(_e(json.dumps(cfg, indent=2, default=str)))
    parts.append("</pre></body></html>")
    return "\n".join(parts)


def render_report(
    results: str | Path | ResultStore,
    output: str | Path,
    max_examples: int = 12,
    title: str = "segshield report",
    sections: Sequence[str] = (),
) -> Path:
    """Write the self-contained HTML report of a results folder, atomically.

    Args:
        results: results folder written by ``run_evaluation`` (or an open store).
        output: HTML file to write (parent folders are created). Must not be a file
            inside the results folder's database.
        max_examples: at most this many example panels (>= 0). Default 12.
        title: page title.
        sections: extra HTML fragments (see :func:`report_html`).

    Returns:
        The path written.

    Raises:
        FileNotFoundError: ``results`` holds no results database.
        ValueError: no rows yet.

    Example:
        >>> render_report("results/", "report.html")  # doctest: +SKIP
    """
    store = results if isinstance(results, ResultStore) else ResultStore(results, readonly=True)
    try:
        text = report_html(store, max_examples=max_examples, title=title, sections=sections)
    finally:
        if store is not results:
            store.close()
    output = Path(output)
    atomic_write_bytes(output, text.encode("utf-8"))
    return output
