"""Benchmark: cost of the diagnosis downstream columns, and batched vs one-image CW.

Side by side, in one run:
1. ``downstream_fundus`` / ``downstream_lesion`` / ``lesion_measures`` on a batch of
   phantom masks, relative to one forward pass of a small segmentation model on the
   same batch (the evaluation harness adds the downstream columns once per batch and
   stage, so this ratio is their overhead per forward pass);
2. Carlini-Wagner L2 on a small CNN classifier: the whole batch at once vs one image
   at a time (same settings, same results).

Prints a markdown table with the machine description.

Usage::

    python benchmarks/bench_diagnosis.py
    python benchmarks/bench_diagnosis.py --size 256 --batch 16 --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import torch

from segshield.attacks.cw import CarliniWagnerL2
from segshield.classification import build_classifier
from segshield.data import load_dataset
from segshield.diagnosis import downstream_fundus, downstream_lesion, lesion_measures
from segshield.models import build_model


def _time(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cw-steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    b, s = args.batch, args.size

    fundus = load_dataset("phantom-fundus", size=s, split="all", n=b)
    derm = load_dataset("phantom-derm", size=s, split="all", n=b)
    fm = torch.stack([fundus[i]["mask"] for i in range(b)]).to(dev)
    dm = torch.stack([derm[i]["mask"] for i in range(b)]).to(dev)
    x = torch.stack([derm[i]["image"] for i in range(b)]).to(dev)
    seg = build_model("small", width=16).to(dev).eval()
    pred_f = fm.flip(-1)  # a different, realistic prediction
    pred_d = dm.flip(-1)

    with torch.no_grad():
        t_fwd = _time(lambda: seg(x), dev, args.repeat)
    rows = [("small segmentation model forward (reference)", t_fwd, 1.0)]
    for label, fn in (
        ("downstream_fundus (CDR error, flips)", lambda: downstream_fundus(pred_f, fm)),
        ("downstream_lesion (area error)", lambda: downstream_lesion(pred_d, dm)),
        ("lesion_measures (area, Feret, asymmetry, border)", lambda: lesion_measures(dm)),
    ):
        t = _time(fn, dev, args.repeat)
        rows.append((label, t, t / t_fwd))

    torch.manual_seed(0)
    clf = build_classifier("cnn", width=8, depth=3).to(dev).eval()
    cw = CarliniWagnerL2(steps=args.cw_steps, search_steps=2, abort_early=False)
    t_batch = _time(lambda: cw(clf, x), dev, 1)
    t_loop = _time(lambda: [cw(clf, x[i : i + 1]) for i in range(b)], dev, 1)
    rows.append((f"CW L2, one image at a time ({b} calls)", t_loop, 1.0))
    rows.append((f"CW L2, batch of {b}", t_batch, t_batch / t_loop))

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {dev}"
    )
    print(f"batch {b} at {s}x{s}, {args.repeat} repeats (CW: {args.cw_steps} steps x 2 rounds)\n")
    print("| what | seconds per batch | ratio |")
    print("| --- | --- | --- |")
    for label, t, r in rows:
        print(f"| {label} | {t:.4f} | {r:.2f} |")
    print(
        "\nratios: downstream rows relative to the forward pass; the CW batch row relative "
        "to the one-image loop (lower is faster)"
    )


if __name__ == "__main__":
    main()
