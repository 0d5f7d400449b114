"""Inputs and settings of the FR table search, checked when they are built.

:class:`TuneData` holds the validation and held-out splits (and, optionally, their
adversarial images); :class:`TuneConfig` the search settings. Both check their values
in ``__post_init__``, so :func:`~segshield.tuning.search.tune_table` starts from valid
inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from segshield._checks import check_choice, check_images, check_masks, check_number
from segshield.tuning.quantize import PAD_MODES
from segshield.tuning.space import SearchSpace

__all__ = ["BOUND_RULES", "TuneConfig", "TuneData"]

#: Named benign-loss bounds of :class:`TuneConfig` (besides a number).
BOUND_RULES = ("paper",)


@dataclass(frozen=True)
class TuneData:
    """The two splits of a search: validation (the choice) and held-out (the report).

    Attributes:
        val_images, val_masks: validation split ``(B, C, H, W)`` in ``[0, 1]`` and
            ``(B, H, W)`` class ids.
        heldout_images, heldout_masks: held-out split, same channels ``C``.
        val_adversarial, heldout_adversarial: adversarial images against the undefended
            model, one per image, or None (computed with the configured attack).

    Raises:
        TypeError, ValueError: bad images or masks, adversarial images of another shape,
            or splits with different channels.

    Example:
        >>> x = torch.rand(2, 1, 8, 8); m = (x[:, 0] > 0.5).long()
        >>> TuneData(x, m, x, m).channels
        1
    """

    val_images: torch.Tensor
    val_masks: torch.Tensor
    heldout_images: torch.Tensor
    heldout_masks: torch.Tensor
    val_adversarial: torch.Tensor | None = None
    heldout_adversarial: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for split in ("val", "heldout"):
            images = check_images(getattr(self, f"{split}_images"), f"{split}_images")
            check_masks(getattr(self, f"{split}_masks"), f"{split}_masks", like=images)
        for split in ("val", "heldout"):
            adv, ref = getattr(self, f"{split}_adversarial"), getattr(self, f"{split}_images")
            if adv is not None and check_images(adv, f"{split}_adversarial").shape != ref.shape:
                raise ValueError(
                    f"{split}_adversarial: expected shape {tuple(ref.shape)} (one per image), "
                    f"got {tuple(adv.shape)}"
                )
        if self.heldout_images.shape[1] != self.channels:
            raise ValueError(
                f"heldout_images: expected {self.channels} channels like val_images, got "
                f"{self.heldout_images.shape[1]}; both splits must come from the same kind "
                "of image"
            )

    @property
    def channels(self) -> int:
        """Image channels ``C`` of both splits."""
        return int(self.val_images.shape[1])


@dataclass(frozen=True)
class TuneConfig:
    """Settings of :func:`~segshield.tuning.search.tune_table`.

    Attributes:
        attack: attack spec (e.g. ``"asma"``) or callable; used for the adversarial
            images not given and for the adaptive objective. Default ``"asma"``.
        max_benign_loss: bound on the validation benign Dice loss, a number in
            ``[0, 1]``, or ``"paper"``: the paper table's own validation benign loss, so
            the tuned table must recover at least as much at no more benign loss (on
            the validation split; the held-out rows show whether that carries over).
            Default 0.01.
        benign_se: safety margin of the bound in standard errors, >= 0: a table is
            feasible when its mean per-image benign loss plus ``benign_se`` standard
            errors is <= the bound; with ``"paper"`` the per-image losses are paired
            with the paper table's (loss minus the paper's loss, bound 0), so the paper
            table itself is feasible. On a few dozen images the benign loss of a table
            is noisy; the margin keeps the search from choosing a table whose loss only
            looked low by chance. 0 compares the plain mean. Default 1.0.
        budget: number of distinct tables scored on the validation split, >= 1
            (cached ones included, so a resumed run follows the same path). Default 120.
        seed: seeds the grid sample and the attack targets. Default 0.
        adaptive: also score the ``adaptive_top_k`` best tables against a BPDA attack on
            the defended model and choose by the worse recovery. Default False.
        adaptive_top_k: tables re-scored adaptively, >= 1. Default 3.
        cache: JSON-lines cache file, or None (in memory). Default None. With an attack
            spec, the adversarial images are also kept beside it
            (``CACHE-STEM.val-adv.safetensors``, ``.heldout-adv``), so a rerun skips the
            attack too.
        resume: reuse an existing cache with the same fingerprint. Default True.
        regions: Dice regions, e.g. ``{"lesion": (1,)}``. Default None: each foreground
            class of the model.
        pad: ``"edge"`` (default) or ``"zero"``.
        jpeg_qualities: JPEG qualities reported on the held-out split. Default 50, 75, 90.
        space: the grid. Default :class:`~segshield.tuning.space.SearchSpace()` (None
            means that too).
        targets: target rule for targeted attacks (``"other-gt"``) or None.
        batch_size: images per forward pass and per attack call. Default 32.
        heldout_all: also score every table of the search on the held-out split (rows
            of kind ``"scored"`` in ``pareto``), to see whether any table beats the
            paper's there; a report only, the choice stays the validation split's.
            Default False (the validation Pareto front and the tuned table only).

    Raises:
        TypeError, ValueError: a setting out of range (the message names it).

    Example:
        >>> TuneConfig(budget=4, max_benign_loss="paper").jpeg_qualities
        (50, 75, 90)
        >>> TuneConfig(budget=0)
        Traceback (most recent call last):
        ...
        ValueError: budget: expected a value in [1, inf], got 0
    """

    attack: Any = "asma"
    max_benign_loss: float | str = 0.01
    benign_se: float = 1.0
    budget: int = 120
    seed: int = 0
    adaptive: bool = False
    adaptive_top_k: int = 3
    cache: str | Path | None = None
    resume: bool = True
    regions: dict[str, tuple[int, ...]] | None = None
    pad: str = "edge"
    jpeg_qualities: Sequence[int] = (50, 75, 90)
    space: SearchSpace | None = field(default_factory=SearchSpace)
    targets: str | None = "other-gt"
    batch_size: int = 32
    heldout_all: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_benign_loss, str):
            check_choice("max_benign_loss", self.max_benign_loss, BOUND_RULES)
        else:
            check_number("max_benign_loss", self.max_benign_loss, low=0, high=1)
        check_number("benign_se", self.benign_se, low=0)
        check_number("budget", self.budget, low=1, integer=True)
        check_number("seed", self.seed, integer=True)
        check_number("adaptive_top_k", self.adaptive_top_k, low=1, integer=True)
        check_number("batch_size", self.batch_size, low=1, integer=True)
        check_choice("pad", self.pad, PAD_MODES)
        for q in self.jpeg_qualities:
            check_number("jpeg_qualities", q, low=1, high=100, integer=True)
        space = SearchSpace() if self.space is None else self.space
        for v in space.channel_scales:
            check_number("space.channel_scales", v, low=0, low_inclusive=False)
        object.__setattr__(self, "space", space)
        object.__setattr__(self, "budget", int(self.budget))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def attack_name(self) -> str | None:
        """The attack spec, or None for a callable attack (not cacheable by name)."""
        return self.attack if isinstance(self.attack, str) else None

    def record(self, regions: dict[str, tuple[int, ...]], data: TuneData) -> dict[str, Any]:
        """The ``config`` entry of the tune JSON: the settings, regions and split sizes.

        Example:
            >>> x = torch.rand(2, 1, 8, 8); m = (x[:, 0] > 0.5).long()
            >>> TuneConfig().record({"fg": (1,)}, TuneData(x, m, x, m))["regions"]
            {'fg': [1]}
        """
        return {
            "attack": self.attack if isinstance(self.attack, str) else type(self.attack).__name__,
            "max_benign_loss": self.max_benign_loss,
            "benign_se": float(self.benign_se),
            "budget": self.budget,
            "adaptive": bool(self.adaptive),
            "adaptive_top_k": int(self.adaptive_top_k),
            "pad": self.pad,
            "regions": {k: list(v) for k, v in regions.items()},
            "targets": self.targets,
            "space": asdict(self.space),
            "n_val": int(data.val_images.shape[0]),
            "n_heldout": int(data.heldout_images.shape[0]),
            "heldout_all": bool(self.heldout_all),
        }
