"""``segshield demo``: the main job on phantom data (``make demo``).

Trains (once, then cached) a small model on phantom dermoscopy and fundus sets, attacks
them with ASMA and an adaptive BPDA attack, defends with FR (the paper's table), JPEG
q in {50, 75, 90}, Feature Distillation, bit-depth, median and no defence, prints the
table and writes ``report.html`` (default into ``./demo_out/``).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from segshield.cli import _common as common

__all__ = [
    "add_parser",
    "validate",
    "run",
    "settings_from_args",
    "print_tables",
    "add_protocol_arguments",
    "validate_protocol",
    "validate_specs",
]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield demo``."""
    p = sub.add_parser("demo", help="Run the demo on phantom data (train, attack, defend, report)")
    add_protocol_arguments(p)
    common.add_output(p, "output folder (demo_out)", required=False, default="demo_out")
    return p


def add_protocol_arguments(p: argparse.ArgumentParser, *, first: bool = False) -> None:
    """Flags shared by ``demo`` and ``reproduce`` (defaults from ``DemoSettings`` or the
    protocol); ``first`` adds ``--first N`` beside ``--limit N`` (``reproduce``)."""
    p.add_argument("--cache-dir", help="model cache (default ~/.cache/segshield)")
    common.add_size(p, "image side (demo 64)")
    p.add_argument("--model", help="architecture (demo: unet)")
    p.add_argument("--width", type=int, help="model width (16)")
    p.add_argument("--epochs", type=int, help="training epochs (demo: 15 dermoscopy, 30 fundus)")
    p.add_argument("--n-train", type=int, help="load_dataset(n=) for training and evaluation")
    if first:
        common.add_limit(p, "evaluated images, default the protocol's,")
    else:
        common.add_limit(p, "evaluated validation samples (demo 8)", first=False)
    common.add_batch_size(p, None, help="evaluation batch size (4)")
    p.add_argument("--asma", help="ASMA spec, e.g. asma:steps=1000,tau=1e-07,beta=1e-06")
    p.add_argument("--adaptive", help="adaptive attack spec (run through each defence)")
    p.add_argument("--defense", action="append", help="defence spec (repeatable; replaces list)")
    common.add_seed(p, None, help="seed (0)")
    common.add_device(p)


#: Flags that set the ``DemoSettings`` field of the same name (``--limit`` sets ``n_eval``).
_SETTING_FLAGS = (
    *("size", "model", "width", "epochs", "n_train", "limit", "batch_size", "asma", "adaptive"),
    "seed",
)


def settings_from_args(args: argparse.Namespace, **base):
    """``DemoSettings`` from the flags (unset flags keep ``base`` or the defaults).

    Raises:
        ValueError, TypeError: a setting out of range.
    """
    from segshield.evaluation.demo import DemoSettings

    kw = dict(base)
    for flag in _SETTING_FLAGS:
        if getattr(args, flag) is not None:
            kw["n_eval" if flag == "limit" else flag] = getattr(args, flag)
    if args.defense:
        kw["defenses"] = tuple(args.defense)
    return DemoSettings(**kw)


def validate_protocol(args: argparse.Namespace, **base) -> None:
    """Check flags, attack and defence specs and the device before any training.

    Raises:
        ValueError: bad settings or specs, or CUDA asked for without a CUDA device.
    """
    settings = settings_from_args(args, **base)
    validate_specs(settings.asma, settings.adaptive, settings.defenses)
    args._device = str(common.device_arg(args.device))
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output: {out} is a file; expected a folder")
    args._settings = settings


def validate_specs(
    attack: str, adaptive: str, defenses: Sequence[str], model: str | None = None
) -> None:
    """Build each attack and defence once (and check the model name) to fail early.

    Raises:
        ValueError, TypeError: a bad spec (the message lists the valid names or keys).
    """
    from segshield.attacks import get_attack
    from segshield.defenses import get_defense

    get_attack(attack)
    get_attack(adaptive)
    for d in defenses:
        get_defense(d)
    if model is not None:
        from segshield._checks import check_choice
        from segshield.models import list_models
        from segshield.models.registry import parse_model_spec

        check_choice("--model", parse_model_spec(model)[0], list_models())


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any work (see :func:`validate_protocol`)."""
    validate_protocol(args)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def print_tables(summary: list[dict], report: Path, columns: Sequence[str] | None = None) -> None:
    """Print, per model and dataset, the main table, attack success and the downstream.

    ``columns``: the main table's metric columns (default ``MAIN_COLUMNS``)."""
    from segshield.evaluation.summary import format_summary

    keys = ("attack", "adaptive", "defense")
    pairs = list(dict.fromkeys((r["model"], r["dataset"]) for r in summary))
    for model, dataset in pairs:
        rows = [r for r in summary if (r["model"], r["dataset"]) == (model, dataset)]
        print(f"## {dataset} (model {model})\n")
        print(format_summary(rows, "md", columns=columns, keys=keys))
        print()
        for r in rows:
            if r["defense"] == "none":
                tag = "adaptive " if r["adaptive"] else ""
                print(
                    f"{tag}{r['attack']}: mean IoU with target "
                    f"{_fmt(r.get('attack_target_iou', math.nan))}, success rate (target IoU "
                    f">= 0.5) {_fmt(r.get('attack_success', math.nan))}, mean L-inf "
                    f"{_fmt(r.get('linf', math.nan))}"
                )
        dx = [
            c
            for c in rows[0]
            if c.startswith("dx_")
            and c.endswith(("_abs_error", "_abs_rel_error", "_flipped"))
            and not all(math.isnan(r[c]) for r in rows)
        ]
        if dx:
            print("\nDiagnosis downstream (means over samples):\n")
            print(format_summary(rows, "md", columns=dx, keys=keys))
        print()
    print(f"report: {report}")


def run(args: argparse.Namespace) -> int:
    """Train or reuse the models, evaluate, print the tables, write the report."""
    from segshield.evaluation.demo import run_demo

    settings = args._settings if hasattr(args, "_settings") else settings_from_args(args)
    device = args._device if hasattr(args, "_device") else str(common.device_arg(args.device))
    summary, report = run_demo(args.output, settings, args.cache_dir, device)
    print_tables(summary, report)
    return 0
