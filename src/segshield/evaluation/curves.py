"""Robustness curves: recovered Dice and target IoU against the achieved perturbation size.

A sweep (``pgd:eps={1,2,4,8,16}/255``, :mod:`segshield.attacks.sweep`) stores one attack
per value. :func:`attack_families` groups the attack specs of a run back into families:
specs with the same attack name and the same keys, the keys whose values differ between
them replaced by ``*`` (``pgd:eps=*,steps=10``). A family of two or more attacks is a
curve: :func:`curve_points` gives one point per (model, dataset, family, defence,
adaptive, attack), x = the achieved mean L-inf and L2 of the adversarial images (after
the 8-bit round trip, as stored), y = the mean recovered Dice, the attack's target IoU
(of the bare model on the adversarial image) and the target IoU after the defence (of the
model on the defended adversarial image: how much of the attack's goal survives that
defence), sorted by L-inf. :func:`curve_section` draws one figure per (model, dataset,
family) for the HTML report.

Two differently set attacks of one name and key set (``pgd:eps=4/255,steps=10`` and
``pgd:eps=8/255,steps=40``) fall into one family with both keys starred; run such
comparisons as separate sweeps with different key sets, or read the JSON points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from segshield._spec import split_spec
from segshield.evaluation.config import NO_ATTACK
from segshield.evaluation.summary import format_summary
from segshield.evaluation.worst_case import WORST_CASE

__all__ = ["CURVE_KEYS", "attack_families", "curve_points", "curve_section", "curves_json"]

#: Keys of every curve point, in this order (``segshield report --format json --curves``).
CURVE_KEYS = (
    "model",
    "dataset",
    "attack",
    "defense",
    "adaptive",
    "linf",
    "l2",
    "recovered_dice",
    "attack_target_iou",
    "recovered_target_iou",
    "family",
    "n",
)


def _parts(spec: str) -> tuple[str, list[tuple[str, str]]]:
    return split_spec(spec, lambda part: f"attack spec {spec!r}: {part!r} is not key=value")


def attack_families(specs: Iterable[str]) -> dict[str, str]:
    """The family of each attack spec: same name and keys, differing values starred.

    Args:
        specs: attack spec strings, as stored (``none`` and ``worst-case`` included or not).

    Returns:
        spec -> family, e.g. ``"pgd:eps=*,steps=10"``; a spec with no sibling is its own
        family.

    Raises:
        ValueError: a spec part that is not ``key=value``.

    Example:
        >>> fam = attack_families(["pgd:eps=1/255,steps=10", "pgd:eps=2/255,steps=10", "asma"])
        >>> fam["pgd:eps=2/255,steps=10"], fam["asma"]
        ('pgd:eps=*,steps=10', 'asma')
    """
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[str, list[tuple[str, str]]]]] = {}
    for spec in dict.fromkeys(specs):
        name, pairs = _parts(spec)
        groups.setdefault((name, tuple(k for k, _ in pairs)), []).append((spec, pairs))
    out = {}
    for (name, keys), members in groups.items():
        if len(members) == 1:
            out[members[0][0]] = members[0][0]
            continue
        swept = {k for i, k in enumerate(keys) if len({m[1][i][1] for m in members}) > 1}
        text = ",".join(f"{k}={'*' if k in swept else v}" for k, v in members[0][1])
        for spec, _ in members:
            out[spec] = f"{name}:{text}" if text else name
    return out


def curve_points(summary: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The curve points of a run's summary rows (families of two or more attacks only).

    Args:
        summary: rows of :func:`segshield.evaluation.summary.summarize` (means per
            model, dataset, attack, adaptive, defence); rows of attack ``none`` and
            ``worst-case`` are left out.

    Returns:
        One dict per point with the keys :data:`CURVE_KEYS` (``adaptive`` a bool; a
        metric missing from the rows is NaN), grouped by (model, dataset, family,
        defence, adaptive) in order of first appearance and sorted by ``linf`` within
        a group.

    Example:
        >>> rows = [dict(model="m", dataset="d", attack=f"pgd:eps={e}/255", adaptive=False,
        ...              defense="fr", n=4, linf=e / 255, l2=e / 50, recovered_dice=1 - e / 20,
        ...              attack_target_iou=e / 16) for e in (4, 1, 2)]
        >>> [(p["attack"], p["family"]) for p in curve_points(rows)][:2]
        [('pgd:eps=1/255', 'pgd:eps=*'), ('pgd:eps=2/255', 'pgd:eps=*')]
    """
    rows = [r for r in summary if r["attack"] not in (NO_ATTACK, WORST_CASE)]
    families = attack_families(r["attack"] for r in rows)
    sizes: dict[str, int] = {}
    for fam in families.values():
        sizes[fam] = sizes.get(fam, 0) + 1
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        fam = families[r["attack"]]
        if sizes[fam] < 2:
            continue
        point = {k: r.get(k, math.nan) for k in CURVE_KEYS[:-2]}
        point.update(adaptive=bool(r["adaptive"]), family=fam, n=int(r.get("n", 0)))
        key = (r["model"], r["dataset"], fam, r["defense"], point["adaptive"])
        groups.setdefault(key, []).append(point)
    out = []
    for points in groups.values():
        out += sorted(points, key=lambda p: (math.isnan(p["linf"]), p["linf"]))
    return out


def curves_json(points: Iterable[Mapping[str, Any]]) -> str:
    """The points as a JSON list (NaN written as ``null``, as the summary's JSON does).

    Example:
        >>> import json
        >>> json.loads(curves_json([{"attack": "pgd:eps=1/255", "linf": float("nan")}]))
        [{'attack': 'pgd:eps=1/255', 'linf': None}]
    """
    return format_summary(list(points), "json")


def _lines(points: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One line per (defence, adaptive) of one family: its values under ``keys``."""
    lines: dict[tuple[str, bool], dict[str, Any]] = {}
    for p in points:
        line = lines.setdefault(
            (p["defense"], p["adaptive"]),
            {"defense": p["defense"], "adaptive": p["adaptive"], "points": []},
        )
        line["points"].append(p)
    for line in lines.values():
        for key in keys:
            line[key] = [float(p[key]) for p in line["points"]]
        del line["points"]
    return list(lines.values())


def curve_section(
    summary: Iterable[Mapping[str, Any]], embed: Callable[[str, Any], str]
) -> list[str]:
    """The report's robustness-curve section: one figure per (model, dataset, family).

    Args:
        summary: summary rows (:func:`curve_points` reads them).
        embed: ``embed(name, figure) -> html`` of the report (its figure collector).

    Returns:
        HTML fragments; empty when the run holds no sweep.
    """
    from segshield.plotting.curves import LINE_KEYS, curves_figure

    points = curve_points(summary)
    if not points:
        return []
    parts = [
        "<h2>Robustness curves</h2><p>Per attack sweep: recovered Dice and the target IoU "
        "after the defence (the model on the defended adversarial image; for no defence, "
        "the attack's own target IoU) against the achieved mean L-inf and L2 of the "
        "adversarial images; one line per defence, dashed where the attack ran through the "
        "defence (adaptive). Points are means over the samples. A lower target IoU after "
        "a defence means less of the attack's goal survives it.</p>"
    ]
    figs: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for p in points:
        figs.setdefault((p["model"], p["dataset"], p["family"]), []).append(p)
    for (model, dataset, family), members in figs.items():
        fig = curves_figure(f"{model} / {dataset} / {family}", _lines(members, LINE_KEYS))
        parts.append(embed(f"curves_{model}_{dataset}_{family}", fig))
    return parts
