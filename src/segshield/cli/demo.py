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
from pathlib import Path

__all__ = ["add_parser", "validate", "run", "settings_from_args", "print_tables"]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield demo``."""
    p = sub.add_parser("demo", help="Run the demo on phantom data (train, attack, defend, report)")
    add_protocol_arguments(p)
    p.add_argument("-o", "--output", default="demo_out", help="output folder (demo_out)")
    return p


def add_protocol_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``demo`` and ``reproduce`` (defaults from ``DemoSettings``)."""
    p.add_argument("--cache-dir", help="model cache (default ~/.cache/segshield)")
    p.add_argument("--size", type=int, help="image side (demo 64)")
    p.add_argument("--model", help="architecture (demo: unet)")
    p.add_argument("--width", type=int, help="model width (16)")
    p.add_argument("--epochs", type=int, help="training epochs (demo 15)")
    p.add_argument("--n-train", type=int, help="load_dataset(n=) for training and evaluation")
    p.add_argument("--limit", type=int, help="evaluated validation samples (demo 8)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size (4)")
    p.add_argument("--asma", help="ASMA spec, e.g. asma:steps=1000,tau=1e-07,beta=1e-06")
    p.add_argument("--adaptive", help="adaptive attack spec (run through each defence)")
    p.add_argument("--defense", action="append", help="defence spec (repeatable; replaces list)")
    p.add_argument("--seed", type=int, help="seed (0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")


def settings_from_args(args: argparse.Namespace, **base):
    """``DemoSettings`` from the flags (unset flags keep ``base`` or the defaults).

    Raises:
        ValueError, TypeError: a setting out of range.
    """
    from segshield.evaluation.demo import DemoSettings

    kw = dict(base)
    names = {
        "size": "size",
        "model": "model",
        "width": "width",
        "epochs": "epochs",
        "n_train": "n_train",
        "limit": "n_eval",
        "batch_size": "batch_size",
        "asma": "asma",
        "adaptive": "adaptive",
        "seed": "seed",
    }
    for flag, field in names.items():
        if getattr(args, flag) is not None:
            kw[field] = getattr(args, flag)
    if args.defense:
        kw["defenses"] = tuple(args.defense)
    return DemoSettings(**kw)


def validate_protocol(args: argparse.Namespace, **base) -> None:
    """Check flags, attack and defence specs and the device before any training.

    Raises:
        ValueError: bad settings or specs, or CUDA asked for without a CUDA device.
    """
    import torch

    from segshield._checks import check_choice
    from segshield.attacks import get_attack
    from segshield.defenses import get_defense

    settings = settings_from_args(args, **base)
    get_attack(settings.asma)
    get_attack(settings.adaptive)
    for d in settings.defenses:
        get_defense(d)
    check_choice("--device", args.device, ("cpu", "cuda"))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda was asked for but no CUDA device is available; use cpu")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output: {out} is a file; expected a folder")
    args._settings = settings


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any work (see :func:`validate_protocol`)."""
    validate_protocol(args)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def print_tables(summary: list[dict], report: Path) -> None:
    """Print, per model and dataset, the main table, attack success and the downstream."""
    from segshield.evaluation.summary import format_summary

    keys = ("attack", "adaptive", "defense")
    pairs = list(dict.fromkeys((r["model"], r["dataset"]) for r in summary))
    for model, dataset in pairs:
        rows = [r for r in summary if (r["model"], r["dataset"]) == (model, dataset)]
        print(f"## {dataset} (model {model})\n")
        print(format_summary(rows, "md", keys=keys))
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
    summary, report = run_demo(args.output, settings, args.cache_dir, args.device)
    print_tables(summary, report)
    return 0
