"""Per-coefficient frequency analysis: where perturbations live and what the model needs.

The FR table of Liu et al. (MICCAI 2020) is "guided by fine-grained frequency
refinement": high-frequency block-DCT coefficients carry most of an adversarial
perturbation, low-mid ones the lesion boundaries. This module measures both for a given
model and data set, for each of the 64 coefficients of the 8x8 block DCT on the 0..255
scale (docs/ALGORITHMS.md §2):

- energy: mean squared coefficient of the perturbations (adversarial minus clean) and of
  the clean images, per channel and pooled over channels, and their ratio;
- sensitivity: the benign Dice drop and the recovered Dice gain when only that
  coefficient is quantised at ``step`` (every other coefficient untouched).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from segshield._checks import check_choice, check_images, check_masks, check_number
from segshield.tuning.quantize import PAD_MODES, image_coefficients, single_coefficient_tables
from segshield.tuning.scoring import default_regions, tables_dice, variant_dice

__all__ = ["FrequencyAnalysis", "coefficient_energy", "frequency_analysis"]

log = logging.getLogger(__name__)


def coefficient_energy(x: torch.Tensor, pad: str = "edge") -> torch.Tensor:
    """Mean energy (squared coefficient) of each 8x8 block-DCT frequency, per channel.

    Values are on the 0..255 scale (``x`` is multiplied by 255 first, as FR does).

    Args:
        x: ``(B, C, H, W)`` images in ``[0, 1]`` or perturbations (any sign, same scale).
        pad: ``"edge"`` (default) or ``"zero"``; how H and W reach multiples of 8.

    Shape:
        Returns ``(C, 8, 8)`` float64: mean over images and blocks.

    Raises:
        TypeError, ValueError: ``x`` is not a float ``(B, C, H, W)`` tensor, bad ``pad``.

    Example:
        >>> e = coefficient_energy(torch.full((1, 1, 8, 8), 0.5))
        >>> round(e[0, 0, 0].item() / 1020**2, 4), round(e[0, 1, 1].item(), 4)
        (1.0, 0.0)
    """
    coeffs = image_coefficients(x, pad).double()  # (B, C, h, w, 8, 8)
    return coeffs.square().mean(dim=(0, 2, 3))


def _nan_to_none(value: Any) -> Any:
    """Nested lists of floats with NaN replaced by None (strict JSON has no NaN)."""
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with NaN where ``den`` is 0 (no clean energy to compare with)."""
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


@dataclass
class FrequencyAnalysis:
    """Result of :func:`frequency_analysis`; tensors are float64 on the CPU.

    Attributes:
        step: quantisation step used for the sensitivity maps.
        n_images: images analysed.
        clean_energy, perturbation_energy, energy_ratio: ``(C, 8, 8)`` per channel.
        clean_energy_pooled, perturbation_energy_pooled, energy_ratio_pooled: ``(8, 8)``
            (energies averaged over channels; ratio of the pooled energies).
        relative_ratio: ``(8, 8)`` share of the perturbation energy in a coefficient
            divided by the share of the clean energy there (> 1: over-represented).
        benign_drop: ``(8, 8)`` mean clean Dice minus Dice after quantising only
            ``(u, v)``.
        recovered_gain: ``(8, 8)`` mean Dice on adversarial images after quantising only
            ``(u, v)`` minus Dice on the undefended adversarial images.
        clean_dice, adversarial_dice: mean Dice without any defence.
        config: settings (pad, regions, attack name when known).
    """

    step: float
    n_images: int
    clean_energy: torch.Tensor
    perturbation_energy: torch.Tensor
    energy_ratio: torch.Tensor
    clean_energy_pooled: torch.Tensor
    perturbation_energy_pooled: torch.Tensor
    energy_ratio_pooled: torch.Tensor
    relative_ratio: torch.Tensor
    benign_drop: torch.Tensor
    recovered_gain: torch.Tensor
    clean_dice: float
    adversarial_dice: float
    config: dict[str, Any] = field(default_factory=dict)

    MAPS = (
        "clean_energy_pooled",
        "perturbation_energy_pooled",
        "energy_ratio_pooled",
        "relative_ratio",
        "benign_drop",
        "recovered_gain",
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nested lists; NaN becomes None)."""

        out: dict[str, Any] = {
            "step": self.step,
            "n_images": self.n_images,
            "clean_dice": self.clean_dice,
            "adversarial_dice": self.adversarial_dice,
            "config": self.config,
        }
        for name in (
            "clean_energy",
            "perturbation_energy",
            "energy_ratio",
            *self.MAPS,
        ):
            out[name] = _nan_to_none(getattr(self, name).tolist())
        return out


def frequency_analysis(
    model: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    adversarial: torch.Tensor,
    *,
    step: float = 30.0,
    regions: dict[str, tuple[int, ...]] | None = None,
    pad: str = "edge",
    batch_size: int = 32,
) -> FrequencyAnalysis:
    """Per-coefficient energy of perturbations vs clean images, and model sensitivity.

    Method of Liu et al. (MICCAI 2020), made a measurement: for each of the 64
    coefficients ``(u, v)`` of the 8x8 block DCT (0..255 scale, docs/ALGORITHMS.md §2) it reports
    the mean energy of ``adversarial - images`` and of ``images``, and the Dice effect of
    quantising only that coefficient at ``step`` (all 64 variants are refined and scored
    in batches; step 0 elsewhere means untouched).

    Args:
        model: segmentation model on ``[0, 1]`` images returning logits ``(B, K, H, W)``.
        images: ``(B, C, H, W)`` clean images in ``[0, 1]``.
        masks: ``(B, H, W)`` ground truth.
        adversarial: ``(B, C, H, W)`` adversarial versions of ``images`` (e.g. ASMA
            against the undefended model).
        step: quantisation step for the sensitivity maps, ``> 0`` on the 0..255 scale.
            Default 30 (the paper's PD step).
        regions: regions scored by Dice, e.g. ``{"lesion": (1,)}``. Default: one region
            per foreground class of the model output.
        pad: ``"edge"`` (default) or ``"zero"`` (paper-faithful).
        batch_size: images per forward pass, >= 1. Default 32.

    Returns:
        A :class:`FrequencyAnalysis`.

    Raises:
        TypeError: inputs are not tensors of the right kinds.
        ValueError: shapes disagree, ``step`` <= 0, bad ``pad`` or ``batch_size``.

    Example:
        >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> x = torch.rand(2, 1, 16, 16); m = (x[:, 0] > 0.5).long()
        >>> adv = (x + 0.01 * torch.randn_like(x)).clamp(0, 1)
        >>> res = frequency_analysis(net, x, m, adv, step=20)
        >>> tuple(res.benign_drop.shape)
        (8, 8)
    """
    check_images(images)
    check_images(adversarial, "adversarial")
    if adversarial.shape != images.shape:
        raise ValueError(
            f"adversarial: expected the shape of images {tuple(images.shape)}, got "
            f"{tuple(adversarial.shape)}; pass one adversarial image per clean image"
        )
    check_masks(masks, like=images)
    check_number("step", step, low=0, low_inclusive=False)
    check_choice("pad", pad, PAD_MODES)
    check_number("batch_size", batch_size, low=1, integer=True)

    clean_e = coefficient_energy(images, pad)
    pert_e = coefficient_energy(adversarial - images, pad)
    clean_pool, pert_pool = clean_e.mean(0), pert_e.mean(0)
    relative = _ratio(pert_pool / pert_pool.sum().clamp_min(1e-300), clean_pool / clean_pool.sum())

    with torch.no_grad():
        if regions is None:
            k = model(images[:1]).shape[1]
            regions = default_regions(max(int(k), 2))
        base = variant_dice(model, torch.stack([images, adversarial]), masks, regions, batch_size)
        clean_d, adv_d = base[0], base[1]
        tables = single_coefficient_tables(step)
        kw = {"pad": pad, "batch_size": batch_size}
        benign = tables_dice(model, images, masks, tables, regions, **kw)  # (64, B)
        recovered = tables_dice(model, adversarial, masks, tables, regions, **kw)
    benign_drop = (clean_d.unsqueeze(0) - benign).nanmean(1).reshape(8, 8)
    recovered_gain = (recovered - adv_d.unsqueeze(0)).nanmean(1).reshape(8, 8)
    log.info(
        "frequency analysis: %d images, clean Dice %.4f, adversarial Dice %.4f",
        images.shape[0],
        float(clean_d.nanmean()),
        float(adv_d.nanmean()),
    )
    return FrequencyAnalysis(
        step=float(step),
        n_images=int(images.shape[0]),
        clean_energy=clean_e,
        perturbation_energy=pert_e,
        energy_ratio=_ratio(pert_e, clean_e),
        clean_energy_pooled=clean_pool,
        perturbation_energy_pooled=pert_pool,
        energy_ratio_pooled=_ratio(pert_pool, clean_pool),
        relative_ratio=relative,
        benign_drop=benign_drop,
        recovered_gain=recovered_gain,
        clean_dice=float(clean_d.nanmean()),
        adversarial_dice=float(adv_d.nanmean()),
        config={"pad": pad, "regions": {k: list(v) for k, v in regions.items()}},
    )
