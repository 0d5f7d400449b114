"""MONAI networks as segshield models: monai-unet, monai-segresnet, monai-attention-unet.

Optional extra ``segshield[monai]``: MONAI is imported when one of these networks is
built, never when segshield is imported. Each factory builds the 2-D MONAI network
(``spatial_dims=2``) and records its total down-sampling factor as ``net.stride``, so
that :class:`~segshield.models.SegmentationModel` pads inputs to it; the wrapped model
then takes ``[0, 1]`` images of any size like every segshield model (docs/ALGORITHMS.md
§1). The MONAI network is the model's ``net``, so its state-dict keys are MONAI's own,
behind the ``net.`` prefix.

Settings follow the spec grammar: a sequence is a dash-separated list,
``monai-unet:channels=16-32-64-128,strides=2-2-2,num_res_units=2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from torch import nn

from segshield._checks import check_choice, check_number

__all__ = [
    "MONAI_FACTORIES",
    "require_monai",
    "monai_unet",
    "monai_segresnet",
    "monai_attention_unet",
]

EXTRA_HINT = "pip install 'segshield[monai]'"


def require_monai(what: str) -> ModuleType:
    """Import MONAI, or say which extra provides it.

    Args:
        what: what needs MONAI, for the message (``"model 'monai-unet'"``).

    Returns:
        The ``monai`` module.

    Raises:
        ImportError: MONAI is not installed; the message names the extra.

    Example:
        >>> require_monai("this example").__name__  # doctest: +SKIP
        'monai'
    """
    try:
        import monai
    except ImportError as exc:
        raise ImportError(
            f"{what} needs MONAI, which is not installed; install the extra with {EXTRA_HINT}"
        ) from exc
    return monai


def _ints(name: str, values: Any, *, low: int, length: int | None = None) -> tuple[int, ...]:
    """Check a sequence of integers >= ``low`` (optionally of a given length)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name}: expected a sequence of integers such as 16-32-64, got {values!r}")
    for v in values:
        check_number(f"{name} item", v, low=low, integer=True)
    if length is not None and len(values) != length:
        raise ValueError(f"{name}: expected {length} values, got {len(values)}: {list(values)}")
    return tuple(int(v) for v in values)


def _levels(name: str, channels: Any, strides: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check U-Net ``channels`` (>= 2 levels) and ``strides`` (one per down-sampling)."""
    channels = _ints(f"{name}: channels", channels, low=1)
    if len(channels) < 2:
        raise ValueError(
            f"{name}: channels: expected at least 2 levels such as 16-32, got {list(channels)}"
        )
    if strides is None:
        return channels, (2,) * (len(channels) - 1)
    return channels, _ints(f"{name}: strides", strides, low=1, length=len(channels) - 1)


def _kernel(name: str, size: Any) -> int:
    check_number(name, size, low=1, integer=True)
    if int(size) % 2 == 0:
        raise ValueError(f"{name}: expected an odd kernel size, got {size}")
    return int(size)


def _with_stride(net: nn.Module, stride: int) -> nn.Module:
    """Record the network's total down-sampling factor for the model's padding."""
    net.stride = int(stride)
    return net


def _unet_like(
    name: str,
    cls_name: str,
    in_channels: int,
    num_classes: int,
    channels: Any,
    strides: Any,
    kernel_size: Any,
    up_kernel_size: Any,
    dropout: Any,
    **extra: Any,
) -> nn.Module:
    """Check the settings MONAI's UNet and AttentionUnet share and build ``cls_name``."""
    channels, strides = _levels(name, channels, strides)
    check_number(f"{name}: dropout", dropout, low=0.0, high=1.0, high_inclusive=False)
    net = getattr(require_monai(f"model {name!r}").networks.nets, cls_name)(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=channels,
        strides=strides,
        kernel_size=_kernel(f"{name}: kernel_size", kernel_size),
        up_kernel_size=_kernel(f"{name}: up_kernel_size", up_kernel_size),
        dropout=float(dropout),
        **extra,
    )
    return _with_stride(net, math.prod(strides))


def monai_unet(
    in_channels: int,
    num_classes: int,
    channels: tuple[int, ...] = (16, 32, 64, 128),
    strides: tuple[int, ...] | None = None,
    num_res_units: int = 0,
    kernel_size: int = 3,
    up_kernel_size: int = 3,
    norm: str = "instance",
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI UNet, 2-D (residual U-Net of Kerfoot et al., 2018, ``monai.networks.nets.UNet``).

    Args:
        in_channels: image channels C.
        num_classes: output maps K.
        channels: features per level, at least 2 levels. Default 16-32-64-128.
        strides: down-sampling per level, one fewer than ``channels``. Default 2 each.
        num_res_units: residual units per block (MONAI's default 0).
        kernel_size: odd convolution size. Default 3.
        up_kernel_size: odd up-sampling convolution size. Default 3.
        norm: ``instance`` (MONAI's default) or ``batch``.
        dropout: dropout probability in [0, 1). Default 0.

    Returns:
        The MONAI network with ``stride`` = the product of ``strides``.

    Raises:
        ImportError: MONAI is missing (the message names ``segshield[monai]``).
        TypeError, ValueError: a setting of the wrong type or range.

    Example:
        >>> import torch
        >>> net = monai_unet(1, 2, channels=(4, 8, 16))  # doctest: +SKIP
        >>> net.stride, net(torch.rand(1, 1, 16, 16)).shape  # doctest: +SKIP
        (4, torch.Size([1, 2, 16, 16]))
    """
    check_number("monai-unet: num_res_units", num_res_units, low=0, integer=True)
    check_choice("monai-unet: norm", norm, ("instance", "batch"))
    return _unet_like(
        "monai-unet",
        "UNet",
        in_channels,
        num_classes,
        channels,
        strides,
        kernel_size,
        up_kernel_size,
        dropout,
        num_res_units=int(num_res_units),
        norm=norm.upper(),
    )


def monai_segresnet(
    in_channels: int,
    num_classes: int,
    init_filters: int = 8,
    blocks_down: tuple[int, ...] = (1, 2, 2, 4),
    blocks_up: tuple[int, ...] | None = None,
    dropout_prob: float | None = None,
    upsample_mode: str = "nontrainable",
) -> nn.Module:
    """MONAI SegResNet, 2-D (Myronenko, BrainLes 2018, ``monai.networks.nets.SegResNet``).

    Args:
        in_channels: image channels C.
        num_classes: output maps K.
        init_filters: features of the first level, a multiple of 8 (group norm in 8
            groups, MONAI's default). Default 8.
        blocks_down: residual blocks per encoder level. Default 1-2-2-4.
        blocks_up: residual blocks per decoder level, one fewer than ``blocks_down``.
            Default 1 each.
        dropout_prob: dropout probability in [0, 1), or None (default) for none.
        upsample_mode: ``nontrainable`` (default), ``deconv`` or ``pixelshuffle``.

    Returns:
        The MONAI network with ``stride`` = ``2 ** (len(blocks_down) - 1)``.

    Raises:
        ImportError: MONAI is missing (the message names ``segshield[monai]``).
        TypeError, ValueError: a setting of the wrong type or range.
    """
    check_number("monai-segresnet: init_filters", init_filters, low=8, integer=True)
    if int(init_filters) % 8:
        raise ValueError(
            f"monai-segresnet: init_filters: expected a multiple of 8 (group norm in 8 "
            f"groups), got {init_filters}"
        )
    down = _ints("monai-segresnet: blocks_down", blocks_down, low=1)
    up_length = len(down) - 1
    up = (1,) * up_length if blocks_up is None else blocks_up
    up = _ints("monai-segresnet: blocks_up", up, low=1, length=up_length)
    if dropout_prob is not None:
        check_number("monai-segresnet: dropout_prob", dropout_prob, low=0.0, high=1.0)
    modes = ("nontrainable", "deconv", "pixelshuffle")
    check_choice("monai-segresnet: upsample_mode", upsample_mode, modes)
    net = require_monai("model 'monai-segresnet'").networks.nets.SegResNet(
        spatial_dims=2,
        init_filters=int(init_filters),
        in_channels=in_channels,
        out_channels=num_classes,
        dropout_prob=dropout_prob,
        blocks_down=down,
        blocks_up=up,
        upsample_mode=upsample_mode,
    )
    return _with_stride(net, 2**up_length)


def monai_attention_unet(
    in_channels: int,
    num_classes: int,
    channels: tuple[int, ...] = (16, 32, 64, 128),
    strides: tuple[int, ...] | None = None,
    kernel_size: int = 3,
    up_kernel_size: int = 3,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI Attention U-Net, 2-D (Oktay et al., MIDL 2018, ``monai.networks.nets.AttentionUnet``).

    Args:
        in_channels, num_classes, channels, strides, kernel_size, up_kernel_size,
            dropout: as :func:`monai_unet` (the same defaults).

    Returns:
        The MONAI network with ``stride`` = the product of ``strides``.

    Raises:
        ImportError: MONAI is missing (the message names ``segshield[monai]``).
        TypeError, ValueError: a setting of the wrong type or range.
    """
    return _unet_like(
        "monai-attention-unet",
        "AttentionUnet",
        in_channels,
        num_classes,
        channels,
        strides,
        kernel_size,
        up_kernel_size,
        dropout,
    )


#: registry name -> factory ``(in_channels, num_classes, **settings) -> nn.Module``
MONAI_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "monai-unet": monai_unet,
    "monai-segresnet": monai_segresnet,
    "monai-attention-unet": monai_attention_unet,
}
