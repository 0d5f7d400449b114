"""Encoder weights from a file the user has (``segshield reproduce --init FILE.safetensors``).

The FR paper's ResNet-50 encoder was ImageNet-pretrained; segshield downloads nothing,
so by default its encoder is trained from scratch. :func:`load_encoder` puts the tensors
of a safetensors file into the model's encoder (``model.net.encoder``, the encoder of
the ``resnet*_fcn`` models) and refuses a file whose tensors do not fit, naming the first
key that does not (missing, unexpected, or of another shape). The file's keys are those
of ``model.net.encoder.state_dict()``, optionally prefixed with ``encoder.`` or
``net.encoder.`` (as in a whole segshield checkpoint's encoder part). Only safetensors
files are read: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ENCODER_PREFIXES", "encoder_of", "load_encoder", "file_digest"]

#: Prefixes stripped from the file's keys (the longest matching one, when all keys have it).
ENCODER_PREFIXES = ("net.encoder.", "encoder.")


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder of a segshield model (``model.net.encoder``) or of a bare network.

    Raises:
        ValueError: the model has no ``encoder`` (e.g. ``unet``): the message names the
            models that have one.

    Example:
        >>> from segshield.models import build_model
        >>> type(encoder_of(build_model("resnet18_fcn", width=4))).__name__
        'ResNetEncoder'
    """
    net = getattr(model, "net", model)
    enc = getattr(net, "encoder", None)
    if not isinstance(enc, nn.Module):
        arch = getattr(model, "config", {}).get("architecture", type(net).__name__)
        raise ValueError(
            f"--init: model {arch!r} has no encoder to initialise; use resnet_fcn, "
            "resnet18_fcn or resnet34_fcn, or train without --init"
        )
    return enc


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), to key caches and record which file was used.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x"); _ = open(p, "wb").write(b"abc")
        >>> file_digest(p)[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _strip_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ENCODER_PREFIXES:
        if tensors and all(k.startswith(prefix) for k in tensors):
            return {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _first_misfit(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with the first key that does not fit, or None when all fit."""
    for key, ref in own.items():
        if key not in given:
            return f"key {key!r} (shape {tuple(ref.shape)}) is missing from the file"
        if tuple(given[key].shape) != tuple(ref.shape):
            return (
                f"key {key!r} has shape {tuple(given[key].shape)} in the file, but the "
                f"encoder's is {tuple(ref.shape)}"
            )
        if given[key].is_floating_point() != ref.is_floating_point():
            return f"key {key!r} is {given[key].dtype} in the file, but {ref.dtype} in the encoder"
    extra = [k for k in given if k not in own]
    if extra:
        return f"key {extra[0]!r} of the file is not in the encoder ({len(extra)} such key(s))"
    return None


def load_encoder(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy the tensors of a safetensors file into the model's encoder, or refuse the file.

    Args:
        model: a segshield model with an encoder (:func:`encoder_of`).
        path: a ``.safetensors`` file holding every tensor of the encoder's
            ``state_dict`` (parameters and batch-norm statistics), with the same shapes,
            and nothing else; keys may carry one of :data:`ENCODER_PREFIXES`.

    Returns:
        A record for the checkpoint and the report: ``{"file", "sha256", "tensors"}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a ``.safetensors`` file, an unreadable one, a model without an
            encoder, or tensors that do not fit (the message names the first key that
            does not, and the shapes).

    Example:
        >>> import tempfile, os
        >>> from safetensors.torch import save_file
        >>> from segshield.models import build_model
        >>> a, b = (build_model("resnet18_fcn", width=4) for _ in range(2))
        >>> p = os.path.join(tempfile.mkdtemp(), "enc.safetensors")
        >>> save_file(encoder_of(a).state_dict(), p)
        >>> load_encoder(b, p)["tensors"] == len(encoder_of(a).state_dict())
        True
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--init: {path}: no such file; pass a .safetensors file")
    if path.suffix.lower() != ".safetensors":
        raise ValueError(
            f"--init: {path} is not a .safetensors file; convert the weights with "
            "safetensors.torch.save_file (pickled .pt/.pth files are not read)"
        )
    enc = encoder_of(model)
    try:
        given = _strip_prefix(load_file(str(path)))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"--init: {path} is not a readable safetensors file ({exc})") from None
    own = enc.state_dict()
    problem = _first_misfit(own, given)
    if problem is not None:
        raise ValueError(
            f"--init: {path} does not fit the encoder of this model: {problem}; the file "
            "must hold exactly the encoder's state_dict (see docs/ALGORITHMS.md §4b)"
        )
    enc.load_state_dict({k: given[k].to(own[k].dtype) for k in own}, strict=True)
    return {"file": str(path), "sha256": file_digest(path), "tensors": len(own)}
