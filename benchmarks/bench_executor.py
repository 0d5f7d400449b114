"""Benchmark: an evaluation grid on the Ray executor vs the local executor.

One phantom grid (a small U-Net-like CPU model, ASMA and an adaptive PGD through FR and
no defence) run twice, each into a fresh results folder:

1. the local executor in this process with ``--threads`` torch threads (default 1);
2. the Ray executor on a local cluster of ``--workers`` workers of ``--cpus-per-task``
   CPUs each (default 2 x 1), started before the clock runs.

Prints the wall times, the speed-up (local / Ray), the image-iterations per second, and
the overhead per cell: the workers' time not spent inside a cell (scheduling, loading
the model and data the first time, sending rows back, idle at the end), divided by the
cells. Both runs must give the same non-timing columns (checked). ``--quick`` runs a
grid about ten times smaller. With ``--device cuda --gpus-per-task 0.25 --workers 4``
the Ray tasks share one GPU (fractional GPUs) against one process on it.

Usage::

    python benchmarks/bench_executor.py [--quick] [--workers 2] [--threads 1]
        [--device cpu|cuda] [--gpus-per-task 0] [--samples 256] [--steps 250]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from segshield.evaluation.cells import plan_grid, row_key
from segshield.evaluation.config import EvalConfig
from segshield.evaluation.estimate import grid_size, planning_run
from segshield.evaluation.executor import ExecutorSettings, LocalExecutor


def make_config(ckpt: str, args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        models=[ckpt],
        datasets=["phantom-derm"],
        size=args.size,
        n=max(40, args.samples),
        split="all",
        limit=args.samples,
        batch_size=args.batch,
        attacks=[f"asma:steps={args.steps}"],
        adaptive=[f"pgd:eps=0.0314,alpha=0.0078,steps={max(1, args.steps // 10)}"],
        defenses=["fr:pd=30,ac=5,gd=60"],
        device=args.device,
    )


def compare(a: dict, b: dict) -> int:
    """Rows whose non-timing columns differ."""
    bad = 0
    for key, row in a.items():
        other = b[key]
        for col, value in row.items():
            if col.startswith("t_"):
                continue
            same = value == other[col] or (
                isinstance(value, float) and math.isnan(value) and math.isnan(other[col])
            )
            if not same:
                bad += 1
                break
    return bad + len(set(a) ^ set(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("Usage::")[0])
    parser.add_argument("--quick", action="store_true", help="a grid ~10x smaller")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-task", type=float, default=1.0)
    parser.add_argument("--gpus-per-task", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.steps, args.batch = 16, 40, 2
    import ray

    from segshield.evaluation.ray_executor import RayExecutor
    from segshield.models import build_model, save

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-executor-"))
    torch.manual_seed(0)
    save(build_model("small", num_classes=1, width=args.width), tmp / "model")
    cfg = make_config(str(tmp / "model.safetensors"), args)
    sizes = grid_size(plan_grid(planning_run(cfg, None)))
    iters = sum(sum(s.iterations.values()) for s in sizes)
    cells = sum(s.cells for s in sizes)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    print(f"grid: {cells} cells, {args.samples} samples, {iters:,} attack image-iterations")

    t0 = time.perf_counter()
    outcome = LocalExecutor().run(cfg, tmp / "local")
    local_s = time.perf_counter() - t0
    local_rows = {row_key(r): r for r in outcome.store.rows()}
    outcome.store.close()

    t0 = time.perf_counter()
    resources = {"num_cpus": math.ceil(args.workers * args.cpus_per_task)}
    if args.gpus_per_task:
        resources["num_gpus"] = 1
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    ray.init(
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": env},
        **resources,
    )
    start_s = time.perf_counter() - t0
    settings = ExecutorSettings(
        kind="ray", cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task
    )
    t0 = time.perf_counter()
    outcome = RayExecutor(settings).run(cfg, tmp / "ray")
    ray_s = time.perf_counter() - t0
    ray_rows = {row_key(r): r for r in outcome.store.rows()}
    outcome.store.close()
    ray.shutdown()
    overhead = (args.workers * ray_s - outcome.task_seconds) / cells
    print(
        f"load average {os.getloadavg()[0]:.2f} at the end; rows differing: "
        f"{compare(local_rows, ray_rows)} of {len(local_rows)}"
    )
    print()
    print("| executor | wall s | image-iterations/s | speed-up |")
    print("| --- | --- | --- | --- |")
    print(
        f"| local, {args.threads} thread(s), {args.device} | {local_s:.1f} | "
        f"{iters / local_s:.1f} | 1.00 |"
    )
    res = f"{args.cpus_per_task:g} CPU" + (
        f" + {args.gpus_per_task:g} GPU" if args.gpus_per_task else ""
    )
    print(
        f"| ray, {args.workers} workers x {res} | {ray_s:.1f} | {iters / ray_s:.1f} | "
        f"{local_s / ray_s:.2f} |"
    )
    print()
    print(
        f"Ray cluster start (not timed above): {start_s:.1f} s; overhead per cell "
        f"(workers' time outside cells / cells): {overhead:.2f} s over {cells} cells"
    )


if __name__ == "__main__":
    main()
