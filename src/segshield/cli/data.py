"""``segshield data check``: index and read a data set, print what was found.

Prints the pairs per split (train/val/test; official folders or the seeded 70/15/15
split), the native image sizes, channel counts, class fractions over the checked split,
and every problem (skipped pairs, unreadable files, bad mask values).

Exit status: 0 when every pair is usable, 1 when any problem was found (the data set
still loads, without the bad pairs) or when the data set cannot be loaded at all (one
line on stderr names the folder or file and the fix), 2 for bad arguments.

Example:
    segshield data check --data isic:/data/isic2017 --size 128
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

from segshield.choices import RESIZE_POLICIES, SPLITS
from segshield.cli import _common as common

__all__ = ["add_parser", "validate", "run", "parse_size_arg"]

log = logging.getLogger("segshield.cli.data")


def parse_size_arg(text: str | None) -> int | tuple[int, int] | None:
    """``"128"`` -> 128, ``"192x256"`` -> ``(192, 256)`` (H x W), ``None`` -> ``None``.

    Raises:
        ValueError: not ``S`` or ``HxW`` with positive integers.
    """
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--size: expected S or HxW (e.g. 128 or 192x256), got {text!r}")
    nums = [int(p) for p in parts]
    return nums[0] if len(nums) == 1 else (nums[0], nums[1])


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield data`` and its ``check`` action."""
    p = sub.add_parser(
        "data",
        help="inspect data sets (pairs, sizes, class fractions, problems)",
        description="Inspect a data set given as KIND[:PATH].",
    )
    actions = p.add_subparsers(dest="data_action", metavar="ACTION")
    actions.required = True
    c = actions.add_parser(
        "check",
        help="index and read a data set; exit 1 if any pair has a problem",
        description=__doc__.split("\n\n")[1],
    )
    common.add_data(c, "KIND[:PATH], e.g. isic:/data/isic2017")
    c.add_argument(
        "--size", default=None, help="resize to S or HxW while reading (default: native)"
    )
    common.add_split(c, "all")
    common.add_seed(c, help="split (and phantom) seed")
    c.add_argument(
        "--resize",
        default=RESIZE_POLICIES[0],
        help=f"resize policy: {' or '.join(RESIZE_POLICIES)} (default {RESIZE_POLICIES[0]})",
    )
    c.add_argument("-n", type=int, default=None, help="phantoms: set size; real data: first N")
    return p


def validate(args: argparse.Namespace) -> None:
    """Check every argument before reading any image.

    Raises:
        ValueError: bad ``--data`` kind, ``--size``, ``--split``, ``--resize``, ``-n``.
        FileNotFoundError: the ``--data`` PATH does not exist.
    """
    from segshield._checks import check_choice, check_number
    from segshield.data import parse_spec
    from segshield.data.phantom_derm import parse_size

    kind, path = parse_spec(args.data)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"--data: {path} does not exist")
    args.size = parse_size_arg(args.size)
    if args.size is not None:
        parse_size(args.size, "--size")
    check_choice("--split", args.split, SPLITS)
    check_choice("--resize", args.resize, RESIZE_POLICIES)
    check_number("--seed", args.seed, low=0, integer=True)
    if args.n is not None:
        check_number("-n", args.n, low=1, integer=True)


def _fmt_counter(c: Counter, key=str) -> str:
    return ", ".join(f"{key(k)} ({v})" for k, v in c.most_common(6)) + (
        f", ... {len(c) - 6} more" if len(c) > 6 else ""
    )


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 without problems, 1 with any or when the data set cannot load."""
    from segshield.data import load_dataset

    shared = {"seed": args.seed, "resize": args.resize, "n": args.n}
    try:
        ds = load_dataset(args.data, size=args.size, split=args.split, **shared)
    except (FileNotFoundError, ValueError) as exc:  # DatasetError and MissingFolderError
        print(f"segshield data check: error: {exc}", file=sys.stderr)
        return 1
    print(f"data set: {args.data}")
    for split in (s for s in SPLITS if s != "all"):
        try:
            print(f"  {split:5s}: {len(load_dataset(args.data, split=split, **shared))} pairs")
        except (FileNotFoundError, ValueError) as exc:
            print(f"  {split:5s}: none ({exc})")
    rep = ds.scan()
    print(f"checked split {args.split!r}: {rep['ok']} of {rep['pairs']} pairs read")
    print(f"  kind: {ds.kind}; classes: {', '.join(ds.class_names)}; regions: {ds.regions}")
    print(f"  native sizes (HxW): {_fmt_counter(rep['sizes'], key=lambda k: f'{k[0]}x{k[1]}')}")
    print(f"  channels: {_fmt_counter(rep['channels'])}")
    fr = ", ".join(
        f"{n} {f:.4f}" for n, f in zip(ds.class_names, rep["class_fractions"], strict=True)
    )
    print(f"  class fractions{' at ' + str(args.size) if args.size else ''}: {fr}")
    problems = rep["problems"]
    print(f"problems: {len(problems)}")
    for msg in problems:
        print(f"  - {msg}")
    return 1 if problems else 0
