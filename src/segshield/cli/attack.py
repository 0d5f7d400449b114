"""``segshield attack``: placeholder until its issue lands (replace this whole file)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub.add_parser("attack", help="Attack a model (not yet implemented)")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("segshield attack: not implemented yet")
