"""Training augmentation in torch, applied to images and masks consistently.

Per sample: random horizontal/vertical flips; a small random affine transform
(rotation, isotropic scale, translation) applied with bilinear sampling to the image
and nearest-neighbour sampling to the mask (so class ids, including the ignore index
255, are never blended), both with border replication; colour jitter (brightness,
contrast, saturation) on the image only. All randomness comes from one
``torch.Generator``, so a seed fixes the augmentation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from segshield._checks import check_images, check_masks, check_number

__all__ = ["augment_pair", "Augment"]


def _check_settings(rotate, scale, translate, brightness, contrast, saturation) -> None:
    check_number("rotate", rotate, low=0, high=180)
    for name, value in (("scale", scale), ("translate", translate)):
        check_number(name, value, low=0, high=0.5)
    for name, value in (("brightness", brightness), ("contrast", contrast)):
        check_number(name, value, low=0, high=1)
    check_number("saturation", saturation, low=0, high=1)


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def augment_pair(
    images: torch.Tensor,
    masks: torch.Tensor,
    generator: torch.Generator,
    *,
    hflip: bool = True,
    vflip: bool = True,
    rotate: float = 15.0,
    scale: float = 0.1,
    translate: float = 0.05,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly flip, warp and colour-jitter a batch; the masks follow the geometry.

    Args:
        images: ``(B, C, H, W)`` float in ``[0, 1]``.
        masks: ``(B, H, W)`` integer class ids (255 = ignore).
        generator: CPU ``torch.Generator`` for all random draws.
        hflip: flip left-right with probability 0.5. Default True.
        vflip: flip top-bottom with probability 0.5. Default True.
        rotate: maximum rotation in degrees, 0..180. Default 15.
        scale: maximum relative zoom, 0..0.5 (factor in ``[1 - scale, 1 + scale]``).
            Default 0.1.
        translate: maximum shift as a fraction of the size, 0..0.5. Default 0.05.
        brightness: maximum relative brightness change, 0..1. Default 0.1.
        contrast: maximum relative contrast change, 0..1. Default 0.1.
        saturation: maximum relative saturation change (3-channel images only), 0..1.
            Default 0.1.

    Returns:
        ``(images, masks)`` of the same shapes and dtypes, images clipped to ``[0, 1]``.

    Raises:
        TypeError, ValueError: malformed images or masks, or a setting out of range.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, m = augment_pair(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), g)
        >>> x.shape, m.shape
        (torch.Size([2, 3, 8, 8]), torch.Size([2, 8, 8]))
    """
    check_images(images)
    check_masks(masks, like=images)
    _check_settings(rotate, scale, translate, brightness, contrast, saturation)
    b, c = images.shape[:2]
    dev, dt = images.device, images.dtype
    # Draw every random number on the CPU generator, in a fixed order.
    fh = torch.rand(b, generator=generator) < 0.5
    fv = torch.rand(b, generator=generator) < 0.5
    angle = _uniform(b, -rotate, rotate, generator) * (math.pi / 180)
    zoom = _uniform(b, 1 - scale, 1 + scale, generator)
    shift = _uniform(2 * b, -translate, translate, generator).view(b, 2) * 2
    bright = _uniform(b, 1 - brightness, 1 + brightness, generator)
    contr = _uniform(b, 1 - contrast, 1 + contrast, generator)
    sat = _uniform(b, 1 - saturation, 1 + saturation, generator)

    x, m = images, masks
    if hflip:
        sel = fh.to(dev).view(b, 1, 1)
        x = torch.where(sel.unsqueeze(1), x.flip(-1), x)
        m = torch.where(sel, m.flip(-1), m)
    if vflip:
        sel = fv.to(dev).view(b, 1, 1)
        x = torch.where(sel.unsqueeze(1), x.flip(-2), x)
        m = torch.where(sel, m.flip(-2), m)
    if rotate > 0 or scale > 0 or translate > 0:
        # theta maps output coordinates to input coordinates (normalised to [-1, 1]).
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        ).to(device=dev, dtype=dt)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mf = F.grid_sample(
            m.unsqueeze(1).to(dt), grid, mode="nearest", padding_mode="border", align_corners=False
        )
        m = mf[:, 0].round().to(masks.dtype)
    view = (b, 1, 1, 1)
    x = x * bright.to(device=dev, dtype=dt).view(view)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contr.to(device=dev, dtype=dt).view(view) + mean
    if c == 3 and saturation > 0:
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = grey + (x - grey) * sat.to(device=dev, dtype=dt).view(view)
    return x.clamp(0, 1), m


@dataclasses.dataclass
class Augment:
    """Augmentation settings; calling it applies :func:`augment_pair`.

    Args:
        hflip: random left-right flips. Default True.
        vflip: random top-bottom flips. Default True.
        rotate: maximum rotation in degrees, 0..180. Default 15.
        scale: maximum relative zoom, 0..0.5. Default 0.1.
        translate: maximum shift as a fraction of the size, 0..0.5. Default 0.05.
        brightness: maximum relative brightness change, 0..1. Default 0.1.
        contrast: maximum relative contrast change, 0..1. Default 0.1.
        saturation: maximum relative saturation change, 0..1. Default 0.1.

    Raises:
        TypeError, ValueError: a setting has the wrong type or range.

    Example:
        >>> aug = Augment(rotate=0, scale=0, translate=0)
        >>> g = torch.Generator().manual_seed(1)
        >>> aug(torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), g)[1].shape
        torch.Size([1, 4, 4])
    """

    hflip: bool = True
    vflip: bool = True
    rotate: float = 15.0
    scale: float = 0.1
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1

    def __post_init__(self) -> None:
        _check_settings(
            self.rotate,
            self.scale,
            self.translate,
            self.brightness,
            self.contrast,
            self.saturation,
        )
        for f in dataclasses.fields(self):
            cast = bool if f.type == "bool" else float
            setattr(self, f.name, cast(getattr(self, f.name)))

    @property
    def settings(self) -> dict[str, Any]:
        """The settings as a plain dict (stored with the training run)."""
        return dataclasses.asdict(self)

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return augment_pair(images, masks, generator, **self.settings)
