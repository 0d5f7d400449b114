"""Training benchmark: the accuracy/time targets and model throughput, with the machine.

Tables:

1. Throughput of one training step (forward + backward + AdamW) per registry model at
   128x128, batch 8, side by side in one run, as images/s and as a ratio to the U-Net;
   then the U-Net's step in float32 and under bfloat16 autocast (``--precision bf16``),
   each in the standard and the channels-last layout (``--channels-last``).
2. Targets: each run is ``segshield train`` in a subprocess under a wall-clock budget;
   the best checkpoint kept so far (``X.json`` ``val_scores``) is what counts, so a run
   cut off by the budget reports what it had reached.

   - phantom-derm, U-Net 128x128, budget 5 min: validation lesion Dice >= 0.90;
   - ISIC 2017 (``$SEGSHIELD_SHARED_DATA/isic2017``, train -> val), U-Net 128x128,
     bf16 + channels-last, budget 20 min: lesion Dice >= 0.80;
   - ORIGA (``$SEGSHIELD_SHARED_DATA/origa``, seeded 70/15/15 split), U-Net 128x128,
     budget 5 min: disc Dice >= 0.85.

Usage::

    python benchmarks/bench_training.py                 # throughput + phantom target
    python benchmarks/bench_training.py --all           # + ISIC and ORIGA (needs the data)
    python benchmarks/bench_training.py --only throughput

On a shared or busy machine the times are pessimistic; rerun on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from segshield.models import build_model, list_models
from segshield.training import dice_ce_loss

TARGETS = {
    "phantom": {
        "data": "phantom-derm",
        "args": ["--n", "300", "--epochs", "10", "--lr", "2e-3"],
        "budget_s": 300,
        "region": "lesion",
        "target": 0.90,
    },
    "isic": {
        "data": "isic:{root}/isic2017",
        "args": ["--epochs", "24", "--lr", "2e-3", "--precision", "bf16", "--channels-last"],
        "budget_s": 1200,
        "region": "lesion",
        "target": 0.80,
    },
    "origa": {
        "data": "origa:{root}/origa",
        "args": ["--epochs", "60", "--lr", "2e-3", "--batch-size", "4"],
        "budget_s": 300,
        "region": "disc",
        "target": 0.85,
    },
}


def machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )


def step_rate(
    name: str,
    size: int = 128,
    batch: int = 8,
    steps: int = 3,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, int]:
    """Images per second of a training step (forward + backward + AdamW), and params."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    m = (torch.rand(batch, size, size, generator=g) > 0.5).long()
    torch.manual_seed(0)
    model = build_model(name).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(steps + 1):  # first step is warm-up
        if i == 1:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = dice_ce_loss(logits.float(), m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rate = batch * steps / (time.perf_counter() - t0)
    return rate, sum(p.numel() for p in model.parameters())


def throughput() -> list[tuple[str, float, int]]:
    """Images per second of a training step for each registry model (float32)."""
    return [(name, *step_rate(name)) for name in list_models()]


def run_target(name: str, root: str | None, workdir: Path, size: str) -> dict:
    spec = TARGETS[name]
    data = spec["data"].format(root=root)
    out = workdir / name
    cmd = [sys.executable, "-m", "segshield.cli.main", "-q", "train", "--data", data]
    cmd += ["--model", "unet", "--size", size, "-o", str(out), "--device", "cpu", *spec["args"]]
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, check=True, timeout=spec["budget_s"], stdout=subprocess.DEVNULL)
        status = "finished"
    except subprocess.TimeoutExpired:
        status = "cut at budget"
    wall = time.perf_counter() - t0
    row = {"target": name, "data": data, "status": status, "wall_s": wall, "cmd": cmd}
    cfg_path = out.with_name(out.name + ".json")
    state_path = out.with_name(out.name + ".state.json")
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        row["dice"] = cfg["val_scores"][f"{spec['region']}_dice"]
        row["best_epoch"] = cfg["epoch"]
    if state_path.is_file():
        row["epochs_done"] = json.loads(state_path.read_text())["epoch"]
    row["goal"] = f"{spec['region']} Dice >= {spec['target']} in {spec['budget_s'] // 60} min"
    row["met"] = bool(row.get("dice", 0) >= spec["target"] and status == "finished")
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--all", action="store_true", help="also the ISIC and ORIGA targets")
    p.add_argument("--only", choices=("throughput", "phantom", "isic", "origa"), default=None)
    p.add_argument("--size", default="128", help="training size S or HxW (default 128)")
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="folder to keep the trained checkpoints in (default: a temporary folder)",
    )
    args = p.parse_args()
    root = os.environ.get("SEGSHIELD_SHARED_DATA")
    print(f"Machine: {machine()}\n")
    if args.only in (None, "throughput"):
        rows = throughput()
        ref = dict((n, r) for n, r, _ in rows)["unet"]
        print("| model (defaults) | params | train images/s @128, batch 8 | vs unet |")
        print("| --- | ---: | ---: | ---: |")
        for name, rate, params in rows:
            print(f"| {name} | {params / 1e6:.2f} M | {rate:.1f} | {rate / ref:.2f}x |")
        print("\n| unet @128, batch 8: precision, layout | train images/s | vs float32 |")
        print("| --- | ---: | ---: |")
        base = None
        for precision, last in (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)):
            rate = step_rate("unet", precision=precision, channels_last=last)[0]
            base = base or rate
            layout = "channels-last" if last else "standard"
            print(f"| {precision}, {layout} | {rate:.1f} | {rate / base:.2f}x |")
        print()
    names = ["phantom"] + (["isic", "origa"] if args.all else [])
    if args.only is not None:
        names = [args.only] if args.only != "throughput" else []
    if any(n != "phantom" for n in names) and not root:
        print("SEGSHIELD_SHARED_DATA is not set: skipping the real-data targets")
        names = [n for n in names if n == "phantom"]
    if not names:
        return 0
    print("| target | goal | status | epochs done | best epoch | Dice | wall s | met |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep if args.keep is not None else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in names:
            r = run_target(name, root, workdir, args.size)
            dice = f"{r['dice']:.3f}" if "dice" in r else "-"
            print(
                f"| {r['data']} | {r['goal']} | {r['status']} | {r.get('epochs_done', 0)} | "
                f"{r.get('best_epoch', '-')} | {dice} | {r['wall_s']:.0f} | "
                f"{'yes' if r['met'] else 'no'} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
