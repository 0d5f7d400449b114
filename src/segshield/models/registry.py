"""Model registry: names to network factories, each entry under its task.

Segmentation (``task="segment"``): ``unet``, ``resnet_fcn`` (ResNet-50, the FR paper's
model, Liu et al. MICCAI 2020), ``resnet18_fcn``, ``resnet34_fcn``, ``small``, and the
MONAI networks ``monai-unet``, ``monai-segresnet``, ``monai-attention-unet`` (extra
``segshield[monai]``, :mod:`segshield.models.monai_nets`); they build a
:class:`SegmentationModel`. Classification (``task="classify"``): ``cnn``; it builds a
:class:`~segshield.models.classifier.Classifier`. Both tasks share one
:class:`segshield._registry.Registry`: a name may carry architecture settings as
``NAME:key=value,key=value`` (e.g. ``unet:width=16,depth=4``,
``monai-unet:channels=16-32-64``), typed by the factory's annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from torch import nn

from segshield._checks import check_choice, check_number
from segshield._registry import Registry, split
from segshield._spec import parse_value
from segshield.models.base import NormalizedModel, SegmentationModel
from segshield.models.classifier import CLASSIFY, CNN, Classifier
from segshield.models.monai_nets import MONAI_FACTORIES
from segshield.models.resnet_fcn import ResNetFCN
from segshield.models.small import SmallSegNet
from segshield.models.unet import UNet

__all__ = [
    "build_model",
    "list_models",
    "model_task",
    "parse_model_spec",
    "MODELS",
    "REGISTRY",
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


#: the model registry: every name of both tasks, its settings read from the factory's
#: signature (``in_channels`` and ``num_classes`` are given by :func:`build_model`)
REGISTRY: Registry[nn.Module] = Registry(
    "model",
    noun="setting",
    key_error=TypeError,
    skip=("in_channels", "num_classes"),
    example="unet:width=16,depth=4",
)
_FACTORIES: dict[str, dict[str, Callable[..., nn.Module]]] = {SEGMENT: {}, CLASSIFY: {}}
#: segmentation name -> factory ``(in_channels, num_classes, **settings) -> nn.Module``
#: (a read-only live view of the registry's segmentation entries)
MODELS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(_FACTORIES[SEGMENT])
#: classifier name -> factory ``(in_channels, num_classes, **settings) -> nn.Module``
CLASSIFIERS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(_FACTORIES[CLASSIFY])
#: task -> (the model class wrapping its networks, default K)
_WRAPPERS: dict[str, tuple[type[NormalizedModel], int]] = {
    SEGMENT: (SegmentationModel, 1),
    CLASSIFY: (Classifier, 2),
}


def _register(name: str, factory: Callable[..., nn.Module], task: str = SEGMENT) -> None:
    """Add a network factory ``(in_channels, num_classes, **settings)`` under ``task``."""
    REGISTRY.register(name, factory)
    _FACTORIES[task][name] = factory


for _name, _factory in (
    ("unet", _unet),
    ("resnet_fcn", _fcn(50)),
    ("resnet18_fcn", _fcn(18)),
    ("resnet34_fcn", _fcn(34)),
    ("small", _small),
    *MONAI_FACTORIES.items(),
):
    _register(_name, _factory)
_register("cnn", _cnn, CLASSIFY)


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
    return list(_FACTORIES[task])


def model_task(name: str) -> str:
    """The task of a registry name (settings allowed); ``"segment"`` for unknown names.

    Example:
        >>> model_task("cnn:width=8"), model_task("unet")
        ('classify', 'segment')
    """
    base, _ = split(name, "model", REGISTRY.example)
    return CLASSIFY if base in CLASSIFIERS else SEGMENT


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"NAME:key=value,key=value"`` into the name and typed settings (never eval).

    The name is lower-cased. For a registered name the settings are read by the
    registry: typed by the factory's annotations (``unet:width=16`` an int,
    ``monai-unet:channels=16-32-64`` a tuple) and checked against its settings. An
    unknown name is returned with its settings read by the untyped grammar
    (:func:`segshield._spec.parse_value`), for the caller to refuse with its own list
    of valid names (:func:`build_model` does).

    Raises:
        TypeError: ``spec`` is not a string, or an unknown setting of a registered
            name (the message lists the valid ones).
        ValueError: a setting is not ``key=value``, is given twice, or is not of its
            type.

    Example:
        >>> parse_model_spec("UNet:width=16,depth=3")
        ('unet', {'width': 16, 'depth': 3})
    """
    if not isinstance(spec, str):
        raise TypeError(f"model: expected a name string, got {type(spec).__name__}")
    name, pairs = split(spec, "model", REGISTRY.example)
    if name in REGISTRY:
        return REGISTRY.parse(spec)
    return name, {key: parse_value(value) for key, value in pairs}


def _as_json(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as the checkpoint's JSON holds them: sequences as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


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
            ``width`` (16); ``cnn``: ``width`` (16), ``depth`` (3); the MONAI networks
            (extra ``segshield[monai]``): see :mod:`segshield.models.monai_nets`.

    Returns:
        A :class:`SegmentationModel` (or, for classifiers, a
        :class:`~segshield.models.classifier.Classifier`) in training mode;
        ``config["architecture"]`` and ``config["arch_kwargs"]`` rebuild it.

    Raises:
        ValueError: unknown task or name (the message lists the valid ones), a setting
            out of range, or wrong number of class names.
        TypeError: unknown architecture setting (the message lists the valid ones).
        ImportError: a MONAI network without MONAI installed (the message names the
            extra ``segshield[monai]``).

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
    wrapper, default_k = _WRAPPERS[task]
    check_choice("model", base, _FACTORIES[task])
    num_classes = default_k if num_classes is None else num_classes
    check_number("num_classes", num_classes, low=1, integer=True)
    check_number("in_channels", in_channels, low=1, integer=True)
    kwargs = {**spec_kwargs, **arch_kwargs}
    REGISTRY.check_keys(base, kwargs)
    factory = _FACTORIES[task][base]
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
        config={"architecture": base, "arch_kwargs": _as_json(kwargs), "class_names": names},
        **extra,
    )
