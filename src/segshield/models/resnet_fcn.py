"""ResNet FCN: the segmentation model of the Frequency Refinement paper (Liu et al., MICCAI 2020).

A ResNet encoder (ResNet-50 in the paper; 18/34 for the CPU) and a decoder of 2x2
transposed convolutions that up-sample by 2 at each step, each followed by addition of
the encoder feature at that stride (skip connection, projected with a 1x1 convolution)
and a 3x3 convolution; a final transposed convolution returns to full resolution. One
sigmoid channel by default. Total stride 32.
"""

from __future__ import annotations

import torch
from torch import nn

from segshield._checks import check_number
from segshield.models.resnet import ResNetEncoder
from segshield.models.unet import conv_bn_relu

__all__ = ["ResNetFCN"]


class _UpStep(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.skip = nn.Conv2d(cskip, cout, 1, bias=False)
        self.fuse = nn.Sequential(
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True), *conv_bn_relu(cout, cout)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.up(x) + self.skip(skip))


class ResNetFCN(nn.Module):
    """ResNet encoder + transposed-convolution decoder with skips (Liu et al., MICCAI 2020).

    Args:
        depth: ResNet depth, 18, 34 or 50. Default 50 (the paper's).
        in_channels: input channels, >= 1. Default 3.
        num_classes: output logit maps K, >= 1. Default 1 (sigmoid, the paper's).
        width: ResNet base width, >= 1 (64 = ImageNet ResNet). Default 64.
        decoder_width: channels of the last decoder step, >= 1; doubles per step
            towards the encoder. Default 32.

    Shape:
        ``(B, in_channels, H, W)``, H and W multiples of 32, to
        ``(B, num_classes, H, W)``.

    Raises:
        TypeError, ValueError: a setting has the wrong type or range.

    Example:
        >>> net = ResNetFCN(depth=18, in_channels=3, width=4, decoder_width=4)
        >>> net(torch.zeros(2, 3, 32, 64)).shape
        torch.Size([2, 1, 32, 64])
    """

    stride = 32

    def __init__(
        self,
        depth: int = 50,
        in_channels: int = 3,
        num_classes: int = 1,
        width: int = 64,
        decoder_width: int = 32,
    ) -> None:
        super().__init__()
        check_number("num_classes", num_classes, low=1, integer=True)
        check_number("decoder_width", decoder_width, low=1, integer=True)
        self.encoder = ResNetEncoder(depth=depth, in_channels=in_channels, width=width)
        ch = self.encoder.channels  # strides 2, 4, 8, 16, 32
        dec = [decoder_width * 2**i for i in range(4)]  # at strides 2, 4, 8, 16
        self.steps = nn.ModuleList(
            [
                _UpStep(ch[4], ch[3], dec[3]),
                _UpStep(dec[3], ch[2], dec[2]),
                _UpStep(dec[2], ch[1], dec[1]),
                _UpStep(dec[1], ch[0], dec[0]),
            ]
        )
        self.final = nn.ConvTranspose2d(dec[0], dec[0], 2, stride=2)
        self.head = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(dec[0], num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a normalised, stride-padded batch."""
        feats = self.encoder(x)
        y = feats[4]
        for step, skip in zip(self.steps, (feats[3], feats[2], feats[1], feats[0]), strict=True):
            y = step(y, skip)
        return self.head(self.final(y))
