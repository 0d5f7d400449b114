"""Per-task scorers of the harness: one small object turns predictions into columns.

The harness (:mod:`segshield.evaluation.harness`) runs the same stages for every task:
clean, defended clean ("benign"), attacked and defended attacked ("recovered"). A
scorer predicts (``predict``) and compares a prediction with a reference
(``columns(stage, pred, ref)``):

- :class:`SegmentationScorer`: region scores (docs/ALGORITHMS.md §5): mean-over-regions
  Dice and IoU, per-region Dice when there are several regions, and the diagnosis
  columns ``dx_<stage>_<measure>`` where the regions allow;
- :class:`ClassificationScorer`: accuracy, ``<stage>_acc`` = 1.0 for a correct label.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from segshield.evaluation.tiles import quantize_8bit
from segshield.metrics import logits_to_mask, psnr, region_scores, ssim
from segshield.training.classify import predict_labels

__all__ = [
    "EFFICIENCY_MIN_CLEAN",
    "SegmentationScorer",
    "ClassificationScorer",
    "Scores",
    "attack_batch",
    "cannot_run",
    "put",
    "ssim_or_nan",
    "timed",
]

Columns = dict[str, list[float]]
log = logging.getLogger(__name__)

#: A sample's efficiency (recovered Dice / clean Dice) is recorded only where its clean
#: Dice is at least this (NaN below it): near zero the ratio explodes and says nothing.
#: Summaries report the ratio of the means instead (docs/ALGORITHMS.md §5).
EFFICIENCY_MIN_CLEAN = 0.5


def put(cols: Columns, name: str, values: torch.Tensor | Sequence[float]) -> None:
    """Store per-sample ``values`` as the float column ``name``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().tolist()
    cols[name] = [float(v) for v in values]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds (CUDA synchronised before and after)."""
    _sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        out = fn()
    _sync(device)
    return out, time.perf_counter() - t


@dataclass
class Scores:
    """Mean-over-regions IoU and Dice, plus per-region Dice, of one comparison."""

    iou: torch.Tensor
    dice: torch.Tensor
    per_region: dict[str, torch.Tensor]


def _score_columns(stage: str, s: Scores) -> Columns:
    cols: Columns = {}
    put(cols, f"{stage}_dice", s.dice)
    put(cols, f"{stage}_iou", s.iou)
    for region, d in s.per_region.items():
        put(cols, f"{stage}_dice_{region}", d)
    return cols


def cannot_run(attacks: Sequence[tuple[str, bool, Any]], defenses: dict[str, Any]) -> frozenset:
    """``(attack spec, True, defence spec)`` of each adaptive attack that cannot run through
    a defence (:meth:`~segshield.attacks.base.Attack.applies_to`, e.g. DCT-PGD through a
    defence without a quantisation table; an attack object without the method, such as
    a user's duck-typed one, runs through every defence); each is logged once.

    Example:
        >>> from segshield.attacks import get_attack
        >>> from segshield.defenses import get_defense
        >>> attacks = [("dctpgd", True, get_attack("dctpgd")), ("pgd", True, get_attack("pgd"))]
        >>> sorted(cannot_run(attacks, {d: get_defense(d) for d in ("fr", "none")}))
        [('dctpgd', True, 'none')]
    """
    out = frozenset(
        (spec, True, d)
        for spec, adaptive, attack in attacks
        for d, defense in defenses.items()
        if adaptive and not getattr(attack, "applies_to", lambda _: True)(defense)
    )
    for spec, _, d in sorted(out):
        log.warning("%s cannot run through the defence %s: skipped for it", spec, d)
    return out


def attack_batch(attack, victim, x, masks, target, png_roundtrip: bool, device: torch.device):
    """Attack ``x``; returns the result, the adversarial images (on the 8-bit grid with
    ``png_roundtrip``) and the attack's wall time in seconds."""
    _sync(device)
    t = time.perf_counter()
    result = attack(victim, x, masks=masks, target_masks=target)
    _sync(device)
    seconds = time.perf_counter() - t
    adv = result.adversarial.detach()
    return result, quantize_8bit(adv) if png_roundtrip else adv, seconds


def ssim_or_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM with a window no larger than the image (7 for images under 11 pixels)."""
    side = min(a.shape[-2:])
    win = 11 if side >= 11 else (7 if side >= 7 else 0)
    if win == 0:
        return torch.full((a.shape[0],), math.nan, dtype=torch.float64)
    return ssim(a, b, win_size=win)


class SegmentationScorer:
    """Region scores and diagnosis columns of segmentation predictions.

    Args:
        regions: region name -> classes, e.g. ``{"disc": (1, 2), "cup": (2,)}``.
        downstream: add diagnosis columns (fundus: CDR error and flipped glaucoma
            calls; lesion: area error) where the regions allow.
        threshold: glaucoma CDR threshold.

    Example:
        >>> s = SegmentationScorer({"lesion": (1,)}, downstream=False, threshold=0.6)
        >>> m = torch.ones(1, 4, 4, dtype=torch.long)
        >>> s.columns("clean", m, m)[0]["clean_dice"]
        [1.0]
    """

    def __init__(self, regions: dict[str, tuple[int, ...]], downstream: bool, threshold: float):
        self.regions = regions
        self.threshold = threshold
        self.diagnosis: str | None = None
        if downstream and "disc" in regions and "cup" in regions:
            self.diagnosis = "fundus"
        elif downstream and set(regions) == {"lesion"}:
            self.diagnosis = "lesion"

    @staticmethod
    def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Class-id masks ``(B, H, W)`` of the model on ``x``."""
        return logits_to_mask(model(x))

    def scores(self, pred: torch.Tensor, ref: torch.Tensor) -> Scores:
        """Mean-over-regions IoU and Dice (and per-region Dice) of ``pred`` against ``ref``."""
        rs = region_scores(pred, ref, self.regions)
        iou = torch.stack([v["iou"] for v in rs.values()], 0)
        dice = torch.stack([v["dice"] for v in rs.values()], 0)
        return Scores(
            iou=torch.nanmean(iou, 0) if len(rs) > 1 else iou[0],
            dice=torch.nanmean(dice, 0) if len(rs) > 1 else dice[0],
            per_region={k: v["dice"] for k, v in rs.items()} if len(rs) > 1 else {},
        )

    def columns(self, stage: str, pred: torch.Tensor, gt: torch.Tensor) -> tuple[Columns, Scores]:
        """``<stage>_dice``, ``<stage>_iou``, ``<stage>_dice_<region>`` and diagnosis."""
        s = self.scores(pred, gt)
        cols = _score_columns(stage, s)
        cols.update(self._diagnosis(stage, pred, gt))
        return cols, s

    def _diagnosis(self, stage: str, pred: torch.Tensor, gt: torch.Tensor) -> Columns:
        """Diagnosis columns ``dx_<stage>_<measure>`` (and ``dx_gt_*`` with the clean stage)."""
        if self.diagnosis is None:
            return {}
        from segshield.diagnosis import downstream_fundus, downstream_lesion

        if self.diagnosis == "fundus":
            values = downstream_fundus(pred, gt, self.threshold)
        else:
            values = downstream_lesion(pred, gt)
        cols: Columns = {}
        for k, v in values.items():
            if k.endswith("_gt"):
                if stage == "clean":  # the ground truth's value, once per row
                    put(cols, f"dx_gt_{k[:-3]}", torch.as_tensor(v).double())
                continue
            put(cols, f"dx_{stage}_{k}", torch.as_tensor(v).double())
        return cols

    def benign(self, model, defense, x, y, clean: Scores, device) -> Columns:
        """Columns of the defended clean image: benign scores, loss, PSNR/SSIM, time."""
        b = x.shape[0]
        cols: Columns = {}
        xd, seconds = timed(lambda: defense(x), device)
        put(cols, "t_defense", [seconds / b] * b)
        with torch.no_grad():
            pred = self.predict(model, xd)
        s = self.scores(pred, y)
        cols.update(_score_columns("benign", s))
        put(cols, "benign_loss", clean.dice - s.dice)
        put(cols, "benign_psnr", psnr(xd, x))
        put(cols, "benign_ssim", ssim_or_nan(xd, x))
        return cols

    def recovered(self, x, y, rec_img, rec_pred, clean_pred, clean: Scores, target) -> Columns:
        """Columns of the defended adversarial image (besides its time)."""
        cols, rec = self.columns("recovered", rec_pred, y)
        diagnosis = {k: cols.pop(k) for k in list(cols) if k.startswith("dx_")}
        put(cols, "recovered_clean_dice", self.scores(rec_pred, clean_pred).dice)
        if target is not None:
            put(cols, "recovered_target_iou", self.scores(rec_pred, target).iou)
        meaningful = clean.dice >= EFFICIENCY_MIN_CLEAN
        eff = torch.where(meaningful, rec.dice / clean.dice.clamp_min(1e-12), math.nan)
        put(cols, "efficiency", eff)
        put(cols, "recovered_psnr", psnr(rec_img, x))
        put(cols, "recovered_ssim", ssim_or_nan(rec_img, x))
        cols.update(diagnosis)
        return cols


class ClassificationScorer:
    """Accuracy of classifier predictions: ``<stage>_acc`` is 1.0 where the label is right.

    Example:
        >>> ClassificationScorer.columns("clean", torch.tensor([1, 0]), torch.tensor([1, 1]))
        {'clean_acc': [1.0, 0.0]}
    """

    @staticmethod
    def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Class labels ``(B,)`` of the model on ``x``."""
        return predict_labels(model(x))

    @staticmethod
    def columns(stage: str, pred: torch.Tensor, labels: torch.Tensor) -> Columns:
        """``<stage>_acc`` per sample."""
        cols: Columns = {}
        put(cols, f"{stage}_acc", (pred.cpu() == labels.cpu()).double())
        return cols
