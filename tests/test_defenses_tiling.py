"""``Defense.forward_numpy`` in strips: bit for bit the untiled result, or a clear refusal."""

from __future__ import annotations

import numpy as np
import pytest

from segshield.defenses import get_defense


def rng_image(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    hi = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, hi, shape).astype(dtype)


def untiled(defense, arr):
    """One strip holding the whole image (rows rounded up to the defence's block)."""
    block = defense.tile_block
    return defense.forward_numpy(arr, tile_rows=-(-arr.shape[0] // block) * block)


@pytest.mark.parametrize(
    "spec",
    ["fr:pad=edge", "fr:pad=zero", "fd", "bitdepth:bits=3", "none", "median:k=5",
     "gaussian:sigma=1.3"],
)  # fmt: skip
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((61, 37, 3), np.uint8), ((45, 29), np.uint16), ((40, 21, 1), np.uint8),
     ((33, 50, 3), np.uint16)],
)  # fmt: skip
def test_strips_equal_the_whole_image(spec, shape, dtype):
    # odd sizes: the last strip holds the bottom border; the others end inside the image,
    # where edge or zero padding must not be applied
    defense = get_defense(spec)
    arr = rng_image(shape, dtype, seed=len(shape))
    whole = untiled(defense, arr)
    assert whole.shape == arr.shape and whole.dtype == arr.dtype
    block = defense.tile_block
    for rows in {block, 2 * block, 3 * block, 16}:
        if rows % block == 0:
            got = defense.forward_numpy(arr, tile_rows=rows)
            np.testing.assert_array_equal(got, whole, err_msg=f"{spec} tile_rows={rows}")
    np.testing.assert_array_equal(defense.forward_numpy(arr), whole)  # default strips


def test_strip_plan_cuts_fr_at_block_rows_and_filters_with_halo():
    fr, med = get_defense("fr"), get_defense("median:k=5")
    assert fr._strips(20, 7, 8) == [(0, 8, 0, 8), (8, 16, 8, 16), (16, 20, 16, 20)]
    assert med._strips(10, 7, 4) == [(0, 4, 0, 6), (4, 8, 2, 10), (8, 10, 6, 10)]
    # the default keeps a strip under 2**21 pixels, in whole blocks
    (first, *_rest) = fr._strips(4000, 6000, None)
    assert first[1] == 344 and 344 * 6000 <= 2**21


def test_default_strips_on_a_wide_image_equal_the_whole_image():
    fr = get_defense("fr")
    arr = rng_image((70, 2**16 // 2, 1), seed=3)  # 2**21 // width = 64 rows per strip
    assert len(fr._strips(*arr.shape[:2], None)) == 2
    np.testing.assert_array_equal(fr.forward_numpy(arr), untiled(fr, arr))


@pytest.mark.parametrize(
    ("spec", "rows", "match"),
    [
        ("fr", 12, "fr tiles by multiples of 8 rows, got 12"),
        ("fr", 0, "fr tiles by multiples of 8 rows, got 0"),
        ("bitdepth", True, "bitdepth tiles by multiples of 1 rows, got True"),
        ("jpeg", 8, "jpeg cannot be tiled, got 8"),
    ],
)
def test_bad_tile_rows_are_refused(spec, rows, match):
    with pytest.raises(ValueError, match=f"tile_rows: {match}"):
        get_defense(spec).forward_numpy(rng_image((16, 16)), tile_rows=rows)


def test_jpeg_runs_on_the_whole_image():
    jpeg = get_defense("jpeg")
    assert jpeg.tile_block == 0 and jpeg._strips(5000, 5000, None) == [(0, 5000, 0, 5000)]
