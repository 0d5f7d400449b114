"""``segshield reproduce``: the FR paper's protocol on a real data set.

Trains a model on the training split (cached by settings), attacks the validation
split with ASMA towards other images' ground-truth masks and with an adaptive attack,
defends with FR and the baselines, prints the table and writes the report. Use
``--limit`` and ``--epochs`` for a quick check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segshield.choices import REPRODUCE_DATASETS
from segshield.cli import _common as common
from segshield.cli import _executor
from segshield.cli.demo import add_protocol_arguments, print_tables, validate_protocol

__all__ = ["add_parser", "validate", "run"]

#: Defaults for real data: U-Net at 128x128, the paper's ASMA length.
_BASE = {
    "size": 128,
    "model": "unet",
    "width": 16,
    "epochs": 20,
    "n_eval": 100,
    "batch_size": 8,
    "asma": "asma:steps=300,tau=1e-05,beta=0.0001",
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield reproduce``."""
    p = sub.add_parser("reproduce", help="The FR paper's protocol on ISIC 2017, ORIGA or PaddleSeg")
    p.add_argument("--dataset", required=True, choices=REPRODUCE_DATASETS)
    p.add_argument("--root", required=True, help="the data set's folder")
    add_protocol_arguments(p)
    common.add_output(p, "output folder (default reproduce_out/DATASET)", required=False)
    _executor.add_executor_arguments(p)
    return p


def validate(args: argparse.Namespace) -> None:
    """Check the data folder and every setting before training.

    Raises:
        FileNotFoundError: ``--root`` is not a folder.
        ValueError: bad settings or specs.
    """
    if not Path(args.root).is_dir():
        raise FileNotFoundError(f"--root: {args.root}: no such folder; pass the data set folder")
    if args.output is None:
        args.output = str(Path("reproduce_out") / args.dataset)
    validate_protocol(args, **_BASE)
    _executor.check_ray_device(args, args._device, [])


def run(args: argparse.Namespace) -> int:
    """Train (or reuse), evaluate, print the tables, write the report."""
    from segshield.cli.demo import settings_from_args
    from segshield.evaluation.demo import run_reproduce

    settings = args._settings if hasattr(args, "_settings") else settings_from_args(args, **_BASE)
    device = args._device if hasattr(args, "_device") else str(common.device_arg(args.device))
    if args.dry_run:
        print(_executor.reproduce_dry_run(args, settings, device))
        return 0
    executor = _executor.executor_of(args)
    summary, report = run_reproduce(
        args.dataset, args.root, args.output, settings, args.cache_dir, device, executor
    )
    print_tables(summary, report)
    return 0
