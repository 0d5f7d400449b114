"""The cells of an evaluation grid: what an executor plans, and what a worker computes.

A cell is one batch of the harness (:func:`~segshield.evaluation.harness.evaluate_batch`):
one model on one data set, the samples ``start .. start + batch_size - 1``, with every
attack and every defence of the run for those samples. The driver plans the cells
(:func:`plan_grid`: which rows each cell writes, which of them are stored already);
a worker computes a cell from the run's settings and the model and data *specs*
(:func:`compute_cell`: it loads the model and the data itself, so nothing large travels
through the driver) and returns the rows instead of writing them. The attacks are
seeded per (model, data set, attack, batch), the clean and benign stages per
(model, data set, batch), so a cell's non-timing columns do not depend on the process,
the order or the executor that computed it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from segshield.evaluation.config import EvalConfig
from segshield.evaluation.harness import (
    RunState,
    add_worst_case,
    build_pair,
    evaluate_batch,
    grid_parts,
    load_data,
    model_datasets,
    pair_combos,
    prepare_model,
)
from segshield.evaluation.store import KEY_COLUMNS, RowKey

__all__ = ["Cell", "CellResult", "GridPlan", "PairPlan", "plan_grid", "compute_cell"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One batch of one model on one data set (every attack and defence for its samples).

    Attributes:
        model: the model spec (an entry of ``config.models``).
        dataset: the data spec (an entry of ``config.datasets``).
        start: index of the cell's first sample.
        samples: the cell's sample names.
        keys: the row keys the cell writes.
    """

    model: str
    dataset: str
    start: int
    samples: tuple[str, ...]
    keys: frozenset[RowKey]

    def describe(self) -> str:
        """``MODEL on DATASET, samples a, b, c`` for messages."""
        return f"{self.model} on {self.dataset}, samples {', '.join(self.samples)}"


@dataclass
class PairPlan:
    """One model on one data set: its labels, cells, attack iterations and worst case."""

    pair: Any  # harness.PairState of the driver (no model weights are sent anywhere)
    cells: list[Cell]
    shape: tuple[int, ...] = ()  # one image's (C, H, W)


@dataclass
class GridPlan:
    """The whole grid of a run: its pairs, model descriptions and skipped attacks."""

    run: RunState
    pairs: list[PairPlan] = field(default_factory=list)
    model_info: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def cells(self) -> list[Cell]:
        """Every cell, in the order of the local executor."""
        return [c for p in self.pairs for c in p.cells]

    def missing(self) -> list[Cell]:
        """The cells with at least one row not in the store."""
        return [c for c in self.cells if not c.keys <= self.run.done]


def plan_grid(run: RunState, models: dict[str, torch.nn.Module] | None = None) -> GridPlan:
    """Cut the run's segmentation grid into cells (the driver loads each model once).

    Args:
        run: the run (:func:`~segshield.evaluation.harness.open_run`): its settings,
            store, finished rows, defences and attacks.
        models: optional models in memory keyed by spec (e.g. an untrained network of the
            right architecture for a dry run before training).

    Returns:
        The :class:`GridPlan`.
    """
    config = run.config
    plan = GridPlan(run)
    for i, mspec in enumerate(config.models):
        model, mname, attack_plan = prepare_model(run, mspec, models)
        plan.model_info[mname] = getattr(model, "config", {})
        if attack_plan[2]:
            plan.skipped[mname] = attack_plan[2]
        for dspec in model_datasets(config, i):
            ds = load_data(dspec, config, model)
            pair = build_pair(run, model, mname, ds, dspec, attack_plan[:2])
            shape = tuple(ds[0]["image"].shape) if len(ds) else ()
            pair.ds = None  # the driver keeps names and targets only
            combos = pair_combos(run, pair)
            cells = []
            for start in range(0, len(pair.names), config.batch_size):
                names = tuple(pair.names[start : start + config.batch_size])
                keys = frozenset(pair.key(*c, s) for c in combos for s in names)
                cells.append(Cell(mspec, dspec, start, names, keys))
            plan.pairs.append(PairPlan(pair, cells, shape))
    return plan


def finish_pairs(plan: GridPlan, failed: list[Cell]) -> None:
    """Worst-case rows of each complete pair, then the models and skipped attacks."""
    bad = {(c.model, c.dataset) for c in failed}
    for p in plan.pairs:
        if p.cells and (p.cells[0].model, p.cells[0].dataset) in bad:
            log.warning("%s on %s: worst case left out (cells failed)", p.pair.mname, p.pair.dname)
            continue
        add_worst_case(plan.run, p.pair)
    plan.run.store.update_manifest(models=plan.model_info, skipped_attacks=plan.skipped)


@dataclass
class CellResult:
    """What a worker sends back: the cell's rows, its example tiles, time and process."""

    rows: list[dict[str, Any]]
    examples: list[tuple[RowKey, str, bytes]]
    seconds: float
    pid: int


class _RowSink:
    """Stands in for the store in a worker: collects what the harness commits."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.examples: list[tuple[RowKey, str, bytes]] = []

    def add(self, rows, examples=(), table: str = "results") -> None:
        self.rows.extend(rows)
        self.examples.extend(examples)


#: A worker's loaded (run, pair) per (settings digest, model spec, data spec).
_LOADED: dict[tuple[str, str, str], tuple[RunState, Any]] = {}


def _loaded(config: EvalConfig, mspec: str, dspec: str) -> tuple[RunState, Any]:
    """The worker's run and pair of a (model, data set), loaded on first use."""
    key = (config.digest(), mspec, dspec)
    if key not in _LOADED:
        device = torch.device(config.device)
        defenses, attacks = grid_parts(config, device)
        # no store in a worker: the driver records the evaluated names and commits rows
        run = RunState(config, None, set(), device, defenses, attacks, None)
        model, mname, attack_plan = prepare_model(run, mspec)
        ds = load_data(dspec, config, model)
        _LOADED.clear()  # one (model, data set) held per worker
        _LOADED[key] = (run, build_pair(run, model, mname, ds, dspec, attack_plan[:2]))
    return _LOADED[key]


def compute_cell(
    settings: dict[str, Any], mspec: str, dspec: str, start: int, threads: int | None = None
) -> CellResult:
    """Compute one cell in this process and return its rows (the worker's task).

    Args:
        settings: the run's :class:`EvalConfig` as a dict (``to_dict()``).
        mspec, dspec: the model and data specs; loaded here (cached per process).
        start: the cell's first sample.
        threads: torch threads of this process (``--cpus-per-task``), or ``None`` to
            leave them.

    Returns:
        The :class:`CellResult` (every row of the cell, its example tiles).

    Raises:
        FileNotFoundError, ValueError: a missing or bad model or data file.

    Example:
        >>> res = compute_cell(cfg.to_dict(), "m.safetensors", "phantom-derm", 0)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    config = EvalConfig.from_dict(settings)
    run, pair = _loaded(config, mspec, dspec)
    sink = run.store = _RowSink()
    run.done = set()
    evaluate_batch(run, pair, start, pair_combos(run, pair))
    return CellResult(sink.rows, sink.examples, time.perf_counter() - t0, os.getpid())


def row_key(row: dict[str, Any]) -> RowKey:
    """The key of a row."""
    return tuple(row[c] for c in KEY_COLUMNS)
