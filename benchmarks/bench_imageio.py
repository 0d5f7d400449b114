"""Benchmark: 16-bit RGB PNG (and TIFF) decode/encode, old numpy + zlib codec vs libraries.

Side by side in one run, on one thread and the same 16-bit RGB image (smooth synthetic
"photo" with mild noise, 1024 x 768 by default): segshield's former hand-written codec
(``encode_png16``/``decode_png16`` as of git revision ``--baseline``, loaded from
``git show``), imagecodecs (libpng, libtiff), OpenCV's headless wheel (libpng, libtiff),
pypng and tifffile (pure Python), Pillow (which reads 16-bit colour PNG as 8 bits and
cannot write it), and this tree's ``read_image``/``write_png`` (file on disk included).

Two input PNGs: one written by the old encoder (every row "Sub", which its numpy decoder
undoes in one vectorised step) and one written by libpng with its default adaptive row
filters, as most tools write them (the old decoder undoes "Average" and "Paeth" rows in
a per-byte Python loop). Every decode is checked for an exact round trip first. Ratios
are ``time / time of the old codec`` (below 1: faster). Prints markdown tables.

Usage:
    python benchmarks/bench_imageio.py [--repeats 7] [--baseline main] [--size 768x1024]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from segshield.utils.imageio import ImageReadError, encode_png16, read_image, write_png  # noqa: E402

_REPO = Path(__file__).resolve().parents[1]
_THIS_READ = "**this tree: read_image (from disk)**"
_THIS_WRITE = "**this tree: write_png (to disk, fsync)**"


def make_image16(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth 16-bit RGB "photo": low-frequency cosine waves per channel and mild noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, h)[:, None, None]
    x = np.linspace(0.0, 1.0, w)[None, :, None]
    img = np.full((h, w, 3), 0.5)
    for _ in range(8):
        fy, fx = rng.uniform(0.5, 4.0, 2)
        img += 0.06 * np.cos(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 2 * np.pi, 3))
    img += rng.normal(0, 0.004, img.shape)
    return (np.clip(img, 0, 1) * 65535).round().astype(np.uint16)


def load_baseline(rev: str):
    """The old ``segshield.utils.imageio`` at git revision ``rev``, or None (with a reason)."""
    try:
        src = subprocess.run(
            ["git", "-C", str(_REPO), "show", f"{rev}:src/segshield/utils/imageio.py"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"git show {rev} failed ({exc})"
    path = Path(tempfile.mkdtemp(prefix="bench_imageio_")) / "imageio_baseline.py"
    path.write_bytes(src)
    spec = importlib.util.spec_from_file_location("imageio_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "decode_png16"):
        return None, f"{rev} has no hand-written codec (decode_png16)"
    return mod, ""


def race(
    fns: dict[str, Callable[[], object]], repeats: int, budget_s: float = 4.0
) -> dict[str, tuple[float, object]]:
    """Best (minimum) seconds of each function, called in turns, and its first result.

    Round robin (one call of each per round) so that a change in the machine's load
    falls on all of them alike; the minimum, not the median, as other jobs only ever add
    time. A function drops out once it has spent ``budget_s`` (the slow pure-Python ones).
    """
    outs = {name: fn() for name, fn in fns.items()}  # warm-up, and the values checked
    best = dict.fromkeys(fns, float("inf"))
    spent = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            if spent[name] > budget_s:
                continue
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            best[name] = min(best[name], dt)
            spent[name] += dt
    return {name: (best[name], outs[name]) for name in fns}


def _cv2():
    import cv2

    cv2.setNumThreads(1)
    return cv2


def decoders(old) -> dict[str, Callable[[bytes], np.ndarray]]:
    import imagecodecs
    import png

    cv2 = _cv2()

    def pypng_decode(data: bytes) -> np.ndarray:
        w, h, rows, info = png.Reader(bytes=data).asDirect()
        return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, info["planes"])

    def pillow_decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im)

    out = {}
    if old is not None:
        out["old numpy+zlib codec"] = old.decode_png16
    out["imagecodecs (libpng)"] = imagecodecs.png_decode
    out["OpenCV headless (libpng)"] = lambda d: cv2.imdecode(
        np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED
    )[..., ::-1]
    out["pypng (pure Python)"] = pypng_decode
    out["Pillow"] = pillow_decode
    return out


def encoders(old) -> dict[str, Callable[[np.ndarray], bytes]]:
    import imagecodecs
    import png

    cv2 = _cv2()
    sub = imagecodecs.PNG.FILTER.SUB

    def pypng_encode(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        h, w, c = a.shape
        png.Writer(w, h, greyscale=False, alpha=c == 4, bitdepth=16).write(buf, a.reshape(h, -1))
        return buf.getvalue()

    out = {}
    if old is not None:
        out["old numpy+zlib codec (level 6, Sub)"] = old.encode_png16
    out["imagecodecs (level 6, Sub)"] = lambda a: imagecodecs.png_encode(a, level=6, filter=sub)
    out["imagecodecs (level 6, adaptive)"] = lambda a: imagecodecs.png_encode(a, level=6)
    out["OpenCV headless (level 6)"] = lambda a: cv2.imencode(
        ".png", np.ascontiguousarray(a[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 6]
    )[1].tobytes()
    out["pypng (pure Python)"] = pypng_encode
    return out


def _exact(got, want: np.ndarray) -> str:
    got = np.asarray(got)
    if got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want):
        return "exact"
    return f"NOT exact ({got.dtype}, {got.shape})"


def _ratio(t: float, base: float | None) -> str:
    return f"{t / base:.2f}x" if base else "-"


def bench_png(img: np.ndarray, old, repeats: int, tmp: Path) -> None:
    import imagecodecs

    sub = old.encode_png16(img) if old is not None else encode_png16(img)
    files = {"Sub rows (old encoder)": sub, "adaptive rows (libpng)": imagecodecs.png_encode(img)}
    print("\n## Decode 16-bit RGB PNG (ms, best of --repeats; ratio to the old codec)\n")
    print("| decoder | " + " | ".join(f"{k} ms | ratio | check" for k in files) + " |")
    print("|---|" + "---:|---:|---|" * len(files))
    results = {}
    for fname, data in files.items():
        path = tmp / f"{fname[:3]}.png"
        path.write_bytes(data)
        fns = {name: (lambda dec=dec, data=data: dec(data)) for name, dec in decoders(old).items()}
        fns[_THIS_READ] = lambda path=path: read_image(path)
        results[fname] = race(fns, repeats)
    for name in results[next(iter(files))]:
        cells = []
        for res in results.values():
            t, got = res[name]
            base = next(iter(res.values()))[0]
            cells.append(f"{1e3 * t:.1f} | {_ratio(t, base)} | {_exact(got, img)}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\n## Encode 16-bit RGB PNG (ms, best of --repeats; ratio to the old codec)\n")
    print("| encoder | ms | ratio | size (MB) | check |")
    print("|---|---:|---:|---:|---|")
    path = tmp / "w.png"
    fns = {name: (lambda enc=enc: enc(img)) for name, enc in encoders(old).items()}
    if old is not None:
        old_path = tmp / "w_old.png"
        fns["old: write_png (to disk, fsync)"] = lambda: (
            old.write_png(old_path, img),
            old_path.read_bytes(),
        )[1]
    fns[_THIS_WRITE] = lambda: (write_png(path, img), path.read_bytes())[1]
    res = race(fns, repeats)
    base = next(iter(res.values()))[0]
    for name, (t, data) in res.items():
        check = _exact(imagecodecs.png_decode(data), img)
        print(f"| {name} | {1e3 * t:.1f} | {_ratio(t, base)} | {len(data) / 1e6:.2f} | {check} |")


def bench_tiff(img: np.ndarray, repeats: int, tmp: Path) -> None:
    import imagecodecs
    import tifffile

    cv2 = _cv2()
    print("\n## 16-bit RGB TIFF, deflate (ms, best of --repeats)\n")
    print("| library | encode ms | decode ms | check |")
    print("|---|---:|---:|---|")

    def tf_write(a):
        buf = io.BytesIO()
        tifffile.imwrite(buf, a, photometric="rgb", compression="zlib")
        return buf.getvalue()

    rows = {
        "imagecodecs (libtiff)": (
            lambda a: imagecodecs.tiff_encode(a, compression="deflate"),
            imagecodecs.tiff_decode,
        ),
        "tifffile (+ imagecodecs for deflate)": (
            tf_write,
            lambda d: tifffile.imread(io.BytesIO(d)),
        ),
        "OpenCV headless (libtiff)": (
            lambda a: cv2.imencode(".tiff", np.ascontiguousarray(a[..., ::-1]))[1].tobytes(),
            lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1],
        ),
    }
    encoded = race({name: (lambda enc=enc: enc(img)) for name, (enc, _) in rows.items()}, repeats)
    fns = {
        name: (lambda dec=dec, data=encoded[name][1]: dec(data)) for name, (_, dec) in rows.items()
    }
    path = tmp / "x.tif"
    path.write_bytes(tf_write(img))
    try:
        read_image(path)
        fns[_THIS_READ] = lambda: read_image(path)
    except ImageReadError as exc:  # the old reader refused 16-bit colour TIFF
        print(f"| {_THIS_READ} | - | - | refused: {exc} |")
    for name, (td, got) in race(fns, repeats).items():
        te = f"{1e3 * encoded[name][0]:.1f}" if name in encoded else "-"
        print(f"| {name} | {te} | {1e3 * td:.1f} | {_exact(got, img)} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--baseline", default="main", help="git revision of the old codec")
    ap.add_argument("--size", default="768x1024", help="HxW of the test image")
    args = ap.parse_args(argv)
    h, w = (int(x) for x in args.size.lower().split("x"))
    old, why = load_baseline(args.baseline)
    print(f"# bench_imageio: {h}x{w} 16-bit RGB, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")  # fmt: skip
    if old is None:
        print(f"\n(no old codec to compare: {why}; ratios are to the first row)")
    img = make_image16(h, w)
    with tempfile.TemporaryDirectory() as d:
        bench_png(img, old, args.repeats, Path(d))
        bench_tiff(img, args.repeats, Path(d))


if __name__ == "__main__":
    main()
