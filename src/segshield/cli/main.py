"""``segshield`` entry point: builds the sub-commands and dispatches.

Each sub-command lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Modules import heavy dependencies inside ``run`` so that
``segshield --help`` stays fast. ``validate(args)`` (optional) checks every argument
before any expensive work; a ``ValueError`` from it becomes a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from segshield import __version__

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> module; order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "defend": "segshield.cli.defend",
    "defenses": "segshield.cli.defenses",
    "data": "segshield.cli.data",
    "train": "segshield.cli.train",
    "attack": "segshield.cli.attack",
    "evaluate": "segshield.cli.evaluate",
    "report": "segshield.cli.report",
    "demo": "segshield.cli.demo",
    "reproduce": "segshield.cli.reproduce",
    "analyze": "segshield.cli.analyze",
    "tune": "segshield.cli.tune",
    "export": "segshield.cli.export",
}

log = logging.getLogger("segshield")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="segshield",
        description="Attack, defend and evaluate medical image segmentation models.",
    )
    parser.add_argument("--version", action="version", version=f"segshield {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        mod = importlib.import_module(module)
        p = mod.add_parser(sub)
        p.set_defaults(_module=mod)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 some work failed, 2 bad arguments)."""
    if argv is None and hasattr(signal, "SIGPIPE"):
        # `segshield data check ... | head` ends quietly, like other Unix tools
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    mod = args._module
    validate = getattr(mod, "validate", None)
    if validate is not None:
        try:
            validate(args)
        except (ValueError, FileNotFoundError, TypeError) as exc:
            parser.exit(2, f"segshield {args.command}: error: {exc}\n")
    return int(mod.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
