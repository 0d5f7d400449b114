"""Attack every image of a data set; save the adversarial images with per-sample stats.

:func:`attack_dataset` is ``segshield attack`` as a library call: it crafts one
adversarial image per item (in batches of equal image size), writes it as lossless PNG
(``OUT/adversarial/NAME.png``, 8-bit as in the FR paper's pipeline, or 16-bit for
single-channel images) and the per-sample statistics (``OUT/stats.csv`` and
``OUT/stats.json``, :func:`write_stats`). Statistics are measured on the float
adversarial images before quantisation. With a defence the rows also hold the defended
model's IoUs on the adversarial images; without ``adaptive`` the attack does not see the
defence (a non-adaptive evaluation, incomplete on its own: docs/ALGORITHMS.md §4). A
batch that fails (unreadable file, a model error) is logged and named in
:attr:`AttackedSet.failed`; the other batches still run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segshield._checks import check_choice, check_number
from segshield.attacks import Defended, derangement, make_targets
from segshield.attacks.base import target_iou
from segshield.attacks.losses import predict
from segshield.attacks.target_spec import (
    UNTARGETED,
    check_attack_target,
    parse_target,
    resize_mask,
)
from segshield.choices import PNG_BITS
from segshield.utils.device import resolve_device
from segshield.utils.imageio import atomic_write_bytes, from_tensor, write_png
from segshield.utils.progress import progress

__all__ = ["AttackedSet", "attack_dataset", "write_stats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttackedSet:
    """What :func:`attack_dataset` did.

    Attributes:
        rows: one stats row per attacked item (also in ``stats.csv``/``stats.json``).
        failed: names of the items that could not be read or attacked.
        n_items: items asked for (the data set, or its first ``limit`` items).
    """

    rows: list[dict[str, Any]]
    failed: list[str]
    n_items: int

    @property
    def success_rate(self) -> float:
        """Fraction of the attacked items whose attack succeeded (NaN without rows)."""
        return sum(r["success"] for r in self.rows) / len(self.rows) if self.rows else math.nan


@dataclass(frozen=True)
class _Job:
    """What every batch of one :func:`attack_dataset` call shares."""

    attack: Any
    victim: Any  # the model the attack sees (Defended when adaptive)
    model: torch.nn.Module
    defense: Any
    dataset: Any
    partner: list[int] | None  # other-gt: whose mask each item gets as its target
    kind: str
    params: dict[str, Any]
    k: int
    img_dir: Path
    dtype: Any
    device: torch.device
    seed: int
    bits: int


def attack_dataset(
    model: torch.nn.Module,
    dataset: Any,
    attack: Any,
    out_dir: str | Path,
    *,
    target: str | None = "other-gt",
    defense: Any = None,
    adaptive: bool = False,
    eot_samples: int = 1,
    limit: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    bits: int = 8,
    device: str | torch.device = "cpu",
) -> AttackedSet:
    """Attack the first ``limit`` items of a data set; write images and stats to ``out_dir``.

    Targets (docs/ALGORITHMS.md §4): ``other-gt`` gives item ``i`` the ground truth of item
    ``derangement(n, seed)[i]`` (resized to its image), ``last-gt`` the last item's (the
    last item the one before it); the other kinds transform the item's own mask
    (:func:`segshield.attacks.make_targets`).

    Args:
        model: segmentation model, ``(B, C, H, W)`` -> logits ``(B, K, H, W)``.
        dataset: indexable items ``{"image", "mask"}`` with ``names`` (a
            ``segshield.data`` data set).
        attack: a ``segshield.attacks`` attack (e.g. ``get_attack("asma:steps=300")``).
        out_dir: output folder (``adversarial/``, ``stats.csv``, ``stats.json``).
        target: target spec ``KIND[:k=v,...]`` (:func:`~segshield.attacks.target_spec.
            parse_target`), or ``None``/``"none"`` for an untargeted attack. Default
            ``"other-gt"``.
        defense: a ``segshield.defenses`` defence whose output is also scored, or ``None``.
        adaptive: attack through the defence (with its gradient policy). Default False.
        eot_samples: EOT draws per gradient of the adaptive attack, >= 1. Default 1.
        limit: attack only the first ``limit`` items (>= 1), or ``None`` for all.
        batch_size: items per batch, >= 1. Default 8.
        seed: seed of the targets, >= 0. Default 0.
        bits: PNG bit depth, 8 or 16 (16: single-channel images only). Default 8.
        device: where to compute (:func:`segshield.utils.device.resolve_device`).

    Returns:
        The rows, the failed items and the number of items asked for.

    Raises:
        ValueError: a bad target or number, a target that does not fit the attack,
            ``adaptive`` without a defence, no item, or ``other-gt``/``last-gt`` with one item.

    Example:
        >>> attack_dataset(model, load_dataset("phantom-derm", size=64), get_attack("asma"),
        ...                "out/asma")  # doctest: +SKIP
    """
    kind, params = parse_target(UNTARGETED if target is None else target)
    check_attack_target(attack, kind)
    check_number("eot_samples", eot_samples, low=1, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("seed", seed, low=0, integer=True)
    check_choice("bits", bits, PNG_BITS)
    if limit is not None:
        check_number("limit", limit, low=1, integer=True)
    if adaptive and defense is None:
        raise ValueError("adaptive: needs a defense to attack through")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("dataset: no items to attack")
    partner = None
    if kind in ("other-gt", "last-gt"):
        if n < 2:
            raise ValueError(f"target: {kind} needs at least 2 items, got {n}")
        last = [n - 1] * (n - 1) + [n - 2]  # the last item's mask; the last takes the one before
        partner = derangement(n, seed).tolist() if kind == "other-gt" else last
    device = resolve_device(device)
    model = model.to(device).eval()
    defense = defense.to(device) if defense is not None else None
    victim = Defended(model, defense, eot_samples=eot_samples) if adaptive else model
    k = max(int(getattr(model, "num_classes", 2)), 2)
    img_dir = Path(out_dir) / "adversarial"
    dtype = np.uint16 if bits == 16 else np.uint8
    job = _Job(
        attack, victim, model, defense, dataset, partner, kind, params, k, img_dir, dtype,
        device, int(seed), bits,
    )  # fmt: skip
    rows, failed = _attack_all(job, n, batch_size)
    write_stats(out_dir, rows)
    return AttackedSet(rows, failed, n)


def _groups(items: list[tuple[int, dict]]) -> list[list[tuple[int, dict]]]:
    """Split read items into groups of equal image shape (stackable into one batch)."""
    groups: dict[tuple[int, ...], list[tuple[int, dict]]] = {}
    for i, it in items:
        groups.setdefault(tuple(it["image"].shape), []).append((i, it))
    return list(groups.values())


def _attack_all(job: _Job, n: int, batch_size: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Read and attack items ``0..n-1`` batch by batch; a failing batch is logged, skipped."""
    names = job.dataset.names
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    chunks = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    for chunk in progress(chunks, desc="attack", unit="batch"):
        items = []
        for i in chunk:
            try:
                items.append((i, job.dataset[i]))
            except (ValueError, OSError) as exc:
                log.error("cannot read %s: %s", names[i], exc)
                failed.append(names[i])
        for group in _groups(items):
            batch = [i for i, _ in group]
            try:
                rows.extend(_attack_batch(job, group))
            except (ValueError, RuntimeError, OSError) as exc:
                log.error("attack failed on %s: %s", ", ".join(names[i] for i in batch), exc)
                failed.extend(names[i] for i in batch)
    return rows, failed


def _targets(job: _Job, batch: list[int], x: torch.Tensor, y: torch.Tensor):
    """The batch's target masks (``None`` when untargeted) and whose mask each one is."""
    names = job.dataset.names
    if job.kind == UNTARGETED:
        return None, [None] * len(batch)
    if job.partner is not None:
        masks = [resize_mask(job.dataset[job.partner[i]]["mask"], x.shape[-2:]) for i in batch]
        return torch.stack(masks).to(job.device), [names[job.partner[i]] for i in batch]
    return make_targets(job.kind, y, seed=job.seed, **job.params), [None] * len(batch)


def _attack_batch(job: _Job, group: list[tuple[int, dict]]) -> list[dict[str, Any]]:
    """Attack one stackable group of items, write their images; returns their stats rows."""
    batch = [i for i, _ in group]
    x = torch.stack([it["image"] for _, it in group]).to(job.device)
    y = torch.stack([it["mask"] for _, it in group]).to(job.device)
    if job.bits == 16 and x.shape[1] != 1:
        raise ValueError("--bits 16 needs single-channel images (Pillow has no 16-bit RGB PNG)")
    t, sources = _targets(job, batch, x, y)
    res = job.attack(job.victim, x, y, t)
    with torch.no_grad():
        clean_pred = predict(job.model(x))
        dpred = None
        if job.defense is not None:
            dpred = predict(job.model(job.defense(res.adversarial)))
    clean_iou = target_iou(clean_pred, y, job.k).cpu()
    d_gt = target_iou(dpred, y, job.k).cpu() if dpred is not None else None
    d_tg = target_iou(dpred, t, job.k).cpu() if dpred is not None and t is not None else None
    rows = []
    for j, i in enumerate(batch):
        name = job.dataset.names[i]
        write_png(job.img_dir / f"{name}.png", from_tensor(res.adversarial[j], dtype=job.dtype))
        row: dict[str, Any] = {"name": name, "target_source": sources[j]}
        row["clean_gt_iou"] = float(clean_iou[j])
        row.update(_stat_values(res.stats, j))
        if d_gt is not None:
            row["defended_gt_iou"] = float(d_gt[j])
            row["defended_target_iou"] = float(d_tg[j]) if d_tg is not None else math.nan
        rows.append(row)
    return rows


def _stat_values(stats: dict[str, Any], j: int) -> dict[str, Any]:
    """Sample ``j`` of an attack's per-sample stats as Python values."""
    out: dict[str, Any] = {}
    for key, val in stats.items():
        if key == "success":
            out[key] = bool(val[j])
        elif key == "steps":
            out[key] = int(val[j])
        else:
            out[key] = float(val[j])
    return out


def write_stats(out_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write stats rows as ``OUT/stats.csv`` and ``OUT/stats.json``, atomically.

    The CSV's columns are the rows' keys in first-seen order; the JSON holds NaN as
    ``null``.

    Args:
        out_dir: the folder (created if missing).
        rows: dicts of plain values.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> write_stats(d, [{"name": "a", "iou": float("nan")}])
        >>> open(f"{d}/stats.csv").read(), open(f"{d}/stats.json").read()
        ('name,iou\\na,nan\\n', '[\\n {\\n  "name": "a",\\n  "iou": null\\n }\\n]')
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
