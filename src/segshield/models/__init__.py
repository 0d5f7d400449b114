"""Models: segmentation (U-Net, ResNet FCN of Liu et al., MICCAI 2020, a small CPU model)
and image classifiers, in one registry keyed on the task, with one checkpoint format.

Every segmentation model is a :class:`SegmentationModel`: it takes ``[0, 1]`` images
``(B, C, H, W)`` of any size, normalises inside, and returns logits ``(B, K, H, W)``
(docs/ALGORITHMS.md §1); a :class:`Classifier` returns ``(B, K)`` logits. Checkpoints are
``X.safetensors`` + ``X.json`` (the JSON's ``"task"`` says which kind) and loading never
unpickles.

Example:
    >>> import torch
    >>> from segshield.models import build_model
    >>> build_model("unet", width=4, depth=2)(torch.rand(1, 3, 30, 30)).shape
    torch.Size([1, 1, 30, 30])
    >>> build_model("cnn", task="classify", width=4)(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 2])
"""

from segshield.models.base import NormalizedModel, SegmentationModel
from segshield.models.checkpoint import load, read_config, save
from segshield.models.classifier import CNN, Classifier
from segshield.models.registry import (
    CLASSIFY,
    SEGMENT,
    TASKS,
    build_model,
    list_models,
    model_task,
    parse_model_spec,
)
from segshield.models.wrappers import NoGradientError, wrap

__all__ = [
    "CLASSIFY",
    "CNN",
    "Classifier",
    "NormalizedModel",
    "SEGMENT",
    "SegmentationModel",
    "TASKS",
    "build_model",
    "list_models",
    "model_task",
    "parse_model_spec",
    "load",
    "save",
    "read_config",
    "wrap",
    "NoGradientError",
]
