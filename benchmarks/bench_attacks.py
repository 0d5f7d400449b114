"""Benchmark: batched ASMA vs the one-image ASMA loop, same model and steps, side by side.

Measures image-iterations per second (images x ASMA iterations / wall seconds) for
1. the one-image loop in the authors' style (Ozbulak et al., MICCAI 2019: per-class
   masked loss, host-side IoU every step), run image after image;
2. ``segshield.attacks.ASMA`` called on one image at a time;
3. ``segshield.attacks.ASMA`` on the whole batch;
and prints a markdown table with the machine description. Targets: >= 3x on
the CPU at batch 16 (U-Net at 128x128), >= 20x on a GPU at batch 32.

``--speed`` instead compares the attack arithmetic of ``segshield.attacks.precision``
on batched ASMA (the published tau=1e-7, beta=1e-6 unless set): float32 (the published
algorithm), bf16 autocast, bf16 + channels-last, and the same with ``torch.compile``;
for each, image-iterations/s (compilation excluded: it happens in the warm-up) and the
agreement with the float32 run on the same images: the mean target IoU and the mean
recovered Dice after FR (8-bit round trip, FR 30/5/60, Dice against the ground truth of
``--data``, or against the clean prediction on random images), both measured in float32
on the adversarial images. Target on one H200: >= 2000 image-iterations/s for the
ResNet-50 FCN at 224x224, batch 32, both figures within 0.01 of float32.

Usage::

    python benchmarks/bench_attacks.py                      # CPU, and CUDA when present
    python benchmarks/bench_attacks.py --device cuda --batch 32 --steps 20
    python benchmarks/bench_attacks.py --speed --device cuda --model resnet_fcn --size 224 \
        --batch 32 --steps 100 [--checkpoint runs/isic-resnet --data isic:/data/isic2017]
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


def _model(name, device, size, channels_last=False, num_classes=2, checkpoint=None):
    from segshield.models import build_model, load

    torch.manual_seed(0)
    if checkpoint:
        m = load(checkpoint, map_location=device).eval()
    else:
        m = build_model(name, num_classes=num_classes).to(device).eval()
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


#: short name -> (label, FastAttack settings) of the --speed comparison; fp32 always first.
SPEED_MODES = {
    "fp32": ("fp32", {}),
    "bf16": ("bf16", {"precision": "bf16"}),
    "bf16-cl": ("bf16 + channels-last", {"precision": "bf16", "channels_last": True}),
    "fp32-compile": ("fp32 + compile", {"compile": True}),
    "bf16-cl-compile": (
        "bf16 + channels-last + compile",
        {"precision": "bf16", "channels_last": True, "compile": True},
    ),
}


def _speed_inputs(device, batch, size, data, seed=0):
    """Images, their masks (None: random images) and the targets: another image's mask
    (random images: a centred square)."""
    if data:
        from segshield.data import load_dataset

        ds = load_dataset(data, size=size, split="val", seed=seed)
        items = [ds[i % len(ds)] for i in range(batch)]
        x = torch.stack([it["image"] for it in items])
        y = torch.stack([torch.as_tensor(it["mask"]) for it in items]).long()
        return x.to(device), y.to(device), y.roll(1, 0).to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=g)
    t = torch.zeros(batch, size, size, dtype=torch.long)
    t[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return x.to(device), None, t.to(device)


def _float32_scores(model, defense, adv, ref, target):
    """Mean target IoU (attacked) and recovered Dice (after the defence), in float32."""
    from segshield.attacks.base import target_iou
    from segshield.metrics import compute_dice, logits_to_mask

    adv = (adv * 255).round() / 255  # the 8-bit round trip
    with torch.no_grad():
        logits = model(adv)
        k = max(int(logits.shape[1]), 2)
        iou = target_iou(logits_to_mask(logits), target, k)
        rec = logits_to_mask(model(defense(adv)))
    dice = compute_dice(rec, ref, k)[:, 1:].nanmean(1)
    return float(iou.nanmean()), float(dice.nanmean())


def bench_speed(device, batch, steps, size, model_name, *, tau=1e-7, beta=1e-6,
                checkpoint=None, data=None, modes=None, backend="inductor"):  # fmt: skip
    """Rows ``(label, rate, speed-up, target IoU, dIoU, recovered Dice, dDice, compile s)``
    of batched ASMA under each speed mode, the deltas against the first (float32) row."""
    from segshield.attacks.precision import FastAttack
    from segshield.defenses import get_defense
    from segshield.metrics import logits_to_mask

    model = _model(model_name, device, size, num_classes=1, checkpoint=checkpoint)
    x, y, target = _speed_inputs(device, batch, size, data)
    with torch.no_grad():
        ref = y if y is not None else logits_to_mask(model(x))
    fr = get_defense("fr:pd=30,ac=5,gd=60,pad=zero").to(device)
    rows, base = [], None
    for label, opts in modes or SPEED_MODES.values():
        attack = ASMA(steps=steps, tau=tau, beta=beta)
        if opts:
            attack = FastAttack(attack, backend=backend, **opts)
        torch.manual_seed(0)
        warm_s = _timed(lambda a=attack: _warm(a, model, x, target), device)
        box = {}
        sec = _timed(lambda a=attack, b=box: b.update(r=a(model, x, target_masks=target)), device)
        iou, dice = _float32_scores(model, fr, box["r"].adversarial, ref, target)
        rate = batch * steps / sec
        base = base or (rate, iou, dice)
        rows.append((label, rate, rate / base[0], iou, iou - base[1], dice, dice - base[2], warm_s))
        print(_speed_row(rows[-1]), flush=True)
    return rows


def _warm(attack, model, x, target):
    """Two ASMA steps at the timed shapes (compiles a compiled model, tunes cuDNN)."""
    inner = getattr(attack, "attack", attack)
    steps, inner.steps = inner.steps, 2
    try:
        attack(model, x, target_masks=target)
    finally:
        inner.steps = steps


def _speed_row(row):
    label, rate, ratio, iou, d_iou, dice, d_dice, warm = row
    ok = "yes" if abs(d_iou) <= 0.01 and abs(d_dice) <= 0.01 else "NO"
    return (
        f"| {label} | {rate:.1f} | {ratio:.2f}x | {iou:.4f} | {d_iou:+.4f} | {dice:.4f} | "
        f"{d_dice:+.4f} | {ok} | {warm:.1f} |"
    )


SPEED_HEADER = (
    "| arithmetic | image-iterations/s | vs fp32 | target IoU | vs fp32 | recovered Dice (FR) "
    "| vs fp32 | within 0.01 | warm-up s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: "
    "| --- | ---: |"
)


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
    ap.add_argument(
        "--speed",
        action="store_true",
        help="compare fp32, bf16, channels-last and torch.compile on batched ASMA, with the "
        "agreement of target IoU and recovered Dice against fp32",
    )
    ap.add_argument(
        "--modes",
        default=",".join(SPEED_MODES),
        help=f"--speed: comma-separated modes, fp32 always first (default {','.join(SPEED_MODES)})",
    )
    ap.add_argument("--tau", type=float, default=1e-7, help="--speed: ASMA tau (1e-7)")
    ap.add_argument("--beta", type=float, default=1e-6, help="--speed: ASMA beta (1e-6)")
    ap.add_argument("--checkpoint", help="--speed: a trained checkpoint instead of --model")
    ap.add_argument("--data", help="--speed: images and masks from this data spec (val split)")
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
        if args.speed:
            print(
                f"\n### ASMA arithmetic on {desc}: {args.checkpoint or args.model} at "
                f"{args.size}x{args.size}, batch {batch}, {steps} steps, tau {args.tau:g}, "
                f"beta {args.beta:g}, data {args.data or 'random images'}\n"
            )
            print(SPEED_HEADER, flush=True)
            names = ["fp32", *(m for m in args.modes.split(",") if m and m != "fp32")]
            bad = [m for m in names if m not in SPEED_MODES]
            if bad:
                ap.error(f"--modes: unknown {bad}; choose from {', '.join(SPEED_MODES)}")
            modes = [SPEED_MODES[m] for m in names]
            bench_speed(
                device, batch, steps, args.size, args.model, tau=args.tau, beta=args.beta,
                checkpoint=args.checkpoint, data=args.data, modes=modes,
            )  # fmt: skip
            continue
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
