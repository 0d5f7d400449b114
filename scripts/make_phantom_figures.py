"""Render the phantom figures of the README into docs/images/ (palette PNG, under 100 kB each).

Each figure shows four samples (seed 0, indices 0-3) at 128 x 128: the images on the
top row and the same images with the mask outlines below (derm: lesion in green;
fundus: disc in green, cup in blue).

Usage:
    python scripts/make_phantom_figures.py [--out docs/images] [--size 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from segshield.data import make_derm_phantom, make_fundus_phantom
from segshield.utils.imageio import atomic_write_bytes

log = logging.getLogger("make_phantom_figures")

COLOURS = {1: (0, 255, 0), 2: (40, 110, 255)}


def outline(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Draw the boundary of ``mask >= k`` for every class k in colour."""
    out = image.copy()
    for k, colour in COLOURS.items():
        m = mask >= k
        if not m.any():
            continue
        edge = np.zeros_like(m)
        edge[1:] |= m[1:] != m[:-1]
        edge[:, 1:] |= m[:, 1:] != m[:, :-1]
        out[edge] = colour
    return out


def figure(maker, size: int, seed: int, count: int = 4) -> np.ndarray:
    """``count`` samples side by side, images above, outlined images below."""
    tiles = [maker(size, seed=seed, index=i) for i in range(count)]
    gap = np.full((size, 4, 3), 255, np.uint8)

    def row(imgs):
        parts = []
        for im in imgs:
            parts += [im, gap]
        return np.concatenate(parts[:-1], axis=1)

    top = row([p.image for p in tiles])
    bottom = row([outline(p.image, p.mask) for p in tiles])
    return np.concatenate([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom], axis=0)


def png_bytes(rgb: np.ndarray) -> bytes:
    """RGB array as a 96-colour palette PNG (a display figure; keeps the repo small)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(96, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, maker in (
        ("phantom_derm", make_derm_phantom),
        ("phantom_fundus", make_fundus_phantom),
    ):
        path = args.out / f"{name}.png"
        atomic_write_bytes(path, png_bytes(figure(maker, args.size, args.seed)))
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
