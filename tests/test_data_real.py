"""Every folder of $SEGSHIELD_SHARED_DATA loads with the mask encoding its SOURCE.md describes.

The expected masks are rebuilt here straight from the files with Pillow, following the
SOURCE.md text, and compared with what the loaders return at native size. Skipped when
the variable (or one folder) is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshield.data import load_dataset


def folder(shared_data: Path, name: str) -> Path:
    p = shared_data / name
    if not p.is_dir():
        pytest.skip(f"{p} is absent")
    return p


def raw(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def picks(ds, k: int = 3) -> list[int]:
    return np.unique(np.linspace(0, len(ds) - 1, k).round().astype(int)).tolist()


def test_isic2017_official_splits_and_0_255_masks(shared_data):
    root = folder(shared_data, "isic2017")
    train = load_dataset(f"isic:{root}", split="train")
    val = load_dataset(f"isic:{root}", split="val")
    assert (len(train), len(val)) == (2000, 150)
    assert not set(train.names) & set(val.names)
    assert train.problems == [] and val.problems == []
    for i in picks(val):
        item = val[i]
        gt = raw(
            root / "ISIC-2017_Validation_Part1_GroundTruth" / f"{item['name']}_segmentation.png"
        )
        assert set(np.unique(gt).tolist()) <= {0, 255}
        assert torch.equal(item["mask"], torch.from_numpy((gt == 255).astype(np.int64)))
        assert item["image"].shape == (3, 192, 256)
    with pytest.raises(FileNotFoundError, match="test"):
        load_dataset(f"isic:{root}", split="test")


def test_ph2_one_bit_masks_lesion_darker(shared_data):
    root = folder(shared_data, "ph2")
    ds = load_dataset(f"ph2:{root}")
    assert len(ds) == 25 and ds.problems == []
    darker = 0
    for i in range(len(ds)):
        item = ds[i]
        gt = raw(root / "masks" / f"{item['name']}_lesion.bmp")
        assert gt.dtype == np.bool_
        assert torch.equal(item["mask"], torch.from_numpy(gt.astype(np.int64)))
        grey = item["image"].mean(0)
        m = item["mask"].bool()
        darker += int(grey[m].mean() < grey[~m].mean())
    assert darker >= 24  # SOURCE.md: darker in 24/25


def test_origa_cup_inside_disc(shared_data):
    root = folder(shared_data, "origa")
    ds = load_dataset(f"origa:{root}")
    assert len(ds) == 30 and ds.num_classes == 3
    for i in picks(ds, 5):
        item = ds[i]
        gt = raw(root / "masks" / f"{item['name']}.png")
        assert set(np.unique(gt).tolist()) == {0, 1, 2}
        assert torch.equal(item["mask"], torch.from_numpy(gt.astype(np.int64)))
        m = gt
        rows_d, cols_d = np.nonzero(m > 0)
        rows_c, cols_c = np.nonzero(m == 2)
        assert rows_d.min() < rows_c.min() and rows_c.max() < rows_d.max()
        assert cols_d.min() < cols_c.min() and cols_c.max() < cols_d.max()
        assert 0.15 < (m > 0).mean() < 0.40  # SOURCE.md: disc 19-36 % of the crop


def test_paddleseg_palette_indices(shared_data):
    root = folder(shared_data, "paddleseg_optic_disc")
    ds = load_dataset(f"paddleseg:{root}")
    assert len(ds) == 300 and ds.class_names == ("background", "disc")
    for i in picks(ds, 4):
        item = ds[i]
        with Image.open(root / "masks" / f"{item['name']}.png") as im:
            assert im.mode == "P"
            gt = np.array(im)
        assert set(np.unique(gt).tolist()) == {0, 1}
        assert torch.equal(item["mask"], torch.from_numpy(gt.astype(np.int64)))
        assert 0.005 < gt.mean() < 0.06  # SOURCE.md: disc 0.8-4.9 %
        grey = item["image"].mean(0)
        assert grey[item["mask"] == 1].mean() > grey[item["mask"] == 0].mean()


def test_drishti_soft_maps(shared_data):
    root = folder(shared_data, "drishti_gs1")
    ds = load_dataset(f"drishti:{root}")
    assert len(ds) == 10 and ds.problems == []
    item = ds[0]
    od = raw(root / "masks" / f"{item['name']}_ODsegSoftmap.png")
    cup = raw(root / "masks" / f"{item['name']}_cupsegSoftmap.png")
    assert set(np.unique(od).tolist()) <= {0, 64, 128, 191, 255} and od.max() == 255
    want = np.where(cup >= 128, 2, np.where(od >= 128, 1, 0))
    assert torch.equal(item["mask"], torch.from_numpy(want.astype(np.int64)))
    disc = (want > 0).mean()
    assert 0.02 < disc < 0.04  # SOURCE.md: disc 2.3-3.6 % of the image
    assert not ((want == 2) & (od < 128)).any()  # cup inside disc


def test_dofe_refuge_encoding(shared_data):
    root = folder(shared_data, "dofe_fundus")
    ds = load_dataset(f"refuge:{root}")
    assert len(ds) == 8 and ds.problems == []
    for i in picks(ds, 3):
        item = ds[i]
        gt = raw(root / "masks" / f"{item['name']}.png")[..., 0]
        assert set(np.unique(gt).tolist()) == {0, 128, 255}
        want = np.select([gt == 0, gt == 128], [2, 1], 0)
        assert torch.equal(item["mask"], torch.from_numpy(want.astype(np.int64)))
        grey = item["image"].mean(0)
        assert grey[item["mask"] > 0].mean() > grey[item["mask"] == 0].mean()


@pytest.mark.parametrize(
    "kind,name",
    [("isic", "isic2017"), ("origa", "origa"), ("paddleseg", "paddleseg_optic_disc")],
)
def test_resized_real_data_keeps_labels(shared_data, kind, name):
    root = folder(shared_data, name)
    ds = load_dataset(f"{kind}:{root}", size=64, split="val", resize="pad", n=2)
    item = ds[0]
    assert item["image"].shape[1:] == (64, 64) and item["mask"].shape == (64, 64)
    assert set(item["mask"].unique().tolist()) <= set(range(ds.num_classes))
