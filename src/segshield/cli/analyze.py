"""``segshield analyze``: per-coefficient frequency analysis of attacks and model.

For each of the 64 coefficients of the 8x8 block DCT (0..255 scale): the mean energy of
the adversarial perturbations vs of the clean images, and the benign Dice drop and
recovered Dice gain when only that coefficient is quantised at ``--step``. Writes
``OUTDIR/analysis.json``, ``OUTDIR/heatmaps/*.png`` and the HTML report section
``OUTDIR/analysis.html``.

Example::

    segshield analyze --model runs/unet --data phantom-derm --attack asma --limit 16 -o out
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from segshield.choices import SPLITS
from segshield.cli import _common as common
from segshield.cli.tune import check_common_args, input_parser, input_record

__all__ = ["add_parser", "validate", "run"]

log = logging.getLogger("segshield.cli.analyze")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield analyze``."""
    help = "frequency analysis: which DCT coefficients carry attack and segmentation"
    p = input_parser(sub, "analyze", help, __doc__)
    p.add_argument("--split", default="val", choices=SPLITS)
    p.add_argument("--step", type=float, default=30.0, help="quantisation step (default 30)")
    common.add_output(p, "output folder")
    return p


def validate(args: argparse.Namespace) -> None:
    """Check every argument before any expensive work.

    Raises:
        ValueError: a bad number, attack or output folder (naming the argument).
        FileNotFoundError: the checkpoint is missing.
    """
    from segshield._checks import check_number

    check_common_args(args)
    check_number("--step", args.step, low=0, low_inclusive=False)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output: {args.output!r} exists and is not a folder")
    common.check_writable_folder(out, "--output")


def run(args: argparse.Namespace) -> int:
    """Attack the undefended model, analyse, write JSON, heatmaps and the HTML section."""
    from segshield import __version__
    from segshield.cli.tune import load_inputs
    from segshield.tuning import analysis_html, frequency_analysis
    from segshield.tuning.html import MAP_TITLES
    from segshield.tuning.plots import heatmap_png
    from segshield.tuning.scoring import adversarial_examples
    from segshield.utils.imageio import atomic_write_bytes
    from segshield.utils.seed import seed_everything

    seed_everything(args.seed)
    out = Path(args.output)
    model, images, masks, regions = load_inputs(args, args.split)
    log.info("attacking %d images with %s", images.shape[0], args.attack)
    adv = adversarial_examples(
        model, images, masks, args.attack, seed=args.seed, batch_size=args.batch_size
    )
    result = frequency_analysis(
        model,
        images,
        masks,
        adv,
        step=args.step,
        regions=regions,
        pad=args.pad,
        batch_size=args.batch_size,
    )
    data = result.to_dict()
    inputs = {"split": args.split, "attack": args.attack, "seed": args.seed}
    data["config"].update(input_record(args, **inputs))
    data["version"] = __version__
    atomic_write_bytes(out / "analysis.json", (json.dumps(data, indent=1) + "\n").encode())
    for key, (title, log_scale, signed) in MAP_TITLES.items():
        heatmap_png(
            out / "heatmaps" / f"{key}.png",
            getattr(result, key),
            title,
            log=log_scale,
            signed=signed,
        )
    atomic_write_bytes(out / "analysis.html", analysis_html(result).encode("utf-8"))
    print(
        f"clean Dice {result.clean_dice:.4f}, adversarial Dice {result.adversarial_dice:.4f}; "
        f"wrote {out / 'analysis.json'}"
    )
    return 0
