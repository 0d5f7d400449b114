"""``segshield defenses``: list the registered defences, their parameters and gradients."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run", "format_table"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``defenses`` on the ``segshield`` sub-command parser."""
    p = sub.add_parser(
        "defenses",
        help="list the defences with their parameters, defaults and gradient policy",
        description="List the defence registry: spec name, parameters with defaults, "
        "gradient policies (first = default). Build one with --defense 'name:key=value,...'.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return p


def format_table(items: list[dict]) -> str:
    """Render ``list_defenses()`` as a markdown table."""
    lines = [
        "| name | parameters (defaults) | gradient | description |",
        "| --- | --- | --- | --- |",
    ]
    for d in items:
        params = ", ".join(
            f"{k}={'' if p['default'] is None else p['default']}" for k, p in d["params"].items()
        )
        grads = " / ".join(d["gradients"])
        lines.append(f"| {d['name']} | {params or '-'} | {grads} | {d['summary']} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the registry; always 0."""
    from segshield.defenses import list_defenses

    items = list_defenses()
    if args.json:
        print(json.dumps(items, indent=1))
    else:
        print(format_table(items))
        print("\nExample: segshield defend IMAGES -o OUT --defense fr:pd=30,ac=5,gd=60,pad=zero")
    return 0
