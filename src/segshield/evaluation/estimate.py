"""Size a run before it starts (``--dry-run``): its grid and the device-hours it needs.

The grid is what the executors compute (:mod:`~segshield.evaluation.cells`): cells,
samples and rows per (model, data set), and the image-iterations of each attack (one
iteration = one forward and backward pass of one image: samples x steps, through each
defence for an adaptive attack, x the EOT samples through a randomised defence). The
throughput is measured on this machine with a short timed run of the model (forward and
backward passes on a batch of random images of the data's shape), or given by the user;
device-hours = image-iterations / throughput, plus the scoring forward passes at a third
of an iteration each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from segshield.evaluation.cells import GridPlan, plan_grid
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.harness import RunState, grid_parts
from segshield.evaluation.store import DB_NAME, ResultStore
from segshield.utils.throughput import measure_throughput

__all__ = ["GridSize", "grid_size", "measure_throughput", "dry_run", "planning_run"]


@dataclass
class GridSize:
    """The work of one (model, data set): cells, samples, rows, attack iterations."""

    model: str
    dataset: str
    cells: int
    samples: int
    rows: int
    stored: int
    iterations: dict[str, int] = field(default_factory=dict)
    forwards: int = 0
    throughput: float | None = None

    def device_hours(self) -> float:
        """Hours of one device at :attr:`throughput` image-iterations per second."""
        if not self.throughput:
            return float("nan")
        work = sum(self.iterations.values()) + self.forwards / 3
        return work / self.throughput / 3600


def planning_run(config: EvalConfig, output: str | Path | None) -> RunState:
    """A run state for planning on the CPU: nothing written, stored rows read if any."""
    done: set = set()
    if output is not None and (Path(output) / DB_NAME).is_file():
        with ResultStore(output, readonly=True) as store:
            done = store.done_keys()
    device = torch.device("cpu")
    return RunState(config, None, done, device, *grid_parts(config, device), None)


def grid_size(plan: GridPlan) -> list[GridSize]:
    """The :class:`GridSize` of each (model, data set) of a plan."""
    run, out = plan.run, []
    for p in plan.pairs:
        pair, n = p.pair, len(p.pair.names)
        size = GridSize(
            pair.mname,
            pair.dname,
            len(p.cells),
            n,
            sum(len(c.keys) for c in p.cells),
            sum(len(c.keys & run.done) for c in p.cells),
        )
        for aspec, adaptive, attack in pair.attacks:
            steps = int(getattr(attack, "steps", 1))
            through = [d for d in run.defenses if (aspec, adaptive, d) not in pair.cannot_run]
            per = 1
            if adaptive:
                eot = run.config.eot_samples
                per = sum(
                    eot if getattr(run.defenses[d], "randomized", False) else 1 for d in through
                )
            label = f"{aspec} (adaptive)" if adaptive else aspec
            size.iterations[label] = n * steps * per
        plain = sum(1 for _, ad, _ in pair.attacks if not ad)
        adaptive = len(pair.attacks) - plain
        ndef = len(run.defenses)
        size.forwards = n * (1 + ndef + plain * (1 + ndef) + adaptive * ndef * 2)
        out.append(size)
    return out


def dry_run(
    config: EvalConfig,
    output: str | Path | None = None,
    *,
    throughput: float | None = None,
    models: dict[str, Any] | None = None,
    seconds: float = 2.0,
) -> tuple[str, list[GridSize]]:
    """The grid of a run and its device-hours, as text and as :class:`GridSize` rows.

    Args:
        config: the run's settings.
        output: its results folder (stored rows are counted), or ``None``.
        throughput: image-iterations per second of one device, or ``None`` to measure
            each model here (:func:`measure_throughput` on ``config.device``).
        models: models in memory keyed by spec (instead of loading them).
        seconds: measuring time per model. Default 2.

    Returns:
        ``(text, sizes)``.
    """
    run = planning_run(config, output)
    plan = plan_grid(run, models)
    sizes = grid_size(plan)
    measured: dict[str, float] = {}
    for p, size in zip(plan.pairs, sizes, strict=True):
        if throughput is not None:
            size.throughput = float(throughput)
            continue
        if size.model not in measured and p.pair.names:
            shape = tuple(p.shape)
            model = p.pair.model
            measured[size.model] = measure_throughput(
                model, shape, config.device, batch_size=config.batch_size, seconds=seconds
            )
        size.throughput = measured.get(size.model)
    return _format(sizes, throughput is None, config.device), sizes


def _format(sizes: list[GridSize], measured: bool, device: str) -> str:
    lines = []
    cells = sum(s.cells for s in sizes)
    rows, stored = sum(s.rows for s in sizes), sum(s.stored for s in sizes)
    lines.append(f"grid: {len(sizes)} model x data set pair(s), {cells} cells, {rows} rows")
    lines.append(f"      ({stored} stored already, {rows - stored} to compute)")
    for s in sizes:
        lines.append(f"{s.model} on {s.dataset}: {s.cells} cells, {s.samples} samples")
        for label, n in s.iterations.items():
            lines.append(f"  {label}: {n:,} image-iterations")
        lines.append(f"  scoring: {s.forwards:,} forward passes")
        how = f"measured on {device}" if measured else "given"
        lines.append(f"  throughput: {s.throughput or float('nan'):.1f} image-iterations/s ({how})")
        lines.append(f"  estimate: {s.device_hours():.3g} device-hours")
    total = sum(s.device_hours() for s in sizes)
    lines.append(
        f"total: {total:.3g} device-hours on one device (divide by the devices in the cluster)"
    )
    return "\n".join(lines)
