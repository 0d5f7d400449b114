"""Benchmark: the cost of ``check_images``' value check next to the calls it guards.

Side by side in one run, on one CPU thread: ``check_images`` with the value check
(one ``aminmax`` and one host sync), the shape-only check, and the FR defence and a
model forward on the same batch, with the value check's share of each. On a GPU the
value check also costs one host sync per checked call; attack and training steps run
inside ``values_checked`` and pay none (tests/test_checks.py counts the checks).

Usage:
    python benchmarks/bench_checks.py [--repeats 50] [--size 224] [--batch 8]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from segshield import _checks
from segshield.defenses import FrequencyRefinement
from segshield.models import build_model


def _time(fn, repeats: int) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        _checks._state.last = None  # no reuse of the previous check
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    """Print a markdown table of median times and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.rand(args.batch, 3, args.size, args.size)
    fr = FrequencyRefinement()
    model = build_model("unet:width=8", num_classes=2).eval()
    rows = {
        "check_images (values)": lambda: _checks.check_images(x),
        "check_images (shape only)": lambda: _checks.check_images(x, check_range=False),
        "FR defence": lambda: fr(x),
    }
    with torch.no_grad():
        rows["model forward (unet:width=8)"] = lambda: model(x)
        times = {k: _time(f, args.repeats) for k, f in rows.items()}
    check = times["check_images (values)"]
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, 1 thread, torch "
        f"{torch.__version__}; batch {tuple(x.shape)}, median of {args.repeats}"
    )
    print("| call | ms | value check / call |")
    print("| --- | ---: | ---: |")
    for k, t in times.items():
        print(f"| {k} | {t * 1e3:.3f} | {check / t:.1%} |")


if __name__ == "__main__":
    main()
