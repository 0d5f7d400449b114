"""Real-data loaders on small synthetic folders: pairing, problems, encodings, splits, resizing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshield.data import load_dataset, resize_pair
from segshield.utils.imageio import ImageReadError

RNG = np.random.default_rng(0)


def save(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(path)
    return path


def rgb(h: int = 12, w: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def binary(h: int = 12, w: int = 16, value: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[3:9, 4:12] = value
    return m


def make_folder(root: Path, n: int = 5) -> Path:
    for i in range(n):
        save(root / "images" / f"img{i}.png", rgb())
        save(root / "masks" / f"img{i}.png", binary())
    return root


# --- generic folder: problems --------------------------------------------------------


def test_folder_bad_pairs_are_skipped_named_and_logged(tmp_path, caplog):
    root = make_folder(tmp_path / "d", 4)
    save(root / "images" / "lonely.png", rgb())  # missing mask
    save(root / "masks" / "orphan.png", binary())  # extra mask
    (root / "images" / "broken.png").write_bytes(b"not an image at all")  # corrupt image
    save(root / "masks" / "broken.png", binary())
    save(root / "images" / "small.png", rgb(8, 8))  # size mismatch
    save(root / "masks" / "small.png", binary())
    with caplog.at_level(logging.WARNING, logger="segshield.data"):
        ds = load_dataset(f"folder:{root}")
    assert sorted(ds.names) == [f"img{i}" for i in range(4)]
    text = "\n".join(ds.problems)
    assert len(ds.problems) == 4
    assert "lonely.png" in text and "no mask" in text
    assert "orphan.png" in text and "without an image" in text
    assert "broken.png" in text and "unreadable" in text
    assert "small.png" in text and "sizes differ" in text
    assert "lonely.png" in caplog.text and "skipped 4 problem" in caplog.text


def test_folder_without_usable_pairs_raises_naming_folder(tmp_path):
    root = tmp_path / "empty"
    save(root / "images" / "a.png", rgb())
    save(root / "masks" / "b.png", binary())
    with pytest.raises(ValueError, match=r"no usable image/mask pairs.*images/ and masks/.*a\.png"):
        load_dataset(f"folder:{root}")


def test_missing_folders_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="images/ \\+ masks/"):
        load_dataset(f"folder:{tmp_path / 'x'}")


def test_truncated_image_fails_on_read_naming_the_file_and_scan_reports_it(tmp_path):
    root = make_folder(tmp_path / "d", 3)
    buf = (root / "images" / "img1.png").read_bytes()
    bad = root / "images" / "img1.png"
    bad.write_bytes(buf[: len(buf) // 2])  # header intact, data cut
    ds = load_dataset(f"folder:{root}")
    i = ds.names.index("img1")
    with pytest.raises(ImageReadError, match="img1.png"):
        ds[i]
    rep = ds.scan()
    assert rep["ok"] == 2 and any("img1.png" in p for p in rep["problems"])


def test_folder_encodings_binary_and_class_ids(tmp_path):
    ds = load_dataset(f"folder:{make_folder(tmp_path / 'bin', 2)}")
    assert ds.num_classes == 2 and ds.regions == {"foreground": (1,)}
    m = ds[0]["mask"]
    assert set(m.unique().tolist()) == {0, 1}
    assert torch.equal(m, torch.from_numpy((binary() == 255).astype(np.int64)))

    root = tmp_path / "ids"
    ids = np.zeros((12, 16), np.uint8)
    ids[:, 4:8], ids[:, 8:12], ids[0, 0] = 1, 3, 255
    save(root / "images" / "a.jpg", rgb())
    save(root / "masks" / "a.png", ids)
    ds = load_dataset(f"folder:{root}")
    assert ds.num_classes == 4 and ds.class_names[0] == "background"
    assert torch.equal(ds[0]["mask"], torch.from_numpy(ids.astype(np.int64)))


def test_grey_and_rgba_images(tmp_path):
    root = tmp_path / "d"
    save(root / "images" / "g.png", rgb()[..., 0])
    save(root / "masks" / "g.png", binary())
    rgba = np.concatenate([rgb(), np.full((12, 16, 1), 7, np.uint8)], -1)
    save(root / "images" / "r.png", rgba)
    save(root / "masks" / "r.png", binary())
    ds = load_dataset(f"folder:{root}")
    shapes = {ds[i]["name"]: tuple(ds[i]["image"].shape) for i in range(2)}
    assert shapes == {"g": (1, 12, 16), "r": (3, 12, 16)}
    assert torch.allclose(
        ds[ds.names.index("r")]["image"] * 255,
        torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float(),
    )


def test_mask_values_outside_classes_raise_naming_file(tmp_path):
    root = tmp_path / "origa"
    bad = np.zeros((12, 16), np.uint8)
    bad[2, 2] = 5
    save(root / "images" / "001.png", rgb())
    save(root / "masks" / "001.png", bad)
    ds = load_dataset(f"origa:{root}")
    with pytest.raises(ValueError, match=r"001\.png.*mask values \[5\]"):
        ds[0]


# --- resize policies ---------------------------------------------------------------


def test_resize_pair_pad_centres_with_zero_and_background():
    img = np.full((10, 20, 3), 200, np.uint8)
    mask = np.ones((10, 20), np.int64)
    out, m = resize_pair(img, mask, None, "pad")
    assert out.shape == (20, 20, 3) and m.shape == (20, 20)
    assert (out[:5] == 0).all() and (out[15:] == 0).all() and (out[5:15] == 200).all()
    assert (m[:5] == 0).all() and (m[15:] == 0).all() and (m[5:15] == 1).all()
    out, m = resize_pair(img, mask, (8, 8), "pad")
    assert out.shape == (8, 8, 3) and m[0].max() == 0 and m[4].min() == 1


def test_resize_pair_resize_is_bilinear_and_nearest():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:, 2:] = 255
    mask = np.zeros((4, 4), np.int64)
    mask[:, 2:] = 2
    out, m = resize_pair(img, mask, (8, 8))
    assert out.shape == (8, 8, 3) and m.shape == (8, 8)
    assert set(np.unique(m).tolist()) == {0, 2}  # nearest: no new labels
    assert 0 < out[0, 3, 0] < 255 or 0 < out[0, 4, 0] < 255  # bilinear: a ramp at the edge
    assert (m[:, :4] == 0).all() and (m[:, 4:] == 2).all()


def test_resize_pair_errors():
    with pytest.raises(ValueError, match="resize"):
        resize_pair(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), None, "stretch")
    with pytest.raises(ValueError, match="sizes differ"):
        resize_pair(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5)), None)


def test_uint16_images_keep_depth(tmp_path):
    root = tmp_path / "d"
    g = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300).astype(np.uint16)
    save(root / "images" / "a.png", g)
    save(root / "masks" / "a.png", binary())
    ds = load_dataset(f"folder:{root}")
    assert torch.allclose(ds[0]["image"][0], torch.from_numpy(g.astype(np.float32)) / 65535)
    small = load_dataset(f"folder:{root}", size=8)[0]["image"]
    assert small.shape == (1, 8, 8) and 0 <= small.min() and small.max() <= 1


def test_load_dataset_size_pad_and_cache(tmp_path):
    root = make_folder(tmp_path / "d", 3)
    a = load_dataset(f"folder:{root}", size=(8, 10))
    assert a[0]["image"].shape == (3, 8, 10) and a[0]["mask"].shape == (8, 10)
    p = load_dataset(f"folder:{root}", size=8, resize="pad")[0]
    assert p["image"].shape == (3, 8, 8) and (p["mask"][0] == 0).all()
    uncached = a[1]
    c = load_dataset(f"folder:{root}", size=(8, 10), cache=True)
    first = c[1]
    (root / "images" / "img1.png").unlink()  # served from memory now
    again = c[1]
    for item in (first, again):
        assert torch.equal(item["image"], uncached["image"])
        assert torch.equal(item["mask"], uncached["mask"])
    with pytest.raises(ImageReadError, match="img1.png"):
        a[1]
    assert c[-1]["name"] == c.names[-1]
    with pytest.raises(IndexError):
        c[3]


# --- splits ----------------------------------------------------------------------------


def test_seeded_split_disjoint_covering_and_deterministic(tmp_path):
    root = make_folder(tmp_path / "d", 20)
    got = {s: load_dataset(f"folder:{root}", split=s).names for s in ("train", "val", "test")}
    assert [len(got[s]) for s in ("train", "val", "test")] == [14, 3, 3]
    sets = [set(v) for v in got.values()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == {f"img{i}" for i in range(20)}
    assert load_dataset(f"folder:{root}", split="val").names == got["val"]
    assert load_dataset(f"folder:{root}", split="val", seed=3).names != got["val"]
    assert load_dataset(f"folder:{root}", split="train", n=4).names == got["train"][:4]


# --- layouts ---------------------------------------------------------------------------


def make_isic(root: Path, splits=("Training", "Validation"), n: int = 3) -> Path:
    for s in splits:
        for i in range(n):
            stem = f"ISIC_{s[0]}{i:06d}"
            save(root / f"ISIC-2017_{s}_Data" / f"{stem}.jpg", rgb())
            save(root / f"ISIC-2017_{s}_Data" / f"{stem}_superpixels.png", rgb())
            save(root / f"ISIC-2017_{s}_Part1_GroundTruth" / f"{stem}_segmentation.png", binary())
    return root


def test_isic_official_splits(tmp_path):
    root = make_isic(tmp_path / "isic")
    train = load_dataset(f"isic:{root}", split="train")
    val = load_dataset(f"isic:{root}", split="val")
    assert train.names == [f"ISIC_T{i:06d}" for i in range(3)]
    assert val.names == [f"ISIC_V{i:06d}" for i in range(3)]
    assert len(load_dataset(f"isic:{root}")) == 6 and train.problems == []
    assert torch.equal(train[0]["mask"], torch.from_numpy((binary() > 127).astype(np.int64)))
    with pytest.raises(FileNotFoundError, match="'test'.*Test"):
        load_dataset(f"isic:{root}", split="test")


def test_isic_training_only_uses_seeded_split_and_2018_names(tmp_path):
    root = tmp_path / "isic18"
    for i in range(10):
        save(root / "ISIC2018_Task1-2_Training_Input" / f"ISIC_{i:07d}.jpg", rgb())
        save(
            root / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_{i:07d}_segmentation.png",
            binary(),
        )
    parts = [load_dataset(f"isic:{root}", split=s).names for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [7, 2, 1]
    with pytest.raises(FileNotFoundError, match="no ISIC folders"):
        load_dataset(f"isic:{tmp_path}")


def test_ph2_release_layout(tmp_path):
    root = tmp_path / "PH2Dataset" / "PH2 Dataset images"
    for i in (2, 3, 4):
        d = root / f"IMD00{i}"
        save(d / f"IMD00{i}_Dermoscopic_Image" / f"IMD00{i}.bmp", rgb())
        save(d / f"IMD00{i}_lesion" / f"IMD00{i}_lesion.bmp", binary(), mode="1")
    ds = load_dataset(f"ph2:{tmp_path / 'PH2Dataset'}")
    assert ds.names == ["IMD002", "IMD003", "IMD004"]
    assert torch.equal(ds[0]["mask"], torch.from_numpy((binary() > 0).astype(np.int64)))


def test_drishti_soft_maps_threshold_at_half_max(tmp_path):
    root = tmp_path / "drishti"
    od = np.zeros((12, 16), np.uint8)
    od[2:10, 3:13] = 64
    od[3:9, 4:12] = 128
    cup = np.zeros((12, 16), np.uint8)
    cup[4:8, 6:10] = 191
    cup[5:7, 7:9] = 255
    for name in ("drishtiGS_001", "drishtiGS_002"):
        save(root / "images" / f"{name}.png", rgb())
        save(root / "masks" / f"{name}_ODsegSoftmap.png", od)
    save(root / "masks" / "drishtiGS_001_cupsegSoftmap.png", cup)
    ds = load_dataset(f"drishti:{root}")
    assert ds.names == ["drishtiGS_001"]
    assert any("drishtiGS_002" in p and "cupsegSoftmap" in p for p in ds.problems)
    want = np.where(cup >= 127.5, 2, np.where(od >= 64, 1, 0))  # od max 128 -> half = 64
    assert torch.equal(ds[0]["mask"], torch.from_numpy(want.astype(np.int64)))


def test_refuge_encoding(tmp_path):
    root = tmp_path / "refuge"
    m = np.full((12, 16), 255, np.uint8)
    m[2:10, 3:13] = 128
    m[4:8, 6:10] = 0
    save(root / "images" / "g0001.png", rgb())
    save(root / "masks" / "g0001.png", np.stack([m] * 3, -1))
    ds = load_dataset(f"refuge:{root}")
    want = np.select([m == 0, m == 128], [2, 1], 0)
    assert torch.equal(ds[0]["mask"], torch.from_numpy(want.astype(np.int64)))
    assert ds.regions == {"disc": (1, 2), "cup": (2,)}


def test_paddleseg_palette_indices_and_list_files(tmp_path):
    root = tmp_path / "optic_disc_seg"
    pal = np.zeros((12, 16), np.uint8)
    pal[4:8, 4:8] = 1
    for i in range(4):
        save(root / "JPEGImages" / f"N{i:04d}.jpg", rgb())
        im = Image.fromarray(pal, mode="P")
        im.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
        (root / "Annotations").mkdir(exist_ok=True)
        im.save(root / "Annotations" / f"N{i:04d}.png")
    ds = load_dataset(f"paddleseg:{root}")
    assert ds.num_classes == 2 and ds.class_names == ("background", "disc")
    assert torch.equal(ds[0]["mask"], torch.from_numpy(pal.astype(np.int64)))
    for s, ids in (("train", [0, 1]), ("val", [2]), ("test", [3])):
        lines = [f"JPEGImages/N{i:04d}.jpg Annotations/N{i:04d}.png" for i in ids]
        (root / f"{s}_list.txt").write_text("\n".join(lines) + "\n")
    assert load_dataset(f"paddleseg:{root}", split="train").names == ["N0000", "N0001"]
    assert load_dataset(f"paddleseg:{root}", split="test").names == ["N0003"]


def test_isic_prefers_part1_ground_truth(tmp_path):
    root = make_isic(tmp_path / "isic", splits=("Training",), n=2)
    part2 = root / "ISIC-2017_Training_Part0_GroundTruth"  # sorts first, but not Part1
    save(part2 / "ISIC_T000000_segmentation.png", np.zeros((12, 16), np.uint8))
    ds = load_dataset(f"isic:{root}", split="all")
    assert ds[0]["mask"].sum() == int((binary() > 127).sum())


def test_duplicate_stems_are_ambiguous(tmp_path):
    root = make_folder(tmp_path / "d", 2)
    save(root / "images" / "img0.jpg", rgb())  # img0.png and img0.jpg
    ds = load_dataset(f"folder:{root}")
    assert ds.names == ["img1"]
    assert any("img0.jpg" in p and "same name" in p for p in ds.problems)


def test_phantom_ignores_pad_policy():
    a = load_dataset("phantom-derm", size=(16, 24), n=3, resize="pad")[0]
    b = load_dataset("phantom-derm", size=(16, 24), n=3)[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
