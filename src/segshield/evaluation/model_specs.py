"""Names of a run's models and data sets: loading a ``--model`` spec, and row labels.

The harness, the executors and their workers all turn ``config.models`` and
``config.datasets`` into models and row labels with these functions, so a row's key is
the same whichever process computed it.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["WRAPPED_SUFFIXES", "load_model", "model_label", "dataset_label"]

#: Model files read by :func:`segshield.models.wrap` instead of the checkpoint loader
#: (``.pt2`` too, so its refusal explains itself).
WRAPPED_SUFFIXES = (".onnx", ".ts", ".torchscript", ".pt2")


def load_model(spec: str) -> torch.nn.Module:
    """The segmentation model of a ``--model`` spec: a checkpoint, or a wrapped file.

    Args:
        spec: a checkpoint ``X``/``X.safetensors``/``X.json`` (:func:`segshield.models.load`),
            or a file ending in one of :data:`WRAPPED_SUFFIXES`
            (:func:`segshield.models.wrap` with its defaults: an ONNX file from
            ``segshield export`` brings its own classes and channels, any other file is
            taken as K = 1, C = 3, inputs in ``[0, 1]``).

    Returns:
        The model in eval mode (an ONNX one has ``supports_gradients`` False).

    Raises:
        FileNotFoundError, ValueError, ImportError: as ``load`` and ``wrap``.

    Example:
        >>> load_model("runs/defended.onnx").config["defended"]  # doctest: +SKIP
        True
    """
    from segshield.models import load, wrap

    if Path(spec).suffix.lower() in WRAPPED_SUFFIXES:
        return wrap(spec)
    return load(spec)


def model_label(spec: str) -> str:
    """Short name of a model in result rows: the checkpoint's stem, or the name itself.

    Example:
        >>> model_label("runs/derm.safetensors"), model_label("unet")
        ('derm', 'unet')
    """
    p = Path(spec)
    return p.stem if p.suffix in (".safetensors", ".json") else p.name or spec


def dataset_label(spec: str) -> str:
    """Short name of a dataset in result rows: ``KIND`` or ``KIND:folder-name``.

    Example:
        >>> dataset_label("isic:/data/isic2017"), dataset_label("phantom-derm")
        ('isic:isic2017', 'phantom-derm')
    """
    kind, sep, path = spec.partition(":")
    return kind if not sep else f"{kind}:{Path(path).name or path}"
