"""Gaussian blur per channel (docs/ALGORITHMS.md §3 baseline), separable and differentiable."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segshield._checks import check_images, check_number
from segshield.defenses.base import Defense

__all__ = ["Gaussian", "gaussian_blur"]


def _check_sigma(sigma: float) -> float:
    check_number("sigma", sigma, low=0, high=50, low_inclusive=False)
    return float(sigma)


def _radius(sigma: float, truncate: float = 4.0) -> int:
    """Kernel radius, as ``scipy.ndimage.gaussian_filter`` rounds it."""
    return int(truncate * sigma + 0.5)


def gaussian_blur(x: torch.Tensor, sigma: float, *, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of every channel, edges replicated.

    Equals ``scipy.ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode="nearest",
    truncate=truncate)``: kernel radius ``int(truncate * sigma + 0.5)``, weights
    ``exp(-t**2 / (2 sigma**2))`` normalised to sum 1.

    Args:
        x: images ``(B, C, H, W)``, floating dtype.
        sigma: standard deviation in pixels, in (0, 50].
        truncate: kernel half-width in sigmas, in (0, 10] (default 4.0).

    Shape:
        Output: same as ``x``.

    Returns:
        The blurred images (differentiable).

    Raises:
        TypeError, ValueError: bad ``x``, ``sigma`` or ``truncate``.

    Example:
        >>> x = torch.zeros(1, 1, 9, 9); x[0, 0, 4, 4] = 1.0
        >>> round(float(gaussian_blur(x, 1.0).sum()), 5)
        1.0
    """
    check_images(x, "x")
    sigma = _check_sigma(sigma)
    check_number("truncate", truncate, low=0, high=10, low_inclusive=False)
    r = _radius(sigma, truncate)
    if r == 0:
        return x
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.exp(-(t**2) / (2.0 * sigma**2))
    w = (w / w.sum()).to(dtype=x.dtype, device=x.device)
    b, c, h, wd = x.shape
    y = F.pad(x.reshape(b * c, 1, h, wd), (r, r, r, r), mode="replicate")
    y = F.conv2d(y, w.view(1, 1, -1, 1))
    y = F.conv2d(y, w.view(1, 1, 1, -1))
    return y.reshape(b, c, h, wd)


class Gaussian(Defense):
    """Gaussian-blur defence.

    Args:
        sigma: standard deviation in pixels, in (0, 50] (default 1.0).
        gradient: ``"exact"`` (default; the blur is linear) or ``"bpda"``.

    Shape:
        Input and output: ``(B, C, H, W)`` float in [0, 1] (or a numpy uint8/uint16 image).

    Raises:
        TypeError: ``sigma`` is not a number.
        ValueError: ``sigma`` outside (0, 50], or an unknown ``gradient``.

    Example:
        >>> blur = Gaussian(1)
        >>> blur.spec(), round(float(blur(torch.eye(5).reshape(1, 1, 5, 5)).max()), 3)
        ('gaussian:sigma=1,gradient=exact', 0.551)
    """

    name = "gaussian"
    gradients = ("exact", "bpda")
    spec_keys = {"sigma": "sigma"}
    tile_block = 1  # local: forward_numpy cuts large images with a halo of one radius

    def __init__(self, sigma: float = 1.0, gradient: str = "exact") -> None:
        super().__init__(gradient)
        self.sigma = _check_sigma(sigma)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.sigma)

    def tile_halo(self) -> int:
        return _radius(self.sigma)
