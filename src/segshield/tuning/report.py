"""The report of the FR table search: held-out rows, Pareto rows and the result.

The tuned and the paper's table (Liu et al., MICCAI 2020; docs/ALGORITHMS.md §2) are
scored on the held-out split beside no defence and JPEG, with the per-image paired
difference tuned minus paper (mean and standard error), and so are the tables of the
validation Pareto front (or, on request, every table of the search) for a held-out
trade-off plot. With several colour spaces searched, the best table of each is reported
too (``tuned:rgb``, ``tuned:ycbcr``); every FR row is compared with every JPEG quality
on the same held-out images (:func:`jpeg_comparison`). :class:`TuneResult` is the
outcome, written as an FR table file that
:meth:`~segshield.defenses.fr.FrequencyRefinement.from_file` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from segshield._version import __version__
from segshield.tuning.config import TuneConfig, TuneData
from segshield.tuning.objective import candidates_dice, nan_mean, paired_difference
from segshield.tuning.pareto import dominating, pareto_front
from segshield.tuning.scoring import variant_dice
from segshield.tuning.space import PAPER_CANDIDATE, Candidate

__all__ = [
    "TuneResult",
    "heldout_report",
    "jpeg_comparison",
    "tables_beating_paper",
    "evaluation_rows",
]

# Entries of the tune JSON that FrequencyRefinement.to_file writes itself.
_FR_KEYS = ("format", "version", "table", "pad", "space", "subsample")


@dataclass
class TuneResult:
    """Outcome of :func:`~segshield.tuning.search.tune_table`.

    Attributes:
        table: tuned table, ``(8, 8)``, or ``(C, 8, 8)`` with per-channel scales.
        candidate: its band layout and steps.
        feasible: whether it meets the benign-loss bound on the validation split.
        validation: rows ``paper`` and ``tuned`` on the validation split.
        heldout: rows ``identity``, ``paper``, ``tuned``, ``jpeg:q=..`` (held-out split),
            each with ``benign_loss``, ``recovered_dice``, ``clean_dice``.
        heldout_difference: tuned minus paper on the held-out split, per image, for
            ``benign_loss`` and ``recovered_dice``: ``mean``, standard error ``se`` and
            ``n`` images. A gap within about two standard errors is not told apart from
            noise.
        jpeg_comparison: each FR row of ``heldout`` against each JPEG quality there
            (:func:`jpeg_comparison`); empty without JPEG qualities.
        pareto: held-out rows of the named defences (``kind`` ``"named"``), of the
            validation Pareto front (``"front"``) and of the tuned table, or with
            ``heldout_all`` every table, when not on that front (``"scored"``), with
            ``label`` and ``on_front``.
        evaluations: validation evaluations (candidate, benign loss, recovery).
        n_evaluated: evaluations computed in this run; n_cached: taken from the cache.
        config, seed: settings of the run.
    """

    table: torch.Tensor
    candidate: Candidate
    feasible: bool
    validation: dict[str, dict[str, float]]
    heldout: dict[str, dict[str, float]]
    heldout_difference: dict[str, dict[str, float]]
    pareto: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]
    n_evaluated: int
    n_cached: int
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    jpeg_comparison: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON written by ``segshield tune`` (loadable by ``FrequencyRefinement``)."""
        return {
            "format": "segshield-fr-table",
            "version": 1,
            "segshield_version": __version__,
            "table": self.table.tolist(),
            "pad": self.config.get("pad", "edge"),
            **self._space_entries(),
            "layout": asdict(self.candidate),
            "feasible": self.feasible,
            "seed": self.seed,
            "config": self.config,
            "validation": self.validation,
            "heldout": self.heldout,
            "heldout_difference": self.heldout_difference,
            "jpeg_comparison": self.jpeg_comparison,
            "pareto": self.pareto,
            "evaluations": {"new": self.n_evaluated, "cached": self.n_cached},
        }

    def _space_entries(self) -> dict[str, str]:
        """``space`` and ``subsample`` as the FR table file has them (none for RGB)."""
        c = self.candidate
        return {} if c.space == "rgb" else {"space": c.space, "subsample": c.subsample}

    def defense(self):
        """The tuned table as a :class:`~segshield.defenses.fr.FrequencyRefinement`."""
        from segshield.defenses.fr import FrequencyRefinement

        pad = self.config.get("pad", "edge")
        return FrequencyRefinement.from_table(self.table, pad=pad, **self._space_entries())

    def to_file(self, path: str | Path, **config: Any) -> None:
        """Write the tune JSON through :meth:`FrequencyRefinement.to_file` (atomically).

        The file is an FR table file (``FrequencyRefinement.from_file`` reads it) that
        also holds the report of :meth:`to_dict`.

        Args:
            path: destination ``.json`` file.
            **config: entries added to the ``config`` record (e.g. the data spec).
        """
        data = self.to_dict()
        data["config"] = {**data["config"], **config}
        self.defense().to_file(path, extra={k: v for k, v in data.items() if k not in _FR_KEYS})


def evaluation_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation rows as JSON: ``layout`` instead of the candidate, no per-image losses."""
    return [
        {
            "layout": asdict(r["candidate"]),
            **{k: v for k, v in r.items() if k not in ("candidate", "benign_per_image")},
        }
        for r in rows
    ]


def tables_beating_paper(pareto: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The FR tables of a held-out Pareto list that beat the paper's table there.

    A table beats it when its benign loss is lower or equal and its recovered Dice
    higher or equal, one of the two strictly (:func:`~segshield.tuning.pareto.dominating`).

    Args:
        pareto: ``TuneResult.pareto`` or the ``pareto`` list of the tune JSON; the tables
            are its rows of kind ``"front"`` and ``"scored"`` other than the paper's.

    Returns:
        The beating rows and the number of tables compared.

    Raises:
        ValueError: no ``paper`` row.

    Example:
        >>> from dataclasses import replace
        >>> paper = {"label": "paper", "kind": "named", "benign_loss": 0.0, "recovered_dice": 0.5}
        >>> harder = asdict(replace(PAPER_CANDIDATE, gd=80.0))
        >>> rows = [paper, {"kind": "scored", "layout": harder, "benign_loss": 0.0,
        ...     "recovered_dice": 0.6}]
        >>> beating, n = tables_beating_paper(rows)
        >>> [r["layout"]["gd"] for r in beating], n
        ([80.0], 1)
    """
    paper = [r for r in pareto if r.get("label") == "paper"]
    if not paper:
        raise ValueError("pareto: expected a row labelled 'paper', got none")
    tables = [
        r
        for r in pareto
        if r.get("kind") in ("front", "scored")
        and Candidate.from_layout(r["layout"]) != PAPER_CANDIDATE
    ]
    points = [(r["benign_loss"], r["recovered_dice"]) for r in [paper[0], *tables]]
    return [tables[j - 1] for j in dominating(points, 0)], len(tables)


def jpeg_comparison(
    heldout: dict[str, dict[str, float]],
    per_image: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, Any]:
    """Each FR row of a held-out table against each JPEG quality there.

    For an FR row: ``dominates`` (the JPEG labels it dominates: benign loss lower or
    equal and recovered Dice higher or equal), ``dominates_every_jpeg``, ``target_met``
    (some JPEG quality is at least as lossy, and none of those recovers more: an FR
    lossier than every JPEG quality does not meet it), ``beaten_by`` (the JPEG labels at
    least as lossy that recover more) and,
    with ``per_image``, ``paired`` differences FR minus JPEG, per image (mean, standard
    error, n) of ``benign_loss`` and ``recovered_dice``.

    Args:
        heldout: rows ``label -> {"benign_loss", "recovered_dice", ...}``; the JPEG rows
            are labelled ``jpeg:q=..``, the FR rows are the others but ``identity``.
        per_image: optional ``label -> (benign Dice, recovered Dice)`` per image.

    Returns:
        ``{fr_label: {...}}``; empty without JPEG rows.

    Example:
        >>> rows = {"tuned": {"benign_loss": 0.01, "recovered_dice": 0.5},
        ...     "jpeg:q=50": {"benign_loss": 0.02, "recovered_dice": 0.4},
        ...     "jpeg:q=90": {"benign_loss": 0.005, "recovered_dice": 0.45}}
        >>> c = jpeg_comparison(rows)["tuned"]
        >>> c["dominates"], c["target_met"], c["beaten_by"], c["dominates_every_jpeg"]
        (['jpeg:q=50'], True, [], False)
    """
    jpegs = [k for k in heldout if k.startswith("jpeg:")]
    if not jpegs:
        return {}
    out: dict[str, Any] = {}
    for label, fr in heldout.items():
        if label == "identity" or label in jpegs:
            continue
        ben, rec = fr["benign_loss"], fr["recovered_dice"]
        as_lossy = [j for j in jpegs if heldout[j]["benign_loss"] >= ben]
        beaten = [j for j in as_lossy if heldout[j]["recovered_dice"] > rec]
        dominated = [j for j in as_lossy if heldout[j]["recovered_dice"] <= rec]
        entry: dict[str, Any] = {
            "dominates": dominated,
            "dominates_every_jpeg": len(dominated) == len(jpegs),
            "target_met": bool(as_lossy) and not beaten,
            "beaten_by": beaten,
        }
        if per_image is not None and label in per_image:
            (fb, fr_rec) = per_image[label]
            entry["paired"] = {
                j: {
                    "benign_loss": paired_difference(per_image[j][0], fb),
                    "recovered_dice": paired_difference(fr_rec, per_image[j][1]),
                }
                for j in jpegs
            }
        out[label] = entry
    return out


def _row(clean: torch.Tensor, benign: torch.Tensor, recovered: torch.Tensor) -> dict[str, float]:
    return {
        "benign_loss": nan_mean(clean - benign),
        "recovered_dice": nan_mean(recovered),
        "clean_dice": nan_mean(clean),
    }


def _score_transform(model, transform: Callable, data: TuneData, adv, regions, bs) -> torch.Tensor:
    """Per-image benign and recovered Dice ``(2, B)`` of a defence given as a transform."""
    with torch.no_grad():
        return variant_dice(
            model,
            torch.stack([transform(data.heldout_images), transform(adv)]),
            data.heldout_masks,
            regions,
            bs,
        )


def _pareto_rows(
    heldout: dict[str, dict[str, float]],
    front: list[Candidate],
    scored: list[Candidate],
    by_key: dict[str, dict[str, float]],
) -> list[dict[str, Any]]:
    """Named rows, then the validation front, then the other scored tables, marked."""
    pareto = [{"label": label, "kind": "named", **row} for label, row in heldout.items()]
    pareto += [
        {"label": "front", "kind": "front", "layout": asdict(c), **by_key[c.key()]} for c in front
    ]
    on_val_front = set(front)
    pareto += [
        {"label": "table", "kind": "scored", "layout": asdict(c), **by_key[c.key()]}
        for c in scored
        if c not in on_val_front
    ]
    front_idx = set(pareto_front([(p["benign_loss"], p["recovered_dice"]) for p in pareto]))
    for i, p in enumerate(pareto):
        p["on_front"] = i in front_idx
    return pareto


def heldout_report(
    model: torch.nn.Module,
    data: TuneData,
    adversarial: torch.Tensor,
    rows: Sequence[dict[str, Any]],
    tuned: Candidate,
    regions: dict[str, tuple[int, ...]],
    config: TuneConfig,
    per_space: dict[str, Candidate] | None = None,
) -> dict[str, Any]:
    """Held-out rows, the paired tuned-minus-paper difference and the Pareto rows.

    Args:
        model: the undefended model.
        data: the splits; the held-out one is scored.
        adversarial: held-out adversarial images ``(B, C, H, W)``.
        rows: the validation evaluation rows (their front is scored here).
        tuned: the chosen table.
        regions: Dice regions.
        config: the search settings (``pad``, ``batch_size``, ``jpeg_qualities``,
            ``heldout_all``).
        per_space: the best table of each colour space searched, reported as
            ``tuned:SPACE`` rows; default None (none).

    Returns:
        The :class:`TuneResult` fields ``heldout``, ``heldout_difference``,
        ``jpeg_comparison`` and ``pareto``.
    """
    bs = config.batch_size
    points = [(r["benign_loss"], r["recovered_dice"]) for r in rows]
    front = [rows[i]["candidate"] for i in pareto_front(points)]
    # Tables scored on the held-out split besides the front: the tuned one, or all.
    scored = [r["candidate"] for r in rows] if config.heldout_all else [tuned]
    per_space = per_space or {}
    cands = list(dict.fromkeys([PAPER_CANDIDATE, tuned, *per_space.values(), *front, *scored]))
    images, masks = data.heldout_images, data.heldout_masks
    with torch.no_grad():
        clean = variant_dice(model, images, masks, regions, bs)[0]
        kw = {"pad": config.pad, "batch_size": bs}
        ben = candidates_dice(model, images, masks, cands, regions, **kw)
        rec = candidates_dice(model, adversarial, masks, cands, regions, **kw)
        adv_dice = variant_dice(model, adversarial, masks, regions, bs)[0]
    by_key = {c.key(): _row(clean, ben[i], rec[i]) for i, c in enumerate(cands)}
    # Per-image paired differences, tuned minus paper: is the gap larger than its noise?
    i_paper, i_tuned = cands.index(PAPER_CANDIDATE), cands.index(tuned)
    difference = {
        "benign_loss": paired_difference(ben[i_paper], ben[i_tuned]),
        "recovered_dice": paired_difference(rec[i_tuned], rec[i_paper]),
    }
    heldout = {
        "identity": {
            "benign_loss": 0.0,
            "recovered_dice": nan_mean(adv_dice),
            "clean_dice": nan_mean(clean),
        }
    }
    heldout["paper"] = by_key[PAPER_CANDIDATE.key()]
    heldout["tuned"] = by_key[tuned.key()]
    labels = {"paper": PAPER_CANDIDATE, "tuned": tuned}
    for name, c in per_space.items():
        heldout[f"tuned:{name}"] = by_key[c.key()]
        labels[f"tuned:{name}"] = c
    per_image = {k: (ben[cands.index(c)], rec[cands.index(c)]) for k, c in labels.items()}
    if config.jpeg_qualities:
        from segshield.defenses import get_defense

        for q in config.jpeg_qualities:
            label = f"jpeg:q={int(q)}"
            d = _score_transform(model, get_defense(label), data, adversarial, regions, bs)
            heldout[label] = _row(clean, d[0], d[1])
            per_image[label] = (d[0], d[1])
    pareto = _pareto_rows(heldout, front, scored, by_key)
    return {
        "heldout": heldout,
        "heldout_difference": difference,
        "jpeg_comparison": jpeg_comparison(heldout, per_image),
        "pareto": pareto,
    }
