"""``segshield attack``: craft adversarial images for a data set and save them with stats.

Example::

    segshield attack --model runs/unet --data phantom-derm --attack asma:steps=300 \\
        --target other-gt --defense fr:pd=30,ac=5,gd=60 --adaptive bpda -o out/asma

Writes ``OUTDIR/adversarial/NAME.png`` (lossless, 8-bit by default as in the FR paper's
pipeline; ``--bits 16`` for single-channel images), ``OUTDIR/stats.csv`` and
``OUTDIR/stats.json`` (one row per sample) and ``OUTDIR/manifest.json`` (config, seed,
version), all atomically. Statistics are measured on the float adversarial images
before quantisation. With ``--defense`` the rows also hold the defended model's IoUs on
the adversarial images; without ``--adaptive`` the attack does not see the defence (a
non-adaptive evaluation, which is incomplete on its own: docs/ALGORITHMS.md §4).
``--attack-precision bf16``, ``--channels-last`` and ``--compile`` run the attack's model
passes faster on a GPU (:mod:`segshield.attacks.precision`; float32 is the default).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from segshield.choices import ADAPTIVE_GRADIENTS, PNG_BITS, SPLITS, UNTARGETED
from segshield.cli import _common as common
from segshield.cli._speed import add_attack_speed, check_attack_speed

log = logging.getLogger("segshield.cli.attack")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``attack`` sub-command."""
    p = sub.add_parser(
        "attack",
        help="craft adversarial images (ASMA, PGD, ...) and save them with per-sample stats",
        description="Craft adversarial images for a data set; save them with per-sample stats.",
    )
    common.add_model(p, "checkpoint X (X.json + X.safetensors)")
    common.add_data(p)
    p.add_argument("--attack", default="asma", help="attack spec NAME[:k=v,...] (default: asma)")
    p.add_argument(
        "--target",
        default="other-gt",
        help="target masks KIND[:k=v,...]: other-gt (default), empty, full, shift:dx=..,dy=.., "
        f"scale:factor=.., cup-up:factor=..; '{UNTARGETED}' for an untargeted attack",
    )
    p.add_argument("--defense", default=None, help="defence spec, e.g. fr:pd=30,ac=5,gd=60")
    p.add_argument(
        "--adaptive",
        choices=ADAPTIVE_GRADIENTS,
        default=None,
        help="attack through the defence with this gradient policy (needs --defense)",
    )
    p.add_argument("--eot", type=int, default=1, help="EOT draws per gradient (default 1)")
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE")
    common.add_split(p)
    common.add_limit(p, "attack N items")
    common.add_batch_size(p)
    common.add_seed(p, help="seed of the split, the targets and the attack")
    common.add_device(p)
    add_attack_speed(p)
    p.add_argument("--bits", type=int, choices=PNG_BITS, default=8, help="PNG bit depth")
    common.add_output(p)
    return p


def _defense_spec(spec: str, adaptive: str | None) -> str:
    if adaptive is None:
        return spec
    if "gradient=" in spec:
        if f"gradient={adaptive}" not in spec:
            raise ValueError(
                f"--adaptive {adaptive} contradicts the gradient set in --defense {spec!r}; "
                "give the policy once"
            )
        return spec
    return spec + ("," if ":" in spec else ":") + f"gradient={adaptive}"


def _build_attack(spec: str, seed: int):
    """The attack of ``--attack``; ``--seed`` seeds it unless the spec sets ``seed``."""
    from segshield.attacks import get_attack, list_attacks, parse_spec
    from segshield.attacks.sweep import is_sweep

    if is_sweep(spec):
        raise ValueError(
            f"{spec!r} is a sweep (one attack per value); segshield attack runs one attack: "
            "give one value, or run the sweep with segshield evaluate --attack"
        )
    name, params = parse_spec(spec)
    if "seed" in list_attacks().get(name, ()) and "seed" not in params:
        spec = spec + ("," if ":" in spec else ":") + f"seed={seed}"
    return get_attack(spec)


def _build_defense(args: argparse.Namespace):
    """The defence of ``--defense`` with the ``--adaptive`` gradient, or ``None``."""
    from segshield.defenses import get_defense

    if args.defense is None:
        return None
    try:
        return get_defense(_defense_spec(args.defense, args.adaptive))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--defense: {exc}") from exc


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any expensive work.

    Raises:
        ValueError: a bad attack, target, defence, device or number, a checkpoint whose
            weights do not fit its JSON, --adaptive or --eot without --defense, or an
            output folder that is an input or cannot be written.
        FileNotFoundError: the checkpoint or the data folder is missing.
    """
    from segshield._checks import check_choice, check_number
    from segshield.attacks.target_spec import check_attack_target, parse_target
    from segshield.data import parse_spec as parse_data_spec
    from segshield.models.checkpoint import check_checkpoint

    check_number("--seed", args.seed, low=0, integer=True)
    try:
        attack = _build_attack(args.attack, args.seed)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--attack: {exc}") from exc
    kind, _ = parse_target(args.target, "--target")
    check_attack_target(attack, kind, "--target")
    if args.adaptive is not None and args.defense is None:
        raise ValueError("--adaptive: needs --defense (the defence to attack through)")
    check_number("--eot", args.eot, low=1, integer=True)
    if args.eot > 1 and args.adaptive is None:
        raise ValueError("--eot: EOT averages over a defence's randomness; needs --adaptive")
    _build_defense(args)
    check_checkpoint(args.model)  # FileNotFoundError / ValueError name the file
    _, root = parse_data_spec(args.data)
    if root is not None and not root.exists():
        raise FileNotFoundError(f"--data: {root}: no such folder")
    check_choice("--split", args.split, SPLITS)
    if args.size is not None:
        check_number("--size", args.size, low=8, high=8192, integer=True)
    limit, _ = common.limit_args(args)
    if limit is not None:
        flag = common.limit_flag(args)
        check_number(flag, limit, low=1, integer=True)
        if limit < 2 and kind in ("other-gt", "last-gt"):
            raise ValueError(f"{flag}: --target {kind} needs at least 2 images, got 1")
    check_number("--batch-size", args.batch_size, low=1, integer=True)
    device = common.device_arg(args.device)
    check_attack_speed(args.attack_precision or "fp32", args.channels_last, args.compile, device)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o: {out} exists and is not a folder")
    if root is not None:
        r, o = root.resolve(), out.resolve()
        if o == r or r in o.parents:
            raise ValueError(f"-o: {out} is inside the input data folder {root}; choose another")
    common.check_writable_folder(out, "-o")


def _manifest(args, attack, defense, device, ds, failed: list[str]) -> dict[str, Any]:
    """The run's settings and outcome for ``OUTDIR/manifest.json``."""
    import torch

    from segshield import __version__

    return {
        "command": "attack",
        "segshield_version": __version__,
        "torch_version": torch.__version__,
        "model": str(args.model),
        "data": args.data,
        "split": args.split,
        "size": args.size,
        "limit": common.limit_args(args)[0],
        "subset": common.limit_args(args)[1],
        "samples": None if common.limit_args(args)[0] is None else list(ds.names),
        "seed": args.seed,
        "attack": attack.spec(),
        "attack_config": attack.config(),
        "target": args.target,
        "defense": defense.spec() if defense is not None else None,
        "adaptive": args.adaptive,
        "eot": args.eot,
        "bits": args.bits,
        "device": str(device),
        "attack_precision": args.attack_precision or "fp32",
        "channels_last": args.channels_last,
        "compile": args.compile,
        "n_items": len(ds),
        "n_failed": len(failed),
        "failed": failed,
    }


def run(args: argparse.Namespace) -> int:
    """Attack the data set; 0 when every item succeeded to run, 1 if any item failed."""
    from segshield.attacks.precision import fast_attack
    from segshield.attacks.target_spec import parse_target
    from segshield.data import load_dataset
    from segshield.data.subset import take_subset
    from segshield.evaluation.attack_dataset import attack_dataset
    from segshield.models import load
    from segshield.utils.imageio import atomic_write_bytes
    from segshield.utils.seed import seed_everything

    seed_everything(args.seed)
    device = common.device_arg(args.device)
    attack = fast_attack(
        _build_attack(args.attack, args.seed),
        args.attack_precision or "fp32",
        args.channels_last,
        args.compile,
    )
    tkind, _ = parse_target(args.target, "--target")
    model = load(args.model, map_location=device).eval()
    defense = _build_defense(args)
    if defense is not None:
        defense = defense.to(device)
        if args.adaptive is None:
            log.warning(
                "non-adaptive evaluation: the attack does not see %s; add --adaptive bpda "
                "for a complete defence evaluation (docs/ALGORITHMS.md §4)",
                args.defense,
            )
    ds = load_dataset(args.data, size=args.size, split=args.split, seed=args.seed)
    limit, subset = common.limit_args(args)
    ds = take_subset(ds, limit, order=subset or "random", seed=args.seed)
    n = len(ds)
    if n == 0:
        log.error("--data %s split %s has no items", args.data, args.split)
        return 1
    if tkind in ("other-gt", "last-gt") and n < 2:
        log.error("--target %s needs at least 2 items, got %d", tkind, n)
        return 1
    failed: list[str] = []
    for problem in getattr(ds, "problems", ()):
        log.error("skipped while indexing %s: %s", args.data, problem)
        failed.append(str(problem))
    done = attack_dataset(
        model, ds, attack, args.output, target=args.target, defense=defense,
        adaptive=args.adaptive is not None, eot_samples=args.eot, limit=None,
        batch_size=args.batch_size, seed=args.seed, bits=args.bits, device=device,
    )  # fmt: skip
    failed.extend(done.failed)
    manifest = _manifest(args, attack, defense, device, ds, failed)
    out = Path(args.output)
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    print(
        f"attacked {len(done.rows)}/{n} images, success rate {done.success_rate:.3f}; "
        f"results in {out}"
    )
    return common.exit_code(log, failed, "item(s)")
