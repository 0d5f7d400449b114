"""Export a defended model: defence, normalisation and network in one ONNX or ``.pt2`` file.

docs/ALGORITHMS.md §1-§2. :func:`export_defended` (``segshield export``) traces
:class:`DefendedGraph` with ``torch.export`` (symbolic batch, height and width) and
writes ONNX (``segshield[onnx]``) or a ``torch.export`` archive. The file takes images in
``[0, 1]`` (or uint8) and returns the model's probabilities. FR, Feature Distillation,
bit depth and Gaussian blur export; JPEG (libjpeg) and median are refused.

Example:
    >>> from segshield.models import build_model
    >>> from segshield.defenses import get_defense
    >>> export_defended(build_model("unet"), get_defense("fr"), "defended.onnx")  # doctest: +SKIP
"""

from segshield.export.graph import (
    EXPORTABLE_DEFENSES,
    REFUSED_DEFENSES,
    DefendedGraph,
    traceable_defense,
)
from segshield.export.writer import EXPORT_FORMATS, ONNX_OPSET, PT2_METADATA_FILE, export_defended

__all__ = [
    "DefendedGraph",
    "EXPORTABLE_DEFENSES",
    "EXPORT_FORMATS",
    "ONNX_OPSET",
    "PT2_METADATA_FILE",
    "REFUSED_DEFENSES",
    "export_defended",
    "traceable_defense",
]
