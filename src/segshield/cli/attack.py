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
non-adaptive evaluation, which is incomplete on its own: SPEC §4).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("segshield.cli.attack")

UNTARGETED = "none"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``attack`` sub-command."""
    p = sub.add_parser(
        "attack",
        help="craft adversarial images (ASMA, PGD, ...) and save them with per-sample stats",
        description="Craft adversarial images for a data set; save them with per-sample stats.",
    )
    p.add_argument("--model", required=True, help="checkpoint X (X.json + X.safetensors)")
    p.add_argument("--data", required=True, help="data set KIND[:PATH], e.g. isic:/data/isic")
    p.add_argument("--attack", default="asma", help="attack spec NAME[:k=v,...] (default: asma)")
    p.add_argument(
        "--target",
        default="other-gt",
        help="target masks KIND[:k=v,...]: other-gt (default), empty, full, shift:dx=..,dy=.., "
        "scale:factor=.., cup-up:factor=..; 'none' for an untargeted attack",
    )
    p.add_argument("--defense", default=None, help="defence spec, e.g. fr:pd=30,ac=5,gd=60")
    p.add_argument(
        "--adaptive",
        choices=("bpda", "smooth"),
        default=None,
        help="attack through the defence with this gradient policy (needs --defense)",
    )
    p.add_argument("--eot", type=int, default=1, help="EOT draws per gradient (default 1)")
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE")
    p.add_argument("--split", default="val", help="train, val, test or all (default val)")
    p.add_argument("--limit", type=int, default=None, help="attack only the first N items")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the split, the targets and the attack"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth")
    p.add_argument("-o", "--output", required=True, help="output folder")
    return p


def _target_spec(text: str) -> tuple[str, dict[str, Any]]:
    from segshield.attacks.registry import parse_spec
    from segshield.attacks.targets import list_targets

    kind, params = parse_spec(text)
    if kind == UNTARGETED:
        if params:
            raise ValueError(f"--target: 'none' takes no parameters, got {text!r}")
        return kind, params
    kinds = list_targets()
    if kind not in kinds:
        raise ValueError(
            f"--target: unknown kind {kind!r}; expected one of {', '.join(kinds)} or 'none'"
        )
    unknown = sorted(set(params) - set(kinds[kind]))
    if unknown:
        raise ValueError(
            f"--target: unknown parameter(s) {', '.join(unknown)} for {kind}; "
            f"valid: {', '.join(kinds[kind]) or 'none'}"
        )
    return kind, params


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

    name, params = parse_spec(spec)
    if "seed" in list_attacks().get(name, ()) and "seed" not in params:
        spec = spec + ("," if ":" in spec else ":") + f"seed={seed}"
    return get_attack(spec)


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device: expected cpu, cuda, cuda:N or auto, got {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {name} requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu, cuda, cuda:N or auto, got {name!r}")
    return dev


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any expensive work.

    Raises:
        ValueError: a bad attack, target, defence, device or number, --adaptive or --eot
            without --defense, or an output folder that is an input.
        FileNotFoundError: the checkpoint or the data folder is missing.
    """
    from segshield._checks import check_choice, check_number
    from segshield.data import parse_spec as parse_data_spec
    from segshield.models import read_config

    check_number("--seed", args.seed, low=0, integer=True)
    try:
        attack = _build_attack(args.attack, args.seed)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--attack: {exc}") from exc
    kind, _ = _target_spec(args.target)
    if attack.requires_target and kind == UNTARGETED:
        raise ValueError(f"--target: {attack.name} is targeted; choose a target kind, not 'none'")
    if not attack.allows_target and kind != UNTARGETED:
        raise ValueError(f"--target: {attack.name} is untargeted; use --target none")
    if args.adaptive is not None and args.defense is None:
        raise ValueError("--adaptive: needs --defense (the defence to attack through)")
    check_number("--eot", args.eot, low=1, integer=True)
    if args.eot > 1 and args.adaptive is None:
        raise ValueError("--eot: EOT averages over a defence's randomness; needs --adaptive")
    if args.defense is not None:
        from segshield.defenses import get_defense

        try:
            get_defense(_defense_spec(args.defense, args.adaptive))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--defense: {exc}") from exc
    read_config(args.model)  # FileNotFoundError / ValueError name the file
    _, root = parse_data_spec(args.data)
    if root is not None and not root.exists():
        raise FileNotFoundError(f"--data: {root}: no such folder")
    check_choice("--split", args.split, ("train", "val", "test", "all"))
    if args.size is not None:
        check_number("--size", args.size, low=8, high=8192, integer=True)
    if args.limit is not None:
        check_number("--limit", args.limit, low=1, integer=True)
        if args.limit < 2 and kind == "other-gt":
            raise ValueError("--limit: --target other-gt needs at least 2 images, got 1")
    check_number("--batch-size", args.batch_size, low=1, integer=True)
    _device(args.device)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o: {out} exists and is not a folder")
    if root is not None:
        r, o = root.resolve(), out.resolve()
        if o == r or r in o.parents:
            raise ValueError(f"-o: {out} is inside the input data folder {root}; choose another")


def _groups(items: list[tuple[int, dict]]) -> list[list[tuple[int, dict]]]:
    """Split read items into groups of equal image shape (stackable into one batch)."""
    groups: dict[tuple[int, ...], list[tuple[int, dict]]] = {}
    for i, it in items:
        groups.setdefault(tuple(it["image"].shape), []).append((i, it))
    return list(groups.values())


def _resize_mask(mask, hw):
    import torch.nn.functional as F

    if tuple(mask.shape[-2:]) == tuple(hw):
        return mask
    m = F.interpolate(mask[None, None].float(), size=tuple(hw), mode="nearest")
    return m[0, 0].round().long()


def _write_table(out: Path, rows: list[dict[str, Any]]) -> None:
    from segshield.utils.imageio import atomic_write_bytes

    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_bytes(out / "stats.csv", buf.getvalue().encode())
    clean = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows
    ]
    atomic_write_bytes(out / "stats.json", json.dumps(clean, indent=1).encode())


@dataclass(frozen=True)
class _Job:
    """What every batch of one ``segshield attack`` run shares."""

    args: argparse.Namespace
    attack: Any
    victim: Any  # the model the attack sees (Defended for --adaptive)
    model: Any
    defense: Any
    ds: Any
    partner: list[int] | None  # other-gt: whose mask each item gets as its target
    names: list[str]
    tkind: str
    tparams: dict[str, Any]
    k: int
    img_dir: Path
    dtype: Any
    device: Any


def _attack_batch(job: _Job, group) -> list[dict[str, Any]]:
    """Attack one stackable group of items; returns their stats rows."""
    import torch

    from segshield.attacks import make_targets
    from segshield.attacks.base import target_iou
    from segshield.attacks.losses import predict
    from segshield.utils.imageio import from_tensor, write_png

    batch = [i for i, _ in group]
    x = torch.stack([it["image"] for _, it in group]).to(job.device)
    y = torch.stack([it["mask"] for _, it in group]).to(job.device)
    if job.args.bits == 16 and x.shape[1] != 1:
        raise ValueError("--bits 16 needs single-channel images (Pillow has no 16-bit RGB PNG)")
    sources: list[str | None] = [None] * len(batch)
    if job.tkind == UNTARGETED:
        t = None
    elif job.partner is not None:
        t = torch.stack([_resize_mask(job.ds[job.partner[i]]["mask"], x.shape[-2:]) for i in batch])
        t = t.to(job.device)
        sources = [job.names[job.partner[i]] for i in batch]
    else:
        t = make_targets(job.tkind, y, seed=job.args.seed, **job.tparams)
    res = job.attack(job.victim, x, y, t)
    with torch.no_grad():
        clean_pred = predict(job.model(x))
        dpred = (
            predict(job.model(job.defense(res.adversarial))) if job.defense is not None else None
        )
    clean_iou = target_iou(clean_pred, y, job.k).cpu()
    d_gt = target_iou(dpred, y, job.k).cpu() if dpred is not None else None
    d_tg = target_iou(dpred, t, job.k).cpu() if dpred is not None and t is not None else None
    rows = []
    for j, i in enumerate(batch):
        name = job.names[i]
        write_png(job.img_dir / f"{name}.png", from_tensor(res.adversarial[j], dtype=job.dtype))
        row: dict[str, Any] = {"name": name, "target_source": sources[j]}
        row["clean_gt_iou"] = float(clean_iou[j])
        for key, val in res.stats.items():
            if key == "success":
                row[key] = bool(val[j])
            elif key == "steps":
                row[key] = int(val[j])
            else:
                row[key] = float(val[j])
        if d_gt is not None:
            row["defended_gt_iou"] = float(d_gt[j])
            row["defended_target_iou"] = float(d_tg[j]) if d_tg is not None else math.nan
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Attack the data set; 0 when every item succeeded to run, 1 if any item failed."""
    import numpy as np
    import torch

    from segshield import __version__
    from segshield.attacks import Defended, derangement
    from segshield.data import load_dataset
    from segshield.models import load
    from segshield.utils.imageio import atomic_write_bytes
    from segshield.utils.progress import progress
    from segshield.utils.seed import seed_everything

    seed_everything(args.seed)
    device = _device(args.device)
    attack = _build_attack(args.attack, args.seed)
    tkind, tparams = _target_spec(args.target)
    model = load(args.model, map_location=device).eval()
    defense = None
    if args.defense is not None:
        from segshield.defenses import get_defense

        defense = get_defense(_defense_spec(args.defense, args.adaptive)).to(device)
        if args.adaptive is None:
            log.warning(
                "non-adaptive evaluation: the attack does not see %s; add --adaptive bpda "
                "for a complete defence evaluation (SPEC §4)",
                args.defense,
            )
    victim = Defended(model, defense, eot_samples=args.eot) if args.adaptive else model
    ds = load_dataset(args.data, size=args.size, split=args.split, seed=args.seed)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    if n == 0:
        log.error("--data %s split %s has no items", args.data, args.split)
        return 1
    indices = list(range(n))
    out = Path(args.output)
    img_dir = out / "adversarial"
    dtype = np.uint16 if args.bits == 16 else np.uint8
    k = max(int(getattr(model, "num_classes", 2)), 2)
    partner = None
    if tkind == "other-gt":
        if n < 2:
            log.error("--target other-gt needs at least 2 items, got %d", n)
            return 1
        partner = derangement(n, args.seed).tolist()

    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for problem in getattr(ds, "problems", ()):
        log.error("skipped while indexing %s: %s", args.data, problem)
        failed.append(str(problem))
    names = ds.names
    job = _Job(
        args, attack, victim, model, defense, ds, partner, names, tkind, tparams, k, img_dir,
        dtype, device,
    )  # fmt: skip
    chunks = [indices[i : i + args.batch_size] for i in range(0, n, args.batch_size)]
    for chunk in progress(chunks, desc="attack", unit="batch"):
        items = []
        for i in chunk:
            try:
                items.append((i, ds[i]))
            except (ValueError, OSError) as exc:
                log.error("cannot read %s: %s", names[i], exc)
                failed.append(names[i])
        for group in _groups(items):
            batch = [i for i, _ in group]
            try:
                rows.extend(_attack_batch(job, group))
            except (ValueError, RuntimeError, OSError) as exc:
                bad = ", ".join(names[i] for i in batch)
                log.error("attack failed on %s: %s", bad, exc)
                failed.extend(names[i] for i in batch)

    out.mkdir(parents=True, exist_ok=True)
    _write_table(out, rows)
    manifest = {
        "command": "attack",
        "segshield_version": __version__,
        "torch_version": torch.__version__,
        "model": str(args.model),
        "data": args.data,
        "split": args.split,
        "size": args.size,
        "limit": args.limit,
        "seed": args.seed,
        "attack": attack.spec(),
        "attack_config": attack.config(),
        "target": args.target,
        "defense": defense.spec() if defense is not None else None,
        "adaptive": args.adaptive,
        "eot": args.eot,
        "bits": args.bits,
        "device": str(device),
        "n_items": n,
        "n_failed": len(failed),
        "failed": failed,
    }
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    ok = len(rows)
    sr = sum(r["success"] for r in rows) / ok if ok else math.nan
    print(f"attacked {ok}/{n} images, success rate {sr:.3f}; results in {out}")
    if failed:
        log.error("%d item(s) failed: %s", len(failed), ", ".join(failed))
        return 1
    return 0
