"""Small CNN image classifiers taking ``[0, 1]`` images and returning ``(B, K)`` logits.

``Classifier`` mirrors :class:`segshield.models.SegmentationModel`: it owns the
normalisation ``(x - mean) / std`` (SPEC §1: attacks and defences see ``[0, 1]``
images only) and a ``config`` dict saved with the checkpoint. Checkpoints use the
segmentation checkpoint format of :mod:`segshield.models.checkpoint` (``X.safetensors``
+ ``X.json``, same required keys, never unpickled) with ``"task": "classify"`` added.

Architecture ``cnn``: ``depth`` blocks of (3x3 convolution, batch norm, ReLU, 2x2 max
pooling) with ``width * 2**i`` channels, global average pooling and a linear layer, so
any input size works (a VGG-style network in the spirit of Simonyan & Zisserman, ICLR
2015, sized for CPU phantoms).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segshield._checks import check_choice, check_number
from segshield.models.base import NormalizedModel

__all__ = [
    "Classifier",
    "CNN",
    "CLASSIFIERS",
    "build_classifier",
    "list_classifiers",
    "save_classifier",
    "load_classifier",
    "TASK",
]

#: value of ``config["task"]`` marking a classifier checkpoint.
TASK = "classify"


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


def _cnn(in_channels: int, num_classes: int, width: int = 16, depth: int = 3) -> nn.Module:
    """Small VGG-style CNN with global average pooling (see :class:`CNN`)."""
    return CNN(in_channels, num_classes, width=width, depth=depth)


#: registry name -> factory ``(in_channels, num_classes, **arch_kwargs) -> nn.Module``
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {"cnn": _cnn}


def list_classifiers() -> list[str]:
    """Names accepted by :func:`build_classifier`.

    Example:
        >>> list_classifiers()
        ['cnn']
    """
    return list(CLASSIFIERS)


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

    fixed_config = {"task": TASK}

    def default_class_names(self, num_classes: int) -> list[str]:
        """``class0``, ``class1``, ... (at least two)."""
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


def build_classifier(
    name: str,
    *,
    num_classes: int = 2,
    in_channels: int = 3,
    mean: float | Sequence[float] = 0.5,
    std: float | Sequence[float] = 0.5,
    class_names: Sequence[str] | None = None,
    **arch_kwargs: Any,
) -> Classifier:
    """Build a registered classifier wrapped with its normalisation.

    Args:
        name: one of :func:`list_classifiers`, optionally with settings
            (``"cnn:width=8,depth=2"``); keyword settings override those in the name.
        num_classes: K of the logits, >= 1. Default 2.
        in_channels: image channels C, >= 1. Default 3.
        mean: normalisation mean, scalar or per channel. Default 0.5.
        std: normalisation std, scalar or per channel, > 0. Default 0.5.
        class_names: ``max(K, 2)`` class names. Default ``class0, class1, ...``.
        **arch_kwargs: ``cnn``: ``width`` (16), ``depth`` (3).

    Returns:
        A :class:`Classifier` in training mode.

    Raises:
        ValueError: unknown name (the valid ones are listed), settings out of range, or
            a wrong number of class names.
        TypeError: an unknown architecture setting (the valid ones are listed).

    Example:
        >>> m = build_classifier("cnn:width=4,depth=2", in_channels=1)
        >>> m(torch.rand(3, 1, 16, 16)).shape
        torch.Size([3, 2])
    """
    from segshield.models.registry import check_arch_kwargs, parse_model_spec

    base, spec_kwargs = parse_model_spec(name)
    check_choice("model", base, CLASSIFIERS)
    check_number("num_classes", num_classes, low=1, integer=True)
    check_number("in_channels", in_channels, low=1, integer=True)
    kwargs = {**spec_kwargs, **arch_kwargs}
    factory = CLASSIFIERS[base]
    check_arch_kwargs(base, factory, kwargs)
    k = max(int(num_classes), 2)
    names = list(class_names) if class_names is not None else [f"class{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names: expected {k} names, got {len(names)}: {names}")
    net = factory(int(in_channels), int(num_classes), **kwargs)
    return Classifier(
        net,
        num_classes=int(num_classes),
        in_channels=int(in_channels),
        mean=mean,
        std=std,
        config={"architecture": base, "arch_kwargs": kwargs, "class_names": names},
    )


def save_classifier(model: Classifier, path: str | Path) -> tuple[Path, Path]:
    """Write ``PATH.safetensors`` + ``PATH.json`` atomically (segshield checkpoint format).

    Args:
        model: a :class:`Classifier` from :func:`build_classifier`.
        path: the stem ``X``, or ``X.safetensors`` / ``X.json``.

    Returns:
        The two paths written.

    Raises:
        TypeError: ``model`` is not a ``Classifier``.
        ValueError: its architecture is not a registry name.

    Example:
        >>> import os, tempfile
        >>> stem = os.path.join(tempfile.mkdtemp(), "clf")
        >>> [p.name for p in save_classifier(build_classifier("cnn", width=2), stem)]
        ['clf.safetensors', 'clf.json']
    """
    from safetensors.torch import save as st_save

    from segshield.models.checkpoint import FORMAT, FORMAT_VERSION, checkpoint_paths
    from segshield.utils.imageio import atomic_write_bytes

    if not isinstance(model, Classifier):
        raise TypeError(f"model: expected a segshield Classifier, got {type(model).__name__}")
    arch = model.config.get("architecture")
    if arch not in CLASSIFIERS:
        raise ValueError(
            f"model: cannot save architecture {arch!r}; only registry classifiers "
            f"({', '.join(CLASSIFIERS)}) can be rebuilt from a checkpoint"
        )
    weights_path, json_path = checkpoint_paths(path)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    config = dict(model.config)
    config["format"] = FORMAT
    config["format_version"] = FORMAT_VERSION
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=True)
    atomic_write_bytes(weights_path, st_save(state, metadata={"format": FORMAT, "task": TASK}))
    atomic_write_bytes(json_path, (text + "\n").encode("utf-8"))
    return weights_path, json_path


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> Classifier:
    """Load a checkpoint written by :func:`save_classifier`, in eval mode; never unpickles.

    Args:
        path: ``X``, ``X.safetensors`` or ``X.json``.
        map_location: device for the weights. Default ``"cpu"``.

    Returns:
        The rebuilt :class:`Classifier` with ``config`` from the JSON.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a pickle file, a malformed config, a segmentation checkpoint, an
            unknown architecture, or weights that do not match it.

    Example:
        >>> import os, tempfile
        >>> stem = os.path.join(tempfile.mkdtemp(), "clf")
        >>> _ = save_classifier(build_classifier("cnn", width=2), stem)
        >>> load_classifier(stem).num_classes
        2
    """
    from segshield.models.checkpoint import checkpoint_paths, read_config, restore

    config = read_config(path)
    weights_path, json_path = checkpoint_paths(path)
    if config.get("task") != TASK:
        raise ValueError(
            f"{json_path}: a segmentation checkpoint, not a classifier (no 'task': "
            f"{TASK!r}); load it with segshield.models.load"
        )
    if config["architecture"] not in CLASSIFIERS:
        raise ValueError(
            f"{json_path}: unknown classifier architecture {config['architecture']!r}; "
            f"valid: {', '.join(CLASSIFIERS)}"
        )
    return restore(path, config, build_classifier, map_location)
