"""The disc-centred fundus phantom (``view="roi"``, data kind ``phantom-fundus-roi``)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from segshield.data import load_dataset, make_fundus_phantom
from segshield.data.phantom_fundus import ROI_FRACTION


def _rows(mask: np.ndarray) -> np.ndarray:
    return np.nonzero(mask.any(1))[0]


def test_full_view_bytes_are_unchanged():
    """The default view draws the same bytes as before the ROI view existed.

    The digest was computed with the generator as it was before ``view`` was added.
    """
    h = hashlib.sha256()
    for i in range(3):
        p = make_fundus_phantom(48, seed=3, index=i)
        h.update(p.image.tobytes())
        h.update(p.mask.tobytes())
    assert h.hexdigest() == "31bf348a5924f8ae851df92c52c989b09a56b21e28d86831041a503a0ecdb34e"


def test_roi_view_is_the_same_eye_centred_and_larger():
    for i in range(10):
        full = make_fundus_phantom(64, seed=5, index=i)
        roi = make_fundus_phantom(64, seed=5, index=i, view="roi")
        assert roi.image.shape == (64, 64, 3) and roi.mask.shape == (64, 64)
        assert roi.meta == full.meta
        assert set(np.unique(roi.mask).tolist()) == {0, 1, 2}
        disc_rows = _rows(roi.mask >= 1)
        # the disc is about 1 / ROI_FRACTION times taller than in the full view
        ratio = len(disc_rows) / len(_rows(full.mask >= 1))
        assert abs(ratio - 1 / ROI_FRACTION) < 0.6, (i, ratio)
        # it lies whole inside the crop, its centre within the jitter of the crop's centre
        assert disc_rows.min() > 0 and disc_rows.max() < 63
        cols = np.nonzero((roi.mask >= 1).any(0))[0]
        assert cols.min() > 0 and cols.max() < 63
        for lo, hi in ((disc_rows.min(), disc_rows.max()), (cols.min(), cols.max())):
            assert abs((lo + hi + 1) / 2 - 32) <= 0.1 * 64 + 1


def test_roi_view_cdr_matches_the_label_more_closely_than_the_full_view():
    err = {"full": [], "roi": []}
    for i in range(12):
        for view in err:
            p = make_fundus_phantom(64, seed=4, index=i, view=view)
            disc, cup = _rows(p.mask >= 1), _rows(p.mask == 2)
            cdr = len(cup) / len(disc)
            assert disc.min() <= cup.min() and cup.max() <= disc.max()
            err[view].append(abs(cdr - p.meta["cdr"]))
    assert np.mean(err["roi"]) < 0.03
    assert np.mean(err["roi"]) < np.mean(err["full"])


def test_roi_view_is_deterministic_and_rectangular_sizes_work():
    a = make_fundus_phantom((24, 40), seed=2, index=7, view="roi")
    b = make_fundus_phantom((24, 40), seed=2, index=7, view="roi")
    assert a.image.shape == (24, 40, 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    c = make_fundus_phantom(8, seed=0, index=0, view="roi")  # the smallest size
    assert (c.mask >= 1).any()


def test_roi_view_errors():
    with pytest.raises(ValueError, match="full, roi|'full', 'roi'"):
        make_fundus_phantom(32, view="disc")
    with pytest.raises(ValueError, match="size"):
        make_fundus_phantom(4000, view="roi")


def test_load_dataset_phantom_fundus_roi():
    ds = load_dataset("phantom-fundus-roi", size=16, split="val", n=20)
    assert ds.kind == "phantom-fundus-roi" and ds.num_classes == 3
    assert dict(ds.regions) == {"disc": (1, 2), "cup": (2,)}
    item = ds[0]
    raw = make_fundus_phantom(16, seed=0, index=int(item["name"].split("_")[-1]), view="roi")
    assert np.array_equal(item["mask"].numpy(), raw.mask)
