"""Wrap user models as ``SegmentationModel``: an ``nn.Module``, a TorchScript file, or ONNX.

An ONNX model runs through onnxruntime (optional extra ``segshield[onnx]``, imported
lazily) and has no gradients: the wrapped model says ``supports_gradients = False``
(attacks check it), and a backward pass through it raises an error naming the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segshield._checks import check_number
from segshield.models.base import SegmentationModel

__all__ = ["wrap", "OnnxNet", "NoGradientError"]


class NoGradientError(RuntimeError):
    """A gradient was requested through a model that cannot provide one (ONNX)."""


_NO_GRAD_MESSAGE = (
    "this model runs through onnxruntime and has no gradients, so gradient-based attacks "
    "(ASMA, PGD, FGSM, DAG, ...) cannot run on it (model.supports_gradients is False); "
    "attack a PyTorch or TorchScript copy of the model and transfer the adversarial "
    "images, or wrap the original nn.Module with segshield.models.wrap"
)


class _NoGrad(torch.autograd.Function):
    """Identity in forward; backward raises :class:`NoGradientError`."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return out.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None]:
        raise NoGradientError(_NO_GRAD_MESSAGE)


class OnnxNet(nn.Module):
    """Runs an onnxruntime inference session as a (gradient-free) module.

    Args:
        session: an ``onnxruntime.InferenceSession`` (or any object with the same
            ``get_inputs()`` and ``run(None, {name: array})`` methods) with one
            float32 image input ``(B, C, H, W)`` and logits as its first output.

    Shape:
        ``(B, C, H, W)`` to ``(B, K, H, W)`` on the input's device.

    Raises:
        NoGradientError: in backward, when a gradient w.r.t. the input is requested.

    Example:
        >>> import onnxruntime  # doctest: +SKIP
        >>> net = OnnxNet(onnxruntime.InferenceSession("model.onnx"))  # doctest: +SKIP
    """

    def __init__(self, session: Any) -> None:
        super().__init__()
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"ONNX model: expected exactly one input (the image batch), got {len(inputs)}: "
                f"{[i.name for i in inputs]}"
            )
        self.session = session
        self.input_name = inputs[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = torch.from_numpy(np.asarray(self.session.run(None, {self.input_name: arr})[0]))
        out = out.to(device=x.device, dtype=x.dtype)
        if x.requires_grad:
            return _NoGrad.apply(out, x)
        return out


def wrap(
    model: nn.Module | str | Path,
    *,
    num_classes: int = 1,
    in_channels: int = 3,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
    stride: int = 1,
    class_names: Sequence[str] | None = None,
) -> SegmentationModel:
    """Wrap a user model so it follows the segshield model contract.

    The wrapped model takes ``[0, 1]`` images, applies ``(x - mean) / std`` (by
    default nothing: the user model sees ``[0, 1]``), pads to ``stride`` and crops back.

    Args:
        model: an ``nn.Module`` returning logits ``(B, K, H, W)``; a TorchScript file
            (``torch.jit.save``, any suffix but ``.onnx``); or an ``.onnx`` file (needs
            ``pip install segshield[onnx]``; no gradients).
        num_classes: K of the logits, >= 1. Default 1 (sigmoid binary).
        in_channels: image channels, >= 1. Default 3.
        mean: normalisation mean applied before the model. Default 0.0.
        std: normalisation std, > 0. Default 1.0.
        stride: the model's required size multiple, >= 1. Default 1.
        class_names: ``max(K, 2)`` class names. Default background/foreground.

    Returns:
        A :class:`SegmentationModel` (``config["architecture"]`` is ``"custom"``,
        ``"torchscript"`` or ``"onnx"``; ``supports_gradients`` is False for ONNX).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not TorchScript/ONNX, or a setting is out of range.
        ImportError: onnxruntime is missing for an ``.onnx`` file.
        TypeError: ``model`` is neither a module nor a path.

    Example:
        >>> m = wrap(nn.Conv2d(1, 2, 3, padding=1), num_classes=2, in_channels=1)
        >>> m(torch.rand(1, 1, 5, 5)).shape
        torch.Size([1, 2, 5, 5])
    """
    check_number("num_classes", num_classes, low=1, integer=True)
    config: dict[str, Any] = {"source": None}
    supports_gradients = True
    if isinstance(model, nn.Module):
        net = model
        arch = "torchscript" if isinstance(model, torch.jit.ScriptModule) else "custom"
    elif isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: model file not found; check the path")
        config["source"] = str(path)
        if path.suffix.lower() == ".onnx":
            net, arch, supports_gradients = _load_onnx(path), "onnx", False
        else:
            net, arch = _load_torchscript(path), "torchscript"
    else:
        raise TypeError(
            f"model: expected an nn.Module or a path to a TorchScript/ONNX file, got "
            f"{type(model).__name__}"
        )
    if class_names is not None:
        config["class_names"] = list(class_names)
        if len(config["class_names"]) != max(int(num_classes), 2):
            raise ValueError(
                f"class_names: expected {max(int(num_classes), 2)} names, got "
                f"{len(config['class_names'])}"
            )
    config["architecture"] = arch
    return SegmentationModel(
        net,
        num_classes=num_classes,
        in_channels=in_channels,
        mean=mean,
        std=std,
        stride=stride,
        config=config,
        supports_gradients=supports_gradients,
    ).eval()


def _load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: not a TorchScript file ({str(exc).splitlines()[0]}); save one with "
            "torch.jit.save(torch.jit.script(model), path), or pass the nn.Module itself. "
            "segshield never unpickles plain torch.save files"
        ) from exc


def _load_onnx(path: Path) -> nn.Module:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            f"{path}: running ONNX models needs onnxruntime; install it with "
            "pip install 'segshield[onnx]'"
        ) from exc
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: onnxruntime cannot open this model ({exc})") from exc
    return OnnxNet(session)
