"""Data errors: wrong layouts, lossy masks, spec options; one clear line from ``data check``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segshield.cli.main import main
from segshield.data import load_dataset, parse_spec
from segshield.data.errors import DatasetError, MissingFolderError
from segshield.data.folder import MANY_CLASSES, lossy_levels
from segshield.data.registry import parse_options

RNG = np.random.default_rng(3)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def disc_mask(levels=(0, 255), size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    m = np.full((size, size), levels[0], np.uint8)
    m[r < size * 0.375] = levels[1]
    if len(levels) > 2:
        m[r < size * 0.19] = levels[2]
    return m


def make_pairs(root: Path, n: int = 4, levels=(0, 255), ext: str = "png") -> Path:
    for i in range(n):
        save(root / "images" / f"a{i}.png", RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        save(
            root / "masks" / f"a{i}.{ext}",
            disc_mask(levels),
            **({"quality": 75} if ext == "jpg" else {}),
        )
    return root


def make_isic(root: Path) -> Path:
    save(root / "ISIC-2017_Training_Data" / "ISIC_0000000.jpg", np.zeros((16, 16, 3), np.uint8))
    save(
        root / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000000_segmentation.png",
        np.zeros((16, 16), np.uint8),
    )
    return root


def check_one_line(capsys, argv: list[str], *must: str) -> str:
    """``data check`` exits 1 with exactly one error line naming ``must``, no traceback."""
    assert main(["data", "check", "--data", *argv]) == 1
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segshield data check: error: "), cap.err
    assert "Traceback" not in cap.err and cap.out == ""
    for text in must:
        assert text in lines[0]
    return lines[0]


# -- wrong layouts --------------------------------------------------------------------------


def test_isic_on_an_empty_folder_is_one_error_naming_it(tmp_path, capsys):
    empty = tmp_path / "EMPTY"
    empty.mkdir()
    with pytest.raises(MissingFolderError) as exc:
        load_dataset(f"isic:{empty}")
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, FileNotFoundError)
    assert str(exc.value).startswith(f"{empty}: no ISIC folders found")
    assert str(exc.value).endswith("the folder is empty")
    check_one_line(capsys, [f"isic:{empty}"], str(empty), "the folder is empty")


def test_images_without_masks_names_the_missing_folder(tmp_path, capsys):
    root = tmp_path / "d"
    save(root / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"found the sub-folders images/; add masks/ with one"):
        load_dataset(f"folder:{root}")
    check_one_line(capsys, [f"folder:{root}"], "add masks/ with one mask per image")


def test_folder_pointed_at_an_isic_layout_names_the_right_spec(tmp_path, capsys):
    root = make_isic(tmp_path / "isic")
    with pytest.raises(MissingFolderError) as exc:
        load_dataset(f"folder:{root}")
    msg = str(exc.value)
    assert "found the sub-folders ISIC-2017_Training_Data/, ISIC-2017_Training_Part1" in msg
    assert msg.endswith(f"{root} looks like the isic layout: use the data spec 'isic:{root}'")
    check_one_line(capsys, [f"folder:{root}"], f"'isic:{root}'")
    # the right spec loads it
    assert len(load_dataset(f"isic:{root}")) == 1


def test_isic_pointed_at_a_folder_layout_names_folder(tmp_path):
    root = make_pairs(tmp_path / "f", 2)
    with pytest.raises(MissingFolderError, match=f"use the data spec 'folder:{root}'"):
        load_dataset(f"isic:{root}")


def test_missing_root_is_a_missing_folder_error(tmp_path):
    with pytest.raises(MissingFolderError, match="no such folder for folder"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")


def test_no_usable_pairs_is_a_dataset_error(tmp_path, capsys):
    root = tmp_path / "d"
    save(root / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    save(root / "masks" / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match="no usable image/mask pairs"):
        load_dataset(f"folder:{root}")
    check_one_line(capsys, [f"folder:{root}"], "no usable image/mask pairs", "a.png")


def test_misspelt_kind_lists_the_valid_ones(capsys):
    with pytest.raises(ValueError, match="unknown data-set kind 'isci'.*isic, ph2"):
        load_dataset("isci:/x")
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--data", "isci:/x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "expected one of phantom-derm" in err


# -- lossy masks and class counts -----------------------------------------------------------


def test_lossy_levels_reference_cases(tmp_path):
    jpeg_binary = np.asarray(Image.open(save(tmp_path / "m.jpg", disc_mask(), quality=75))).astype(
        np.int64
    )
    assert len(np.unique(jpeg_binary)) > 8  # the artefacts this is about
    assert lossy_levels(jpeg_binary) == (0, 255)
    assert lossy_levels(disc_mask().astype(np.int64)) is None  # clean 0/255
    ids = (np.arange(32 * 32).reshape(32, 32) % 12).astype(np.int64)  # 12 class ids
    assert lossy_levels(ids) is None
    ramp = np.tile(np.arange(256), (4, 1)).astype(np.int64)  # a smooth grey picture
    assert lossy_levels(ramp) is None
    assert lossy_levels(np.full((4, 4), 300)) is None  # 16-bit values: not judged


def test_jpeg_masks_are_refused_with_the_threshold_fix_and_binarize_loads_them(tmp_path, capsys):
    root = make_pairs(tmp_path / "fundus", 4, ext="jpg")
    with pytest.raises(DatasetError) as exc:
        load_dataset(f"folder:{root}")
    msg = str(exc.value)
    assert msg.startswith(str(root / "masks" / "a0.jpg") + ": the mask has ")
    assert "clustered near 0 and 255" in msg and "',binarize=127'" in msg
    check_one_line(capsys, [f"folder:{root}"], "a0.jpg", "binarize=127")

    ds = load_dataset(f"folder:{root},binarize=127")
    assert ds.class_names == ("background", "class1") and ds.num_classes == 2
    raw = np.asarray(Image.open(root / "masks" / "a0.jpg")).astype(np.int64)
    np.testing.assert_array_equal(ds[ds.names.index("a0")]["mask"].numpy(), raw > 127)
    assert main(["-q", "data", "check", "--data", f"folder:{root},binarize=127"]) == 0
    assert "problems: 0" in capsys.readouterr().out


def test_jpeg_three_level_masks_say_lossless_or_two_classes(tmp_path):
    root = make_pairs(tmp_path / "refugeish", 2, levels=(255, 128, 0), ext="jpg")
    with pytest.raises(DatasetError, match=r"near 0, 1\d\d and 255.*save the masks losslessly"):
        load_dataset(f"folder:{root}")


def test_many_inferred_classes_without_names_are_a_problem(tmp_path, capsys):
    root = make_pairs(tmp_path / "grey", 3, levels=(0, 128, 255))  # PNG, exact values
    ds = load_dataset(f"folder:{root}")
    assert ds.num_classes == 129 > MANY_CLASSES
    assert len(ds.problems) == 1 and "class ids up to 128 (129 classes)" in ds.problems[0]
    assert main(["-q", "data", "check", "--data", f"folder:{root}"]) == 1
    out = capsys.readouterr().out
    assert "problems: 1" in out and "',binarize=127'" in out and "',names=background/" in out
    # naming the classes says how many there are: the stray values are then reported
    named = load_dataset(f"folder:{root},names=background/rim/cup")
    assert named.class_names == ("background", "rim", "cup") and named.problems == []
    assert named.regions == {"foreground": (1, 2)}
    with pytest.raises(ValueError, match=r"mask values \[128\] are not class ids"):
        named[0]


def test_a_few_classes_are_not_flagged(tmp_path):
    root = make_pairs(tmp_path / "ids", 2, levels=(0, 1, 2))
    ds = load_dataset(f"folder:{root}")
    assert ds.class_names == ("background", "class1", "class2") and ds.problems == []


# -- spec options ---------------------------------------------------------------------------


def test_spec_options_parse_and_keep_commas_in_paths():
    assert parse_spec("folder:/d,binarize=127") == ("folder", Path("/d"))
    assert parse_options("folder:/d, binarize = 60/2 ,names=bg/disc") == {
        "binarize": 30,
        "names": ("bg", "disc"),
    }
    assert parse_spec("folder:/a,b/c") == ("folder", Path("/a,b/c"))
    assert parse_options("folder:/a,b/c") == {}
    assert parse_options("isic:/d") == {} and parse_options("phantom-derm") == {}


@pytest.mark.parametrize(
    "spec,match",
    [
        ("folder:/d,bin=3", r"unknown option 'bin' for folder.*binarize=, names="),
        ("isic:/d,binarize=3", r"unknown option 'binarize' for isic.*options of isic: none"),
        ("folder:/d,binarize=3,binarize=4", "option 'binarize' given twice"),
        ("folder:/d,binarize=255", r"binarize='255'.*expected an integer threshold 0\.\.254"),
        ("folder:/d,binarize=half", "binarize='half'"),
        ("folder:/d,names=bg", r"names='bg'.*2\+ names"),
        ("folder:/d,names=bg/bg", "distinct and non-empty"),
        ("folder:,binarize=3", "folder needs a folder"),
    ],
)
def test_bad_spec_options(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(spec)


def test_bad_option_is_a_usage_error_in_data_check(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", "--data", "folder:/x,binarize=-1"])
    assert exc.value.code == 2 and "binarize='-1'" in capsys.readouterr().err
