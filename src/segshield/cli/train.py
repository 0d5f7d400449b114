"""``segshield train``: train a segmentation model (or, with ``--task classify``, a classifier).

Example::

    segshield train --data phantom-derm --model unet --size 64 --epochs 1 -o runs/derm
    segshield train --data isic:/data/isic2017 --model unet:width=16 --size 128 \\
        --epochs 30 -o runs/isic
    segshield train --data isic:/data/isic2017 ... --epochs 40 -o runs/isic --resume runs/isic

Writes ``CKPT.safetensors`` + ``CKPT.json`` (best epoch by validation Dice) and
``CKPT.state.safetensors`` + ``CKPT.state.json`` (last epoch, for ``--resume``). An
existing checkpoint at ``CKPT`` is refused unless ``--overwrite`` (or ``--resume CKPT``).
``--resume`` may name the output itself: training continues in place. With the same
``--epochs`` a resumed run follows the interrupted one exactly (per-epoch seeds, a
cosine learning-rate schedule computed from the step); a larger ``--epochs`` extends
training and recomputes the schedule for the new length.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from segshield.choices import DEVICE_CHOICES, PRECISIONS, TRAIN_TASKS
from segshield.cli import _common as common

__all__ = ["add_parser", "validate", "run", "parse_size"]

log = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    """``"128"`` -> ``(128, 128)``; ``"192x256"`` -> ``(192, 256)`` (height x width).

    Raises:
        ValueError: not one or two integers in 8..4096.
    """
    parts = str(text).lower().split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) not in (1, 2) or not all(8 <= v <= 4096 for v in hw):
        raise ValueError(
            f"--size: expected S or HxW with values in 8..4096 (e.g. 128 or 192x256), got {text!r}"
        )
    return (hw[0], hw[0]) if len(hw) == 1 else (hw[0], hw[1])


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield train``."""
    p = sub.add_parser(
        "train",
        help="train a segmentation model (Dice + CE, augmentation, best checkpoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="KIND[:PATH]",
        help="data set: phantom-derm, phantom-fundus, or KIND:PATH with KIND one of isic, "
        "ph2, drishti, refuge, origa, paddleseg, folder",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME[:k=v,...]",
        help="model name, optionally with settings (e.g. unet:width=16); default unet "
        "(cnn with --task classify)",
    )
    p.add_argument(
        "--size", default="128", metavar="S|HxW", help="input size (default 128, e.g. 192x256)"
    )
    p.add_argument("--epochs", type=int, default=20, help="number of epochs (default 20)")
    common.add_output(p, "checkpoint stem", metavar="CKPT")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing checkpoint at CKPT"
    )
    common.add_batch_size(p, 8, help="batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    common.add_seed(p, 0, help="random seed")
    p.add_argument(
        "--resume",
        metavar="CKPT",
        default=None,
        help="continue from the training state of an earlier run's -o stem",
    )
    p.add_argument(
        "--val-split",
        type=float,
        default=None,
        help="hold out this fraction of all items for validation (default: the data "
        "loader's split: official folders, or a seeded 70/15/15 train/val/test split)",
    )
    p.add_argument(
        "--task",
        choices=TRAIN_TASKS,
        default="segment",
        help="segment (default) or classify (glaucoma/melanoma classifier)",
    )
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="default auto")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loader worker processes (default 0; each uses one torch thread)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default) or bf16: bfloat16 autocast for the training passes, faster on "
        "CPUs with AVX-512 BF16 and on recent GPUs (checkpoint stays float32)",
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="train in the channels-last memory layout (often faster for convolutions)",
    )
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="phantoms: number of images generated before the split (data default 200); "
        "real data: use only the first N items of each split (for quick runs)",
    )
    return p


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any data is read or a model is trained.

    Raises:
        ValueError: an argument is malformed or out of range, the model spec has an
            unknown setting, the output cannot be written or holds a checkpoint (without
            ``--overwrite``), or the resume state is damaged (the message names it).
        FileNotFoundError: the data folder or the resume state is missing.
    """
    from segshield.data import parse_spec

    _, path = parse_spec(args.data)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"--data: folder {path} does not exist")
    args.size_hw = parse_size(args.size)
    if args.epochs < 1:
        raise ValueError(f"--epochs: expected an integer >= 1, got {args.epochs}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if not args.lr > 0:
        raise ValueError(f"--lr: expected a number > 0, got {args.lr}")
    common.device_arg(args.device)
    out = Path(args.output)
    if out.suffix in (".safetensors", ".json"):
        out = out.with_suffix("")
    if out.exists() and out.is_dir():
        raise ValueError(f"-o: {out} is a folder; give a file stem such as {out}/model")
    args.output = str(out)
    if args.task == "classify":
        _validate_classify(args)
    else:
        _validate_segment(args, path)
    _check_output(args)


def _check_model_spec(spec: str, task: str) -> None:
    """Build the model of ``--model`` once (CPU, default classes) to check its settings."""
    from segshield._checks import check_choice
    from segshield.models import build_model, list_models, parse_model_spec

    try:
        name = parse_model_spec(spec)[0]  # types and checks the settings of a known name
        if name in list_models(task):
            build_model(spec, task=task)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--model: {spec}: {exc}") from None
    check_choice("--model", name, list_models(task))


def _validate_classify(args: argparse.Namespace) -> None:
    if args.model is None:
        args.model = "cnn"
    _check_model_spec(args.model, "classify")
    for flag, value in (
        ("--resume", args.resume),
        ("--val-split", args.val_split),
        ("--workers", args.workers),
        ("--n", args.n),
        ("--precision", None if args.precision == "fp32" else args.precision),
        ("--channels-last", args.channels_last or None),
    ):
        if value is not None:
            raise ValueError(f"{flag}: not supported with --task classify")


def _validate_segment(args: argparse.Namespace, path: Path | None) -> None:
    if args.model is None:
        args.model = "unet"
    _check_model_spec(args.model, "segment")
    if args.val_split is not None and not 0 < args.val_split < 1:
        raise ValueError(f"--val-split: expected a fraction in (0, 1), got {args.val_split}")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers: expected an integer >= 0, got {args.workers}")
    if args.n is not None and args.n < (2 if path is None else 1):  # phantoms have no path
        raise ValueError(f"--n: expected at least 2 phantoms or 1 real item, got {args.n}")
    if args.resume is not None:
        from segshield.training import state_paths
        from segshield.training.state import check_state

        for p in state_paths(args.resume):
            if not p.is_file():
                raise FileNotFoundError(
                    f"--resume: {p} not found; give the -o stem of an earlier segshield train run"
                )
        try:
            check_state(args.resume)
        except ValueError as exc:
            raise ValueError(f"--resume: {exc}") from None


def _check_output(args: argparse.Namespace) -> None:
    """The stem's folder can be written, and no checkpoint there is replaced by accident."""
    from segshield.models.checkpoint import checkpoint_paths
    from segshield.training import state_paths

    out = Path(args.output)
    resuming_here = args.resume is not None and (
        state_paths(args.resume)[0].resolve() == state_paths(out)[0].resolve()
    )
    existing = [p for p in (*checkpoint_paths(out), *state_paths(out)) if p.is_file()]
    if existing and not (args.overwrite or resuming_here):
        raise ValueError(
            f"-o: {existing[0]} exists (an earlier run's checkpoint); pass --overwrite to "
            f"replace it, --resume {out} to continue that run, or choose another stem"
        )
    common.check_writable_folder(out.parent, "-o")


def _load_splits(args: argparse.Namespace):
    """Train and validation sets: the loader's split, or ``--val-split`` of all items."""
    from segshield.data import load_dataset

    # Items are decoded and resized once, then kept in memory (uint8) for later epochs.
    opts: dict = {"cache": True} if args.n is None else {"cache": True, "n": args.n}
    if args.val_split is None:
        train = load_dataset(args.data, size=args.size_hw, split="train", seed=args.seed, **opts)
        val = load_dataset(args.data, size=args.size_hw, split="val", seed=args.seed, **opts)
        return train, val
    import torch

    full = load_dataset(args.data, size=args.size_hw, split="all", seed=args.seed, **opts)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(args.seed)).tolist()
    n_val = min(max(1, round(args.val_split * len(full))), len(full) - 1)
    if n_val < 1:
        raise ValueError(f"--val-split: {args.data} has {len(full)} item(s); need at least 2")
    return _Subset(full, sorted(order[n_val:])), _Subset(full, sorted(order[:n_val]))


class _Subset:
    """Items ``indices`` of a data set, keeping its ``num_classes``/``class_names``/``regions``."""

    def __init__(self, base, indices: list[int]) -> None:
        self.base = base
        self.indices = indices
        self.num_classes = base.num_classes
        self.class_names = base.class_names
        self.regions = base.regions

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]


def run(args: argparse.Namespace) -> int:
    """Train and print a JSON summary of the best epoch; 0 on success."""
    common = {
        "epochs": args.epochs,
        "out": Path(args.output),
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": args.device,
    }
    if args.task == "classify":
        from segshield.training import classify

        result = classify.fit_classifier(
            data=args.data, model=args.model, size=args.size_hw[0], **common
        )
        print(json.dumps(result, indent=2, default=str))
        return 0

    import torch

    from segshield.models import build_model
    from segshield.training import train_segmentation
    from segshield.utils.seed import seed_everything

    seed_everything(args.seed)
    train_ds, val_ds = _load_splits(args)
    k = 1 if train_ds.num_classes == 2 else train_ds.num_classes
    channels = int(train_ds[0]["image"].shape[0])
    model = build_model(
        args.model, num_classes=k, in_channels=channels, class_names=train_ds.class_names
    )
    log.info(
        "training %s (K=%d, C=%d) on %s: %d train / %d val items at %s, %d torch threads",
        *(args.model, k, channels, args.data, len(train_ds), len(val_ds)),
        *("x".join(map(str, args.size_hw)), torch.get_num_threads()),
    )
    result = train_segmentation(
        model,
        train_ds,
        val_ds,
        regions=dict(train_ds.regions),
        resume=args.resume,
        workers=args.workers or 0,
        trained_on=args.data,
        precision=args.precision,
        channels_last=args.channels_last,
        **common,
    )
    summary = {k: result[k] for k in ("best_epoch", "best_scores", "epochs_run", "seconds")}
    summary["checkpoint"] = [f"{args.output}.safetensors", f"{args.output}.json"]
    print(json.dumps(summary, indent=2))
    return 0
