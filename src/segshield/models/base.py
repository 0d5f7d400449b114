"""``SegmentationModel``: a network plus its normalisation, padding and configuration.

Every model in segshield takes ``[0, 1]`` images (docs/ALGORITHMS.md §1), normalises them inside
(``(x - mean) / std``, the FR paper's code uses mean = std = 0.5), pads them to the
network's stride multiple, and returns logits ``(B, K, H, W)`` at the input resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from segshield._checks import check_images, check_logits, check_number
from segshield._deprecation import moved_names
from segshield._version import __version__
from segshield.utils import padding

__all__ = ["NormalizedModel", "SegmentationModel", "default_class_names"]


def default_class_names(num_classes: int) -> list[str]:
    """Class names used when none are given: binary ``background``/``foreground``."""
    if num_classes <= 2:
        return ["background", "foreground"]
    return ["background"] + [f"class{i}" for i in range(1, num_classes)]


def _legacy_pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """The deprecated ``models.base.pad_to_multiple``: edge padding, ``(padded, H, W)``."""
    padded, (h, w) = padding.pad_to_multiple(x, multiple, "edge")
    return padded, h, w


__getattr__ = moved_names(
    __name__,
    {
        "pad_to_multiple": (
            "segshield.utils.padding.pad_to_multiple(x, multiple), which returns (padded, (H, W))",
            lambda: _legacy_pad_to_multiple,
        )
    },
)


class NormalizedModel(nn.Module):
    """What every segshield model shares: the network, ``(x - mean) / std`` and a config.

    :class:`SegmentationModel` and :class:`segshield.models.Classifier` build on
    it; it checks the settings, holds the per-channel statistics as buffers and fills in
    the checkpoint configuration.

    Args:
        net: the network, on normalised images.
        num_classes: K of the logits, >= 1 (1 = sigmoid binary, >= 2 = softmax).
        in_channels: C of the input images, >= 1.
        mean: per-channel mean (a scalar or one value per channel). Default 0.5.
        std: per-channel std, > 0. Default 0.5.
        config: extra configuration kept with the checkpoint; ``num_classes``,
            ``in_channels``, ``mean``, ``std``, the segshield version and the subclass's
            ``fixed_config`` are filled in, ``class_names`` defaults to
            :meth:`default_class_names`.

    Raises:
        TypeError: ``net`` is not an ``nn.Module`` or a setting has the wrong type.
        ValueError: a setting is out of range or ``mean``/``std`` length is not 1 or C.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        num_classes: int,
        in_channels: int,
        mean: float | Sequence[float] = 0.5,
        std: float | Sequence[float] = 0.5,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(
                f"net: expected a torch.nn.Module, got {type(net).__name__}; "
                "load TorchScript or ONNX segmentation models with segshield.models.wrap"
            )
        check_number("num_classes", num_classes, low=1, integer=True)
        check_number("in_channels", in_channels, low=1, integer=True)
        mean_t = _per_channel("mean", mean, int(in_channels))
        std_t = _per_channel("std", std, int(in_channels))
        if bool((std_t <= 0).any()):
            raise ValueError(f"std: expected values > 0, got {std_t.tolist()}")
        self.net = net
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)
        cfg: dict[str, Any] = {
            "architecture": "custom",
            "arch_kwargs": {},
            "class_names": self.default_class_names(int(num_classes)),
            "input_size": None,
            "trained_on": None,
            "val_scores": {},
            "seed": None,
        }
        cfg.update(config or {})
        cfg.update(self.fixed_config)
        cfg.update(
            {
                "num_classes": int(num_classes),
                "in_channels": int(in_channels),
                "mean": mean_t.tolist(),
                "std": std_t.tolist(),
                "segshield_version": __version__,
            }
        )
        self.config = cfg

    #: configuration entries the ``config`` argument cannot override
    fixed_config: dict[str, Any] = {}

    @staticmethod
    def default_class_names(num_classes: int) -> list[str]:
        """Class names used when the config gives none (see :func:`default_class_names`)."""
        return default_class_names(num_classes)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` with the model's per-channel statistics.

        Raises:
            TypeError, ValueError: ``x`` is not a ``(B, C, H, W)`` float batch, or C is
                not the model's channel count.
        """
        check_images(x)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"images: expected {self.in_channels} channel(s), got {x.shape[1]} "
                f"(shape {tuple(x.shape)}); convert the images (grey <-> RGB) to match "
                "the model"
            )
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"architecture={self.config.get('architecture')!r}, num_classes={self.num_classes}, "
            f"in_channels={self.in_channels}"
        )


class SegmentationModel(NormalizedModel):
    """A segmentation network with its normalisation, stride padding and config.

    Args:
        net: the network; maps normalised ``(B, C, H', W')`` to logits ``(B, K, H', W')``
            for H', W' multiples of ``stride``.
        num_classes: K of the logits, >= 1 (1 = sigmoid binary, >= 2 = softmax).
        in_channels: C of the input images, >= 1.
        mean: per-channel mean subtracted inside the model (a scalar or one value per
            channel). Default 0.5 (the FR paper's ``(x - 0.5) / 0.5``).
        std: per-channel std, > 0. Default 0.5.
        stride: the network's total down-sampling factor; inputs are padded
            (replicate, bottom/right) to a multiple of it and the output cropped back.
            Default 1.
        config: extra configuration kept with the checkpoint (``architecture``,
            ``arch_kwargs``, ``class_names``, ``input_size``, ``trained_on``,
            ``val_scores``, ``seed``, ...). ``num_classes``, ``mean``, ``std`` and the
            segshield version are filled in here.
        supports_gradients: whether input gradients can be computed (``False`` for an
            ONNX model); attacks check it. Default True.

    Shape:
        input ``(B, C, H, W)`` float in ``[0, 1]``, any H, W; output ``(B, K, H, W)``.

    Raises:
        TypeError: ``net`` is not an ``nn.Module`` or a setting has the wrong type.
        ValueError: a setting is out of range or ``mean``/``std`` length is not 1 or C.

    Example:
        >>> m = SegmentationModel(nn.Conv2d(3, 2, 1), num_classes=2, in_channels=3)
        >>> m(torch.rand(1, 3, 7, 5)).shape
        torch.Size([1, 2, 7, 5])
    """

    def __init__(
        self, net: nn.Module, *, stride: int = 1, supports_gradients: bool = True, **settings: Any
    ) -> None:
        super().__init__(net, **settings)
        check_number("stride", stride, low=1, integer=True)
        self.stride = int(stride)
        self.supports_gradients = bool(supports_gradients)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` for ``[0, 1]`` images ``(B, C, H, W)``."""
        z, (h, w) = padding.pad_to_multiple(self.normalize(x), self.stride)
        out = check_logits(self.net(z), "model output")
        if out.shape[1] != self.num_classes:
            raise ValueError(
                f"model output: expected {self.num_classes} channel(s), got {out.shape[1]}; "
                "set num_classes to the network's number of output maps"
            )
        if out.shape[-2:] != z.shape[-2:]:
            raise ValueError(
                f"model output: expected spatial size {tuple(z.shape[-2:])} (the padded "
                f"input), got {tuple(out.shape[-2:])}; set stride to the network's "
                "down-sampling factor"
            )
        return out[..., :h, :w]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stride={self.stride}"


def _per_channel(name: str, value: float | Sequence[float], channels: int) -> torch.Tensor:
    vals = [value] if isinstance(value, (int, float)) else list(value)
    for v in vals:
        check_number(name, v)
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise ValueError(
            f"{name}: expected 1 or {channels} value(s) (one per input channel), "
            f"got {len(vals)}; give a scalar or one value per channel"
        )
    return torch.tensor([float(v) for v in vals], dtype=torch.float32)
