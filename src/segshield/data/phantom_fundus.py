"""Procedural fundus phantom: optic disc and cup with 0/1/2 masks and a CDR label.

Design: a circular field of view on black; an orange-red retina with
illumination shading and choroidal texture; a macula (darker spot with a foveal
reflex) about 2.5 disc diameters temporal of the disc; a bright optic disc with a
brighter cup; a branching vessel tree (arteries and veins, four trunks that split
twice) leaving the disc and crossing the rim and cup. Confounders: peripapillary
atrophy halos around the disc, bright drusen-like spots, a bright crescent
reflection at the rim of the field of view, and a soft, low-contrast cup edge.

The vertical cup-to-disc ratio ``cdr`` is drawn uniformly in ``[0.25, 0.85]`` and
is the label: the cup ellipse's vertical radius is ``cdr`` times the disc's, with the
cup inside the disc, so the masks' vertical CDR equals ``cdr`` up to rasterisation
(about one pixel over each diameter). Masks: 0 background, 1 rim (disc minus cup),
2 cup (docs/ALGORITHMS.md §1). Each image is drawn from
``numpy.random.default_rng([seed, index, 2])``.

Two views: ``"full"`` (default) is the whole photograph, the disc about a sixth of the
field wide; ``"roi"`` is the disc-centred region of interest that optic disc and cup
segmentation works on (REFUGE, ORIGA and Drishti-GS pipelines crop one): the same
photograph drawn at ``1 / ROI_FRACTION`` times the size and cropped to a square of
:data:`ROI_FRACTION` of its side around the disc, the crop's centre moved by up to a
tenth of its side from the disc's centre (drawn from ``default_rng([seed, index, 2,
1])``, so the full view's numbers are unchanged). The disc then spans about 40 to 55%
of the crop's height, so its vertical CDR is resolved at small sizes.
"""

from __future__ import annotations

import numpy as np

from segshield._checks import check_choice, check_number
from segshield.data._render import (
    blend,
    blur,
    parse_size,
    phantom_canvas,
    smooth_noise,
    stroke_layer,
    to_uint8,
)
from segshield.data.phantom_derm import Phantom

__all__ = ["make_fundus_phantom", "VIEWS", "ROI_FRACTION"]

#: ``make_fundus_phantom(view=)`` choices.
VIEWS = ("full", "roi")
#: Side of the ``"roi"`` view as a fraction of the full photograph's (shorter) side.
ROI_FRACTION = 0.4


def _vessel_tree(
    rng: np.random.Generator, start: tuple[float, float], side: float, scale: float
) -> tuple[list, list]:
    """Polylines ``(points, width)`` for veins and arteries, in pixels."""
    veins: list = []
    arteries: list = []
    # four trunks: superior/inferior x temporal/nasal
    trunks = []
    for vert in (-1.0, 1.0):
        temporal = np.arctan2(vert * rng.uniform(0.35, 0.7), side)
        nasal = np.arctan2(vert * rng.uniform(0.4, 0.9), -side)
        trunks.append((temporal, vert * side * rng.uniform(0.9, 1.6), 1.0))
        trunks.append((nasal, rng.uniform(-0.3, 0.3), 0.65))
    stack = []
    for ang, bend, w in trunks:
        for is_vein in (True, False):
            off = rng.uniform(-0.12, 0.12)
            stack.append((start, ang + off, bend, w * (1.0 if is_vein else 0.75), 0, is_vein))
    while stack:
        (x, y), ang, bend, w, depth, is_vein = stack.pop()
        length = scale * rng.uniform(0.45, 0.75) * (0.75**depth)
        steps = 14
        pts = [(x, y)]
        a = ang
        for i in range(steps):
            a += bend / steps * (-1 if i > steps * 0.6 and depth == 0 else 1) * 0.8
            a += rng.normal(0, 0.12)
            x += np.cos(a) * length / steps
            y += np.sin(a) * length / steps
            pts.append((x, y))
        width = w * scale * 0.022
        (veins if is_vein else arteries).append((pts, width))
        if depth < 2 and width > 0.4:
            for _ in range(2):
                k = int(rng.integers(4, steps))
                spread = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.9)
                stack.append((pts[k], a + spread, bend * 0.3, w * 0.7, depth + 1, is_vein))
    return veins, arteries


def make_fundus_phantom(
    size: int | tuple[int, int] = 128, *, seed: int = 0, index: int = 0, view: str = "full"
) -> Phantom:
    """Draw one fundus phantom (retina image, disc/cup mask, CDR label).

    Vectorised numpy and Pillow drawing; a few ms at 128 x 128; the same
    ``(seed, index, size)`` always gives identical bytes.

    Args:
        size: ``int`` (square) or ``(H, W)``, each side in ``[8, 8192]``. Default 128.
        seed: data-set seed, ``>= 0``. Default 0. Each image draws from
            ``numpy.random.default_rng([seed, index, 2])`` (its own
            stream: the dermoscopy phantom of the same ``(seed, index)`` is unrelated).
        index: image index within the data set, ``>= 0``. Default 0.
        view: ``"full"`` (the whole photograph) or ``"roi"`` (the disc-centred crop, see
            the module docstring); the same ``(seed, index)`` shows the same eye.
            Default ``"full"``.

    Shape:
        - image: ``(H, W, 3)`` uint8 RGB.
        - mask: ``(H, W)`` uint8: 0 background, 1 rim, 2 cup.

    Returns:
        :class:`~segshield.data.phantom_derm.Phantom` with ``meta = {"cdr": float,
        "glaucoma": int}`` where ``glaucoma = int(cdr >= 0.6)`` (docs/ALGORITHMS.md §5 default).

    Raises:
        TypeError: ``seed`` or ``index`` not an integer, ``size`` of the wrong type.
        ValueError: negative ``seed``/``index``, a side outside ``[8, 8192]`` or an
            unknown ``view``.

    Example:
        >>> p = make_fundus_phantom(64, seed=1, index=0)
        >>> p.image.shape, sorted(set(p.mask.ravel().tolist())), 0.25 <= p.meta["cdr"] <= 0.85
        ((64, 64, 3), [0, 1, 2], True)
        >>> roi = make_fundus_phantom(64, seed=1, index=0, view="roi")
        >>> roi.meta == p.meta, bool((roi.mask >= 1).mean() > 3 * (p.mask >= 1).mean())
        (True, True)
    """
    check_choice("view", view, VIEWS)
    if view == "roi":
        return _roi_view(size, seed, index)
    rng, (h, w), u, v, s = phantom_canvas(size, seed, index, stream=2)
    shape = (h, w)
    img, fov, rr, (fx, fy, fov_r) = _retina(rng, shape, u, v, s)

    # --- macula and disc geometry -------------------------------------------------
    side = float(rng.choice([-1.0, 1.0]))  # +1: disc on the right (temporal = left)
    dcx = fx + side * rng.uniform(0.17, 0.26)
    dcy = fy + rng.uniform(-0.05, 0.05)
    rdv = rng.uniform(0.075, 0.11)
    rdh = rdv * rng.uniform(0.82, 0.98)
    mcx, mcy = dcx - side * 5.0 * rdh * rng.uniform(0.9, 1.1), dcy + rng.uniform(0.0, 0.04)
    mac = np.exp(-((u - mcx) ** 2 + (v - mcy) ** 2) / (2 * (1.4 * rdv) ** 2))
    img *= (1.0 - rng.uniform(0.2, 0.4) * mac)[..., None]
    fovea = np.exp(-((u - mcx) ** 2 + (v - mcy) ** 2) / (2 * (0.12 * rdv) ** 2))
    img += 0.15 * fovea[..., None]
    img, disc, cup, cdr, ccx = _disc_and_cup(rng, img, u, v, (dcx, dcy, rdh, rdv), side)

    # --- vessels ---------------------------------------------------------------------
    start = ((ccx * s + w / 2), (dcy * s + h / 2))
    veins, arteries = _vessel_tree(rng, start, side * -1.0, s)
    vein_layer = stroke_layer(shape, veins)
    art_layer = stroke_layer(shape, arteries)
    img = blend(img, vein_layer, np.array([0.42, 0.06, 0.05], np.float32), 0.85)
    img = blend(img, art_layer, np.array([0.75, 0.16, 0.08], np.float32), 0.75)

    # --- confounders -------------------------------------------------------------------
    if rng.uniform() < 0.35:
        nd = int(rng.integers(3, 15))
        ang = rng.uniform(0, 2 * np.pi, nd)
        rad = rng.uniform(0.05, 0.35, nd)
        pts = [
            ((mcx + r * np.cos(a)) * s + w / 2, (mcy + r * np.sin(a)) * s + h / 2, rr_, 0)
            for a, r, rr_ in zip(ang, rad, rng.uniform(0.6, 2.0, nd) * s / 128, strict=True)
        ]
        spots = blur(stroke_layer(shape, [], circles=pts, fill_circles=True), 0.6 * s / 128)
        img = img * (1 - 0.6 * spots[..., None]) + np.array([1.0, 0.9, 0.5], np.float32) * (
            0.6 * spots[..., None]
        )
    if rng.uniform() < 0.5:
        ang = rng.uniform(0, 2 * np.pi)
        cres = np.exp(-(((rr - fov_r * 0.93) / 0.04) ** 2)) * np.clip(
            np.cos(np.arctan2(v - fy, u - fx) - ang), 0, None
        )
        img += rng.uniform(0.1, 0.35) * cres[..., None]

    img = blur(img, 0.45 * s / 128)
    img = img + rng.uniform(0.005, 0.02) * rng.standard_normal(img.shape).astype(np.float32)
    img = img * fov[..., None] + 0.01 * rng.uniform() * (1 - fov[..., None])
    mask = np.where(cup, 2, np.where(disc, 1, 0)).astype(np.uint8)
    mask[fov <= 0.0] = 0
    return Phantom(to_uint8(img), mask, {"cdr": cdr, "glaucoma": int(cdr >= 0.6)})


def _roi_view(size: int | tuple[int, int], seed: int, index: int) -> Phantom:
    """The full view drawn ``1 / ROI_FRACTION`` times larger, cropped around the disc."""
    h, w = parse_size(size)
    for side in (h, w):  # the drawing's side stays within parse_size's 8192
        check_number("size", side, high=int(8192 * ROI_FRACTION), integer=True)
    full = make_fundus_phantom(
        (round(h / ROI_FRACTION), round(w / ROI_FRACTION)), seed=seed, index=index
    )
    big_h, big_w = full.mask.shape
    rows = np.nonzero((full.mask >= 1).any(1))[0]
    cols = np.nonzero((full.mask >= 1).any(0))[0]
    jy, jx = np.random.default_rng([seed, index, 2, 1]).uniform(-0.1, 0.1, size=2)
    cy = (rows.min() + rows.max() + 1) / 2 + jy * h
    cx = (cols.min() + cols.max() + 1) / 2 + jx * w
    top = int(np.clip(round(cy - h / 2), 0, big_h - h))
    left = int(np.clip(round(cx - w / 2), 0, big_w - w))
    crop = (slice(top, top + h), slice(left, left + w))
    return Phantom(full.image[crop].copy(), full.mask[crop].copy(), dict(full.meta))


def _retina(rng: np.random.Generator, shape: tuple[int, int], u, v, s: float):
    """Shaded, textured retina ``(H, W, 3)``, field of view, radius map and FOV circle."""
    fx, fy = rng.uniform(-0.03, 0.03, size=2)
    fov_r = rng.uniform(0.46, 0.52)
    rr = np.sqrt((u - fx) ** 2 + (v - fy) ** 2)
    fov = np.clip((fov_r - rr) * s / 1.5, 0.0, 1.0)
    red = rng.uniform(0.72, 0.95)
    base = np.array([red, red * rng.uniform(0.28, 0.45), red * rng.uniform(0.06, 0.16)], np.float32)
    lx, ly = rng.uniform(-0.2, 0.2, size=2)
    light = 1.0 - rng.uniform(0.25, 0.55) * ((u - lx) ** 2 + (v - ly) ** 2) / fov_r**2
    tex = 0.05 * smooth_noise(rng, shape, rng.uniform(10, 25)) + 0.04 * smooth_noise(rng, shape, 4)
    img = base * (light * (1.0 + tex))[..., None]
    return img, fov, rr, (fx, fy, fov_r)


def _disc_and_cup(rng: np.random.Generator, img: np.ndarray, u, v, ellipse, side: float):
    """Paint the optic disc and cup (and an atrophy halo); return their masks and the CDR.

    ``ellipse`` is the disc's ``(cx, cy, horizontal radius, vertical radius)``. Returns
    ``(img, disc, cup, cdr, cup_cx)``.
    """
    dcx, dcy, rdh, rdv = ellipse
    shape = img.shape[:2]
    du, dv = u - dcx, v - dcy
    theta = np.arctan2(dv, du)
    wobble = 1.0 + sum(
        rng.uniform(0, 0.04) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)
    )
    dd = np.sqrt((du / rdh) ** 2 + (dv / rdv) ** 2) / wobble
    cdr = float(rng.uniform(0.25, 0.85))
    rcv = cdr * rdv
    rch = min(rcv * rng.uniform(0.8, 1.05) * rdh / rdv, 0.93 * rdh)
    ccx = dcx - side * rng.uniform(0.0, 0.5) * (0.95 * rdh - rch)
    dc = np.sqrt(((u - ccx) / rch) ** 2 + (dv / rcv) ** 2)
    disc = dd < 1.0
    cup = (dc < 1.0) & disc

    # peripapillary atrophy: a pale crescent/halo just outside the disc
    if rng.uniform() < 0.45:
        halo = np.exp(-(((dd - 1.15) / 0.12) ** 2)) * (
            0.5 + 0.5 * np.cos(theta - rng.uniform(0, 2 * np.pi))
        )
        pale = np.array([0.95, 0.75, 0.55], np.float32)
        k = rng.uniform(0.3, 0.7) * halo[..., None]
        img = img * (1 - k) + pale * k

    soft = rng.uniform(0.05, 0.14)
    a_disc = 1.0 / (1.0 + np.exp(np.clip((dd - 1.0) / soft, -30, 30)))
    disc_col = np.array(
        [1.0, rng.uniform(0.62, 0.82), rng.uniform(0.35, 0.55)], np.float32
    ) * rng.uniform(0.85, 1.0)
    disc_col = disc_col * (1.0 + 0.04 * smooth_noise(rng, shape, 20))[..., None]
    img = blend(img, a_disc, disc_col, 0.9)
    soft_c = rng.uniform(0.08, 0.25)
    a_cup = 1.0 / (1.0 + np.exp(np.clip((dc - 1.0) / soft_c, -30, 30))) * a_disc
    cup_col = np.array([1.0, 0.93, rng.uniform(0.7, 0.85)], np.float32)
    cup_k = rng.uniform(0.35, 0.9) * a_cup[..., None]
    img = img * (1 - cup_k) + cup_col * cup_k
    return img, disc, cup, cdr, ccx
