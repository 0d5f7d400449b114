"""The executor seam: where an evaluation grid's cells are computed.

``local`` (the default) computes every cell in this process, as
:func:`~segshield.evaluation.harness.run_evaluation` always has. ``ray`` computes the
cells (:mod:`~segshield.evaluation.cells`) as tasks on a Ray cluster
(:mod:`~segshield.evaluation.ray_executor`, Ray imported only there). Either way the
driver alone opens the results store and writes each cell's rows in one transaction,
and the rows' non-timing columns are the same.

Example:
    >>> get_executor(ExecutorSettings()).name
    'local'
    >>> ExecutorSettings(kind="ray", gpus_per_task=0.25).gpus_per_task
    0.25
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segshield._checks import check_choice, check_number
from segshield.choices import EXECUTORS
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.store import ResultStore

__all__ = ["EXECUTORS", "ExecutorSettings", "GridOutcome", "LocalExecutor", "get_executor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorSettings:
    """Where and with what resources the cells run.

    Args:
        kind: ``"local"`` (this process) or ``"ray"``. Default ``"local"``.
        address: Ray only: ``"auto"`` (the cluster started here with ``ray start``),
            ``"HOST:PORT"`` of a head node, or ``None`` for a cluster of this machine
            started for the run. Default ``None``.
        gpus_per_task: Ray only: GPUs each task holds, >= 0; fractions share a GPU
            (0.25: four tasks on one). Default 0.
        cpus_per_task: Ray only: CPUs each task holds (and its torch threads), > 0.
            Default 1.
        max_retries: Ray only: times a task whose worker died is run again, >= 0.
            Default 3.

    Raises:
        ValueError: an unknown kind, a number out of range, or Ray settings with
            ``kind="local"``.
    """

    kind: str = "local"
    address: str | None = None
    gpus_per_task: float = 0.0
    cpus_per_task: float = 1.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        check_choice("executor", self.kind, EXECUTORS)
        check_number("gpus_per_task", self.gpus_per_task, low=0)
        check_number("cpus_per_task", self.cpus_per_task, low=0, low_inclusive=False)
        check_number("max_retries", self.max_retries, low=0, integer=True)
        if self.kind == "local" and (
            self.address is not None or self.gpus_per_task or self.cpus_per_task != 1.0
        ):
            raise ValueError(
                "executor: --ray-address, --gpus-per-task and --cpus-per-task need "
                "--executor ray; add it, or drop them"
            )
        if self.address is not None and not self.address.strip():
            raise ValueError("ray_address: expected 'auto' or HOST:PORT, got an empty string")


@dataclass
class GridOutcome:
    """What a run left: the open store, and the cells that failed for good.

    Attributes:
        store: the run's :class:`ResultStore` (close it when done).
        failed: ``(description, error)`` of each cell that failed after its retries
            (model, data set and samples in the description).
        cells: cells computed by this run (0 when every row was stored already).
        task_seconds: Ray: the seconds the tasks spent in their cells (their overhead
            is the rest of the workers' time).
    """

    store: ResultStore
    failed: list[tuple[str, str]] = field(default_factory=list)
    cells: int = 0
    task_seconds: float = 0.0

    def raise_failed(self, report: str | Path) -> None:
        """After the report is written: fail if cells failed for good.

        Raises:
            ValueError: naming each failed cell and its error, and the report that
                covers the rest.

        Example:
            >>> GridOutcome(store=None).raise_failed("report.html")  # nothing failed
        """
        if self.failed:
            raise ValueError(
                f"{len(self.failed)} cell(s) failed for good: "
                + "; ".join(f"{cell} ({error})" for cell, error in self.failed)
                + f"; the report {report} covers the rest; run again to retry them"
            )


class LocalExecutor:
    """Every cell in this process, in order (:func:`run_evaluation`)."""

    name = "local"

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings()

    def run(self, config: EvalConfig, output: str | Path, **kwargs: Any) -> GridOutcome:
        """Run or resume the evaluation (``kwargs`` as :func:`run_evaluation`'s)."""
        from segshield.evaluation.harness import run_evaluation

        return GridOutcome(run_evaluation(config, output, **kwargs))


def get_executor(settings: ExecutorSettings) -> Any:
    """The executor of ``settings`` (the Ray one imports Ray).

    Raises:
        ImportError: ``kind="ray"`` without Ray installed (names ``segshield[ray]``).
    """
    if settings.kind == "local":
        return LocalExecutor(settings)
    from segshield.evaluation.ray_executor import RayExecutor

    return RayExecutor(settings)
