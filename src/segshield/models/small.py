"""A small, fast encoder-decoder for CPU demos and tests.

Three levels of depthwise-separable convolution blocks (stride 4 in all), bilinear
up-sampling and additive skips: tens of thousands of parameters at the default width,
a few milliseconds per 128x128 image on a CPU core.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segshield._checks import check_number
from segshield.models.unet import conv_bn_relu

__all__ = ["SmallSegNet"]


def _sep_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        *conv_bn_relu(cin, cout, kernel=1),
    )


class SmallSegNet(nn.Module):
    """Small separable-convolution encoder-decoder with skips (for CPU demos).

    Args:
        in_channels: input channels, >= 1. Default 3.
        num_classes: output logit maps K, >= 1. Default 1.
        width: channels at full resolution, >= 1; doubled at 1/2 and 4x at 1/4.
            Default 16.

    Shape:
        ``(B, in_channels, H, W)``, H and W multiples of 4, to ``(B, num_classes, H, W)``.

    Raises:
        TypeError, ValueError: a setting has the wrong type or range.

    Example:
        >>> SmallSegNet(in_channels=1, num_classes=3, width=4)(torch.zeros(1, 1, 8, 4)).shape
        torch.Size([1, 3, 8, 4])
    """

    stride = 4

    def __init__(self, in_channels: int = 3, num_classes: int = 1, width: int = 16) -> None:
        super().__init__()
        check_number("in_channels", in_channels, low=1, integer=True)
        check_number("num_classes", num_classes, low=1, integer=True)
        check_number("width", width, low=1, integer=True)
        w1, w2, w3 = width, 2 * width, 4 * width
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, w1), _sep_block(w1, w1))
        self.enc2 = nn.Sequential(_sep_block(w1, w2, stride=2), _sep_block(w2, w2))
        self.enc3 = nn.Sequential(_sep_block(w2, w3, stride=2), _sep_block(w3, w3))
        self.dec2 = _sep_block(w3, w2)
        self.dec1 = _sep_block(w2, w1)
        self.head = nn.Conv2d(w1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a normalised, stride-padded batch."""
        f1 = self.stem(x)
        f2 = self.enc2(f1)
        f3 = self.enc3(f2)
        y = self.dec2(f3)
        y = F.interpolate(y, size=f2.shape[-2:], mode="bilinear", align_corners=False) + f2
        y = self.dec1(y)
        y = F.interpolate(y, size=f1.shape[-2:], mode="bilinear", align_corners=False) + f1
        return self.head(y)
