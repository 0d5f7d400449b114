"""The executor flags of ``evaluate``, ``reproduce`` and ``tune``, declared once.

``--executor local|ray`` (default local), ``--ray-address auto|HOST:PORT``,
``--gpus-per-task G``, ``--cpus-per-task N``, ``--max-retries R``, and ``--dry-run``
with ``--throughput`` (image-iterations per second, instead of a timed run). They are
checked in the command's ``validate``, before any expensive work; ``--executor ray``
without Ray installed fails there with the error naming ``segshield[ray]``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_executor_arguments(p)
    >>> settings = executor_settings(p.parse_args(["--executor", "ray", "--cpus-per-task", "2"]))
    >>> settings.kind, settings.cpus_per_task
    ('ray', 2.0)
"""

from __future__ import annotations

import argparse
from typing import Any

from segshield.choices import EXECUTORS

__all__ = ["add_executor_arguments", "executor_settings", "check_executor_args"]


def add_executor_arguments(p: argparse.ArgumentParser, *, dry_run: bool = True) -> None:
    """Register the executor flags (and ``--dry-run``/``--throughput`` with ``dry_run``)."""
    g = p.add_argument_group("executor (docs/CLUSTER.md)")
    g.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local: this process (default); ray: tasks on a Ray cluster (segshield[ray])",
    )
    g.add_argument(
        "--ray-address",
        help="Ray cluster: auto (started here with `ray start`) or HOST:PORT of the head "
        "(default: a cluster of this machine, started for the run)",
    )
    g.add_argument("--gpus-per-task", type=float, help="GPUs per Ray task, e.g. 0.25 (0)")
    g.add_argument("--cpus-per-task", type=float, help="CPUs (torch threads) per Ray task (1)")
    g.add_argument("--max-retries", type=int, help="Ray: reruns of a task whose worker died (3)")
    if dry_run:
        g.add_argument(
            "--dry-run",
            action="store_true",
            help="print the grid and the estimated device-hours, compute nothing",
        )
        g.add_argument(
            "--throughput",
            type=float,
            help="--dry-run: image-iterations per second of one device (default: measured "
            "here with a short timed run of the model)",
        )


def executor_settings(args: argparse.Namespace) -> Any:
    """The :class:`~segshield.evaluation.executor.ExecutorSettings` of the flags.

    Raises:
        ValueError: a number out of range, or Ray flags without ``--executor ray``
            (messages name the flag).
    """
    from segshield.evaluation.executor import ExecutorSettings

    kw: dict[str, Any] = {"kind": args.executor, "address": args.ray_address}
    for flag in ("gpus_per_task", "cpus_per_task", "max_retries"):
        if getattr(args, flag) is not None:
            kw[flag] = getattr(args, flag)
    try:
        return ExecutorSettings(**kw)
    except ValueError as exc:
        text = str(exc)
        for flag in ("ray_address", "gpus_per_task", "cpus_per_task", "max_retries"):
            text = text.replace(flag, "--" + flag.replace("_", "-"))
        raise ValueError(text) from None


def check_executor_args(args: argparse.Namespace) -> Any:
    """Check the executor flags; with ``--executor ray``, that Ray imports.

    Returns:
        The settings (also kept as ``args._executor``).

    Raises:
        ValueError: bad flags; ``--throughput`` without ``--dry-run`` or not > 0.
        ImportError: ``--executor ray`` without Ray (names ``segshield[ray]``).
    """
    from segshield._checks import check_number

    settings = executor_settings(args)
    throughput = getattr(args, "throughput", None)
    if throughput is not None:
        if not args.dry_run:
            raise ValueError("--throughput: only with --dry-run; add --dry-run or drop it")
        check_number("--throughput", throughput, low=0, low_inclusive=False)
    if settings.kind == "ray" and not getattr(args, "dry_run", False):
        from segshield.utils.cluster import import_ray

        import_ray()
    args._executor = settings
    return settings
