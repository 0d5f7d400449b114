"""Benchmark: batched ASMA vs the one-image ASMA loop, same model and steps, side by side.

Measures image-iterations per second (images x ASMA iterations / wall seconds) for
1. the one-image loop in the authors' style (Ozbulak et al., MICCAI 2019: per-class
   masked loss, host-side IoU every step), run image after image;
2. ``segshield.attacks.ASMA`` called on one image at a time;
3. ``segshield.attacks.ASMA`` on the whole batch;
and prints a markdown table with the machine description. Targets: >= 3x on
the CPU at batch 16 (U-Net at 128x128), >= 20x on a GPU at batch 32.

Usage::

    python benchmarks/bench_attacks.py                      # CPU, and CUDA when present
    python benchmarks/bench_attacks.py --device cuda --batch 32 --steps 20
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from segshield.attacks import ASMA


def published_style_one_image(model, image, target, classes, tau, beta, iters):
    """One image, the authors' loop structure (host IoU, per-class masks)."""
    x0 = image.clone()
    x = image.clone()
    mult = tau
    t_np = target.cpu().numpy()
    for _ in range(iters):
        x = x.detach().requires_grad_(True)
        out = model(x)
        if out.shape[1] == 1:
            out = torch.cat([-out, out], 1)
        pred = out.argmax(1)[0]
        loss = 0
        for c in classes:
            loss = loss + (out[0, c] * (target == c) * (pred != c)).sum()
        (loss - ((x0 - x) ** 2).sum()).backward()
        pert = x.detach() + x.grad * mult
        with torch.no_grad():
            pout = model(pert)
        p = (pout.argmax(1)[0] if pout.shape[1] > 1 else (pout[0, 0] > 0).long()).cpu().numpy()
        union = p + t_np
        union[union > 1] = 1
        inter, union = (p * t_np).sum(), union.sum()
        mult = beta * (inter / union if union else 1.0) + tau
        x = pert.clamp(0, 1)
    return x.detach()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _model(name, device, size, channels_last=False):
    from segshield.models import build_model

    torch.manual_seed(0)
    m = build_model(name, num_classes=2).to(device).eval()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def bench(device, batch, steps, size, model_name, channels_last=False):
    model = _model(model_name, device, size, channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.zeros(batch, size, size, dtype=torch.long)
    t[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    t = t.to(device)
    att = ASMA(steps=steps)
    # warm-up at the timed shapes (cuDNN's algorithm search, if on, happens here)
    ASMA(steps=2)(model, x, target_masks=t)
    ASMA(steps=2)(model, x[:1], target_masks=t[:1])
    published_style_one_image(model, x[:1], t[0], [0, 1], 1e-7, 1e-6, 2)

    def loop_published():
        for i in range(batch):
            published_style_one_image(model, x[i : i + 1], t[i], [0, 1], 1e-7, 1e-6, steps)

    def loop_ours():
        for i in range(batch):
            att(model, x[i : i + 1], target_masks=t[i : i + 1])

    def batched():
        att(model, x, target_masks=t)

    work = batch * steps
    rows = []
    base = None
    for label, fn in (
        ("one-image loop (authors' style)", loop_published),
        ("one-image loop (segshield ASMA, B=1)", loop_ours),
        (f"batched segshield ASMA (B={batch})", batched),
    ):
        sec = _timed(fn, device)
        rate = work / sec
        base = base or rate
        rows.append((label, rate, rate / base))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cpu, plus cuda)")
    ap.add_argument("--batch", type=int, default=None, help="default 16 on CPU, 32 on GPU")
    ap.add_argument("--steps", type=int, default=None, help="default 3 on CPU, 20 on GPU")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default="unet", help="segshield.models name (default unet)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument(
        "--channels-last", action="store_true", help="model and images in channels-last layout"
    )
    ap.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="let cuDNN time its convolution algorithms (torch.backends.cudnn.benchmark)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    devices = (
        [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    for name in devices:
        device = torch.device(name)
        gpu = device.type == "cuda"
        batch = args.batch or (32 if gpu else 16)
        steps = args.steps or (20 if gpu else 3)
        desc = torch.cuda.get_device_name(device) if gpu else "CPU"
        print(
            f"\n### ASMA on {desc}: {args.model} at {args.size}x{args.size}, "
            f"batch {batch}, {steps} steps, channels-last {args.channels_last}, "
            f"cudnn.benchmark {args.cudnn_benchmark}\n"
        )
        print("| method | image-iterations/s | speed-up vs authors' loop |")
        print("| --- | ---: | ---: |")
        for label, rate, ratio in bench(
            device, batch, steps, args.size, args.model, args.channels_last
        ):
            print(f"| {label} | {rate:.2f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
