"""``segshield tune``: placeholder until its issue lands (replace this whole file)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser("tune", help="Tune the FR table (not yet implemented)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("segshield tune: not implemented yet")
