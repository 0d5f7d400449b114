"""``segshield defend``: apply a defence to image files and folders.

Reads PNG, JPEG, BMP and TIFF (8- and 16-bit; grey, RGB, RGBA), applies the defence
named by ``--defense`` (a registry spec such as ``fr:pd=30,ac=5,gd=60``) and writes
lossless PNG with the same bit depth and channel count.

Output layout: a file input ``a/b.jpg`` becomes ``OUTDIR/b.png``; a folder input ``D``
keeps its structure, ``D/x/y.bmp`` becoming ``OUTDIR/x/y.png``. The command refuses
(before any work) when two inputs map to the same output, when an output would be an
input, or when OUTDIR lies inside an input folder (a later run would read the outputs
back). Existing outputs are skipped (so an interrupted run can be resumed) unless
``--overwrite`` is given. A file that cannot be read or written is named in an error,
the others are still processed, and the exit code is 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segshield.cli import _common as common

__all__ = ["add_parser", "validate", "run", "plan_outputs"]

log = logging.getLogger("segshield.defend")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``defend`` on the ``segshield`` sub-command parser."""
    p = sub.add_parser(
        "defend",
        help="apply a defence to image files and folders (lossless PNG out)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    common.add_output(p, metavar="OUTDIR")
    p.add_argument(
        "--defense",
        default="fr",
        metavar="SPEC",
        help="defence spec, e.g. 'fr:pd=30,ac=5,gd=60', 'jpeg:q=75' (default: fr); "
        "see `segshield defenses`",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="rewrite existing outputs (default: skip them)"
    )
    common.add_device(p)
    return p


def plan_outputs(inputs: list[str | Path], outdir: str | Path) -> list[tuple[Path, Path]]:
    """Map every input image to its output PNG path (see the module docstring).

    Args:
        inputs: files and folders.
        outdir: output folder.

    Returns:
        ``(source, destination)`` pairs in input order, folders expanded (sorted).

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: OUTDIR inside an input folder, an output equal to an input, or two
            inputs mapping to one output.
    """
    from segshield.utils.imageio import list_images

    out_root = Path(outdir).resolve()
    pairs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise FileNotFoundError(f"INPUT {item}: no such file or folder; check the path")
        if item.is_dir():
            root = item.resolve()
            if out_root == root or root in out_root.parents:
                raise ValueError(
                    f"--output {outdir}: lies inside the input folder {item}; a later run "
                    "would read the outputs back as inputs. Choose a folder outside it"
                )
            for src in list_images([item]):
                rel = src.resolve().relative_to(root)
                pairs.append((src, out_root / rel.with_suffix(".png")))
        else:
            pairs.append((item, out_root / (item.stem + ".png")))
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
    return pairs


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any work; stores the defence and the plan on ``args``.

    Raises:
        ValueError: bad defence spec, bad device, or an unsafe output layout.
        FileNotFoundError: a missing input or FR table file.
    """
    from segshield.defenses import get_defense

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out}: exists and is not a folder")
    args.device_obj = common.device_arg(args.device)
    try:
        args.defense_obj = get_defense(args.defense)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--defense: {exc}") from None
    args.plan = plan_outputs(args.inputs, out)
    if not args.plan:
        raise ValueError(f"INPUT: no images found in {', '.join(args.inputs)}")


def _defend_file(defense, src: Path, dst: Path, device) -> None:
    from segshield.utils.imageio import read_image, write_png

    write_png(dst, defense.forward_numpy(read_image(src), device))


def run(args: argparse.Namespace) -> int:
    """Defend every planned file; 0 when all succeeded, 1 when any failed."""
    from segshield.utils.imageio import ImageReadError
    from segshield.utils.progress import progress

    if not hasattr(args, "plan"):
        validate(args)
    defense = args.defense_obj.to(args.device_obj)
    inputs = {s.resolve() for s, _ in args.plan}
    done = skipped = 0
    failed: list[str] = []
    log.info("defending %d images with %s", len(args.plan), defense.spec())
    for src, dst in progress(args.plan, desc="defend", unit="img"):
        if dst.resolve() in inputs:  # re-checked at write time: never overwrite an input
            failed.append(f"{src}: output {dst} is an input")
            continue
        if dst.exists() and not args.overwrite:
            log.info("%s: exists, skipped (use --overwrite to rewrite)", dst)
            skipped += 1
            continue
        try:
            _defend_file(defense, src, dst, args.device_obj)
            done += 1
        except (ImageReadError, ValueError, OSError) as exc:
            msg = str(exc) if str(src) in str(exc) else f"{src}: {exc}"
            log.error("%s", msg)
            failed.append(msg)
    print(
        f"defended {done} image(s) with {defense.spec()} into {args.output}"
        f"; skipped {skipped} existing; failed {len(failed)}"
    )
    return common.exit_code(log, failed, "file(s)", "; ")
