"""Image classifiers: ``[0, 1]`` images to ``(B, K)`` logits, built by the model registry.

``Classifier`` is the classification task's :class:`~segshield.models.base.NormalizedModel`:
it owns the normalisation ``(x - mean) / std`` (docs/ALGORITHMS.md §1: attacks and
defences see ``[0, 1]`` images only) and a ``config`` marked ``"task": "classify"``, so
:func:`segshield.models.save` and :func:`segshield.models.load` handle it like any model.

Architecture ``cnn``: ``depth`` blocks of (3x3 convolution, batch norm, ReLU, 2x2 max
pooling) with ``width * 2**i`` channels, global average pooling and a linear layer, so
any input size works (a VGG-style network in the spirit of Simonyan & Zisserman, ICLR
2015, sized for CPU phantoms).
"""

from __future__ import annotations

import torch
from torch import nn

from segshield._checks import check_number
from segshield.models.base import NormalizedModel

__all__ = ["CNN", "Classifier", "CLASSIFY"]

#: value of ``config["task"]`` marking a classifier (checkpoints without it segment).
CLASSIFY = "classify"


class CNN(nn.Module):
    """Plain CNN: ``depth`` x (conv3x3-BN-ReLU-maxpool2), global average pool, linear.

    Args:
        in_channels: image channels C, >= 1.
        num_classes: K of the logits, >= 1.
        width: channels of the first block, doubled per block, in ``[1, 256]``.
            Default 16.
        depth: number of blocks, in ``[1, 6]``. Default 3.

    Shape:
        ``(B, C, H, W)`` (normalised) -> ``(B, K)``; H and W >= ``2**depth``.

    Raises:
        TypeError, ValueError: settings out of range.

    Example:
        >>> CNN(3, 2, width=4, depth=2)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 2])
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, depth: int = 3):
        super().__init__()
        check_number("in_channels", in_channels, low=1, integer=True)
        check_number("num_classes", num_classes, low=1, integer=True)
        check_number("width", width, low=1, high=256, integer=True)
        check_number("depth", depth, low=1, high=6, integer=True)
        layers: list[nn.Module] = []
        c = int(in_channels)
        for i in range(int(depth)):
            out = int(width) * 2**i
            layers += [
                nn.Conv2d(c, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))


class Classifier(NormalizedModel):
    """An image classifier with its normalisation and configuration.

    Args:
        net: maps normalised ``(B, C, H, W)`` to logits ``(B, K)``.
        num_classes: K, >= 1 (1 = sigmoid, >= 2 = softmax).
        in_channels: C, >= 1.
        mean: per-channel mean (scalar or one per channel). Default 0.5.
        std: per-channel std, > 0. Default 0.5.
        config: extra settings kept with the checkpoint (``architecture``,
            ``arch_kwargs``, ``class_names``, ``label_task``, ``threshold``,
            ``input_size``, ``trained_on``, ``val_scores``, ``seed``).

    Shape:
        ``(B, C, H, W)`` float in ``[0, 1]`` -> ``(B, K)`` logits.

    Raises:
        TypeError: ``net`` is not an ``nn.Module``.
        ValueError: settings out of range or ``mean``/``std`` not of length 1 or C.

    Example:
        >>> m = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), num_classes=2,
        ...                in_channels=3)
        >>> m(torch.rand(4, 3, 2, 2)).shape
        torch.Size([4, 2])
    """

    fixed_config = {"task": CLASSIFY}

    @staticmethod
    def default_class_names(num_classes: int) -> list[str]:
        """``class0``, ``class1``, ... (at least two).

        Example:
            >>> Classifier.default_class_names(1)
            ['class0', 'class1']
        """
        return [f"class{i}" for i in range(max(num_classes, 2))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` for ``[0, 1]`` images ``(B, C, H, W)``."""
        out = self.net(self.normalize(x))
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise ValueError(
                f"model output: expected logits (B, {self.num_classes}), got "
                f"{tuple(out.shape)}; the network must end in a linear layer"
            )
        return out
