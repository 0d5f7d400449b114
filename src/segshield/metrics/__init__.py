"""Segmentation and image-quality metrics (docs/ALGORITHMS.md §5)."""

from segshield.metrics.quality import psnr, ssim
from segshield.metrics.segmentation import (
    IGNORE_INDEX,
    compute_dice,
    compute_iou,
    confusion,
    logits_to_mask,
    pixel_accuracy,
    region_mask,
    region_scores,
)

__all__ = [
    "IGNORE_INDEX",
    "compute_dice",
    "compute_iou",
    "confusion",
    "logits_to_mask",
    "pixel_accuracy",
    "region_mask",
    "region_scores",
    "psnr",
    "ssim",
]
