"""Model registry: names to network factories, each entry under its task.

Segmentation (``task="segment"``): ``unet``, ``resnet_fcn`` (ResNet-50, the FR paper's
model, Liu et al. MICCAI 2020), ``resnet18_fcn``, ``resnet34_fcn`` and ``small``; they
build a :class:`SegmentationModel`. Classification (``task="classify"``): ``cnn``; it
builds a :class:`~segshield.models.classifier.Classifier`. A name may carry
architecture settings as ``NAME:key=value,key=value`` (e.g. ``unet:width=16,depth=4``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from segshield._checks import check_choice, check_number
from segshield._spec import parse_value, split_spec
from segshield.models.base import NormalizedModel, SegmentationModel
from segshield.models.classifier import CLASSIFY, CNN, Classifier
from segshield.models.resnet_fcn import ResNetFCN
from segshield.models.small import SmallSegNet
from segshield.models.unet import UNet

__all__ = [
    "build_model",
    "list_models",
    "model_task",
    "parse_model_spec",
    "MODELS",
    "CLASSIFIERS",
    "TASKS",
    "SEGMENT",
    "CLASSIFY",
]

#: value of ``config["task"]`` for segmentation (the default: checkpoints without it).
SEGMENT = "segment"
#: the tasks of the registry: segmentation and image classification.
TASKS = (SEGMENT, CLASSIFY)


def _fcn(depth: int) -> Callable[..., nn.Module]:
    def factory(
        in_channels: int, num_classes: int, width: int = 64, decoder_width: int = 32
    ) -> nn.Module:
        return ResNetFCN(
            depth=depth,
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            decoder_width=decoder_width,
        )

    factory.__doc__ = f"ResNet-{depth} FCN (Liu et al., MICCAI 2020)."
    return factory


def _unet(in_channels: int, num_classes: int, width: int = 16, depth: int = 4) -> nn.Module:
    """U-Net (Ronneberger et al., MICCAI 2015)."""
    return UNet(in_channels=in_channels, num_classes=num_classes, width=width, depth=depth)


def _small(in_channels: int, num_classes: int, width: int = 16) -> nn.Module:
    """Small separable-convolution network for CPU demos."""
    return SmallSegNet(in_channels=in_channels, num_classes=num_classes, width=width)


def _cnn(in_channels: int, num_classes: int, width: int = 16, depth: int = 3) -> nn.Module:
    """Small VGG-style CNN with global average pooling (see :class:`CNN`)."""
    return CNN(in_channels, num_classes, width=width, depth=depth)


#: segmentation name -> factory ``(in_channels, num_classes, **arch_kwargs) -> nn.Module``
MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": _unet,
    "resnet_fcn": _fcn(50),
    "resnet18_fcn": _fcn(18),
    "resnet34_fcn": _fcn(34),
    "small": _small,
}
#: classifier name -> factory ``(in_channels, num_classes, **arch_kwargs) -> nn.Module``
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {"cnn": _cnn}

#: task -> (its factories, the model class wrapping them, default K)
_TASKS: dict[str, tuple[dict[str, Callable[..., nn.Module]], type[NormalizedModel], int]] = {
    SEGMENT: (MODELS, SegmentationModel, 1),
    CLASSIFY: (CLASSIFIERS, Classifier, 2),
}


def list_models(task: str = SEGMENT) -> list[str]:
    """Names accepted by :func:`build_model` for ``task``.

    Args:
        task: ``"segment"`` (default) or ``"classify"``.

    Raises:
        ValueError: an unknown task.

    Example:
        >>> "unet" in list_models(), list_models("classify")
        (True, ['cnn'])
    """
    check_choice("task", task, TASKS)
    return list(_TASKS[task][0])


def model_task(name: str) -> str:
    """The task of a registry name (settings allowed); ``"segment"`` for unknown names.

    Example:
        >>> model_task("cnn:width=8"), model_task("unet")
        ('classify', 'segment')
    """
    base, _ = parse_model_spec(name)
    return CLASSIFY if base in CLASSIFIERS else SEGMENT


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"NAME:key=value,key=value"`` into the name and typed settings (never eval).

    Raises:
        ValueError: a setting is not ``key=value``.

    Example:
        >>> parse_model_spec("unet:width=16,depth=3")
        ('unet', {'width': 16, 'depth': 3})
    """
    if not isinstance(spec, str):
        raise TypeError(f"model: expected a name string, got {type(spec).__name__}")
    name, pairs = split_spec(
        spec,
        lambda part: (
            f"model: expected settings as key=value after the name, got {part!r} in "
            f"{spec!r}; e.g. 'unet:width=16,depth=4'"
        ),
    )
    return name, {key: parse_value(value) for key, value in pairs}


def check_arch_kwargs(base: str, factory: Any, kwargs: dict[str, Any]) -> None:
    """Check architecture settings against the factory's keyword parameters.

    Raises:
        TypeError: an unknown setting; the message lists the valid ones.
    """
    valid = [
        p for p in inspect.signature(factory).parameters if p not in ("in_channels", "num_classes")
    ]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"model {base!r}: unknown setting(s) {', '.join(unknown)}; "
            f"valid settings: {', '.join(valid)}"
        )


def build_model(
    name: str,
    *,
    task: str | None = None,
    num_classes: int | None = None,
    in_channels: int = 3,
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.5,
    class_names: Sequence[str] | None = None,
    **arch_kwargs: Any,
) -> NormalizedModel:
    """Build a registered model (segmentation or classifier) wrapped with its normalisation.

    Args:
        name: one of :func:`list_models` (of ``task``), optionally with settings
            (``"unet:width=16"``); keyword settings override those in the name.
        task: ``"segment"`` or ``"classify"``; the name must belong to it. Default: the
            task of the name (:func:`model_task`).
        num_classes: K of the logits, >= 1. Default 1 for segmentation (sigmoid binary,
            the FR paper's choice; use 3 for fundus disc/cup, softmax), 2 for classifiers.
        in_channels: image channels C, >= 1. Default 3.
        mean: normalisation mean, scalar or per channel. Default 0.5.
        std: normalisation std, scalar or per channel, > 0. Default 0.5.
        class_names: ``max(K, 2)`` class names. Default ``background``/``foreground`` (or
            ``class1..``) for segmentation, ``class0, class1, ...`` for classifiers.
        **arch_kwargs: architecture settings: ``unet``: ``width`` (16), ``depth`` (4);
            ``resnet*_fcn``: ``width`` (64), ``decoder_width`` (32); ``small``:
            ``width`` (16); ``cnn``: ``width`` (16), ``depth`` (3).

    Returns:
        A :class:`SegmentationModel` (or, for classifiers, a
        :class:`~segshield.models.classifier.Classifier`) in training mode;
        ``config["architecture"]`` and ``config["arch_kwargs"]`` rebuild it.

    Raises:
        ValueError: unknown task or name (the message lists the valid ones), a setting
            out of range, or wrong number of class names.
        TypeError: unknown architecture setting (the message lists the valid ones).

    Example:
        >>> import torch
        >>> m = build_model("small", num_classes=1, in_channels=1, width=4)
        >>> m(torch.rand(2, 1, 33, 17)).shape
        torch.Size([2, 1, 33, 17])
        >>> build_model("cnn:width=4,depth=2")(torch.rand(3, 3, 16, 16)).shape
        torch.Size([3, 2])
    """
    base, spec_kwargs = parse_model_spec(name)
    task = model_task(base) if task is None else task
    check_choice("task", task, TASKS)
    factories, wrapper, default_k = _TASKS[task]
    check_choice("model", base, factories)
    num_classes = default_k if num_classes is None else num_classes
    check_number("num_classes", num_classes, low=1, integer=True)
    check_number("in_channels", in_channels, low=1, integer=True)
    kwargs = {**spec_kwargs, **arch_kwargs}
    factory = factories[base]
    check_arch_kwargs(base, factory, kwargs)
    k = max(int(num_classes), 2)
    names = list(class_names) if class_names is not None else wrapper.default_class_names(k)
    if len(names) != k:
        raise ValueError(
            f"class_names: expected {k} names (max(num_classes, 2)), got {len(names)}: {names}"
        )
    net = factory(int(in_channels), int(num_classes), **kwargs)
    extra = {"stride": int(net.stride)} if task == SEGMENT else {}
    return wrapper(
        net,
        num_classes=int(num_classes),
        in_channels=int(in_channels),
        mean=mean,
        std=std,
        config={"architecture": base, "arch_kwargs": kwargs, "class_names": names},
        **extra,
    )
