"""Defend image files and folders into an output folder (the work of ``segshield defend``).

Output layout: a file input ``a/b.jpg`` becomes ``OUTDIR/b.png``; a folder input ``D``
keeps its structure, ``D/x/y.bmp`` becoming ``OUTDIR/x/y.png``. Each output is lossless
PNG in its input's layout (:mod:`segshield.utils.imagelayers`: same bit depth and
channels, alpha untouched, turned upright by the EXIF orientation).

The output folder records the defence that wrote it in ``segshield-defend.json``
(:data:`MANIFEST_NAME`): a later run with another defence is refused before any work,
so that a folder never mixes two defences. Existing outputs of the same defence are
skipped (an interrupted run resumes) unless ``overwrite``; temporary files left by a
killed run are removed at the start of the next.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from segshield.defenses.base import Defense
from segshield.utils.imageio import (
    ImageReadError,
    atomic_write_bytes,
    remove_stale_temp_files,
    scan_images,
)
from segshield.utils.imagelayers import read_image_layers, write_image_layers
from segshield.utils.progress import progress

__all__ = [
    "MANIFEST_NAME",
    "DefendSummary",
    "plan_outputs",
    "prepare_output_folder",
    "defend_image_file",
    "defend_files",
]

log = logging.getLogger("segshield.defend")

#: The file in an output folder that records the defence of its images.
MANIFEST_NAME = "segshield-defend.json"
_FORMAT = "segshield-defend"


def plan_outputs(
    inputs: list[str | Path], outdir: str | Path, problems: list[str] | None = None
) -> list[tuple[Path, Path]]:
    """Map every input image to its output PNG path (see the module docstring).

    Args:
        inputs: files and folders.
        outdir: output folder.
        problems: when given, entries of the input folders that look like images but
            are not readable files (dangling links, link loops, folders named ``x.png``)
            are appended to it, one message each; else they are logged as warnings.

    Returns:
        ``(source, destination)`` pairs in input order, folders expanded (sorted).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: OUTDIR inside an input folder, an output equal to an input, or two
            inputs mapping to one output.
    """
    out_root = Path(outdir).resolve()
    pairs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise FileNotFoundError(f"INPUT {item}: no such file or folder; check the path")
        if not item.is_dir():
            pairs.append((item, out_root / (item.stem + ".png")))
            continue
        root = item.resolve()
        if out_root == root or root in out_root.parents:
            raise ValueError(
                f"--output {outdir}: lies inside the input folder {item}; a later run "
                "would read the outputs back as inputs. Choose a folder outside it"
            )
        files, bad = scan_images([item])
        if problems is None:
            for message in bad:
                log.warning("%s", message)
        else:
            problems.extend(bad)
        pairs.extend((src, out_root / src.relative_to(item).with_suffix(".png")) for src in files)
    _check_unique(pairs, outdir)
    return pairs


def _check_unique(pairs: list[tuple[Path, Path]], outdir: str | Path) -> None:
    sources = {s.resolve(): s for s, _ in pairs}
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst in sources:
            raise ValueError(
                f"--output {outdir}: output {dst} would overwrite the input {sources[dst]}; "
                "choose another output folder"
            )
        if dst in seen:
            raise ValueError(
                f"INPUT: {seen[dst]} and {src} would both be written to {dst}; "
                "rename one or defend them into different folders"
            )
        seen[dst] = src


def prepare_output_folder(
    outdir: str | Path, spec: str, outputs: list[Path], *, overwrite: bool = False
) -> None:
    """Check that ``outdir`` may take outputs of ``spec``, create it, and record ``spec``.

    Refused: a folder recorded for another defence; a folder without a record that
    already holds some of ``outputs`` (their defence is unknown) unless ``overwrite``;
    a folder that cannot be created or written. The record is written (atomically)
    last, which also proves the folder writable before any image is defended.

    Args:
        outdir: the output folder (created with its parents when missing).
        spec: the defence spec (``Defense.spec()``).
        outputs: the planned output files.
        overwrite: the run rewrites existing outputs.

    Raises:
        ValueError: any refusal above; the message names the folder, both defences
            where they differ, and the fix.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> prepare_output_folder(d, "fr", [])
        >>> prepare_output_folder(d, "none", [])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --output ...: holds images defended with --defense fr ...
    """
    out = Path(outdir)
    manifest = out / MANIFEST_NAME
    recorded = _recorded_spec(manifest)
    if recorded is not None and recorded != spec:
        raise ValueError(
            f"--output {out}: holds images defended with --defense {recorded} (recorded "
            f"in {manifest}); this run asks for --defense {spec}. Choose another output "
            "folder, or delete this one to redo it"
        )
    if recorded is None and not overwrite:
        existing = [p for p in outputs if p.exists()]
        if existing:
            raise ValueError(
                f"--output {out}: already holds {len(existing)} of the outputs (e.g. "
                f"{existing[0]}) but no {MANIFEST_NAME} naming their defence; pass "
                f"--overwrite to redo them with --defense {spec}, or choose another folder"
            )
    record = {"format": _FORMAT, "version": 1, "defense": spec}
    try:
        atomic_write_bytes(manifest, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    except OSError as exc:
        raise ValueError(
            f"--output {out}: cannot create or write this folder ({exc.strerror or exc}); "
            "choose a writable folder"
        ) from None


def _recorded_spec(manifest: Path) -> str | None:
    """The defence spec a manifest records, None when there is none."""
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"--output: cannot read {manifest} ({exc}); delete it only if you know which "
            "defence wrote the images there, or choose another folder"
        ) from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT or "defense" not in data:
        raise ValueError(
            f"--output: {manifest} is not a segshield defend record (expected format "
            f"{_FORMAT!r} and a 'defense' entry); choose another folder"
        )
    return str(data["defense"])


def defend_image_file(
    defense: Defense, src: str | Path, dst: str | Path, device: torch.device | None = None
) -> None:
    """Defend one image file into a lossless PNG in the same layout (written atomically).

    The grey or colour channels are defended; alpha is copied bit for bit; a 1-bit
    image is defended as 8-bit grey (0/255) and written 1-bit again, white where the
    defended value is >= 128. Large images are defended in strips
    (:meth:`~segshield.defenses.base.Defense.forward_numpy`).

    Args:
        defense: the defence (on ``device``).
        src: image file (PNG, JPEG, BMP, TIFF; 1, 8 or 16 bits; one page).
        dst: output PNG path (folders are created).
        device: where the defence computes; default CPU.

    Raises:
        ImageReadError: ``src`` cannot be read (the message names it).
        OSError: ``dst`` cannot be written.

    Example:
        >>> import tempfile, numpy as np
        >>> from segshield.defenses import BitDepth
        >>> from segshield.utils.imageio import read_image, write_png
        >>> d = tempfile.mkdtemp()
        >>> write_png(f"{d}/a.png", np.array([[10, 200]], np.uint8))
        >>> defend_image_file(BitDepth(1), f"{d}/a.png", f"{d}/out/a.png")
        >>> read_image(f"{d}/out/a.png")[..., 0].tolist()
        [[0, 255]]
    """
    layers = read_image_layers(src)
    write_image_layers(dst, layers.replace(defense.forward_numpy(layers.colour, device)))


@dataclass
class DefendSummary:
    """What :func:`defend_files` did.

    Attributes:
        done: outputs written.
        skipped: existing outputs left as they are.
        failed: one message per input that failed, naming it.
        removed_temp: stale temporary files removed from the output folder.
    """

    done: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    removed_temp: list[Path] = field(default_factory=list)


def defend_files(
    defense: Defense,
    pairs: list[tuple[Path, Path]],
    outdir: str | Path,
    *,
    overwrite: bool = False,
    device: torch.device | None = None,
) -> DefendSummary:
    """Defend every ``(source, destination)`` pair; failures are named, the rest go on.

    Call :func:`prepare_output_folder` first. Temporary files that a killed run left in
    ``outdir`` are removed before the first image.

    Args:
        defense: the defence (on ``device``).
        pairs: from :func:`plan_outputs`.
        outdir: the output folder (cleaned of stale temporary files).
        overwrite: rewrite existing outputs (default: skip them).
        device: where the defence computes; default CPU.

    Returns:
        A :class:`DefendSummary`.
    """
    summary = DefendSummary(removed_temp=remove_stale_temp_files(outdir))
    for tmp in summary.removed_temp:
        log.info("removed %s, left by an interrupted run", tmp)
    inputs = {s.resolve() for s, _ in pairs}
    for src, dst in progress(pairs, desc="defend", unit="img"):
        if dst.resolve() in inputs:  # re-checked at write time: never overwrite an input
            summary.failed.append(f"{src}: output {dst} is an input")
            continue
        if dst.exists() and not overwrite:
            log.info("%s: exists, skipped (use --overwrite to rewrite)", dst)
            summary.skipped += 1
            continue
        try:
            defend_image_file(defense, src, dst, device)
            summary.done += 1
        except (ImageReadError, ValueError, OSError) as exc:
            msg = str(exc) if str(src) in str(exc) else f"{src}: {exc}"
            log.error("%s", msg)
            summary.failed.append(msg)
    return summary
