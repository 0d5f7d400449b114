"""``segshield data check``: report contents, exit codes, argument validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segshield.cli.data import parse_size_arg
from segshield.cli.main import main


def make_folder(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(1)
    for i in range(n):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
            root / "images" / f"a{i}.png"
        )
        m = np.zeros((10, 12), np.uint8)
        m[:, :3] = 255  # lesion fraction 3/12 = 0.25
        Image.fromarray(m).save(root / "masks" / f"a{i}.png")
    return root


def test_check_clean_folder_exit_0_and_report(tmp_path, capsys):
    root = make_folder(tmp_path / "d", 20)
    assert main(["data", "check", "--data", f"folder:{root}"]) == 0
    out = capsys.readouterr().out
    assert "train: 14 pairs" in out and "val  : 3 pairs" in out and "test : 3 pairs" in out
    assert "20 of 20 pairs read" in out
    assert "10x12 (20)" in out and "channels: 3 (20)" in out
    assert "background 0.7500, class1 0.2500" in out
    assert "problems: 0" in out


def test_check_with_problems_exit_1_and_names_them(tmp_path, capsys):
    root = make_folder(tmp_path / "d", 3)
    (root / "images" / "bad.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(root / "masks" / "bad.png")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(root / "masks" / "extra.png")
    assert main(["data", "check", "--data", f"folder:{root}", "--size", "8x16"]) == 1
    out = capsys.readouterr().out
    assert "problems: 2" in out and "bad.png" in out and "extra.png" in out
    assert "class fractions at (8, 16)" in out


def test_check_phantom(capsys):
    assert main(["data", "check", "--data", "phantom-fundus", "-n", "10", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "classes: background, rim, cup" in out and "32x32 (10)" in out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--data", "bogus:/x"], "unknown data-set kind 'bogus'"),
        (["--data", "isic:/definitely/not/here"], "--data: /definitely/not/here does not exist"),
        (["--data", "phantom-derm", "--size", "12q"], "--size: expected S or HxW"),
        (["--data", "phantom-derm", "--size", "4"], "--size: expected a value in"),
        (["--data", "phantom-derm", "--split", "dev"], "--split"),
        (["--data", "phantom-derm", "--resize", "crop"], "--resize"),
        (["--data", "phantom-derm", "-n", "0"], "-n"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "check", *argv])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_parse_size_arg():
    assert parse_size_arg(None) is None
    assert parse_size_arg("128") == 128
    assert parse_size_arg("192x256") == (192, 256)
    with pytest.raises(ValueError, match="--size"):
        parse_size_arg("1x2x3")
