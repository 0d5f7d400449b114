"""Search the FR quantisation table for a data set and model (seeded, resumable, cheap).

Liu et al. (MICCAI 2020) hand-picked three bands (PD, AC, GD) and their steps. This
search tunes the band layout, the steps and, for colour images, a factor per channel or
the colour space (RGB, or luma and chroma; :mod:`segshield.tuning.space`) to maximise
the recovered Dice under an attack, subject to a benign Dice loss bound on a validation
split (:mod:`segshield.tuning.objective`), then reports the tuned and the paper's table
on a held-out split (:mod:`segshield.tuning.report`). docs/ALGORITHMS.md §2 describes
FR.

Method: adversarial images are computed once per split (attack on the undefended model);
each candidate table is then a batched FR pass plus a model forward. A seeded random
sample of the grid (always including the paper's table, and with the YCbCr space the
paper's table on luma and chroma) is followed by coordinate descent on the best feasible
candidate, in each colour space searched (the budget left shared equally). Feasible
means the benign-loss bound holds with a margin of ``benign_se`` standard errors of the
per-image losses (paired with the paper table's losses when the bound is the paper's),
because on a few dozen validation images a table's benign loss is noisy. Optionally, the
few best candidates are re-scored against an adaptive BPDA attack on the defended model
(docs/ALGORITHMS.md §4), and the final choice maximises the worse of the two recoveries.
Every evaluation goes to a JSON-lines cache, so a rerun skips what was already
evaluated.
"""

from __future__ import annotations

import logging
import random
import warnings
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from segshield._deprecation import moved_names
from segshield.tuning import config as _config
from segshield.tuning import report as _report
from segshield.tuning import space as _space
from segshield.tuning.cache import EvalCache, cached_tensor, fingerprint
from segshield.tuning.config import TuneConfig, TuneData
from segshield.tuning.objective import Evaluator, Feasibility, adaptive_recovery
from segshield.tuning.scoring import adversarial_examples, default_regions

if TYPE_CHECKING:
    from segshield.tuning.report import TuneResult
    from segshield.tuning.space import SearchSpace

__all__ = ["tune_table"]

log = logging.getLogger(__name__)

_DATA_FIELDS = tuple(f.name for f in fields(TuneData))


def tune_table(
    model: torch.nn.Module,
    data: TuneData | None = None,
    config: TuneConfig | None = None,
    *,
    table_scorer: Any = None,
    **legacy: Any,
) -> TuneResult:
    """Tune the FR table to maximise recovered Dice under a benign-loss bound.

    Liu et al. (MICCAI 2020) fixed the PD/AC/GD bands and steps by hand; this search
    picks layout and steps for the given model and data (see the module docstring for
    the method). Benign loss = mean clean Dice minus mean Dice on refined clean images;
    recovered Dice = mean Dice on refined adversarial images (docs/ALGORITHMS.md §5).

    Args:
        model: segmentation model on ``[0, 1]`` images (switched to eval mode).
        data: the validation and held-out splits (:class:`~segshield.tuning.config.TuneData`).
        config: the settings (:class:`~segshield.tuning.config.TuneConfig`). Default
            None: ``TuneConfig()``.
        table_scorer: scores batches of candidate tables (see
            :class:`~segshield.tuning.objective.Evaluator`): ``None`` in this process,
            or a :class:`~segshield.tuning.parallel.RayTableScorer` for a Ray cluster
            (the adversarial images are still computed once, here, and shared).
        **legacy: deprecated: the fields of ``TuneData`` and ``TuneConfig`` as keyword
            arguments (``val_images=..., budget=...``), the former call form; warns.

    Returns:
        A :class:`~segshield.tuning.report.TuneResult`; ``to_dict()`` is the
        ``segshield tune`` JSON and ``to_file(path)`` writes it as an FR table file.

    Raises:
        TypeError, ValueError: bad inputs or settings; a cache written for other inputs.

    Example:
        >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> x = torch.rand(4, 1, 16, 16); m = (x[:, 0] > 0.5).long()
        >>> adv = (x + 0.02 * torch.randn_like(x)).clamp(0, 1)
        >>> data = TuneData(x, m, x, m, val_adversarial=adv, heldout_adversarial=adv)
        >>> res = tune_table(net, data, TuneConfig(budget=4, jpeg_qualities=()))
        >>> sorted(res.heldout)
        ['identity', 'paper', 'tuned']
    """
    data, config = _arguments(data, config, legacy)
    model.eval()
    regions = config.regions if config.regions is not None else _model_regions(model, data)
    val_adv = _adversarial(model, data, config, "val")
    held_adv = _adversarial(model, data, config, "heldout")
    record = config.record(regions, data)
    x, m = data.val_images, data.val_masks
    fp = fingerprint(model, x, m, val_adv, {k: record[k] for k in ("pad", "regions")})
    store = EvalCache(config.cache, fp, resume=config.resume)
    ev = Evaluator(
        model, x, m, val_adv, regions, config.pad, config.batch_size, store, table_scorer
    )
    # 1. Seeded coarse sample of the grid, always with the paper's table.
    ev.evaluate(_coarse_sample(config.space, data.channels, config.budget, config.seed))
    paper_row = ev.seen[_space.PAPER_CANDIDATE.key()]
    objective = Feasibility.from_rule(config.max_benign_loss, config.benign_se, paper_row)
    if objective.paired:
        log.info("benign-loss bound: the paper table's validation loss %.4f", objective.bound)
    record["benign_loss_bound"] = objective.bound
    # 2. Coordinate descent from the best candidate until no neighbour improves.
    ranked = _descend(ev, config.space, data.channels, config.budget, objective)
    # 3. Optional adaptive objective on the few best feasible tables.
    chosen = _adaptive_choice(model, ranked, ev, store, config, objective)
    feasible = objective.feasible(chosen)
    if not feasible:
        log.warning(
            "no table met the benign-loss bound %.4f (with a margin of %g standard errors) "
            "on the validation split; the best found has loss %.4f (widen the search, "
            "raise the bound or lower --benign-se)",
            objective.bound,
            config.benign_se,
            chosen["benign_loss"],
        )
    tuned = chosen["candidate"]
    validation = {"tuned": _validation_row(chosen), "paper": _validation_row(paper_row)}
    # 4. Held-out report: identity, paper, tuned, JPEG, and the validation Pareto front.
    rows = list(ev.seen.values())
    best = _best_per_space(ranked) if len(config.space.searched_spaces(data.channels)) > 1 else {}
    if best:  # the best table of each colour space, as defence specs
        record["tuned_per_space"] = {k: c.defense(config.pad).spec() for k, c in best.items()}
    report = _report.heldout_report(
        model, data, held_adv, rows, tuned, regions, config, per_space=best
    )
    heldout = report["heldout"]
    log.info(
        "tuned table: %s; held-out recovered Dice %.4f (paper %.4f), benign loss %.4f "
        "(paper %.4f); %d new evaluations, %d cached",
        tuned.key(),
        heldout["tuned"]["recovered_dice"],
        heldout["paper"]["recovered_dice"],
        heldout["tuned"]["benign_loss"],
        heldout["paper"]["benign_loss"],
        ev.n_new,
        ev.n_cached,
    )
    return _report.TuneResult(
        table=tuned.table(),
        candidate=tuned,
        feasible=feasible,
        validation=validation,
        **report,
        evaluations=_report.evaluation_rows(rows),
        n_evaluated=ev.n_new,
        n_cached=ev.n_cached,
        seed=config.seed,
        config=record,
    )


def _arguments(
    data: TuneData | None, config: TuneConfig | None, legacy: dict[str, Any]
) -> tuple[TuneData, TuneConfig]:
    """``(data, config)`` checked, or built from the deprecated keyword arguments."""
    if legacy:
        if data is not None or config is not None:
            raise TypeError(
                "tune_table: pass data and config, or the deprecated keyword arguments, "
                f"not both (got {sorted(legacy)})"
            )
        warnings.warn(
            "tune_table(model, val_images=..., ...) is deprecated and goes in the next "
            "release; use tune_table(model, TuneData(...), TuneConfig(...))",
            DeprecationWarning,
            stacklevel=3,
        )
        data = TuneData(**{k: legacy.pop(k) for k in _DATA_FIELDS if k in legacy})
        return data, TuneConfig(**legacy)
    if not isinstance(data, TuneData):
        raise TypeError(f"data: expected a TuneData, got {type(data).__name__}")
    if config is not None and not isinstance(config, TuneConfig):
        raise TypeError(f"config: expected a TuneConfig or None, got {type(config).__name__}")
    return data, TuneConfig() if config is None else config


def _model_regions(model: torch.nn.Module, data: TuneData) -> dict[str, tuple[int, ...]]:
    """Each foreground class of the model as a region (from one forward pass)."""
    with torch.no_grad():
        return default_regions(max(int(model(data.val_images[:1]).shape[1]), 2))


def _adversarial(model, data: TuneData, config: TuneConfig, split: str) -> torch.Tensor:
    """The split's given adversarial images, or the attack's (cached beside the cache file).

    The held-out split is attacked with ``seed + 1``; only an attack given by spec is
    cached on disk (``CACHE-STEM.{split}-adv.safetensors``).
    """
    given = getattr(data, f"{split}_adversarial")
    if given is not None:
        return given
    images, masks = getattr(data, f"{split}_images"), getattr(data, f"{split}_masks")
    seed = config.seed if split == "val" else config.seed + 1

    def compute():
        log.info("attacking %d %s images", images.shape[0], split)
        return adversarial_examples(
            model,
            images,
            masks,
            config.attack,
            targets=config.targets,
            seed=seed,
            batch_size=config.batch_size,
        )

    path = None
    if config.cache is not None and config.attack_name is not None:
        path = Path(config.cache).with_suffix(f".{split}-adv.safetensors")
    meta = {"attack": config.attack_name, "targets": config.targets, "seed": seed}
    fp = fingerprint(model, images, masks, meta)
    return cached_tensor(path, fp, compute, resume=config.resume).to(images.device, images.dtype)


def _coarse_sample(space: SearchSpace, channels: int, budget: int, seed: int) -> list:
    """The paper's table and a seeded sample of about ``budget / 2`` grid points."""
    rng = random.Random(seed)
    paper = _space.PAPER_CANDIDATE
    spaces = space.searched_spaces(channels)
    # the paper's RGB table always (the bound is its loss), and its YCbCr version
    firsts = [paper] + ([_space.PAPER_YCBCR] if "ycbcr" in spaces else [])
    shared = [c for c in space.shared_candidates() if c != paper]
    drawn = rng.sample(shared, min(len(shared), max(0, budget // 2 - len(firsts))))
    if spaces == ("rgb",):  # the draws of the search before colour spaces
        coarse = firsts + [space.dress(c, "rgb", rng, channels) for c in drawn]
    else:
        coarse = firsts + [space.dress(c, rng.choice(spaces), rng, channels) for c in drawn]
    return list(dict.fromkeys(coarse))[:budget]


def _descend(
    ev: Evaluator, space: SearchSpace, channels: int, budget: int, objective: Feasibility
) -> list[dict[str, Any]]:
    """Coordinate descent within the budget, from the best of each colour space in turn
    (each gets an equal share of the budget left); every row seen, best first."""
    rank = objective.rank_key
    seen_spaces = {r["candidate"].space for r in ev.seen.values()}
    spaces = [s for s in space.searched_spaces(channels) if s in seen_spaces]
    for i, name in enumerate(spaces):
        limit = len(ev.seen) + (budget - len(ev.seen)) // (len(spaces) - i)
        best = min((r for r in ev.seen.values() if r["candidate"].space == name), key=rank)
        while len(ev.seen) < limit:
            moves = space.neighbours(best["candidate"], channels)
            fresh = [n for n in moves if n.key() not in ev.seen][: limit - len(ev.seen)]
            if not fresh:
                break
            top = min(ev.evaluate(fresh), key=rank)
            if rank(top) >= rank(best):
                break
            best = top
    return sorted(ev.seen.values(), key=rank)


def _best_per_space(ranked: list[dict[str, Any]]) -> dict[str, Any]:
    """The best candidate of each colour space in ``ranked`` (rows, best first)."""
    out: dict[str, Any] = {}
    for row in ranked:
        out.setdefault(row["candidate"].space, row["candidate"])
    return out


def _adaptive_choice(
    model, ranked: list[dict[str, Any]], ev: Evaluator, store: EvalCache, config, objective
) -> dict[str, Any]:
    """The best row; with ``config.adaptive``, the best worse-of-two recovery of the pool.

    The pool is the ``adaptive_top_k`` best feasible rows plus the paper table's row
    (for comparison); each gets ``adaptive_recovered_dice``.
    """
    if not config.adaptive:
        return ranked[0]
    pool = [r for r in ranked if objective.feasible(r)][: config.adaptive_top_k]
    paper_key = _space.PAPER_CANDIDATE.key()
    if paper_key not in {r["candidate"].key() for r in pool}:
        pool.append(ev.seen[paper_key])
    for row in pool:
        row["adaptive_recovered_dice"] = adaptive_recovery(
            model, row["candidate"], ev, store, config.attack, config.targets, config.seed
        )
    feasible_pool = [r for r in pool if objective.feasible(r)]
    if not feasible_pool:
        return ranked[0]
    return max(feasible_pool, key=lambda r: min(r["recovered_dice"], r["adaptive_recovered_dice"]))


def _validation_row(row: dict[str, Any]) -> dict[str, float]:
    keys = ("benign_loss", "benign_ucb", "recovered_dice", "adaptive_recovered_dice")
    return {k: row[k] for k in keys if k in row}


__getattr__ = moved_names(
    __name__,
    {
        "Candidate": ("segshield.tuning.space.Candidate", lambda: _space.Candidate),
        "SearchSpace": ("segshield.tuning.space.SearchSpace", lambda: _space.SearchSpace),
        "PAPER_CANDIDATE": (
            "segshield.tuning.space.PAPER_CANDIDATE",
            lambda: _space.PAPER_CANDIDATE,
        ),
        "LAYOUTS": ("segshield.defenses.tables.TABLE_LAYOUTS", lambda: _space.TABLE_LAYOUTS),
        "TuneResult": ("segshield.tuning.report.TuneResult", lambda: _report.TuneResult),
        "tables_beating_paper": (
            "segshield.tuning.report.tables_beating_paper",
            lambda: _report.tables_beating_paper,
        ),
        "BOUND_RULES": ("segshield.tuning.config.BOUND_RULES", lambda: _config.BOUND_RULES),
        "band_table": (
            "segshield.defenses.tables.band_table(pd, ac, gd, pd_size, ac_size, layout=...), "
            "which returns float64",
            lambda: _space.layout_band_table,
        ),
    },
)
