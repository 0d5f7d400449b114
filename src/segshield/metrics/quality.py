"""Image-quality metrics of defended images: PSNR and SSIM (docs/ALGORITHMS.md §5), in torch.

SSIM follows Wang et al., "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 2004: an 11x11 Gaussian window (sigma 1.5),
``K1 = 0.01``, ``K2 = 0.03``, computed per channel over the valid window positions
(no padding) and averaged over channels and positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segshield._checks import check_images, check_number

__all__ = ["psnr", "ssim"]


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    check_images(x, "x")
    check_images(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"y: expected the shape of x {tuple(x.shape)}, got {tuple(y.shape)}; "
            "compare images of the same size (resize or crop first)"
        )


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per sample, in dB.

    ``PSNR = 10 log10(data_range² / MSE)`` with the MSE over all channels and pixels
    of one sample; identical images give ``inf``.

    Args:
        x: images ``(B, C, H, W)``.
        y: reference images of the same shape.
        data_range: peak value of the scale. Default 1.0 (docs/ALGORITHMS.md §1); must be > 0.

    Shape:
        x, y: ``(B, C, H, W)``; returns ``(B,)`` float64.

    Returns:
        PSNR of each sample in dB.

    Raises:
        TypeError: ``x`` or ``y`` is not a float tensor, or ``data_range`` not a number.
        ValueError: shapes differ, are not 4-D, or ``data_range`` <= 0.

    Example:
        >>> x = torch.zeros(1, 1, 4, 4); y = torch.full((1, 1, 4, 4), 0.1)
        >>> round(psnr(x, y).item(), 6)
        20.0
    """
    _check_pair(x, y)
    check_number("data_range", data_range, low=0, low_inclusive=False)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(-1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity per sample (Wang et al. 2004), Gaussian-weighted.

    Args:
        x: images ``(B, C, H, W)``.
        y: reference images of the same shape.
        data_range: peak value of the scale. Default 1.0; must be > 0.
        win_size: odd side of the Gaussian window, >= 3. Default 11. H and W must be
            at least ``win_size`` (the mean runs over valid positions only).
        sigma: Gaussian standard deviation in pixels, > 0. Default 1.5.

    Shape:
        x, y: ``(B, C, H, W)``; returns ``(B,)`` float64 in ``[-1, 1]``.

    Returns:
        Mean SSIM over channels and window positions of each sample.

    Raises:
        TypeError: non-tensor inputs or non-numeric settings.
        ValueError: shapes differ, bad settings, or images smaller than the window.

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(x, x).tolist()
        [1.0, 1.0]
    """
    _check_pair(x, y)
    check_number("data_range", data_range, low=0, low_inclusive=False)
    check_number("win_size", win_size, low=3, integer=True)
    check_number("sigma", sigma, low=0, low_inclusive=False)
    if win_size % 2 == 0:
        raise ValueError(f"win_size: expected an odd integer, got {win_size}; use e.g. 7 or 11")
    h, w = x.shape[-2:]
    if h < win_size or w < win_size:
        raise ValueError(
            f"x: expected height and width >= win_size {win_size}, got {h}x{w}; "
            "pass a smaller win_size"
        )
    c = x.shape[1]
    win = _gaussian_window(int(win_size), float(sigma), x.device)
    win = win.expand(c, 1, -1, -1).contiguous()
    xd, yd = x.double(), y.double()

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mu_x, mu_y = filt(xd), filt(yd)
    sxx = filt(xd * xd) - mu_x**2
    syy = filt(yd * yd) - mu_y**2
    sxy = filt(xd * yd) - mu_x * mu_y
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(-1)
