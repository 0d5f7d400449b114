"""Benchmark: a defended model exported to ONNX (onnxruntime) vs PyTorch eager, side by side.

For each model (randomly initialised at its registry size: the speed and the agreement do
not depend on training) and each defence, the model is exported with
``segshield.export.export_defended`` and run through onnxruntime on the same images as
PyTorch eager (``sigmoid(model(defense(x)))``), on one thread, the two taking turns. The
table gives the median milliseconds per batch, the ratio, the largest probability
difference, how many images have an FR coefficient within 1e-6 of a rounding tie, and
the share of pixels whose predicted mask differs. Images come from a data spec (default
the phantom dermoscopy set; e.g. ``--data isic:/data/isic2017``).

Usage:
    python benchmarks/bench_export.py [--models unet,resnet18_fcn] [--defenses fr,fd]
        [--size 224] [--batch 1,8] [--repeats 20] [--data phantom-derm]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_defenses import timeit  # noqa: E402  (the functions take turns)
from segshield.data import load_dataset  # noqa: E402
from segshield.defenses import block_dct, get_defense  # noqa: E402
from segshield.export import export_defended  # noqa: E402
from segshield.models import build_model  # noqa: E402


def tied(x: torch.Tensor, defense) -> int:
    """Images with an FR/FD coefficient C/Q within 1e-6 of a rounding tie (float64)."""
    if defense.name not in ("fr", "fd"):
        return 0
    mode = "replicate" if defense.pad == "edge" else "constant"
    h, w = x.shape[-2:]
    v = torch.nn.functional.pad(x.double() * 255, (0, (-w) % 8, 0, (-h) % 8), mode=mode)
    t = block_dct(v) / defense.table.double()
    return int(((t - t.floor() - 0.5).abs() < 1e-6).flatten(1).any(1).sum())


def images(spec: str, size: int, n: int) -> torch.Tensor:
    ds = load_dataset(spec, size=(size, size), split="val", seed=0)
    return torch.stack([ds[i % len(ds)]["image"] for i in range(n)]).float()


def bench_case(name, spec, x_all, batches, repeats, folder) -> list[str]:
    import onnxruntime

    torch.manual_seed(0)
    model, defense = build_model(name).eval(), get_defense(spec)
    path = Path(folder) / f"{name}.onnx"
    t0 = time.perf_counter()
    export_defended(model, defense, path)
    export_s = time.perf_counter() - t0
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rows = []
    for b in batches:
        x = x_all[:b].contiguous()
        feed = {"images": x.numpy()}

        def eager(x=x):
            with torch.no_grad():
                return torch.sigmoid(model(defense(x)))

        def onnx(feed=feed):
            return session.run(None, feed)[0]

        ms = timeit({"eager": eager, "onnx": onnx}, repeats, warmup=2)
        ref, out = eager(), torch.from_numpy(onnx())
        diff = float((out - ref).abs().max())
        masks = float(((out > 0.5) != (ref > 0.5)).float().mean())
        rows.append(
            f"| {name} | {defense.spec().split(':')[0]} | {b} | {ms['eager']:.1f} | "
            f"{ms['onnx']:.1f} | {ms['eager'] / ms['onnx']:.2f}x | {diff:.1e} | "
            f"{tied(x, defense)}/{b} | {100 * masks:.3f}% | {export_s:.0f} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="unet,resnet18_fcn", help="registry names, comma-separated")
    ap.add_argument("--defenses", default="fr", help="defence specs, ';'-separated")
    ap.add_argument("--size", type=int, default=224, help="image side (default 224)")
    ap.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs per case (median)")
    ap.add_argument("--data", default="phantom-derm", help="data spec of the images")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batch.split(",")]
    x_all = images(args.data, args.size, max(batches))
    import onnxruntime

    print(
        f"Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}, one thread each; "
        f"images {args.data} {args.size}x{args.size}\n"
    )
    print(
        "| model | defence | batch | PyTorch eager ms | onnxruntime ms | eager / ONNX | "
        "max prob diff | images with a tie | mask pixels differing | export s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            for spec in args.defenses.split(";"):
                for row in bench_case(name, spec, x_all, batches, args.repeats, folder):
                    print(row, flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
