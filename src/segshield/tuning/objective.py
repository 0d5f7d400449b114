"""The objective of the FR table search: scores, feasibility with a margin, paired gaps.

A candidate table is scored on the validation split by its benign Dice loss (mean
clean Dice minus mean Dice on refined clean images) and its recovered Dice (mean Dice
on refined adversarial images; docs/ALGORITHMS.md §5). It is feasible when the benign
loss bound holds with a margin of ``n_se`` standard errors of the per-image losses
(paired with the paper table's losses when the bound is the paper's): on a few dozen
validation images a table's benign loss is noisy. Candidates rank feasible first, then
by higher recovery, lower benign loss and their key. Every score goes through the
search's :class:`~segshield.tuning.cache.EvalCache`. RGB tables are scored many at a
time (:func:`~segshield.tuning.scoring.tables_dice`), YCbCr ones one by one through
their :class:`~segshield.defenses.fr.FrequencyRefinement` (:func:`candidates_dice`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from segshield.tuning.cache import EvalCache
from segshield.tuning.scoring import adversarial_examples, tables_dice, variant_dice
from segshield.tuning.space import Candidate, stack_tables

__all__ = [
    "Evaluator",
    "Feasibility",
    "adaptive_recovery",
    "candidates_dice",
    "mean_se",
    "paired_difference",
    "upper_bound",
]


@torch.no_grad()
def candidates_dice(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    cands: Sequence[Candidate],
    regions: dict[str, tuple[int, ...]],
    *,
    pad: str = "edge",
    batch_size: int = 32,
) -> torch.Tensor:
    """Dice of ``model`` on ``images`` refined by each candidate table, any colour space.

    RGB candidates go through the batched :func:`~segshield.tuning.scoring.tables_dice`
    (as always); YCbCr candidates through their own FR (:meth:`Candidate.defense`), so
    every score is the deployed defence's.

    Args:
        model: segmentation model on ``[0, 1]`` images.
        images: ``(B, C, H, W)`` in ``[0, 1]``; masks: ``(B, H, W)``.
        cands: the candidates.
        regions: Dice regions.
        pad: FR padding (default ``"edge"``).
        batch_size: images per forward pass (default 32).

    Shape:
        Returns ``(V, B)`` float64 on the CPU, in the order of ``cands``.

    Example:
        >>> from segshield.tuning.space import PAPER_CANDIDATE, PAPER_YCBCR
        >>> net = torch.nn.Conv2d(3, 1, 3, padding=1)
        >>> x = torch.rand(2, 3, 16, 16); m = (x[:, 0] > 0.5).long()
        >>> candidates_dice(net, x, m, [PAPER_CANDIDATE, PAPER_YCBCR], {"fg": (1,)}).shape
        torch.Size([2, 2])
    """
    out = torch.empty(len(cands), images.shape[0], dtype=torch.float64)
    rgb = [i for i, c in enumerate(cands) if c.space == "rgb"]
    if rgb:
        tables = stack_tables([cands[i] for i in rgb], images.shape[1])
        kw = {"pad": pad, "batch_size": batch_size}
        out[rgb] = tables_dice(model, images, masks, tables, regions, **kw)
    for i, c in enumerate(cands):
        if c.space != "rgb":
            refined = c.defense(pad).transform(images)
            out[i] = variant_dice(model, refined, masks, regions, batch_size)[0]
    return out


def nan_mean(t: torch.Tensor) -> float:
    """Mean of the non-NaN values, as a float (samples without a score left out)."""
    return float(t.nanmean())


def mean_se(values: torch.Tensor) -> tuple[float, float, int]:
    """Mean, standard error of the mean, and count of the non-NaN values.

    NaN entries (samples without a score, docs/ALGORITHMS.md §5) are left out; with
    fewer than two values the standard error is 0 (and the mean of no values is 0).

    Args:
        values: ``(N,)`` per-image values.

    Returns:
        ``(mean, se, n)``.

    Example:
        >>> m, se, n = mean_se(torch.tensor([0.0, 0.02, float("nan"), 0.04]))
        >>> round(m, 4), round(se, 4), n
        (0.02, 0.0115, 3)
    """
    v = values[~torch.isnan(values)]
    n = int(v.numel())
    if n == 0:
        return 0.0, 0.0, 0
    se = float(v.std() / math.sqrt(n)) if n > 1 else 0.0
    return float(v.mean()), se, n


def upper_bound(losses: torch.Tensor, n_se: float) -> float:
    """Mean of the per-image values plus ``n_se`` standard errors of that mean (NaN left out).

    Example:
        >>> round(upper_bound(torch.tensor([0.0, 0.02, float("nan"), 0.04]), 1.0), 4)
        0.0315
    """
    mean, se, _ = mean_se(losses)
    return mean + n_se * se


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Per-image ``a - b``: its mean, standard error and count (images scored by both).

    Example:
        >>> a = torch.tensor([0.5, 0.75, float("nan")], dtype=torch.float64)
        >>> paired_difference(a, torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64))
        {'mean': 0.125, 'se': 0.125, 'n': 2}
    """
    mean, se, n = mean_se(a - b)
    return {"mean": mean, "se": se, "n": n}


def per_image_losses(row: dict[str, Any]) -> torch.Tensor:
    """The per-image benign losses of an evaluation row (None, stored for NaN, back to NaN)."""
    return torch.tensor(
        [math.nan if v is None else v for v in row["benign_per_image"]], dtype=torch.float64
    )


@dataclass(frozen=True)
class Feasibility:
    """The benign-loss bound of the search with its standard-error margin.

    Attributes:
        bound: the benign-loss bound (the paper table's loss for the ``"paper"`` rule).
        n_se: margin in standard errors, >= 0.
        paper_losses: the paper table's per-image losses when the bound is paired with
            them (``"paper"``), else None.

    Example:
        >>> row = {"benign_per_image": [0.0, 0.02, 0.04], "recovered_dice": 0.5,
        ...     "benign_loss": 0.02, "candidate": None}
        >>> Feasibility(bound=0.05, n_se=1.0).feasible(row)
        True
    """

    bound: float
    n_se: float
    paper_losses: torch.Tensor | None = None

    @classmethod
    def from_rule(cls, rule: float | str, n_se: float, paper_row: dict[str, Any]):
        """The bound of ``max_benign_loss``: a number, or ``"paper"`` (paired with its row)."""
        if rule == "paper":
            return cls(float(paper_row["benign_loss"]), float(n_se), per_image_losses(paper_row))
        return cls(float(rule), float(n_se))

    @property
    def paired(self) -> bool:
        """Whether losses are compared per image with the paper table's."""
        return self.paper_losses is not None

    def margin_stat(self, row: dict[str, Any]) -> float:
        """Upper bound on the benign loss (paired: on the excess over the paper's).

        Stored in the row as ``benign_ucb``, which is reused after the first call.
        """
        if "benign_ucb" not in row:
            losses = per_image_losses(row)
            if self.paper_losses is not None:
                losses = losses - self.paper_losses
            row["benign_ucb"] = upper_bound(losses, self.n_se)
        return row["benign_ucb"]

    def feasible(self, row: dict[str, Any]) -> bool:
        """Whether the row meets the bound with its margin."""
        limit = 0.0 if self.paired else self.bound
        return self.margin_stat(row) <= limit + 1e-12

    def rank_key(self, row: dict[str, Any]) -> tuple:
        """Sort key, best first: feasible, higher recovery, lower benign loss, stable key."""
        c = row["candidate"]
        return (not self.feasible(row), -row["recovered_dice"], row["benign_loss"], c.key())


class Evaluator:
    """Scores candidate tables on the validation split, through the cache.

    Args:
        model: segmentation model (eval mode).
        images, masks, adversarial: the validation split and its adversarial images.
        regions: Dice regions.
        pad: FR padding mode.
        batch_size: images per forward pass.
        cache: the search's evaluation cache.
        scorer: scores a batch of tables:
            ``scorer(model, images, adversarial, masks, tables, regions, pad, batch_size)``
            returns ``(benign, recovered)`` Dice ``(V, B)``. Default ``None``: this
            process; :class:`~segshield.tuning.parallel.RayTableScorer` spreads them over
            a cluster.

    Attributes:
        seen: key -> row (``candidate``, ``benign_loss``, ``recovered_dice``,
            ``benign_per_image``), in the order of evaluation.
        n_new, n_cached: evaluations computed here and taken from the cache.
    """

    def __init__(
        self, model, images, masks, adversarial, regions, pad, batch_size, cache, scorer=None
    ):
        self.scorer = scorer
        self.model, self.images, self.masks, self.adv = model, images, masks, adversarial
        self.regions, self.pad, self.batch_size, self.cache = regions, pad, batch_size, cache
        base = variant_dice(model, torch.stack([images, adversarial]), masks, regions, batch_size)
        self.clean, self.adv_dice = base[0], base[1]
        self.n_new = 0
        self.n_cached = 0
        self.seen: dict[str, dict[str, Any]] = {}

    def evaluate(self, cands: Sequence[Candidate]) -> list[dict[str, Any]]:
        """The rows of ``cands`` (cached or computed in one batched pass)."""
        todo = []
        for c in dict.fromkeys(cands):
            if c.key() in self.seen:
                continue
            hit = self.cache.get("static", c.key())
            if hit is None or "benign_per_image" not in hit:  # (older caches lack it)
                todo.append(c)
            else:
                self.n_cached += 1
                self.seen[c.key()] = {"candidate": c, **hit}
        if todo:
            self._score(todo)
        return [self.seen[c.key()] for c in cands]

    def _score(self, todo: list[Candidate]) -> None:
        # RGB tables go to the table scorer (Ray tasks) when there is one; YCbCr candidates,
        # and every candidate without a scorer, are scored here through their own FR
        n, kw = self.images.shape[0], {"pad": self.pad, "batch_size": self.batch_size}
        on_scorer = [c.space == "rgb" and self.scorer is not None for c in todo]
        remote = [i for i, flag in enumerate(on_scorer) if flag]
        local = [i for i, flag in enumerate(on_scorer) if not flag]
        benign = torch.empty(len(todo), n, dtype=torch.float64)
        rec = torch.empty(len(todo), n, dtype=torch.float64)
        if remote:
            tables = stack_tables([todo[i] for i in remote], self.images.shape[1])
            args = (self.masks, tables, self.regions, self.pad, self.batch_size)
            b, r = self.scorer(self.model, self.images, self.adv, *args)
            benign[remote], rec[remote] = b.double().cpu(), r.double().cpu()
        if local:
            cands = [todo[i] for i in local]
            benign[local] = candidates_dice(
                self.model, self.images, self.masks, cands, self.regions, **kw
            )
            rec[local] = candidates_dice(
                self.model, self.adv, self.masks, cands, self.regions, **kw
            )
        for i, c in enumerate(todo):
            loss = self.clean - benign[i]
            value = {
                "benign_loss": nan_mean(loss),
                "recovered_dice": nan_mean(rec[i]),
                # JSON has no NaN: samples without a score are stored as null
                "benign_per_image": [None if math.isnan(v) else v for v in loss.tolist()],
            }
            self.cache.put("static", c.key(), value)
            self.seen[c.key()] = {"candidate": c, **value}
            self.n_new += 1


def adaptive_recovery(
    model, cand: Candidate, ev: Evaluator, store: EvalCache, attack, targets, seed
) -> float:
    """Recovered Dice of ``cand`` against the attack run on the defended model (BPDA).

    Reference: docs/ALGORITHMS.md §4 (adaptive attacks). Cached as ``"adaptive"``.

    Args:
        model: the undefended model.
        cand: the table.
        ev: the validation evaluator (its split, regions, padding and counters).
        store: the evaluation cache.
        attack, targets, seed: the attack spec or callable, target rule and seed.

    Returns:
        The mean recovered Dice on the validation split.
    """
    hit = store.get("adaptive", cand.key())
    if hit is not None:
        ev.n_cached += 1
        return hit["recovered_dice"]
    from segshield.attacks import Defended

    defense = cand.defense(ev.pad)
    adv = adversarial_examples(
        Defended(model, defense),
        ev.images,
        ev.masks,
        attack,
        targets=targets,
        seed=seed,
        batch_size=ev.batch_size,
    )
    kw = {"pad": ev.pad, "batch_size": ev.batch_size}
    d = candidates_dice(model, adv, ev.masks, [cand], ev.regions, **kw)[0]
    value = {"recovered_dice": nan_mean(d)}
    store.put("adaptive", cand.key(), value)
    ev.n_new += 1
    return value["recovered_dice"]
