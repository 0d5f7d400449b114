"""Small vectorised drawing helpers shared by the procedural phantoms (private).

Everything works on float32 numpy arrays ``(H, W)`` or ``(H, W, 3)``; smooth noise and
anti-aliased strokes use Pillow (bicubic up-sampling of a coarse random grid, lines
drawn at twice the resolution and reduced), so one image costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from segshield._checks import check_number

__all__ = [
    "parse_size",
    "phantom_canvas",
    "smooth_noise",
    "grid",
    "stroke_layer",
    "blur",
    "blend",
    "to_uint8",
]


def parse_size(size: int | tuple[int, int] | list[int], name: str = "size") -> tuple[int, int]:
    """Normalise an image size to ``(H, W)``.

    Args:
        size: an int (square) or a pair ``(H, W)``; each side in ``[8, 8192]``.
        name: argument name for error messages.

    Returns:
        ``(H, W)`` as ints.

    Raises:
        TypeError: not an int or a pair of ints.
        ValueError: a side outside ``[8, 8192]``.
    """
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"{name}: expected an int or a pair (H, W), got {size!r}")
        h, w = size
    else:
        h = w = size
    for side in (h, w):
        check_number(name, side, low=8, high=8192, integer=True)
    return int(h), int(w)


def phantom_canvas(
    size: int | tuple[int, int], seed: int, index: int, stream: int
) -> tuple[np.random.Generator, tuple[int, int], np.ndarray, np.ndarray, float]:
    """Checked arguments of a phantom maker, its random stream and its pixel grid.

    Args:
        size: ``int`` (square) or ``(H, W)``, each side in ``[8, 8192]``.
        seed: data-set seed, ``>= 0``.
        index: image index within the data set, ``>= 0``.
        stream: which phantom family draws (1 dermoscopy, 2 fundus), so that families
            with the same ``(seed, index)`` draw unrelated numbers.

    Returns:
        ``(rng, (H, W), u, v, s)``: ``numpy.random.default_rng([seed, index, stream])``
        and :func:`grid` of ``(H, W)``.

    Raises:
        TypeError: ``seed`` or ``index`` not an integer, ``size`` of the wrong type.
        ValueError: negative ``seed``/``index`` or a side outside ``[8, 8192]``.

    Example:
        >>> rng, hw, u, v, s = phantom_canvas((8, 16), seed=0, index=2, stream=1)
        >>> hw, u.shape, s
        ((8, 16), (8, 16), 8.0)
    """
    h, w = parse_size(size)
    check_number("seed", seed, low=0, integer=True)
    check_number("index", index, low=0, integer=True)
    rng = np.random.default_rng([int(seed), int(index), stream])
    u, v, s = grid((h, w))
    return rng, (h, w), u, v, s


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Smooth random field with about ``cells`` features across the shorter side, std ~ 1."""
    h, w = shape
    s = min(h, w)
    gy = max(2, int(round(cells * h / s)) + 2)
    gx = max(2, int(round(cells * w / s)) + 2)
    g = rng.standard_normal((gy, gx)).astype(np.float32)
    out = np.asarray(Image.fromarray(g).resize((w, h), Image.Resampling.BICUBIC))
    std = float(out.std())
    return (out - float(out.mean())) / (std if std > 1e-6 else 1.0)


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel-centre coordinates ``(u, v)`` centred on the image, in units of the shorter side."""
    h, w = shape
    s = float(min(h, w))
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    return (u + 0.5 - w / 2) / s, (v + 0.5 - h / 2) / s, s


def stroke_layer(
    shape: tuple[int, int],
    strokes: Sequence[tuple[Sequence[tuple[float, float]], float]],
    *,
    circles: Sequence[tuple[float, float, float, float]] = (),
    fill_circles: bool = False,
) -> np.ndarray:
    """Anti-aliased coverage ``(H, W)`` in ``[0, 1]`` of polylines and circles.

    Args:
        shape: ``(H, W)``.
        strokes: ``(points, width)`` pairs; points in pixel coordinates ``(x, y)``.
        circles: ``(cx, cy, radius, width)`` outlines (or discs with ``fill_circles``).
        fill_circles: draw circles filled.
    """
    h, w = shape
    k = 2  # supersampling factor
    im = Image.new("L", (w * k, h * k), 0)
    dr = ImageDraw.Draw(im)
    for pts, width in strokes:
        if len(pts) < 2:
            continue
        dr.line(
            [(x * k, y * k) for x, y in pts],
            fill=255,
            width=max(1, int(round(width * k))),
            joint="curve",
        )
    for cx, cy, r, width in circles:
        box = [(cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k]
        if fill_circles:
            dr.ellipse(box, fill=255)
        else:
            dr.ellipse(box, outline=255, width=max(1, int(round(width * k))))
    im = im.reduce(k)
    return np.asarray(im, dtype=np.float32) / 255.0


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edge padding) of a float ``(H, W)`` or ``(H, W, C)`` array."""
    if sigma <= 0:
        return a
    r = max(1, int(np.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float32) / sigma) ** 2)
    k /= k.sum()
    out = a.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, wgt in enumerate(k):
            acc += wgt * (p[i : i + n] if axis == 0 else p[:, i : i + n])
        out = acc
    return out


def blend(img: np.ndarray, layer: np.ndarray, colour, k: float) -> np.ndarray:
    """Paint ``colour`` over ``img`` ``(H, W, 3)`` with opacity ``k * layer`` (``(H, W)``)."""
    return img * (1 - k * layer[..., None]) + colour * k * layer[..., None]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in ``[0, 1]`` to uint8: scale, round, then clip."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
