"""The Ray executor: an evaluation grid's cells as tasks on a Ray cluster.

The driver (this process) plans the grid (:func:`~segshield.evaluation.cells.plan_grid`),
submits only the cells with a row missing from the store, and, as tasks finish
(``ray.wait``), writes each cell's rows in one transaction, skipping any row already
stored; one progress bar counts rows. Workers never open the store (SQLite on the
driver's local disk): each task gets the run's settings and the model and data specs,
loads them itself (:func:`~segshield.evaluation.cells.compute_cell`) and returns its
rows. A task whose worker dies is run again (``max_retries``); a task that raises
(a bad file) is not, and its cell is reported with its samples at the end while the
others complete. A killed driver rerun with the same settings resumes: finished cells
are not submitted again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from segshield.evaluation.cells import Cell, compute_cell, finish_pairs, plan_grid, row_key
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.executor import ExecutorSettings, GridOutcome
from segshield.evaluation.harness import open_run
from segshield.utils.cluster import import_ray, ray_session
from segshield.utils.progress import progress_enabled

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)


class RayExecutor:
    """Cells as Ray tasks; the store stays with the driver.

    Args:
        settings: :class:`ExecutorSettings` with ``kind="ray"``.

    Raises:
        ImportError: Ray is not installed (the message names ``segshield[ray]``).

    Example:
        >>> ex = RayExecutor(ExecutorSettings(kind="ray", address="auto"))  # doctest: +SKIP
        >>> outcome = ex.run(config, "results/")  # doctest: +SKIP
    """

    name = "ray"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.ray = import_ray()

    def run(self, config: EvalConfig, output: str | Path) -> GridOutcome:
        """Run or resume the evaluation of ``config`` into ``output`` on the cluster.

        Raises:
            ValueError: ``config`` evaluates classifiers (only the local executor does).
        """
        if config.classifiers:
            raise ValueError(
                "executor: classifier evaluation runs with --executor local only; "
                "evaluate the classifiers in a separate local run"
            )
        run = open_run(config, output, device="cpu")  # the driver only plans and writes
        try:
            plan = plan_grid(run)
            todo = plan.missing()
            log.info(
                "%d of %d cells to compute (%d rows stored)",
                *(len(todo), len(plan.cells), len(run.done)),
            )
            failed: list[Cell] = []
            errors: list[tuple[str, str]] = []
            busy = 0.0
            if todo:
                with ray_session(self.settings.address) as ray:
                    failed, errors, busy = self._submit(ray, config, run, todo)
            finish_pairs(plan, failed)
        except BaseException:
            run.store.close()  # releases the folder's lock; finished cells stay stored
            raise
        return GridOutcome(run.store, errors, len(todo), busy)

    def _submit(self, ray, config: EvalConfig, run, todo: list[Cell]):
        """Submit the cells, commit each one's rows as it finishes.

        Returns:
            ``(failed cells, (description, error) of each, task-seconds)``.
        """
        s = self.settings
        task = ray.remote(
            num_cpus=s.cpus_per_task,
            num_gpus=s.gpus_per_task,
            max_retries=s.max_retries,
            retry_exceptions=False,
        )(compute_cell)
        settings = ray.put(config.to_dict())
        threads = max(1, round(s.cpus_per_task))
        pending = {task.remote(settings, c.model, c.dataset, c.start, threads): c for c in todo}
        bar = _RowBar(sum(len(c.keys - run.done) for c in todo))
        failed, errors = [], []
        t0, busy = time.perf_counter(), 0.0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    failed.append(cell)
                    errors.append((cell.describe(), _first_line(exc)))
                    log.error("cell failed: %s: %s", cell.describe(), _first_line(exc))
                    continue
                busy += result.seconds
                bar.update(_commit(run, result))
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        log.info("%d cells in %.1f s (%.1f task-seconds)", len(todo), wall, busy)
        return failed, errors, busy


def _commit(run, result) -> int:
    """Write a cell's rows not stored yet (one transaction); the number written."""
    rows = [r for r in result.rows if row_key(r) not in run.done]
    keys = {row_key(r) for r in rows}
    examples = [e for e in result.examples if e[0] in keys]
    run.store.add(rows, examples)
    run.done.update(keys)
    return len(rows)


def _first_line(exc: BaseException) -> str:
    """The last line of a remote error naming its type (Ray prefixes the traceback)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


class _RowBar:
    """One progress bar over the rows of the run (tqdm when bars are enabled)."""

    def __init__(self, total: int) -> None:
        self._bar: Any = None
        if progress_enabled():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc="rows", unit="row", dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
