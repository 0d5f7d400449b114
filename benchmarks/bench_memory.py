"""Benchmark: peak memory (RSS) of ``segshield defend`` on one large image, old vs new.

Each case runs in its own Python process, which reports its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) when done, so cases cannot inflate each
other's figures. The input is a synthetic 8-bit RGB JPEG "photo" (smooth gradients with
mild noise, 6000 x 4000 by default, quality 90).

Cases, side by side in one run:

- ``import``: the process after ``import torch, segshield.cli.main`` (the floor);
- ``defend (baseline)``: ``segshield defend IMG -o OUT --defense SPEC`` with the source
  tree of git revision ``--baseline`` (exported with ``git archive``), i.e. before
  strip-wise defending;
- ``defend``: the same command with this tree;
- ``forward_numpy whole`` / ``forward_numpy strips``: the library call alone on the
  decoded image, untiled (``tile_rows`` = the image height rounded up to a block) and
  with the default strips, to separate the defence from file decoding and encoding.

Usage:
    python benchmarks/bench_memory.py [--size 6000x4000] [--defense fr] [--baseline main]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

_CLI = """
import resource, sys
from segshield.cli.main import main
code = main(sys.argv[1:])
assert code == 0, code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_IMPORT = """
import resource
import torch, segshield.cli.main
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_LIBRARY = """
import resource, sys
from segshield.defenses import get_defense
from segshield.utils.imagelayers import read_image_layers
d = get_defense(sys.argv[2])
arr = read_image_layers(sys.argv[1]).colour
rows = None if sys.argv[3] == "default" else -(-arr.shape[0] // d.tile_block) * d.tile_block
d.forward_numpy(arr, tile_rows=rows)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_photo(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A smooth RGB "photo" with mild noise, saved as JPEG quality 90."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    for c, (fy, fx) in enumerate(((3.0, 2.0), (5.0, 1.0), (1.0, 4.0))):
        chan = 128 + 90 * np.sin(fy * np.pi * y) * np.cos(fx * np.pi * x)
        chan += rng.normal(0.0, 6.0, (height, width)).astype(np.float32)
        img[:, :, c] = np.clip(np.round(chan), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)


def peak_mb(code: str, args: list[str], src: Path) -> float:
    """Run ``code`` in a fresh interpreter with ``src`` on the path; its peak RSS in MB."""
    env = {**os.environ, "PYTHONPATH": str(src), "SEGSHIELD_PROGRESS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[-1]) / 1024.0  # ru_maxrss is in KiB on Linux


def export_tree(rev: str, dest: Path) -> Path:
    """``git archive REV src`` into ``dest``; the exported ``src`` folder."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT (default 6000x4000)")
    parser.add_argument("--defense", default="fr", help="defence spec (default fr)")
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        img = d / "photo.jpg"
        make_photo(img, width, height)
        (d / "old").mkdir()
        old_src = export_tree(args.baseline, d / "old")
        new_src = ROOT / "src"
        cli = ["defend", str(img), "--defense", args.defense, "-o"]
        lib = [str(img), args.defense]
        rows = [
            ("import torch + segshield", peak_mb(_IMPORT, [], new_src)),
            (f"defend ({args.baseline})", peak_mb(_CLI, [*cli, str(d / "o1")], old_src)),
            ("defend (this tree)", peak_mb(_CLI, [*cli, str(d / "o2")], new_src)),
            ("forward_numpy whole image", peak_mb(_LIBRARY, [*lib, "whole"], new_src)),
            ("forward_numpy strips", peak_mb(_LIBRARY, [*lib, "default"], new_src)),
        ]
    print(
        f"peak RSS, {width}x{height} RGB JPEG, --defense {args.defense}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n"
    )
    base = rows[1][1]
    print(f"| case | peak RSS (MB) | / defend ({args.baseline}) |")
    print("|---|---:|---:|")
    for name, mb in rows:
        print(f"| {name} | {mb:.0f} | {mb / base:.2f} |")


if __name__ == "__main__":
    main()
