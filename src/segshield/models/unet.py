"""U-Net (Ronneberger et al., MICCAI 2015) with configurable width and depth, plain torch.

Each level has two 3x3 convolutions with batch norm and ReLU; down-sampling by 2x2 max
pooling, up-sampling by a 2x2 transposed convolution, skip connections by concatenation.
The total stride is ``2 ** depth``.
"""

from __future__ import annotations

import torch
from torch import nn

from segshield._checks import check_number

__all__ = ["UNet", "conv_block", "conv_bn_relu"]


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """A convolution without bias (``kernel // 2`` padding), batch norm and ReLU.

    Example:
        >>> [type(m).__name__ for m in conv_bn_relu(3, 4)]
        ['Conv2d', 'BatchNorm2d', 'ReLU']
    """
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""
    return nn.Sequential(*conv_bn_relu(cin, cout), *conv_bn_relu(cout, cout))


class UNet(nn.Module):
    """U-Net encoder-decoder (Ronneberger et al., MICCAI 2015).

    Args:
        in_channels: input channels, >= 1. Default 3.
        num_classes: output logit maps K, >= 1. Default 1.
        width: channels of the first level, >= 1; doubles at each level. Default 16
            (CPU-friendly; the original U-Net uses 64).
        depth: number of down-sampling steps, 1..6; the stride is ``2 ** depth``.
            Default 4.

    Shape:
        ``(B, in_channels, H, W)`` with H, W multiples of ``2 ** depth`` to
        ``(B, num_classes, H, W)``.

    Raises:
        TypeError, ValueError: a setting has the wrong type or range.

    Example:
        >>> net = UNet(in_channels=1, num_classes=2, width=4, depth=2)
        >>> net(torch.zeros(1, 1, 8, 12)).shape
        torch.Size([1, 2, 8, 12])
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 1, width: int = 16, depth: int = 4
    ) -> None:
        super().__init__()
        check_number("in_channels", in_channels, low=1, integer=True)
        check_number("num_classes", num_classes, low=1, integer=True)
        check_number("width", width, low=1, integer=True)
        check_number("depth", depth, low=1, high=6, integer=True)
        self.stride = 2**depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([conv_block(in_channels, chans[0])])
        self.down.extend(conv_block(chans[i], chans[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.upconv = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.up = nn.ModuleList(conv_block(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a normalised, stride-padded batch."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for upconv, block in zip(self.upconv, self.up, strict=True):
            x = block(torch.cat([upconv(x), skips.pop()], dim=1))
        return self.head(x)
