"""Segmentation models: U-Net, ResNet FCN (Liu et al., MICCAI 2020), a small CPU model.

Every model is a :class:`SegmentationModel`: it takes ``[0, 1]`` images ``(B, C, H, W)``
of any size, normalises inside, and returns logits ``(B, K, H, W)`` (SPEC §1).
Checkpoints are ``X.safetensors`` + ``X.json`` and loading never unpickles.

Example:
    >>> import torch
    >>> from segshield.models import build_model
    >>> build_model("unet", width=4, depth=2)(torch.rand(1, 3, 30, 30)).shape
    torch.Size([1, 1, 30, 30])
"""

from segshield.models.base import SegmentationModel
from segshield.models.checkpoint import load, read_config, save
from segshield.models.registry import build_model, list_models, parse_model_spec
from segshield.models.wrappers import NoGradientError, wrap

__all__ = [
    "SegmentationModel",
    "build_model",
    "list_models",
    "parse_model_spec",
    "load",
    "save",
    "read_config",
    "wrap",
    "NoGradientError",
]
