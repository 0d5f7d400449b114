"""``segshield report``: placeholder until its issue lands (replace this whole file)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser("report", help="Render a report (not yet implemented)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("segshield report: not implemented yet")
