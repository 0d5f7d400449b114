"""ResNet-18/34/50 encoders (He et al., CVPR 2016) in plain torch, returning skip features.

Same layout as the ImageNet ResNets (7x7 stride-2 stem, 3x3 max pool, four stages with
strides 1, 2, 2, 2), with a configurable base width so CPU variants can be slimmer.
"""

from __future__ import annotations

import torch
from torch import nn

from segshield._checks import check_choice, check_number

__all__ = ["BasicBlock", "Bottleneck", "ResNetEncoder", "RESNET_LAYERS"]

#: depth -> (block type, blocks per stage)
RESNET_LAYERS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 convolutions with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class ResNetEncoder(nn.Module):
    """ResNet encoder returning the features of the stem and of the four stages.

    Args:
        depth: 18, 34 or 50. Default 50.
        in_channels: input channels, >= 1. Default 3.
        width: channels of the stem and of the first stage's planes, >= 1 (64 in the
            ImageNet ResNets). Default 64.

    Shape:
        ``(B, C, H, W)`` with H, W multiples of 32 to a list of five tensors at strides
        2, 4, 8, 16, 32 with ``channels`` channels.

    Attributes:
        channels: output channels of the five features.

    Raises:
        ValueError: ``depth`` is not 18, 34 or 50, or a setting is out of range.

    Example:
        >>> enc = ResNetEncoder(depth=18, in_channels=1, width=4)
        >>> [f.shape[-1] for f in enc(torch.zeros(1, 1, 64, 64))]
        [32, 16, 8, 4, 2]
    """

    def __init__(self, depth: int = 50, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        check_choice("depth", depth, RESNET_LAYERS)
        check_number("in_channels", in_channels, low=1, integer=True)
        check_number("width", width, low=1, integer=True)
        kind, layers = RESNET_LAYERS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        cin = width
        channels = [width]
        for i, n in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, stride=2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
            channels.append(cin)
        self.stages = nn.ModuleList(stages)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at strides 2, 4, 8, 16 and 32."""
        x = self.stem(x)
        feats = [x]
        x = self.pool(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats
