"""Wrap user models as ``SegmentationModel``: an ``nn.Module``, a TorchScript file, or ONNX.

An ONNX model runs through onnxruntime (optional extra ``segshield[onnx]``, imported
lazily) and has no gradients: the wrapped model says ``supports_gradients = False``
(attacks check it), and a backward pass through it raises an error naming the problem.

A *defended* ONNX file written by ``segshield export`` (:mod:`segshield.export`) is
recognised by its metadata: it already holds the defence and the normalisation and
returns probabilities, so :func:`wrap` takes K, C, the class names and the input kind
from the file, applies no normalisation, and turns the probabilities back into logits
(``log(p / (1 - p))`` for K = 1, ``log p`` for K >= 2: the same predictions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from segshield._checks import check_number
from segshield.models.base import SegmentationModel

__all__ = [
    "wrap",
    "OnnxNet",
    "NoGradientError",
    "defended_metadata",
    "DEFENDED_FORMAT",
    "METADATA_PREFIX",
]

#: ``format`` metadata of a defended file written by ``segshield export``.
DEFENDED_FORMAT = "segshield-defended"
#: Prefix of segshield's keys in an ONNX file's metadata (``segshield.format``, ...).
METADATA_PREFIX = "segshield."
# Smallest probability kept when turning probabilities back into logits (float32-safe).
_EPS = 1e-7


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
            ``get_inputs()`` and ``run(None, {name: array})`` methods) with one image
            input ``(B, C, H, W)`` and logits (or probabilities) as its first output.
        uint8_input: the session takes uint8 images 0..255: ``[0, 1]`` inputs are
            rounded to ``round(255 x)`` first (default False: float32 in ``[0, 1]``).
        probabilities: the session returns probabilities, ``"sigmoid"`` (K = 1) or
            ``"softmax"`` (K >= 2), turned back into logits (clamped at 1e-7); default
            None (the output is logits already).

    Shape:
        ``(B, C, H, W)`` to ``(B, K, H, W)`` on the input's device.

    Raises:
        NoGradientError: in backward, when a gradient w.r.t. the input is requested.

    Example:
        >>> import onnxruntime  # doctest: +SKIP
        >>> net = OnnxNet(onnxruntime.InferenceSession("model.onnx"))  # doctest: +SKIP
    """

    def __init__(
        self, session: Any, *, uint8_input: bool = False, probabilities: str | None = None
    ) -> None:
        super().__init__()
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"ONNX model: expected exactly one input (the image batch), got {len(inputs)}: "
                f"{[i.name for i in inputs]}"
            )
        if probabilities not in (None, "sigmoid", "softmax"):
            raise ValueError(
                f"probabilities: expected None, 'sigmoid' or 'softmax', got {probabilities!r}"
            )
        self.session = session
        self.input_name = inputs[0].name
        self.uint8_input = bool(uint8_input)
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = x.detach().to("cpu", torch.float32)
        if self.uint8_input:
            arr = np.ascontiguousarray((xc * 255.0).round().clamp(0, 255).to(torch.uint8).numpy())
        else:
            arr = np.ascontiguousarray(xc.numpy())
        out = torch.from_numpy(np.asarray(self.session.run(None, {self.input_name: arr})[0]))
        if self.probabilities == "sigmoid":
            out = torch.logit(out, eps=_EPS)
        elif self.probabilities == "softmax":
            out = torch.log(out.clamp_min(_EPS))
        out = out.to(device=x.device, dtype=x.dtype)
        if x.requires_grad:
            return _NoGrad.apply(out, x)
        return out


def defended_metadata(session: Any) -> dict[str, str] | None:
    """segshield's metadata of a defended ONNX file, or None for any other ONNX model.

    Args:
        session: an ``onnxruntime.InferenceSession``.

    Returns:
        The ``segshield.*`` metadata entries without the prefix (``format``,
        ``defense``, ``num_classes``, ``in_channels``, ``input``, ``output``,
        ``class_names``, ...), all strings; None when the file was not written by
        ``segshield export``.

    Example:
        >>> import onnxruntime  # doctest: +SKIP
        >>> session = onnxruntime.InferenceSession("defended.onnx")  # doctest: +SKIP
        >>> defended_metadata(session)["defense"]  # doctest: +SKIP
        'fr:pd=30,ac=5,gd=60,pd_size=2,ac_size=4,pad=edge,clip=true,gradient=bpda'
    """
    props = session.get_modelmeta().custom_metadata_map
    meta = {k[len(METADATA_PREFIX) :]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
    return meta if meta.get("format") == DEFENDED_FORMAT else None


def wrap(
    model: nn.Module | str | Path,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
    stride: int = 1,
    class_names: Sequence[str] | None = None,
) -> SegmentationModel:
    """Wrap a user model so it follows the segshield model contract.

    The wrapped model takes ``[0, 1]`` images, applies ``(x - mean) / std`` (by
    default nothing: the user model sees ``[0, 1]``), pads to ``stride`` and crops back.
    A defended ONNX file from ``segshield export`` brings its own K, C, class names and
    input kind (see the module docstring); its config says ``defended: True`` and the
    ``defense`` spec inside it.

    Args:
        model: an ``nn.Module`` returning logits ``(B, K, H, W)``; a TorchScript file
            (``torch.jit.save``, any suffix but ``.onnx`` and ``.pt2``); or an ``.onnx``
            file (needs ``pip install segshield[onnx]``; no gradients).
        num_classes: K of the logits, >= 1. Default None: 1 (sigmoid binary), or the
            defended file's K (a different value is an error).
        in_channels: image channels, >= 1. Default None: 3, or the defended file's C.
        mean: normalisation mean applied before the model. Default 0.0 (a defended
            file normalises inside and accepts only the defaults).
        std: normalisation std, > 0. Default 1.0.
        stride: the model's required size multiple, >= 1. Default 1.
        class_names: ``max(K, 2)`` class names. Default background/foreground (or the
            defended file's names).

    Returns:
        A :class:`SegmentationModel` (``config["architecture"]`` is ``"custom"``,
        ``"torchscript"`` or ``"onnx"``; ``supports_gradients`` is False for ONNX).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not TorchScript/ONNX (a ``.pt2`` file is refused: it
            would be unpickled), a setting is out of range, or a setting contradicts a
            defended file.
        ImportError: onnxruntime is missing for an ``.onnx`` file.
        TypeError: ``model`` is neither a module nor a path.

    Example:
        >>> m = wrap(nn.Conv2d(1, 2, 3, padding=1), num_classes=2, in_channels=1)
        >>> m(torch.rand(1, 1, 5, 5)).shape
        torch.Size([1, 2, 5, 5])
    """
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
            net, meta = _load_onnx(path)
            arch, supports_gradients = "onnx", False
            if meta is not None:
                num_classes, in_channels, class_names = _defended_settings(
                    path, meta, num_classes, in_channels, class_names, (mean, std)
                )
                config.update(defended=True, defense=meta.get("defense"))
        else:
            net, arch = _load_torchscript(path), "torchscript"
    else:
        raise TypeError(
            f"model: expected an nn.Module or a path to a TorchScript/ONNX file, got "
            f"{type(model).__name__}"
        )
    num_classes = 1 if num_classes is None else num_classes
    check_number("num_classes", num_classes, low=1, integer=True)
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
        in_channels=3 if in_channels is None else in_channels,
        mean=mean,
        std=std,
        stride=stride,
        config=config,
        supports_gradients=supports_gradients,
    ).eval()


def _defended_settings(
    path: Path,
    meta: dict[str, str],
    num_classes: int | None,
    in_channels: int | None,
    class_names: Sequence[str] | None,
    mean_std: tuple[Any, Any],
) -> tuple[int, int, Sequence[str] | None]:
    """K, C and class names of a defended file, checked against what the caller gave."""
    if mean_std != (0.0, 1.0):
        raise ValueError(
            f"{path}: a defended file from segshield export normalises inside; leave mean "
            f"and std at their defaults (0, 1), got mean={mean_std[0]!r}, std={mean_std[1]!r}"
        )
    found = {"num_classes": int(meta["num_classes"]), "in_channels": int(meta["in_channels"])}
    for name, given in (("num_classes", num_classes), ("in_channels", in_channels)):
        if given is not None and given != found[name]:
            raise ValueError(
                f"{name}: {path} was exported with {name}={found[name]}, got {given}; leave "
                f"{name} out to use the file's value"
            )
    names = json.loads(meta.get("class_names") or "[]")
    return found["num_classes"], found["in_channels"], class_names or names or None


def _load_torchscript(path: Path) -> nn.Module:
    if path.suffix.lower() == ".pt2":
        raise ValueError(
            f"{path}: segshield does not load torch.export (.pt2) archives, because "
            "torch.export.load unpickles; export the defended model to .onnx for "
            "segshield evaluate, and load the .pt2 with torch.export.load where you trust it"
        )
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: not a TorchScript file ({str(exc).splitlines()[0]}); save one with "
            "torch.jit.save(torch.jit.script(model), path), or pass the nn.Module itself. "
            "segshield never unpickles plain torch.save files"
        ) from exc


def _load_onnx(path: Path) -> tuple[nn.Module, dict[str, str] | None]:
    """The session as a module, and segshield's metadata when the file is a defended one."""
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
    meta = defended_metadata(session)
    if meta is None:
        return OnnxNet(session), None
    net = OnnxNet(session, uint8_input=meta.get("input") == "uint8", probabilities=meta["output"])
    return net, meta
