"""Worst case per sample over the attacks of a run (docs/ALGORITHMS.md §5).

A defence judged by one attack looks stronger than it is; the honest number is the
worst case per image over an ensemble of attacks (AutoAttack, Croce & Hein, ICML 2020;
SEA, Croce, Singh & Hein, ECCV 2024). For each (model, dataset, defence, sample), the
attack with the lowest recovered Dice among those run, adaptive ones included, defines
the sample's worst case: its row is copied under attack :data:`WORST_CASE`, with the
winning attack named in ``worst_attack`` and ``worst_adaptive`` 1.0 when that attack ran
through the defence (adaptive), else 0.0. The worst-case row's ``adaptive`` key is 1
when any adaptive attack entered the worst case.

Rules: a NaN recovered Dice (empty ground truth, docs/ALGORITHMS.md §5) never wins; a
sample whose every attack gives NaN keeps NaN (``recovered_dice`` NaN, ``worst_attack``
None). Ties go to the attack listed first in the run's order (``attacks``, then
``adaptive``, as in the configuration), so the result does not depend on the order rows
were stored in (a resumed run derives the same rows). Worst-case rows are derived from
the stored attack rows only, never from numbers in memory.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from segshield.evaluation.store import KEY_COLUMNS

__all__ = ["WORST_CASE", "SCORE", "worst_case_rows", "worst_case_html"]

#: The attack name of worst-case rows.
WORST_CASE = "worst-case"
#: The per-sample score whose minimum defines the worst case.
SCORE = "recovered_dice"


def _value(row: Mapping[str, Any]) -> float:
    v = row.get(SCORE)
    return math.nan if v is None else float(v)


def worst_case_rows(
    rows: Iterable[Mapping[str, Any]],
    entrants: Sequence[tuple[str, bool]],
    model: str,
    dataset: str,
    *,
    skip: Collection[tuple[str, bool, str]] = (),
) -> list[dict[str, Any]]:
    """Worst-case rows of one (model, dataset): one per (defence, sample).

    Args:
        rows: per-sample result rows (``ResultStore.rows()``); rows of other models,
            datasets or attacks (``none``, earlier worst-case rows) are ignored.
        entrants: the attacks that enter, ``(attack spec, adaptive)``, in the run's
            order (ties go to the first).
        model, dataset: the pair (row labels).
        skip: ``(attack spec, adaptive, defence)`` combinations that were not run (an
            adaptive attack that cannot run through a defence); they do not enter there.

    Returns:
        Rows with the key columns (``attack`` = :data:`WORST_CASE`), the winning row's
        metric columns (only ``recovered_dice`` NaN when every attack gave NaN),
        ``worst_attack`` and ``worst_adaptive``, ordered by defence then sample as first
        seen.

    Raises:
        ValueError: ``entrants`` is empty, or a (defence, sample) lacks the row of an
            entrant (the attack rows of the pair are not all stored yet).

    Example:
        >>> r = [dict(model="m", dataset="d", attack=a, adaptive=ad, defense="fr",
        ...           sample="s", recovered_dice=v) for a, ad, v in
        ...      (("pgd", False, 0.4), ("asma", False, 0.2), ("pgd", True, 0.2))]
        >>> w = worst_case_rows(r, [("pgd", False), ("asma", False), ("pgd", True)], "m", "d")
        >>> w[0]["attack"], w[0]["worst_attack"], w[0]["worst_adaptive"], w[0]["adaptive"]
        ('worst-case', 'asma', 0.0, 1)
    """
    if not entrants:
        raise ValueError("entrants: expected at least one attack for the worst case, got none")
    rank = {(a, bool(ad)): i for i, (a, ad) in enumerate(entrants)}
    cells: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    for row in rows:
        if row["model"] != model or row["dataset"] != dataset:
            continue
        i = rank.get((row["attack"], bool(row["adaptive"])))
        if i is not None:
            cells.setdefault((row["defense"], row["sample"]), {})[i] = row
    any_adaptive = int(any(ad for _, ad in entrants))
    out = []
    for (defense, sample), by_rank in cells.items():
        ran = [i for i, (a, ad) in enumerate(entrants) if (a, ad, defense) not in skip]
        missing = [entrants[i][0] for i in ran if i not in by_rank]
        if missing:
            raise ValueError(
                f"worst case: {model} / {dataset} / {defense} / {sample} lacks the row(s) of "
                f"{', '.join(missing)}; run the evaluation to the end first"
            )
        scored = [(_value(by_rank[i]), i) for i in ran]
        finite = [(v, i) for v, i in scored if not math.isnan(v)]
        key = dict(
            zip(
                KEY_COLUMNS,
                (model, dataset, WORST_CASE, any_adaptive, defense, sample),
                strict=True,
            )
        )
        if not finite:
            out.append({**key, SCORE: math.nan, "worst_attack": None, "worst_adaptive": math.nan})
            continue
        _, win = min(finite)  # lowest value, then lowest rank
        winner = by_rank[win]
        metrics = {k: v for k, v in winner.items() if k not in KEY_COLUMNS}
        metrics.update(worst_attack=entrants[win][0], worst_adaptive=float(entrants[win][1]))
        out.append({**key, **metrics})
    return out


def _label(attack: str, adaptive: bool) -> str:
    return f"{attack} (adaptive)" if adaptive else attack


def worst_case_html(
    rows: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]], esc
) -> list[str]:
    """The report's opening section: worst-case recovered Dice per defence, and wins.

    Args:
        rows: per-sample rows (worst-case rows carry ``worst_attack``/``worst_adaptive``).
        summary: :func:`~segshield.evaluation.summary.summarize` of ``rows``.
        esc: HTML escaper.

    Returns:
        HTML fragments; empty when the run has no worst-case rows.

    Example:
        >>> import html
        >>> r = dict(model="m", dataset="d", attack="worst-case", adaptive=False,
        ...          defense="fr", sample="s", recovered_dice=0.25, worst_attack="pgd",
        ...          worst_adaptive=0.0)
        >>> s = dict(r, n=1, recovered_dice_nan=0)
        >>> "0.250" in "".join(worst_case_html([r], [s], html.escape))
        True
    """
    worst = [s for s in summary if s["attack"] == WORST_CASE]
    if not worst:
        return []
    entrants = {(r["attack"], bool(r["adaptive"])) for r in summary if r["attack"] != WORST_CASE}
    entrants.discard(("none", False))
    adaptive = sorted(a for a, ad in entrants if ad)
    plain = sorted(a for a, ad in entrants if not ad)
    wins: dict[tuple, Counter] = {}
    for r in rows:
        if r["attack"] == WORST_CASE and r.get("worst_attack") is not None:
            cell = (r["model"], r["dataset"], r["defense"])
            wins.setdefault(cell, Counter())[
                _label(r["worst_attack"], r["worst_adaptive"] == 1)
            ] += 1
    head = "".join(
        f"<th>{h}</th>" for h in ("model", "dataset", "defence", "n", "worst-case recovered Dice")
    )
    body = []
    for s in worst:
        cell = (s["model"], s["dataset"], s["defense"])
        mean = s.get(SCORE, math.nan)
        nan = s.get(f"{SCORE}_nan", 0)
        text = "nan" if math.isnan(mean) else f"{mean:.3f}"
        text += f" ({nan} NaN)" if nan else ""
        won = ", ".join(f"{esc(a)}: {k}" for a, k in sorted(wins.get(cell, Counter()).items()))
        body.append(
            "<tr>"
            + "".join(f'<td class="k">{esc(v)}</td>' for v in cell)
            + f"<td>{s['n']}</td><td><b>{text}</b></td><td class='k'>{won or '&ndash;'}</td></tr>"
        )
    return [
        "<h2>Worst case per image</h2>",
        "<p>For each sample, the attack with the lowest recovered Dice among those run "
        "defines its worst case; the table gives the mean over samples per defence. "
        f"Attacks in the worst case: {esc(', '.join(plain) or 'none')} (on the bare model)"
        f"; adaptive (through each defence): {esc(', '.join(adaptive) or 'none')}.</p>",
        f'<table class="worst"><tr>{head}<th>wins (samples per attack)</th></tr>',
        *body,
        "</table>",
    ]
