"""``segshield reproduce``: the FR paper's protocol (or a quick one) on a real data set.

``--protocol fr-paper`` (the default) is the FR authors' setting: ResNet-50 FCN at
224x224, ASMA tau=1e-7, beta=1e-6, 1001 steps, FR 30/5/60 with zero padding against the
baselines, an adaptive BPDA-PGD; ``--protocol quick`` the earlier U-Net at 128x128
(docs/ALGORITHMS.md §4b). Trains a model on the training split (cached by settings),
attacks the evaluation split (ISIC: the official test folder when present, else
validation), defends, prints the table and writes the report. ``--print-config``
prints the resolved settings as JSON and exits. ``--limit N`` evaluates a seeded random
subset of N images, ``--first N`` the first N; ``--epochs`` shortens training.

Example::

    segshield reproduce --data isic:/data/isic2017 --print-config
    segshield reproduce --data isic:/data/isic2017 --protocol quick --limit 48
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import warnings
from pathlib import Path

from segshield.choices import PROTOCOLS, REPRODUCE_DATASETS, REPRODUCE_TARGETS
from segshield.cli import _common as common
from segshield.cli import _executor
from segshield.cli.demo import add_protocol_arguments, print_tables

__all__ = ["add_parser", "validate", "run"]

log = logging.getLogger(__name__)

#: flag (``args`` attribute) -> the :class:`~segshield.evaluation.protocols.Protocol`
#: field it overrides (unset flags keep the preset's value)
_OVERRIDES = {
    **{f: f for f in ("size", "model", "width", "epochs", "n_train", "batch_size")},
    **{f: f for f in ("adaptive", "target", "seed", "init")},
    "asma": "attack",
    "defense": "defenses",
}
#: ``--dataset`` (deprecated) -> data kind
_KINDS = {"isic2017": "isic", "origa": "origa", "paddleseg": "paddleseg"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield reproduce``."""
    p = sub.add_parser(
        "reproduce", help="The FR paper's protocol on a real data set (ISIC, fundus)"
    )
    # not required by the parser: the deprecated --dataset/--root may stand for it
    p.add_argument("--data", help="data set KIND:PATH, e.g. isic:/data/isic2017, origa:DIR")
    p.add_argument("--protocol", default="fr-paper", choices=PROTOCOLS, help="preset (fr-paper)")
    p.add_argument("--target", choices=REPRODUCE_TARGETS, help="target masks (default other-gt)")
    p.add_argument("--init", help="encoder weights (.safetensors) to start from")
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved settings as JSON, exit"
    )
    p.add_argument("--dataset", choices=REPRODUCE_DATASETS, help="deprecated: use --data")
    p.add_argument("--root", help="deprecated: use --data KIND:PATH")
    add_protocol_arguments(p, first=True)
    for action in p._actions:  # the shared flags' help names the demo's defaults
        if action.dest in _OVERRIDES and action.dest not in ("target", "init", "n_train"):
            text = re.sub(r"\s*\([^()]*\)$", "", action.help or action.dest)
            action.help = f"{text} (default: the protocol's; see --print-config)"
    common.add_output(p, "output folder (default reproduce_out/PROTOCOL-KIND)", required=False)
    _executor.add_executor_arguments(p)
    return p


def _data_spec(args: argparse.Namespace) -> str:
    """``--data``, or the spec of the deprecated ``--dataset``/``--root`` pair."""
    old = args.dataset is not None or args.root is not None
    if old and args.data is not None:
        raise ValueError("--data: give either --data or the deprecated --dataset/--root, not both")
    if not old:
        if args.data is None:
            raise ValueError("--data: required, e.g. --data isic:/data/isic2017")
        return args.data
    if args.dataset is None or args.root is None:
        raise ValueError("--dataset/--root: deprecated, and need each other; use --data KIND:PATH")
    spec = f"{_KINDS[args.dataset]}:{args.root}"
    warnings.warn(
        f"--dataset/--root are deprecated and will be removed in the next release; use "
        f"--data {spec}",
        FutureWarning,
        stacklevel=2,
    )
    return spec


def validate(args: argparse.Namespace) -> None:
    """Check the data folder, the protocol and every setting before training.

    Raises:
        FileNotFoundError: the data folder or the ``--init`` file is missing.
        ValueError: bad settings or specs.
    """
    from segshield.cli.demo import validate_specs
    from segshield.data.registry import parse_spec
    from segshield.evaluation.protocols import resolve

    spec = _data_spec(args)
    kind, root = parse_spec(spec)
    if root is None:
        raise ValueError(f"--data: {spec!r} is generated data; reproduce takes a real data set")
    if not root.is_dir():
        flag = "--root" if args.root is not None else "--data"
        raise FileNotFoundError(f"{flag}: {root}: no such folder; pass the data set folder")
    if args.init is not None and not Path(args.init).is_file():
        raise FileNotFoundError(f"--init: {args.init}: no such file; pass a .safetensors file")
    limit, subset = common.limit_args(args)
    given = {field: getattr(args, flag) for flag, field in _OVERRIDES.items()}
    protocol = resolve(args.protocol, limit=limit, subset=subset, **given)
    validate_specs(protocol.attack, protocol.adaptive, protocol.defenses, protocol.model)
    if args.init is not None:
        _check_init(protocol, args.init)
    args._spec, args._protocol = spec, protocol
    if args.print_config:
        return
    if args.output is None:
        args.output = str(Path("reproduce_out") / f"{protocol.name}-{kind}")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output: {out} is a file; expected a folder")
    args._device = str(common.device_arg(args.device))
    _executor.check_ray_device(args, args._device, [])


def _check_init(protocol, path: str) -> None:
    """Refuse an ``--init`` file that does not fit the model before any training."""
    from segshield.models import build_model
    from segshield.models.init import load_encoder

    load_encoder(build_model(protocol.model, width=protocol.width), path)


def run(args: argparse.Namespace) -> int:
    """Print the settings (``--print-config``), or train, evaluate, print, report."""
    from segshield.evaluation.protocols import resolved_config
    from segshield.evaluation.reproduce import run_protocol

    if args.print_config:
        print(json.dumps(resolved_config(args._protocol, args._spec), indent=2))
        return 0
    if args.dry_run:
        print(_executor.reproduce_dry_run(args, args._protocol, args._spec, args._device))
        return 0
    summary, report = run_protocol(
        args._protocol,
        args._spec,
        args.output,
        args.cache_dir,
        args._device,
        executor=_executor.executor_of(args),
    )
    p = args._protocol
    enc = "trained from scratch" if p.init is None else f"initialised from {p.init}"
    print(f"protocol {p.name}: {p.model} at {p.size}x{p.size}, encoder {enc}\n")
    from segshield.evaluation.protocols import REPRODUCE_COLUMNS

    print_tables(summary, report, columns=REPRODUCE_COLUMNS)
    return 0
