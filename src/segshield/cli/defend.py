"""``segshield defend``: apply a defence to image files and folders.

Reads PNG, JPEG, BMP and TIFF (1-, 8- and 16-bit; grey, grey+alpha, RGB, RGBA; one
page), applies the defence named by ``--defense`` (a registry spec such as
``fr:pd=30,ac=5,gd=60``) and writes lossless PNG with the same bit depth and channels.
Alpha is copied untouched; a 1-bit image is defended as grey and written 1-bit again
(white where the defended grey is >= 128); a JPEG's EXIF orientation is applied, so
the output stands upright as viewers show the input.

Output layout: a file input ``a/b.jpg`` becomes ``OUTDIR/b.png``; a folder input ``D``
keeps its structure, ``D/x/y.bmp`` becoming ``OUTDIR/x/y.png``. The command refuses
(before any work) when two inputs map to the same output, when an output would be an
input, or when OUTDIR lies inside an input folder (a later run would read the outputs
back), and when OUTDIR cannot be created or written. OUTDIR/segshield-defend.json
records the defence; a run with another ``--defense`` into the same folder is refused.
Existing outputs of the same defence are skipped (so an interrupted run can be resumed)
unless ``--overwrite`` is given; temporary files a killed run left are removed. A file
that cannot be read or written (a corrupt or multi-page image, a dangling symbolic link,
a folder named like an image) is named in an error, the others are still processed,
and the exit code is 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segshield._deprecation import moved_names
from segshield.cli import _common as common

__all__ = ["add_parser", "validate", "run"]

log = logging.getLogger("segshield.defend")


def _plan_outputs():
    from segshield.defenses.files import plan_outputs

    return plan_outputs


__getattr__ = moved_names(
    __name__, {"plan_outputs": ("segshield.defenses.files.plan_outputs", _plan_outputs)}
)


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


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any work; stores the defence and the plan on ``args``.

    Raises:
        ValueError: bad defence spec, bad device, an unsafe output layout, or an output
            folder that holds another defence's images or cannot be written.
        FileNotFoundError: a missing input or FR table file.
    """
    from segshield.defenses import get_defense
    from segshield.defenses.files import plan_outputs, prepare_output_folder

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out}: exists and is not a folder")
    args.device_obj = common.device_arg(args.device)
    try:
        args.defense_obj = get_defense(args.defense)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--defense: {exc}") from None
    args.plan_problems = []
    args.plan = plan_outputs(args.inputs, out, args.plan_problems)
    if not args.plan:
        found = f" ({'; '.join(args.plan_problems)})" if args.plan_problems else ""
        raise ValueError(f"INPUT: no images found in {', '.join(args.inputs)}{found}")
    prepare_output_folder(
        out, args.defense_obj.spec(), [dst for _, dst in args.plan], overwrite=args.overwrite
    )


def run(args: argparse.Namespace) -> int:
    """Defend every planned file; 0 when all succeeded, 1 when any failed."""
    from segshield.defenses.files import defend_files

    if not hasattr(args, "plan"):
        validate(args)
    defense = args.defense_obj.to(args.device_obj)
    log.info("defending %d images with %s", len(args.plan), defense.spec())
    summary = defend_files(
        defense, args.plan, args.output, overwrite=args.overwrite, device=args.device_obj
    )
    for problem in args.plan_problems:
        log.error("%s", problem)
    failed = args.plan_problems + summary.failed
    print(
        f"defended {summary.done} image(s) with {defense.spec()} into {args.output}"
        f"; skipped {summary.skipped} existing; failed {len(failed)}"
    )
    return common.exit_code(log, failed, "file(s)", "; ")
