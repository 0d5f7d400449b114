"""Batched per-sample Dice of a model on many image variants (docs/ALGORITHMS.md §5).

The analysis and the search score the same masks against many refined versions of the
same images; this module runs the model in chunks without gradients and returns one
Dice per sample (mean over the foreground regions), NaN where docs/ALGORITHMS.md §5 says so.
"""

from __future__ import annotations

import torch

from segshield._checks import check_images, check_masks, check_number
from segshield.metrics.segmentation import logits_to_mask, region_scores
from segshield.utils.progress import progress

__all__ = [
    "default_regions",
    "sample_dice",
    "variant_dice",
    "tables_dice",
    "adversarial_examples",
]


def default_regions(num_classes: int) -> dict[str, tuple[int, ...]]:
    """One region per foreground class: ``{"class1": (1,), ...}``.

    Args:
        num_classes: number of mask classes, >= 2 (``max(K, 2)`` for a K-logit model).

    Raises:
        ValueError: ``num_classes`` < 2.

    Example:
        >>> default_regions(3)
        {'class1': (1,), 'class2': (2,)}
    """
    check_number("num_classes", num_classes, low=2, integer=True)
    return {f"class{c}": (c,) for c in range(1, int(num_classes))}


def sample_dice(
    pred: torch.Tensor, masks: torch.Tensor, regions: dict[str, tuple[int, ...]]
) -> torch.Tensor:
    """Per-sample Dice averaged over ``regions`` (NaN only when every region is NaN).

    Shape:
        pred, masks: ``(B, H, W)``; returns ``(B,)`` float64.
    """
    scores = region_scores(pred, masks, regions)
    stacked = torch.stack([s["dice"] for s in scores.values()], 0)
    return stacked.nanmean(0)


@torch.no_grad()
def variant_dice(
    model: torch.nn.Module,
    variants: torch.Tensor,
    masks: torch.Tensor,
    regions: dict[str, tuple[int, ...]],
    batch_size: int = 32,
) -> torch.Tensor:
    """Dice of ``model`` on V variants of the same B images, per variant and sample.

    Args:
        model: returns logits ``(N, K, H, W)`` for images in ``[0, 1]``.
        variants: ``(V, B, C, H, W)`` images in ``[0, 1]`` (or ``(B, C, H, W)`` for V = 1).
        masks: ``(B, H, W)`` ground truth.
        regions: region name to class ids, see :func:`default_regions`.
        batch_size: images per forward pass, >= 1. Default 32.

    Shape:
        Returns ``(V, B)`` float64 on the CPU.

    Raises:
        TypeError, ValueError: bad shapes or batch size.
    """
    if isinstance(variants, torch.Tensor) and variants.ndim == 4:
        variants = variants.unsqueeze(0)
    if not isinstance(variants, torch.Tensor) or variants.ndim != 5:
        raise ValueError(
            "variants: expected (V, B, C, H, W) images, got "
            f"{getattr(variants, 'shape', type(variants).__name__)}"
        )
    check_number("batch_size", batch_size, low=1, integer=True)
    v, b = variants.shape[:2]
    flat = check_images(variants.reshape(v * b, *variants.shape[2:]), "variants")
    check_masks(masks, like=variants[0])
    all_masks = masks.to(flat.device).repeat(v, 1, 1)
    preds = []
    for start in range(0, v * b, batch_size):
        preds.append(logits_to_mask(model(flat[start : start + batch_size])))
    dice = sample_dice(torch.cat(preds, 0), all_masks, regions)
    return dice.reshape(v, b).cpu()


def adversarial_examples(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    attack,
    *,
    targets: str | None = "other-gt",
    seed: int = 0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Adversarial images from ``attack`` (a registry spec or an attack object).

    Targets are assigned on the whole split, then the attack runs ``batch_size`` images
    at a time (memory stays bounded; a progress bar counts the batches). Batched ASMA
    equals the one-image algorithm sample by sample, so the batch size does not change
    its result; attacks with a random start draw from the global generator batch by batch.

    Args:
        model: the (possibly ``Defended``) model to attack.
        images: ``(B, C, H, W)`` clean images in ``[0, 1]``.
        masks: ``(B, H, W)`` ground truth.
        attack: spec for :func:`segshield.attacks.get_attack` (e.g. ``"asma"``) or a
            callable ``attack(model, images, masks=, target_masks=)`` returning an object
            with ``.adversarial``.
        targets: target rule for :func:`segshield.attacks.make_targets` (docs/ALGORITHMS.md §4: the
            ground truth of another image, ``"other-gt"``), or None for no targets.
        seed: seed of the target assignment. Default 0.
        batch_size: images per attack call, >= 1. Default 32.

    Returns:
        ``(B, C, H, W)`` adversarial images in ``[0, 1]``, detached.

    Raises:
        TypeError, ValueError: bad images, masks or ``batch_size``.
    """
    check_images(images)
    check_masks(masks, like=images)
    check_number("batch_size", batch_size, low=1, integer=True)
    if isinstance(attack, str):
        from segshield.attacks import get_attack

        attack = get_attack(attack)
    target_masks = None
    if targets is not None:
        from segshield.attacks import make_targets

        target_masks = make_targets(targets, masks, seed=seed)
    out = []
    starts = range(0, images.shape[0], int(batch_size))
    for i in progress(starts, desc="attack", unit="batch"):
        part = slice(i, i + int(batch_size))
        tm = None if target_masks is None else target_masks[part]
        result = attack(model, images[part], masks=masks[part], target_masks=tm)
        out.append(result.adversarial.detach())
    return torch.cat(out)


def tables_dice(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    tables: torch.Tensor,
    regions: dict[str, tuple[int, ...]],
    *,
    pad: str = "edge",
    batch_size: int = 32,
    variants_per_pass: int = 8,
) -> torch.Tensor:
    """Dice of ``model`` on ``images`` refined by each of V tables (step 0 = untouched).

    Tables are applied a few at a time (:func:`~segshield.tuning.quantize.apply_tables`)
    so memory stays bounded, and every refined image goes through one batched forward.

    Args:
        model: segmentation model on ``[0, 1]`` images.
        images: ``(B, C, H, W)`` in ``[0, 1]``.
        masks: ``(B, H, W)`` ground truth.
        tables: ``(V, 8, 8)`` or ``(V, C, 8, 8)`` steps >= 0.
        regions: region name to class ids.
        pad: ``"edge"`` (default) or ``"zero"``.
        batch_size: images per forward pass. Default 32.
        variants_per_pass: tables refined together. Default 8.

    Shape:
        Returns ``(V, B)`` float64 on the CPU.
    """
    from segshield.tuning.quantize import apply_tables

    check_number("variants_per_pass", variants_per_pass, low=1, integer=True)
    out = []
    for start in range(0, tables.shape[0], variants_per_pass):
        refined = apply_tables(images, tables[start : start + variants_per_pass], pad=pad)
        out.append(variant_dice(model, refined, masks, regions, batch_size))
    return torch.cat(out, 0)
