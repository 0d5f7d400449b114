"""``segshield`` entry point: builds the sub-commands and dispatches.

Each sub-command lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Modules import heavy dependencies inside ``run`` so that
``segshield --help`` stays fast. ``validate(args)`` (optional) checks every argument
before any expensive work.

Exit codes: 0 success, 1 failed work, 2 bad arguments. An expected error is printed as
one line, ``segshield COMMAND: error: MESSAGE``, the message naming the argument or file
and the fix: from ``validate`` (``ValueError``, ``TypeError``, ``OSError``,
``ImportError``) or a :class:`~segshield.errors.UsageError` at any time, exit 2; from
``run`` (``ValueError``, ``OSError``, ``ImportError``, ``sqlite3.Error``), exit 1. Any
other exception is a bug and keeps its traceback. ``--debug`` (or ``SEGSHIELD_DEBUG=1``)
shows the traceback of expected errors too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sqlite3
import sys

from segshield import __version__
from segshield.errors import UsageError

__all__ = ["main", "build_parser", "COMMANDS", "USAGE_ERRORS", "WORK_ERRORS"]

# name -> module; order is the order shown in --help. A new command adds one line here.
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

#: What ``validate`` raises for a bad argument (exit 2).
USAGE_ERRORS = (ValueError, TypeError, OSError, ImportError)
#: What ``run`` raises when the work fails on its input or environment (exit 1); a
#: TypeError, KeyError, RuntimeError, ... there is a bug and keeps its traceback.
WORK_ERRORS = (ValueError, OSError, ImportError, sqlite3.Error)
_DEBUG_HELP = "show the traceback of errors (also SEGSHIELD_DEBUG=1)"

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
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        mod = importlib.import_module(module)
        p = mod.add_parser(sub)
        p.set_defaults(_module=mod)
        # also after the command; SUPPRESS keeps the top-level value when absent here
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    # other libraries speak at WARNING (fontTools logs every font subset at INFO when
    # the report writes its PDF figures); segshield's own loggers at the chosen level
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 some work failed, 2 bad arguments)."""
    if argv is None and hasattr(signal, "SIGPIPE"):
        # `segshield data check ... | head` ends quietly, like other Unix tools
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    debug = args.debug or os.environ.get("SEGSHIELD_DEBUG", "") not in ("", "0")
    mod = args._module
    validate = getattr(mod, "validate", None)
    try:
        if validate is not None:
            validate(args)
    except USAGE_ERRORS as exc:
        if debug:
            raise
        parser.exit(2, _message(args.command, exc))
    try:
        return int(mod.run(args) or 0)
    except UsageError as exc:
        if debug:
            raise
        parser.exit(2, _message(args.command, exc))
    except WORK_ERRORS as exc:
        if debug:
            raise
        sys.stderr.write(_message(args.command, exc))
        return 1


def _message(command: str, exc: BaseException) -> str:
    """``segshield COMMAND: error: ...`` on one line; an OSError names its file."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return f"segshield {command}: error: {' '.join(text.split())}\n"


if __name__ == "__main__":
    sys.exit(main())
