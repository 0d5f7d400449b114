"""``segshield tune``: tune the FR table to a data set and model.

Searches FR band layouts, steps and (colour images) per-channel factors of the table
(``--channel-scales``) or, with ``--space rgb,ycbcr``, FR on JPEG's luma and chroma too
(a chroma factor over the luma table, ``--chroma-scales``, and 4:4:4 or 4:2:0 chroma,
``--subsample``) on the validation split for the best recovered Dice under the
attack with benign Dice loss <= ``--max-benign-loss`` (a number, or ``paper`` for the
paper table's own loss; the bound must hold with a margin of ``--benign-se`` standard
errors of the per-image losses), reports the tuned and the paper's table on the held-out
split with their paired per-image difference (mean and standard error) beside JPEG at
every ``--jpeg`` quality on the same images, and writes
``TABLE.json`` (loadable with ``FrequencyRefinement.from_file``),
``TABLE.pareto.png``/``.svg``, the evaluation cache ``TABLE.cache.jsonl`` and the
adversarial images ``TABLE.cache.*-adv.safetensors`` (both reused with ``--resume``).
When ``--heldout-split`` equals ``--val-split`` (e.g. ISIC 2017, which has no test split
here), that split is divided into two disjoint seeded halves: validation and held-out.
Exit 1 when no table met the bound on the validation split (the best one is still
written, marked infeasible).

Example::

    segshield tune --model runs/unet --data phantom-derm --max-benign-loss 0.01 \
        --attack "asma:steps=200" --budget 120 -o fr_tuned.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from segshield.choices import SPLITS, TABLE_PAD_MODES
from segshield.cli import _common as common
from segshield.cli import _executor

__all__ = [
    "add_parser",
    "validate",
    "run",
    "input_parser",
    "check_common_args",
    "checkpoint_exists",
    "input_record",
    "load_inputs",
    "load_model",
    "read_split",
    "parse_floats",
    "parse_ints",
]

log = logging.getLogger("segshield.cli.tune")


def input_parser(
    sub: argparse._SubParsersAction, name: str, help: str, doc: str
) -> argparse.ArgumentParser:
    """A sub-command parser with the model, data and run arguments of ``tune``/``analyze``.

    Args:
        sub: the sub-parsers.
        name: the command.
        help: its one-line help.
        doc: its module docstring (the description is the part before ``Example::``).
    """
    p = sub.add_parser(
        name,
        help=help,
        description=doc.split("Example::")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_model(p, "checkpoint (X, X.safetensors or X.json)")
    common.add_data(p, "data set spec KIND[:PATH], e.g. phantom-derm")
    p.add_argument("--attack", default="asma", help="attack spec (default asma)")
    common.add_seed(p)
    common.add_limit(p, "at most N images per split")
    p.add_argument(
        "--n", type=int, default=None, help="phantoms: images generated before the split (200)"
    )
    common.add_size(p, "image side (default: the model's)")
    p.add_argument("--pad", default="edge", choices=TABLE_PAD_MODES, help="FR padding")
    common.add_batch_size(p, 32, help="images per forward")
    common.add_device(p)
    return p


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield tune``."""
    p = input_parser(sub, "tune", "tune the FR quantisation table to a data set and model", __doc__)
    p.add_argument(
        "--max-benign-loss",
        default="0.01",
        metavar="X|paper",
        help="bound on the validation benign Dice loss: a number in [0, 1] (default 0.01), "
        "or 'paper' for the paper table's own benign loss (tuned must dominate it)",
    )
    p.add_argument(
        "--benign-se",
        type=float,
        default=1.0,
        help="margin of the benign-loss bound in standard errors of the per-image losses "
        "(paired with the paper table's for 'paper'); 0 compares the plain mean (default 1)",
    )
    p.add_argument(
        "--adaptive",
        action="store_true",
        help="also score the best tables against a BPDA attack on the defended model",
    )
    p.add_argument("--adaptive-top-k", type=int, default=3, help="tables re-scored (default 3)")
    p.add_argument("--budget", type=int, default=120, help="tables scored (default 120)")
    p.add_argument(
        "--channel-scales",
        default="1,2,4,8",
        help="colour images: factors tried for each channel's table (one table per channel); "
        "'1' searches one shared table only (default 1,2,4,8)",
    )
    p.add_argument(
        "--space",
        default="rgb",
        help="colour spaces searched: rgb (the paper's channels), ycbcr (JPEG's luma and "
        "chroma) or rgb,ycbcr (default rgb)",
    )
    p.add_argument(
        "--chroma-scales",
        default="1,2,4",
        help="ycbcr: factors of the chroma table over the luma table (default 1,2,4)",
    )
    p.add_argument(
        "--subsample",
        default="444,420",
        help="ycbcr: chroma subsampling tried, 444 and/or 420 (default 444,420)",
    )
    p.add_argument(
        "--heldout-all",
        action="store_true",
        help="also score every table of the search on the held-out split (a report: "
        "does any table beat the paper's there?); the choice stays the validation split's",
    )
    p.add_argument("--resume", action="store_true", help="reuse TABLE.cache.jsonl")
    p.add_argument("--val-split", default="val", choices=SPLITS, help="search split (val)")
    p.add_argument("--heldout-split", default="test", choices=SPLITS, help="report split (test)")
    p.add_argument("--jpeg", default="50,75,90", help="JPEG qualities to compare (50,75,90)")
    common.add_output(p, "output table JSON")
    _executor.add_executor_arguments(p)
    return p


def checkpoint_exists(model: str) -> bool:
    """Whether ``model`` names a checkpoint by stem, ``.safetensors`` or ``.json``."""
    p = Path(model)
    return p.is_file() or p.with_name(p.name + ".safetensors").is_file()


def parse_ints(name: str, text: str) -> list[int]:
    """Comma-separated integers, e.g. ``"50,75,90"`` (empty string: none).

    Raises:
        ValueError: an item is not an integer, naming the argument.
    """
    return _parse_list(name, text, int, "integers")


def parse_floats(name: str, text: str) -> list[float]:
    """Comma-separated numbers, e.g. ``"1,2,4"`` (empty string: none).

    Raises:
        ValueError: an item is not a number, naming the argument.
    """
    return _parse_list(name, text, float, "numbers")


def _parse_list(name: str, text: str, convert: Any, what: str) -> list[Any]:
    out = []
    for part in filter(None, (s.strip() for s in text.split(","))):
        try:
            out.append(convert(part))
        except ValueError:
            raise ValueError(f"{name}: expected comma-separated {what}, got {text!r}") from None
    return out


def check_common_args(args: argparse.Namespace) -> None:
    """Checks shared by ``tune`` and ``analyze``: model, data, seed, sizes, attack, device.

    ``args.device`` becomes a ``torch.device`` (``auto`` resolved).
    """
    from segshield._checks import check_number

    if not checkpoint_exists(args.model):
        raise FileNotFoundError(
            f"--model: no checkpoint at {args.model!r} (X.safetensors + X.json)"
        )
    if not args.data.strip():
        raise ValueError("--data: expected KIND[:PATH], e.g. phantom-derm or isic:/data/isic")
    check_number("--seed", args.seed, low=0, integer=True)
    check_number("--batch-size", args.batch_size, low=1, integer=True)
    limit, _ = common.limit_args(args)
    if limit is not None:
        check_number(common.limit_flag(args), limit, low=2, integer=True)
    if args.n is not None:
        from segshield.data import parse_spec

        check_number("--n", args.n, low=2, integer=True)
        if parse_spec(args.data)[1] is not None:  # a folder: real data, not generated
            raise ValueError("--n: only for phantom data; use --limit to read fewer real images")
    if args.size is not None:
        check_number("--size", args.size, low=8, high=8192, integer=True)
    if args.attack:
        from segshield.attacks import get_attack

        get_attack(args.attack)
    args.device = common.device_arg(args.device)


def parse_bound(text: str | float) -> float | str:
    """``--max-benign-loss``: a number in [0, 1], or ``"paper"``.

    Raises:
        ValueError: anything else (the message names the flag and the choices).
    """
    from segshield._checks import check_number
    from segshield.tuning.config import BOUND_RULES

    if text in BOUND_RULES:
        return str(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"--max-benign-loss: expected a number in [0, 1] or one of {list(BOUND_RULES)}, "
            f"got {text!r}"
        ) from None
    check_number("--max-benign-loss", value, low=0, high=1)
    return value


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any expensive work.

    Raises:
        ValueError: a bad number, split, attack or output path (naming the argument).
        FileNotFoundError: the checkpoint is missing.
    """
    from segshield._checks import check_number

    check_common_args(args)
    _executor.check_ray_device(args, str(args.device), [])
    args.max_benign_loss = parse_bound(args.max_benign_loss)
    check_number("--benign-se", args.benign_se, low=0)
    check_number("--budget", args.budget, low=1, integer=True)
    check_number("--adaptive-top-k", args.adaptive_top_k, low=1, integer=True)
    for q in parse_ints("--jpeg", args.jpeg):
        check_number("--jpeg", q, low=1, high=100, integer=True)
    scales = parse_floats("--channel-scales", args.channel_scales)
    if not scales:
        raise ValueError("--channel-scales: expected at least one factor, e.g. 1 or 1,2,4,8")
    for v in scales:
        check_number("--channel-scales", v, low=0, low_inclusive=False)
    _colour_space(args)
    out = Path(args.output)
    if out.suffix.lower() != ".json":
        raise ValueError(f"--output: expected a .json file name, got {args.output!r}")
    if out.is_dir():
        raise ValueError(f"--output: {args.output!r} is a folder; name a .json file")
    common.check_writable_folder(out.parent, "--output")
    if args.resume and not _cache_path(out).is_file():
        log.info("--resume: no cache at %s yet; starting one", _cache_path(out))


def _colour_space(args: argparse.Namespace) -> dict[str, tuple]:
    """``--space``, ``--chroma-scales``, ``--subsample`` as SearchSpace fields, checked.

    Raises:
        ValueError: an unknown space or subsampling (the choices are listed), no space,
            or a chroma factor <= 0 (each message names the flag).
    """
    from segshield._checks import check_choice, check_number
    from segshield.defenses.fr import FR_SPACES
    from segshield.defenses.ycbcr import SUBSAMPLINGS

    spaces = tuple(dict.fromkeys(filter(None, (v.strip() for v in args.space.split(",")))))
    if not spaces:
        raise ValueError(f"--space: expected one or more of {list(FR_SPACES)}, e.g. rgb,ycbcr")
    for name in spaces:
        check_choice("--space", name, FR_SPACES)
    modes = tuple(dict.fromkeys(filter(None, (v.strip() for v in args.subsample.split(",")))))
    for name in modes or ("",):
        check_choice("--subsample", name, SUBSAMPLINGS)
    chroma = tuple(parse_floats("--chroma-scales", args.chroma_scales))
    if not chroma:
        raise ValueError("--chroma-scales: expected at least one factor, e.g. 1 or 1,2,4")
    for v in chroma:
        check_number("--chroma-scales", v, low=0, low_inclusive=False)
    return {"spaces": spaces, "chroma_scales": chroma, "subsamples": modes}


def _cache_path(out: Path) -> Path:
    return out.with_name(out.stem + ".cache.jsonl")


def load_model(args: argparse.Namespace) -> Any:
    """The ``--model`` checkpoint on ``--device``."""
    from segshield.models import load

    return load(args.model, map_location=args.device)


def read_split(args: argparse.Namespace, split: str, model: Any) -> Any:
    """A split of ``--data`` as tensors on ``--device`` (``--size`` default: the model's).

    Returns:
        :class:`~segshield.data.splits.SplitTensors` (images, masks, regions).

    Raises:
        ValueError: images of different sizes (pass ``--size``) or fewer than 2 items.
    """
    from segshield.data import load_dataset
    from segshield.data.splits import SplitTensors, stack_split
    from segshield.data.subset import take_subset

    size = args.size
    if size is None:
        size = model.config.get("input_size")
        size = tuple(size) if isinstance(size, list) else size
    extra = {} if args.n is None else {"n": args.n}
    ds = load_dataset(args.data, size=size, split=split, seed=args.seed, **extra)
    limit, subset = common.limit_args(args)
    ds = take_subset(ds, limit, order=subset or "random", seed=args.seed)
    if limit is not None:  # which images: recorded in the run's JSON (input_record)
        args._samples = {**getattr(args, "_samples", {}), split: list(ds.names)}
    images, masks = stack_split(ds, split=split, arg_prefix="--")
    return SplitTensors(images.to(args.device), masks.to(args.device), dict(ds.regions))


def load_inputs(args: argparse.Namespace, split: str) -> tuple[Any, Any, Any, Any]:
    """Model, images ``(B, C, H, W)``, masks ``(B, H, W)`` and regions for a split.

    Raises:
        ValueError: images of different sizes (pass ``--size``) or an empty split.
    """
    model = load_model(args)
    return (model, *read_split(args, split, model))


def input_record(args: argparse.Namespace, **middle: Any) -> dict[str, Any]:
    """The inputs of a run for its JSON: model, data, ``middle``, limit, n and size."""
    return {
        "model": str(args.model),
        "data": args.data,
        **middle,
        "limit": common.limit_args(args)[0],
        "subset": common.limit_args(args)[1],
        "samples": getattr(args, "_samples", None),
        "n": args.n,
        "size": args.size,
    }


def _tune_data(args: argparse.Namespace, model: Any) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """The validation and held-out splits (one split halved when both name it), regions."""
    from segshield.data.splits import divide_split
    from segshield.tuning import TuneData

    val = read_split(args, args.val_split, model)
    if args.heldout_split == args.val_split:
        # One split (e.g. ISIC 2017 validation): two disjoint halves, seeded.
        if val.images.shape[0] < 4:
            raise ValueError(
                f"{common.limit_flag(args)}: dividing split {args.val_split!r} needs at least 4 "
                f"images, got "
                f"{val.images.shape[0]}"
            )
        (val_x, val_m), (held_x, held_m) = divide_split(val.images, val.masks, args.seed)
        log.info(
            "split %r divided into %d validation and %d held-out images",
            args.val_split,
            val_x.shape[0],
            held_x.shape[0],
        )
    else:
        held = read_split(args, args.heldout_split, model)
        (val_x, val_m), (held_x, held_m) = (val.images, val.masks), (held.images, held.masks)
    if "all" in (args.val_split, args.heldout_split) and args.val_split != args.heldout_split:
        log.warning("--val-split/--heldout-split 'all' overlaps the other split")
    return TuneData(val_x, val_m, held_x, held_m), val.regions


def _tune_config(args: argparse.Namespace, regions: dict[str, tuple[int, ...]]) -> Any:
    from segshield.tuning import SearchSpace, TuneConfig

    scales = tuple(parse_floats("--channel-scales", args.channel_scales))
    keys = ("attack", "max_benign_loss", "benign_se", "budget", "seed", "adaptive")
    keys += ("adaptive_top_k", "resume", "pad", "batch_size", "heldout_all")
    return TuneConfig(
        **{k: getattr(args, k) for k in keys},
        cache=_cache_path(Path(args.output)),
        regions=regions,
        jpeg_qualities=parse_ints("--jpeg", args.jpeg),
        space=SearchSpace(channel_scales=scales, **_colour_space(args)),
    )


def _print_summary(result: Any, heldout_all: bool) -> None:
    """The held-out rows, the paired gap and the count of tables beating the paper's."""
    from segshield.tuning import tables_beating_paper

    for name in ("paper", "tuned"):
        row = result.heldout[name]
        print(
            f"{name:6s} held-out benign loss {row['benign_loss']:+.4f}  "
            f"recovered Dice {row['recovered_dice']:.4f}"
        )
    ben, rec = (result.heldout_difference[k] for k in ("benign_loss", "recovered_dice"))
    print(
        f"tuned - paper, per image (mean +- standard error, n={ben['n']}): benign loss "
        f"{ben['mean']:+.4f} +- {ben['se']:.4f}, recovered Dice {rec['mean']:+.4f} +- "
        f"{rec['se']:.4f}"
    )
    for label, row in result.heldout.items():
        if label.startswith("tuned:") or label.startswith("jpeg:"):
            print(
                f"{label:12s} held-out benign loss {row['benign_loss']:+.4f}  "
                f"recovered Dice {row['recovered_dice']:.4f}"
            )
    for label, c in result.jpeg_comparison.items():
        verdict = "met" if c["target_met"] else "not met"
        if c["beaten_by"]:
            verdict += ", beaten by " + ", ".join(c["beaten_by"])
        elif not c["target_met"]:
            verdict += ": more benign loss than every JPEG quality"
        print(
            f"{label}: dominates {len(c['dominates'])} of the JPEG qualities; target (recovered "
            f"Dice >= every JPEG quality at least as lossy) {verdict}"
        )
    beating, n_tables = tables_beating_paper(result.pareto)
    print(
        f"held-out: {len(beating)} of {n_tables} other tables scored there beat the paper "
        "table (benign loss <= and recovered Dice >=, one strictly)"
        + ("" if heldout_all else "; --heldout-all scores every table of the search")
    )


def run(args: argparse.Namespace) -> int:
    """Run the search and write the table, the plots and the cache."""
    from segshield.tuning.plots import pareto_png, pareto_svg
    from segshield.utils.imageio import atomic_write_bytes
    from segshield.utils.seed import seed_everything

    seed_everything(args.seed)
    out = Path(args.output)
    model = load_model(args)
    data, regions = _tune_data(args, model)
    if args.dry_run:
        print(_executor.tune_dry_run(args, model, data))
        return 0
    result = _executor.run_tune(args, model, data, _tune_config(args, regions))
    splits = {"val_split": args.val_split, "heldout_split": args.heldout_split}
    result.to_file(out, **input_record(args, **splits))
    title = "held-out: recovered Dice vs benign Dice loss"
    pareto_png(out.with_name(out.stem + ".pareto.png"), result.pareto, title)
    svg = pareto_svg(result.pareto, title)
    atomic_write_bytes(out.with_name(out.stem + ".pareto.svg"), svg.encode("utf-8"))
    _print_summary(result, args.heldout_all)
    print(f"wrote {out}")
    return 0 if result.feasible else 1
