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


def run_tune(args: argparse.Namespace, model: Any, data: Any, config: Any) -> Any:
    """``tune_table`` here, or with its candidate tables scored as Ray tasks."""
    from segshield.tuning import tune_table

    settings = getattr(args, "_executor", None) or executor_settings(args)
    if settings.kind == "local":
        return tune_table(model, data, config)
    from segshield.tuning.parallel import RayTableScorer
    from segshield.utils.cluster import ray_session

    with ray_session(settings.address):
        scorer = RayTableScorer(
            settings.cpus_per_task, settings.gpus_per_task, settings.max_retries
        )
        return tune_table(model, data, config, table_scorer=scorer)


def tune_dry_run(args: argparse.Namespace, model: Any, data: Any) -> str:
    """The text of ``tune --dry-run``: the search's work and its device-hours."""
    from segshield.attacks import get_attack
    from segshield.tuning.estimate import format_search_work, search_work
    from segshield.utils.throughput import measure_throughput

    steps = int(getattr(get_attack(args.attack), "steps", 1))
    n_val, n_held = data.val_images.shape[0], data.heldout_images.shape[0]
    top_k = args.adaptive_top_k if args.adaptive else None
    jpeg = len(args.jpeg.split(",")) if args.jpeg.strip() else 0
    work, forwards = search_work(n_val, n_held, steps, args.budget, adaptive_top_k=top_k, jpeg=jpeg)
    how = "given"
    throughput = args.throughput
    if throughput is None:
        shape = tuple(data.val_images.shape[1:])
        throughput = measure_throughput(model, shape, args.device, batch_size=args.batch_size)
        how = f"measured on {args.device}"
    head = f"search: {args.budget} tables on {n_val} validation images, {n_held} held out"
    return head + "\n" + format_search_work(work, forwards, throughput, how)


def executor_of(args: argparse.Namespace) -> Any:
    """The executor of the flags (``None`` for local: the library's default path)."""
    from segshield.evaluation.executor import get_executor

    settings = getattr(args, "_executor", None) or executor_settings(args)
    return None if settings.kind == "local" else get_executor(settings)


def reproduce_dry_run(args: argparse.Namespace, protocol: Any, spec: str, device: str) -> str:
    """The text of ``reproduce --dry-run``: the protocol's grid with an untrained model.

    The model is built, not trained (the same architecture costs the same per step).
    """
    from pathlib import Path

    from segshield.data import load_dataset
    from segshield.evaluation.estimate import dry_run
    from segshield.evaluation.reproduce import protocol_eval_config
    from segshield.models import build_model

    kw = {"size": protocol.size, "seed": protocol.seed}
    if protocol.n_train is not None:
        kw["n"] = protocol.n_train
    val = load_dataset(spec, split="val", **kw)
    k = 1 if val.num_classes == 2 else val.num_classes
    model = build_model(protocol.model, num_classes=k, width=protocol.width)
    label = f"{protocol.name}-{protocol.model}-untrained"
    cfg = protocol_eval_config(protocol, label, spec, device)
    results = Path(args.output) / "results"
    text, _ = dry_run(cfg, results, throughput=args.throughput, models={label: model})
    return text


def check_ray_device(args: argparse.Namespace, device: str, classifiers: list[str]) -> bool:
    """Check the executor flags against ``--device``; whether to resolve it here.

    With ``--executor ray`` a CUDA device needs ``--gpus-per-task`` > 0, and for
    ``evaluate`` it is resolved on the workers, which hold the GPUs (the driver may have
    none).

    Raises:
        ValueError: CUDA on Ray without GPUs per task, or classifiers on Ray.
    """
    settings = check_executor_args(args)
    if settings.kind == "local":
        return True
    if classifiers:
        raise ValueError("--classifier: runs with --executor local only; evaluate them apart")
    if device.startswith("cuda"):
        if not settings.gpus_per_task:
            raise ValueError(
                f"--device: {device} with --executor ray needs --gpus-per-task > 0 "
                "(e.g. 1, or 0.25 for four tasks per GPU)"
            )
        return False
    return True
