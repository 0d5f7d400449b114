"""``segshield export``: one file holding the defence, the normalisation and the model.

Writes ONNX (``-o defended.onnx``, needs ``pip install 'segshield[onnx]'``) or a
``torch.export`` archive (``-o defended.pt2``). The file takes a batch of images in
[0, 1] (float32; uint8 0..255 with ``--uint8-input``) of any batch size, height and
width, and returns the model's probabilities (sigmoid for one output map, softmax over
classes otherwise). FR, fd, bitdepth, gaussian and none export; jpeg and median are
refused. ``segshield.models.wrap("defended.onnx")`` reads an ONNX file back as a
segshield model (it knows its defence, K, C and input kind from the file's metadata,
normalises nothing and has no gradients).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from segshield.cli import _common as common

__all__ = ["add_parser", "validate", "run"]

log = logging.getLogger("segshield.export")

_SUFFIXES = (".onnx", ".pt2")
_ONNX_PACKAGES = ("onnx", "onnxscript")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``export`` on the ``segshield`` sub-command parser."""
    p = sub.add_parser(
        "export",
        help="write a defended model as one ONNX or .pt2 file (defence + model inside)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_model(p, "segmentation checkpoint (X.safetensors + X.json)")
    p.add_argument(
        "--defense",
        required=True,
        metavar="SPEC",
        help="defence spec, e.g. 'fr' or 'fr:pd=30,ac=5,gd=60'; exportable: fr, fd, "
        "bitdepth, gaussian, none",
    )
    common.add_output(p, "output file: .onnx or .pt2 (the suffix picks the format)", metavar="FILE")
    p.add_argument(
        "--uint8-input",
        action="store_true",
        help="the file takes uint8 images 0..255 instead of float32 in [0, 1]",
    )
    return p


def validate(args: argparse.Namespace) -> None:
    """Check the checkpoint, the defence and the output before tracing anything.

    Raises:
        FileNotFoundError: the checkpoint is missing.
        ValueError: a bad or non-exportable defence, an output suffix other than
            ``.onnx``/``.pt2``, or ONNX output without the ``onnx`` extra.
    """
    from segshield.cli.evaluate import check_model_paths
    from segshield.defenses import get_defense
    from segshield.export import traceable_defense

    check_model_paths([args.model])
    out = Path(args.output)
    if out.suffix.lower() not in _SUFFIXES:
        raise ValueError(
            f"--output: {out}: expected a file name ending in .onnx or .pt2, got "
            f"{out.suffix or 'no suffix'!r}; the suffix picks the format"
        )
    if out.is_dir():
        raise ValueError(f"--output: {out} is a folder; expected a .onnx or .pt2 file name")
    missing = [m for m in _ONNX_PACKAGES if importlib.util.find_spec(m) is None]
    if out.suffix.lower() == ".onnx" and missing:
        raise ValueError(
            f"--output: {out}: writing ONNX needs {', '.join(missing)}; install them with "
            "pip install 'segshield[onnx]', or write a .pt2 file instead"
        )
    args._defense = get_defense(args.defense)
    traceable_defense(args._defense)


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, trace it behind the defence and write the file; 0 on success."""
    from segshield.defenses import get_defense
    from segshield.export import export_defended
    from segshield.models import load

    defense = args._defense if hasattr(args, "_defense") else get_defense(args.defense)
    model = load(args.model, task="segment")
    meta = export_defended(model, defense, args.output, uint8_input=args.uint8_input)
    log.info(
        "%s: %s behind %s, input %s, output %s probabilities",
        args.output,
        meta["architecture"],
        meta["defense"],
        meta["input"],
        meta["output"],
    )
    return 0
