"""Procedural dermoscopy phantom: a skin lesion with a binary mask (segshield's default data).

Design: skin-toned textured background, an irregular lesion made of several
pigment tones with a fuzzy border, hairs, vignetting, an optional dark dermatoscope
ring, and occasional ruler or air-bubble artefacts. Confounders (freckles, dark
vignetting, hairs, light regression areas inside the lesion, low-contrast lesions)
are there so that no global colour threshold segments the lesion well; shape and
texture still make the lesion obvious to a human and learnable by a small U-Net.

Each image is drawn from its own ``numpy.random.Generator`` seeded with
``(seed, index)``, so any one image can be regenerated alone, at any size.

Label: every phantom draws an ``asymmetry`` in [0, 1] (amplitude of the low-order
harmonics and elongation of the border) and a colour ``variegation`` in [0, 1] (number
and contrast of the pigment tones). ``malignant = 1`` when
``asymmetry + variegation > 1`` (the "A" and "C" of the ABCD rule), else 0; about half
of the phantoms are malignant.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from segshield.data._render import (
    blend,
    blur,
    parse_size,
    phantom_canvas,
    smooth_noise,
    stroke_layer,
    to_uint8,
)

__all__ = ["Phantom", "make_derm_phantom", "parse_size"]

# Pigment tones (linear RGB in [0, 1]) of pigmented lesions.
_TONES = np.array(
    [
        [0.62, 0.42, 0.30],  # light brown
        [0.46, 0.29, 0.19],  # mid brown
        [0.30, 0.17, 0.11],  # dark brown
        [0.40, 0.42, 0.52],  # blue-grey veil
        [0.14, 0.10, 0.10],  # black
    ],
    dtype=np.float32,
)
_REGRESSION = np.array([0.86, 0.70, 0.68], dtype=np.float32)  # pinkish-white scar-like area


class Phantom(NamedTuple):
    """One generated sample.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` uint8 class ids.
        meta: per-sample labels (floats and ints), e.g. ``malignant`` or ``cdr``.
    """

    image: np.ndarray
    mask: np.ndarray
    meta: dict


def _lesion_field(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, asym: float):
    """Normalised distance ``d`` (lesion where ``d < 1``) of an irregular blob."""
    shape = u.shape
    r0 = rng.uniform(0.13, 0.30)
    cx, cy = rng.uniform(-0.14, 0.14, size=2)
    ang = rng.uniform(0, np.pi)
    elong = 1.0 + 0.6 * asym * rng.uniform(0.3, 1.0)
    du, dv = u - cx, v - cy
    ca, sa = np.cos(ang), np.sin(ang)
    a = (du * ca + dv * sa) / elong
    b = -du * sa + dv * ca
    rho = np.sqrt(a * a + b * b)
    theta = np.arctan2(b, a)
    radius = np.ones(shape, np.float32)
    for k in (1, 2, 3):
        radius += asym * rng.uniform(0.05, 0.16) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    for k in range(4, 9):
        radius += rng.uniform(0.0, 0.05) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    d = rho / (r0 * np.maximum(radius, 0.35))
    d = d + (0.10 + 0.08 * asym) * smooth_noise(rng, shape, 5) * np.clip(d, 0, 1.5)
    return d.astype(np.float32), r0


def make_derm_phantom(
    size: int | tuple[int, int] = 128, *, seed: int = 0, index: int = 0
) -> Phantom:
    """Draw one dermoscopy phantom (skin lesion image and binary lesion mask).

    Vectorised numpy and Pillow drawing; about 5 ms at 128 x 128. The same
    ``(seed, index, size)`` always gives identical bytes.

    Args:
        size: ``int`` (square) or ``(H, W)``, each side in ``[8, 8192]``. Default 128.
        seed: data-set seed, ``>= 0``. Default 0. Each image draws from
            ``numpy.random.default_rng([seed, index, 1])``.
        index: image index within the data set, ``>= 0``. Default 0.

    Shape:
        - image: ``(H, W, 3)`` uint8 RGB.
        - mask: ``(H, W)`` uint8, 0 = skin, 1 = lesion.

    Returns:
        :class:`Phantom` with ``meta = {"malignant": int, "asymmetry": float,
        "variegation": float}`` (see the module docstring for the label rule).

    Raises:
        TypeError: ``seed`` or ``index`` not an integer, ``size`` of the wrong type.
        ValueError: negative ``seed``/``index`` or a side outside ``[8, 8192]``.

    Example:
        >>> p = make_derm_phantom(64, seed=0, index=3)
        >>> p.image.shape, p.mask.shape, sorted(set(p.mask.ravel().tolist())) <= [0, 1]
        ((64, 64, 3), (64, 64), True)
    """
    rng, (h, w), u, v, s = phantom_canvas(size, seed, index, stream=1)
    shape = (h, w)
    px = s / 128.0  # pixels per unit at the reference resolution 128
    img, skin_rgb = _skin(rng, shape, u, v)

    # --- lesion ----------------------------------------------------------------------
    asym = float(rng.uniform())
    varieg = float(rng.uniform())
    d, r0 = _lesion_field(rng, u, v, asym)
    mask = d < 1.0
    softness = rng.uniform(0.04, 0.16)
    alpha = 1.0 / (1.0 + np.exp(np.clip((d - 1.0) / softness, -30.0, 30.0)))
    lesion = _lesion_colour(rng, shape, u, v, d, skin_rgb, varieg)
    img = img * (1.0 - alpha[..., None]) + lesion * alpha[..., None]

    # --- confounders outside the mask --------------------------------------------------
    n_freckles = int(rng.integers(0, 9))
    if n_freckles:
        fx = rng.uniform(0, w, n_freckles)
        fy = rng.uniform(0, h, n_freckles)
        fr = rng.uniform(1.0, 3.5, n_freckles) * px
        spots = stroke_layer(
            shape, [], circles=list(zip(fx, fy, fr, fr, strict=True)), fill_circles=True
        )
        spots = blur(spots, 1.2 * px) * (~mask)
        img = blend(img, spots, _TONES[1], 0.55)

    rr = np.sqrt(u * u + v * v)
    vig = rng.uniform(0.0, 0.9)
    img *= np.clip(1.0 - vig * np.clip(rr - 0.25, 0, None) ** 2 * 2.2, 0.05, 1.0)[..., None]
    if rng.uniform() < 0.35:  # dark dermatoscope ring in the corners
        ring_r = rng.uniform(0.55, 0.72)
        ring = np.clip((rr - ring_r) / (0.04 + 0.02 * rng.uniform()), 0, 1)[..., None]
        img = img * (1 - ring) + rng.uniform(0.02, 0.12) * ring
    img = _artefacts(rng, img, s, px)

    # specular glints and sensor noise
    img = blur(img, 0.4 * px)
    img = img + rng.uniform(0.005, 0.03) * rng.standard_normal(img.shape).astype(np.float32)
    meta = {
        "malignant": int(asym + varieg > 1.0),
        "asymmetry": asym,
        "variegation": varieg,
    }
    return Phantom(to_uint8(img), mask.astype(np.uint8), meta)


def _skin(rng: np.random.Generator, shape: tuple[int, int], u: np.ndarray, v: np.ndarray):
    """Skin background ``(H, W, 3)`` (texture, erythema, tilted light) and its base colour."""
    red = rng.uniform(0.72, 0.95)
    skin_rgb = np.array(
        [red, red * rng.uniform(0.60, 0.80), red * rng.uniform(0.48, 0.68)], np.float32
    )
    tex = 0.05 * smooth_noise(rng, shape, 4) + 0.025 * smooth_noise(rng, shape, 24)
    img = skin_rgb * (1.0 + tex)[..., None]
    erythema = np.clip(smooth_noise(rng, shape, 3), 0, None) * rng.uniform(0.0, 0.08)
    img[..., 1] -= erythema
    img[..., 2] -= 0.7 * erythema
    tilt = rng.uniform(-0.25, 0.25, size=2)
    img *= (1.0 + tilt[0] * u + tilt[1] * v)[..., None]
    return img, skin_rgb


def _lesion_colour(
    rng: np.random.Generator,
    shape: tuple[int, int],
    u: np.ndarray,
    v: np.ndarray,
    d: np.ndarray,
    skin_rgb: np.ndarray,
    varieg: float,
) -> np.ndarray:
    """Lesion colour ``(H, W, 3)``: pigment tones, darker core, network, regression areas."""
    n_tones = 1 + int(round(3 * varieg))
    picks = rng.choice(len(_TONES), size=n_tones, replace=False)
    logits = np.stack([smooth_noise(rng, shape, rng.uniform(3, 9)) for _ in picks], -1)
    sharp = 1.0 + 5.0 * varieg
    wts = np.exp(sharp * (logits - logits.max(-1, keepdims=True)))
    wts /= wts.sum(-1, keepdims=True)
    pigment = wts @ _TONES[picks]
    # darker centre, lighter periphery; overall contrast to the skin varies a lot
    core = np.clip(1.0 - d, 0.0, 1.0)[..., None]
    pigment = pigment * (1.0 - 0.25 * core)
    contrast = rng.uniform(0.35, 0.95)
    lesion = skin_rgb * (1.0 - contrast) + pigment * contrast
    # pigment network: a faint dark mesh inside
    f = rng.uniform(25, 45)
    net = np.abs(np.sin(f * u + 2 * smooth_noise(rng, shape, 6))) * np.abs(
        np.sin(f * v + 2 * smooth_noise(rng, shape, 6))
    )
    lesion = lesion * (1.0 - rng.uniform(0.0, 0.25) * (net < 0.15))[..., None]
    # regression areas: light, skin-like patches inside the lesion
    if rng.uniform() < 0.6:
        reg = np.clip(smooth_noise(rng, shape, 5) - 0.6, 0, 0.6)[..., None] / 0.6
        lesion = lesion * (1 - reg) + _REGRESSION * reg * (0.8 + 0.2 * varieg)
    return lesion * (1.0 + 0.05 * smooth_noise(rng, shape, 30))[..., None]


def _artefacts(rng: np.random.Generator, img: np.ndarray, s: float, px: float) -> np.ndarray:
    """Hairs (dark curved strokes), a ruler and air bubbles, each drawn at random."""
    shape = img.shape[:2]
    h, w = shape
    if rng.uniform() < 0.6:
        strokes = []
        for _ in range(int(rng.integers(1, 16))):
            x0, y0 = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
            length = rng.uniform(0.2, 0.8) * s
            a0 = rng.uniform(0, 2 * np.pi)
            bend = rng.uniform(-2.0, 2.0)
            t = np.linspace(0, 1, 12)
            ang = a0 + bend * t
            xs = x0 + np.cumsum(np.cos(ang)) * length / 12
            ys = y0 + np.cumsum(np.sin(ang)) * length / 12
            strokes.append((list(zip(xs, ys, strict=True)), rng.uniform(0.6, 1.6) * px))
        hair_col = np.array([0.12, 0.08, 0.06], np.float32) * rng.uniform(0.5, 1.5)
        img = blend(img, stroke_layer(shape, strokes), hair_col, 0.9)

    # ruler: a dark line near one border with ticks
    if rng.uniform() < 0.15:
        y_r = rng.uniform(0.04, 0.14) * h if rng.uniform() < 0.5 else rng.uniform(0.86, 0.96) * h
        strokes = [([(0.0, y_r), (float(w), y_r)], 1.2 * px)]
        step = rng.uniform(4, 7) * px
        for i, x in enumerate(np.arange(step / 2, w, step)):
            tick = (6 if i % 5 == 0 else 3) * px
            strokes.append(([(x, y_r), (x, y_r + tick)], 0.8 * px))
        img = blend(img, stroke_layer(shape, strokes), 0.1, 0.85)

    # air bubbles: bright rims with a slight shadow
    if rng.uniform() < 0.2:
        nb = int(rng.integers(1, 4))
        circ = [
            (rng.uniform(0, w), rng.uniform(0, h), r, 0.8 * px) for r in rng.uniform(4, 16, nb) * px
        ]
        img = blend(img, stroke_layer(shape, [], circles=circ), 0.97, 0.7)
    return img
