"""Benchmark: scoring many FR tables at once vs one FrequencyRefinement per table.

The table search scores dozens of candidate tables on the same validation
images. Side by side in one run, on the same images, model and tables:

1. a loop building ``FrequencyRefinement.from_table(t)`` per table, refining clean and
   adversarial images, then one model forward per table (the obvious implementation);
2. ``segshield.tuning.scoring.tables_dice``: one block DCT, all tables quantised in a
   vectorised pass, batched forwards.

Prints a markdown table (tables scored per second and the ratio) with the machine.

Usage::

    python benchmarks/bench_tuning.py [--tables 64] [--batch 16] [--size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from segshield.defenses.fr import FrequencyRefinement
from segshield.models import build_model
from segshield.tuning.scoring import tables_dice, variant_dice


def loop_score(model, x, masks, tables, regions, batch_size):
    """One FR module and one forward per table (reference implementation)."""
    out = []
    for t in tables:
        fr = FrequencyRefinement.from_table(t.double())
        out.append(variant_dice(model, fr(x), masks, regions, batch_size)[0])
    return torch.stack(out)


def timed(fn, repeats):
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    return (time.perf_counter() - t0) / repeats, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("Usage::")[0])
    parser.add_argument("--tables", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    model = build_model("small", width=8).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    masks = (x.mean(1) > 0.5).long()
    tables = 1 + 80 * torch.rand(args.tables, 8, 8, generator=g)
    regions = {"fg": (1,)}
    t_loop, d_loop = timed(lambda: loop_score(model, x, masks, tables, regions, 32), args.repeats)
    t_vec, d_vec = timed(
        lambda: tables_dice(model, x, masks, tables, regions, batch_size=32), args.repeats
    )
    same = bool(torch.allclose(d_loop, d_vec, equal_nan=True))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); {args.tables} tables x {args.batch} images "
        f"{args.size}x{args.size} RGB, small model (width 8); same Dice: {same}\n"
    )
    print("| method | tables/s | ratio |")
    print("| --- | ---: | ---: |")
    print(f"| FrequencyRefinement per table | {args.tables / t_loop:.1f} | 1.00x |")
    print(f"| tables_dice (batched) | {args.tables / t_vec:.1f} | {t_loop / t_vec:.2f}x |")


if __name__ == "__main__":
    main()
