"""``segshield report RESULTS``: the HTML report, or the summary as md, csv or json.

``-o report.html`` writes one self-contained HTML file (images embedded) and each of
its figures as PDF and PNG in ``report_figures/``; ``--format md|csv|json`` prints the
summary rows (full precision for csv and json). ``--format json --curves`` prints the
robustness-curve points of the run's attack sweeps instead (a JSON list; each point:
model, dataset, attack, defense, adaptive, linf, l2, recovered_dice, attack_target_iou,
recovered_target_iou (after the defence), and the sweep's family and n;
:func:`segshield.evaluation.curves.curve_points`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from segshield.choices import REPORT_FORMATS, REPORT_TABLES
from segshield.cli import _common as common

__all__ = ["add_parser", "validate", "run"]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``segshield report``."""
    p = sub.add_parser(
        "report", help="HTML report or summary table of evaluation results", description=__doc__
    )
    p.add_argument("results", help="results folder written by `segshield evaluate -o`")
    common.add_output(p, "HTML file to write", required=False)
    p.add_argument("--format", choices=REPORT_FORMATS, help="print the summary in this format")
    p.add_argument(
        "--table",
        choices=REPORT_TABLES,
        default="results",
        help="summary printed by --format: segmentation results or classifier rows",
    )
    p.add_argument(
        "--curves",
        action="store_true",
        help="with --format json: print the curve points of the attack sweeps (a JSON list)",
    )
    p.add_argument("--examples", type=int, default=12, help="example panels in the HTML (12)")
    p.add_argument("--title", default="segshield report", help="HTML page title")
    p.add_argument(
        "--analysis",
        action="append",
        default=[],
        metavar="JSON",
        help="add the section of an analysis.json written by `segshield analyze` (repeatable)",
    )
    p.add_argument(
        "--tuning",
        action="append",
        default=[],
        metavar="JSON",
        help="add the section of a table JSON written by `segshield tune` (repeatable)",
    )
    return p


def validate(args: argparse.Namespace) -> None:
    """Check the arguments before reading anything.

    Raises:
        FileNotFoundError: no results database in ``results``.
        ValueError: neither ``-o`` nor ``--format``, a negative ``--examples``, an
            output path inside the results' database or in a folder that cannot be
            written, or a damaged results database.
    """
    from segshield._checks import check_number
    from segshield.evaluation.store import ResultStore

    db = Path(args.results) / "results.sqlite"
    if not db.is_file():
        raise FileNotFoundError(
            f"results: {args.results} holds no results.sqlite; "
            "pass the folder written by `segshield evaluate -o`"
        )
    if args.output is None and args.format is None:
        raise ValueError("expected -o report.html and/or --format md|csv|json")
    check_number("--examples", args.examples, low=0, integer=True)
    if args.curves and (args.format != "json" or args.table != "results"):
        raise ValueError(
            "--curves: prints the curve points of the segmentation results as JSON; "
            f"use --format json (got --format {args.format}, --table {args.table})"
        )
    for flag, files in (("--analysis", args.analysis), ("--tuning", args.tuning)):
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"{flag}: {f} not found")
        if files and args.output is None:
            raise ValueError(f"{flag}: sections go into the HTML report; add -o report.html")
    args.sections, args.section_figures = _sections(args)  # a malformed file is a usage error
    if args.output is not None:
        out = Path(args.output)
        if out.is_dir():
            raise ValueError(f"--output: {out} is a folder; expected an HTML file name")
        if out.resolve() in (db.resolve(), (Path(args.results) / "manifest.json").resolve()):
            raise ValueError(f"--output: {out} would overwrite the results; choose another file")
    ResultStore(args.results, readonly=True).close()  # a damaged database fails here
    if args.output is not None:
        common.check_writable_folder(Path(args.output).parent, "--output")


def run(args: argparse.Namespace) -> int:
    """Write the HTML and/or print the summary; 0 on success."""
    from segshield.evaluation.curves import curve_points, curves_json
    from segshield.evaluation.report import CLASSIFIER_COLUMNS, render_report
    from segshield.evaluation.store import ResultStore
    from segshield.evaluation.summary import format_summary, summarize

    with ResultStore(args.results, readonly=True) as store:
        if args.format is not None:
            summary = summarize(store.rows(args.table))
            columns = CLASSIFIER_COLUMNS if args.table == "classifier" else None
            if args.curves:
                print(curves_json(curve_points(summary)))
            else:
                print(format_summary(summary, args.format, columns=columns))
        if args.output is not None:
            path = render_report(
                store,
                args.output,
                args.examples,
                args.title,
                sections=args.sections,
                figures=args.section_figures,
            )
            log.info("report written to %s", path)
    return 0


def _sections(args: argparse.Namespace) -> tuple[list[str], dict]:
    """HTML sections of the ``--analysis`` and ``--tuning`` JSON files, in that order,
    and their figures named ``<file stem>_<figure>`` (unique) for ``report_figures/``."""
    import json

    from segshield.tuning.html import analysis_figures, analysis_html, tuning_figures, tuning_html

    out, figures = [], {}
    kinds = (
        (analysis_figures, analysis_html, args.analysis),
        (tuning_figures, tuning_html, args.tuning),
    )
    for draw, render, files in kinds:
        for f in files:
            try:
                data = json.loads(Path(f).read_text(encoding="utf-8"))
                figs = draw(data)
                out.append(render(data, figures=figs))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{f}: not a segshield analysis/tuning JSON ({exc})") from exc
            prefix, i = Path(f).stem, 1
            while any(k.startswith(f"{prefix}_") for k in figures):
                i += 1
                prefix = f"{Path(f).stem}{i}"
            figures.update({f"{prefix}_{name}": fig for name, fig in figs.items()})
    return out, figures
