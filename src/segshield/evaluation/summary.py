"""Aggregate result rows into summary rows: mean, std, n and NaN count per metric.

Rows are grouped by ``(model, dataset, attack, adaptive, defense)``. Each metric gets
its mean over the non-NaN samples (docs/ALGORITHMS.md §5: NaN scores, e.g. empty ground truth with a
non-empty prediction, are flagged and counted, never folded into a mean), the sample
standard deviation (``std``, NaN with fewer than two values) and the count of NaN
samples (``nan``). Values keep full precision; rounding happens only in renderers.
Three columns are derived from the group rather than averaged (:func:`derived_columns`):
``efficiency`` is the ratio of the means, mean recovered Dice / mean clean Dice over the
samples that have both (``efficiency_iou`` likewise for IoU, the FR paper's metric), so
a sample with a clean Dice near zero cannot blow it up (``efficiency_std`` and
``efficiency_nan`` describe the per-sample ratios, which are NaN below
``scoring.EFFICIENCY_MIN_CLEAN``); ``attack_success_rate`` is the share of samples whose
attacked prediction reaches IoU >= 0.5 with the target.
:func:`run_notes` says, from the manifest, what the rows cannot: which models are defended
files (``segshield export``) and which attacks did not run on which model.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from segshield._checks import check_choice, check_number
from segshield.evaluation.config import NO_ATTACK
from segshield.evaluation.store import TEXT_COLUMNS

__all__ = [
    "SUCCESS_TARGET_IOU",
    "derived_columns",
    "GROUP_COLUMNS",
    "MAIN_COLUMNS",
    "summarize",
    "format_summary",
    "run_notes",
]

GROUP_COLUMNS = ("model", "dataset", "attack", "adaptive", "defense")
#: Columns shown in the compact tables (markdown, HTML, the demo's printout).
MAIN_COLUMNS = (
    "clean_dice",
    "benign_dice",
    "benign_loss",
    "attack_target_iou",
    "attacked_dice",
    "recovered_dice",
    "recovered_target_iou",
    "efficiency",
    "linf",
)
_NOT_METRICS = {"sample", *GROUP_COLUMNS, *TEXT_COLUMNS}
#: A targeted attack succeeds on a sample when its attacked prediction's IoU with the
#: target reaches this (docs/ALGORITHMS.md §5).
SUCCESS_TARGET_IOU = 0.5


def _ratio_of_means(members: list[dict[str, Any]], num: str, den: str) -> float:
    """mean(num) / mean(den) over the members where both are numbers (NaN if none or 0)."""
    pairs = [
        (float(r[num]), float(r[den]))
        for r in members
        if r.get(num) is not None
        and r.get(den) is not None
        and not math.isnan(float(r[num]))
        and not math.isnan(float(r[den]))
    ]
    den_sum = math.fsum(d for _, d in pairs)
    if not pairs or den_sum <= 0:
        return math.nan
    return math.fsum(n for n, _ in pairs) / den_sum


def derived_columns(members: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Columns of one group computed from its rows rather than averaged per sample.

    ``efficiency`` = mean recovered Dice / mean clean Dice and ``efficiency_iou`` =
    mean recovered IoU / mean clean IoU, both over the samples where the two scores are
    numbers (NaN when there is none or the clean mean is 0); ``attack_success_rate`` =
    the share of samples with ``attack_target_iou >= SUCCESS_TARGET_IOU`` (a NaN target
    IoU counts as a failure). The efficiencies replace the per-sample ``efficiency``
    column the harness writes and are left out for rows without it, as the success
    rate is for rows without ``attack_target_iou``.

    Example:
        >>> rows = [dict(clean_dice=0.01, recovered_dice=0.9, attack_target_iou=0.7),
        ...         dict(clean_dice=0.99, recovered_dice=0.1, attack_target_iou=0.2)]
        >>> rows[0]["efficiency"], rows[1]["efficiency"] = float("nan"), 0.1
        >>> d = derived_columns(rows)
        >>> round(d["efficiency"], 3), d["attack_success_rate"]
        (1.0, 0.5)
    """
    members = list(members)
    out: dict[str, float] = {}
    for name, num, den in (
        ("efficiency", "recovered_dice", "clean_dice"),
        ("efficiency_iou", "recovered_iou", "clean_iou"),
    ):
        if any("efficiency" in r and num in r and den in r for r in members):
            out[name] = _ratio_of_means(members, num, den)
    if any("attack_target_iou" in r for r in members):
        hits = [
            r.get("attack_target_iou") is not None
            and float(r["attack_target_iou"]) >= SUCCESS_TARGET_IOU
            for r in members
        ]
        out["attack_success_rate"] = sum(hits) / len(hits)
    return out


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    good = [v for v in values if not math.isnan(v)]
    nan = len(values) - len(good)
    if not good:
        return math.nan, math.nan, nan
    mean = math.fsum(good) / len(good)
    if len(good) < 2:
        return mean, math.nan, nan
    var = math.fsum((v - mean) ** 2 for v in good) / (len(good) - 1)
    return mean, math.sqrt(var), nan


def summarize(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows, one per (model, dataset, attack, adaptive, defense).

    Args:
        rows: per-sample result rows (``ResultStore.rows()``): the key columns plus
            numeric metric columns (NaN allowed).

    Returns:
        Dictionaries with the group columns, ``n`` (number of samples) and, for every
        metric ``m``: ``m`` (mean of non-NaN values), ``m_std`` and ``m_nan``. Groups
        keep the order of first appearance.

    Raises:
        ValueError: a row lacks a group column.

    Example:
        >>> rows = [dict(model="m", dataset="d", attack="a", adaptive=False, defense="fr",
        ...              sample=s, clean_dice=v) for s, v in (("x", 0.8), ("y", float("nan")))]
        >>> out = summarize(rows)[0]
        >>> out["n"], out["clean_dice"], out["clean_dice_nan"]
        (2, 0.8, 1)
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    metrics: list[str] = []
    for row in rows:
        missing = [c for c in GROUP_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"rows: a row lacks the column(s) {', '.join(missing)}")
        groups.setdefault(tuple(row[c] for c in GROUP_COLUMNS), []).append(row)
        for name in row:
            if name not in _NOT_METRICS and name not in metrics:
                metrics.append(name)
    out = []
    for gkey, members in groups.items():
        summary: dict[str, Any] = dict(zip(GROUP_COLUMNS, gkey, strict=True))
        summary["adaptive"] = bool(summary["adaptive"])
        summary["n"] = len(members)
        stats = {}
        for m in metrics:
            values = [float(r[m]) if r.get(m) is not None else math.nan for r in members]
            stats[m] = _mean_std(values)
        summary.update({m: s[0] for m, s in stats.items()})
        summary.update(derived_columns(members))
        summary.update({f"{m}_std": s[1] for m, s in stats.items()})
        summary.update({f"{m}_nan": s[2] for m, s in stats.items()})
        out.append(summary)
    return out


def _fmt(value: Any, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_summary(
    summary: Sequence[dict[str, Any]],
    fmt: str = "md",
    columns: Sequence[str] | None = None,
    digits: int = 3,
    keys: Sequence[str] = GROUP_COLUMNS,
) -> str:
    """Render summary rows as a markdown table, CSV or JSON.

    Args:
        summary: rows from :func:`summarize`.
        fmt: ``"md"`` (rounded, compact), ``"csv"`` or ``"json"`` (full precision,
            every column; NaN becomes an empty cell / ``null``). Default ``"md"``.
        columns: metric columns of the markdown table. Default :data:`MAIN_COLUMNS`
            (those present).
        digits: decimals in the markdown table, 0..10. Default 3.
        keys: group columns shown in the markdown table. Default all of
            :data:`GROUP_COLUMNS`.

    Returns:
        The rendered text.

    Raises:
        ValueError: unknown ``fmt`` or ``digits`` out of range.

    Example:
        >>> s = [dict(model="m", dataset="d", attack="a", adaptive=False, defense="fr",
        ...           n=1, clean_dice=0.91234)]
        >>> print(format_summary(s).splitlines()[2])
        | m | d | a | no | fr | 1 | 0.912 |
    """
    check_choice("fmt", fmt, ("md", "csv", "json"))
    check_number("digits", digits, low=0, high=10, integer=True)
    if fmt == "json":
        clean = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in summary
        ]
        return json.dumps(clean, indent=2)
    all_cols: list[str] = []
    for r in summary:
        all_cols += [k for k in r if k not in all_cols]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=all_cols, lineterminator="\n")
        writer.writeheader()
        for r in summary:
            writer.writerow(
                {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            )
        return buf.getvalue()
    cols = [c for c in (columns or MAIN_COLUMNS) if c in all_cols]
    head = [*keys, "n", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        lines.append("| " + " | ".join(_fmt(r.get(c, math.nan), digits) for c in head) + " |")
    return "\n".join(lines)


def run_notes(manifest: Mapping[str, Any]) -> list[str]:
    """One line per defended model file and per model whose attacks were skipped.

    Args:
        manifest: a results folder's manifest (``ResultStore.manifest()``): its
            ``models`` (model name -> config; a defended file has ``defended`` true and
            its ``defense`` spec) and ``skipped_attacks`` (model name -> attacks not run).

    Returns:
        Plain-text lines, empty when there is nothing to say.

    Example:
        >>> notes = run_notes({"models": {"d.onnx": {"defended": True, "defense": "fr"}},
        ...                    "skipped_attacks": {"d.onnx": ["asma"]}})
        >>> print(notes[0])
        d.onnx: defended model file, defence fr inside (its defence 'none' rows are defended)
        >>> print(notes[1])
        d.onnx: no gradients, attacks not run: asma (clean and benign rows under attack 'none')
    """
    notes = [
        f"{name}: defended model file, defence {cfg.get('defense') or '?'} inside (its "
        "defence 'none' rows are defended)"
        for name, cfg in (manifest.get("models") or {}).items()
        if isinstance(cfg, Mapping) and cfg.get("defended")
    ]
    notes += [
        f"{name}: no gradients, attacks not run: {', '.join(attacks)} (clean and benign rows "
        f"under attack {NO_ATTACK!r})"
        for name, attacks in (manifest.get("skipped_attacks") or {}).items()
    ]
    return notes
