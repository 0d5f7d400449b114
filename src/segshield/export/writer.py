"""Write a defended model as one ONNX or ``torch.export`` (``.pt2``) file.

docs/ALGORITHMS.md §1-§2: the file holds the defence, the normalisation and the network
(:class:`~segshield.export.graph.DefendedGraph`) and maps a batch of ``[0, 1]`` images
(or uint8) of any batch size, height and width to the model's probabilities. The graph
is traced once with ``torch.export`` with symbolic batch, height and width; ONNX files
are translated from that program (opset 18; needs ``pip install 'segshield[onnx]'``).
The file carries segshield's metadata (:func:`segshield.models.wrappers.defended_metadata`
reads it back from ONNX files): format, defence spec, K, C, input kind, class names.
"""

from __future__ import annotations

import copy
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from segshield._version import __version__
from segshield.defenses.base import Defense
from segshield.export.graph import DefendedGraph
from segshield.models.base import SegmentationModel
from segshield.models.wrappers import DEFENDED_FORMAT, METADATA_PREFIX
from segshield.utils.imageio import atomic_write_bytes

__all__ = ["export_defended", "EXPORT_FORMATS", "ONNX_OPSET", "PT2_METADATA_FILE"]

log = logging.getLogger(__name__)

#: File suffix -> format name.
EXPORT_FORMATS = {".onnx": "onnx", ".pt2": "pt2"}
#: ONNX opset of the exported files (Round, Pad with tensor pads: opset >= 11; FR needs
#: nothing newer, 18 is what the exporter translates best).
ONNX_OPSET = 18
#: Name of the metadata entry in a ``.pt2`` archive (``torch.export.save`` extra file).
PT2_METADATA_FILE = "segshield.json"
_EXAMPLE_SIZE = (2, 64, 48)  # batch, height, width of the tracing example (any works)


def _metadata(model: SegmentationModel, defense: Defense, uint8_input: bool) -> dict[str, str]:
    config = getattr(model, "config", {})
    return {
        "format": DEFENDED_FORMAT,
        "segshield_version": __version__,
        "defense": defense.spec(),
        "num_classes": str(model.num_classes),
        "in_channels": str(model.in_channels),
        "input": "uint8" if uint8_input else "float01",
        "output": "sigmoid" if model.num_classes == 1 else "softmax",
        "class_names": json.dumps(list(config.get("class_names") or [])),
        "architecture": str(config.get("architecture")),
    }


def _trace(graph: DefendedGraph, in_channels: int) -> torch.export.ExportedProgram:
    """``torch.export`` with symbolic batch, height and width (size-oblivious reasoning).

    Without size-oblivious reasoning the tracer guards on ``H/8 != 1`` (a reshape's
    contiguity check) and refuses a symbolic size; the computation itself is the same
    for every size, so the guard is not needed.
    """
    from torch.export import Dim
    from torch.fx.experimental import _config as shape_config

    b, h, w = _EXAMPLE_SIZE
    dtype = torch.uint8 if graph.uint8_input else torch.float32
    example = (torch.rand(b, in_channels, h, w) * (255 if graph.uint8_input else 1)).to(dtype)
    size = {"min": 1, "max": 65536}
    dims = {"x": {0: Dim("batch", **size), 2: Dim("height", **size), 3: Dim("width", **size)}}
    with torch.no_grad():
        # One eager pass first: it checks the model on the example and builds the
        # defence's cached operands (DCT matrices, table) outside the trace, so they
        # enter the graph as constants rather than as the operations that build them.
        graph(example)
        with shape_config.patch(backed_size_oblivious=True):
            return torch.export.export(graph, (example,), dynamic_shapes=dims, strict=False)


def _onnx_bytes(program: torch.export.ExportedProgram, metadata: dict[str, str]) -> bytes:
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "exporting ONNX needs the onnx and onnxscript packages; install them with "
            "pip install 'segshield[onnx]', or export to .pt2 instead"
        ) from exc
    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        opset_version=ONNX_OPSET,
        input_names=["images"],
        output_names=["probabilities"],
        verbose=False,
    )
    proto = onnx_program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    return proto.SerializeToString()


def _pt2_bytes(program: torch.export.ExportedProgram, metadata: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={PT2_METADATA_FILE: json.dumps(metadata)})
    return buf.getvalue()


def export_defended(
    model: SegmentationModel,
    defense: Defense,
    path: str | Path,
    *,
    uint8_input: bool = False,
) -> dict[str, Any]:
    """Write ``model`` behind ``defense`` as one ONNX or ``.pt2`` file (atomically).

    Reference: docs/ALGORITHMS.md §2 (FR becomes matrix products, a multiplication by
    ``1 / Q``, rounding half to even and a multiplication by ``Q``) and §1 (inputs in
    ``[0, 1]``, normalisation inside).

    Args:
        model: a segmentation model (e.g. from :func:`segshield.models.load`); it is
            exported in eval mode on the CPU, in float32.
        defense: an exportable defence (see
            :data:`~segshield.export.graph.EXPORTABLE_DEFENSES`).
        path: the output file; its suffix picks the format: ``.onnx`` (onnxruntime,
            needs ``segshield[onnx]``) or ``.pt2`` (``torch.export.load``).
        uint8_input: the file takes uint8 images 0..255 instead of float32 in ``[0, 1]``
            (default False).

    Shape:
        The exported file maps ``(B, C, H, W)`` images to ``(B, K, H, W)`` float32
        probabilities (sigmoid for K = 1, softmax over K for K >= 2), B, H, W dynamic.

    Returns:
        The metadata written into the file (all values strings).

    Raises:
        ValueError: an unknown suffix, or a defence that cannot be exported.
        TypeError: ``model`` is not a :class:`SegmentationModel`.
        ImportError: ONNX output without the ``onnx`` extra.

    Example:
        >>> from segshield.models import build_model
        >>> from segshield.defenses import get_defense
        >>> model, fr = build_model("unet"), get_defense("fr")
        >>> meta = export_defended(model, fr, "m.onnx")  # doctest: +SKIP
    """
    path = Path(path)
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"-o {path}: expected a .onnx or .pt2 file name, got suffix {path.suffix!r}; the "
            "suffix picks the format"
        )
    # a copy: tracing needs eval mode, the CPU and float32, and the caller's model keeps its own
    model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    graph = DefendedGraph(model, defense, uint8_input=uint8_input).eval()
    metadata = _metadata(model, defense, uint8_input)
    log.info("tracing %s behind %s", metadata["architecture"], metadata["defense"])
    program = _trace(graph, model.in_channels)
    data = _onnx_bytes(program, metadata) if fmt == "onnx" else _pt2_bytes(program, metadata)
    atomic_write_bytes(path, data)
    log.info("wrote %s (%.1f MB)", path, len(data) / 1e6)
    return metadata
