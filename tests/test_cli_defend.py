"""``segshield defend`` and ``segshield defenses`` end to end on small generated files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import segshield
from segshield.cli.main import main
from segshield.defenses import FrequencyRefinement
from segshield.utils.imageio import decode_png16, encode_png16, read_image


def rng_image(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    hi = 256 if dtype == np.uint8 else 65536
    return np.random.default_rng(seed).integers(0, hi, shape).astype(dtype)


def digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def image_folder(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(rng_image((30, 41, 3))).save(src / "rgb.png")
    Image.fromarray(rng_image((17, 23, 4), seed=1)).save(src / "rgba.png")
    Image.fromarray(rng_image((20, 20), seed=2)).save(src / "sub" / "grey.bmp")
    Image.fromarray(rng_image((16, 24, 3), seed=3)).save(src / "sub" / "photo.jpg", quality=90)
    Image.fromarray(rng_image((19, 13), np.uint16, seed=4)).save(src / "sub" / "grey16.png")
    Image.fromarray(rng_image((12, 9, 3), seed=5)).save(src / "sub" / "scan.tif")
    (src / "sub" / "rgb16.png").write_bytes(encode_png16(rng_image((14, 11, 3), np.uint16, 6)))
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return src


def test_folder_with_corrupt_file(image_folder, tmp_path, caplog, capsys):
    before = digest(image_folder)
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="segshield"):
        code = main(["defend", str(image_folder), "-o", str(out), "--defense", "fr:pad=zero"])
    assert code == 1
    assert "broken.png" in caplog.text
    assert digest(image_folder) == before  # inputs untouched
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == [
        "rgb.png",
        "rgba.png",
        "sub/grey.png",
        "sub/grey16.png",
        "sub/photo.png",
        "sub/rgb16.png",
        "sub/scan.png",
    ]
    assert "failed 1" in capsys.readouterr().out
    # same bit depth and channel count, and the values are the library's FR; alpha untouched
    fr = FrequencyRefinement(pad="zero")
    for name in ("rgb.png", "rgba.png", "sub/grey.bmp", "sub/grey16.png", "sub/rgb16.png"):
        src = read_image(image_folder / name)
        got = read_image(out / (name.rsplit(".", 1)[0] + ".png"))
        assert got.dtype == src.dtype and got.shape == src.shape, name
        np.testing.assert_array_equal(got[..., :3], fr(src[..., :3]))
        np.testing.assert_array_equal(got[..., 3:], src[..., 3:])


def test_identity_round_trip_keeps_16_bit_exactly(tmp_path):
    arr = rng_image((9, 10, 4), np.uint16, seed=7)
    src = tmp_path / "a16.png"
    src.write_bytes(encode_png16(arr))
    out = tmp_path / "o"
    assert main(["defend", str(src), "-o", str(out), "--defense", "none"]) == 0
    np.testing.assert_array_equal(read_image(out / "a16.png"), arr)


def test_existing_outputs_skipped_unless_overwrite(tmp_path):
    src = tmp_path / "x.png"
    Image.fromarray(rng_image((16, 16, 3))).save(src)
    out = tmp_path / "o"
    assert main(["defend", str(src), "-o", str(out), "--defense", "bitdepth:bits=1"]) == 0
    first = (out / "x.png").read_bytes()
    assert main(["defend", str(src), "-o", str(out), "--defense", "bitdepth:bits=1"]) == 0
    assert (out / "x.png").read_bytes() == first  # skipped
    (out / "x.png").write_bytes(b"stale")  # --overwrite redoes it
    argv = ["defend", str(src), "-o", str(out), "--defense", "bitdepth:bits=1", "--overwrite"]
    assert main(argv) == 0
    assert (out / "x.png").read_bytes() == first


@pytest.mark.parametrize(
    ("make_args", "match"),
    [
        (lambda d: [str(d / "in"), "-o", str(d / "in" / "out")], "inside the input folder"),
        (lambda d: [str(d / "in"), "-o", str(d / "in")], "inside the input folder"),
        (lambda d: [str(d / "in" / "a.png"), "-o", str(d / "in")], "overwrite the input"),
        (lambda d: [str(d / "in"), str(d / "in" / "a.png"), "-o", str(d / "o")], "both"),
        (lambda d: [str(d / "missing"), "-o", str(d / "o")], "missing"),
        (lambda d: [str(d / "in"), "-o", str(d / "o"), "--defense", "fr:bad=1"], "pd, ac"),
        (lambda d: [str(d / "in"), "-o", str(d / "in" / "a.png")], "not a folder"),
        (lambda d: [str(d / "in"), "-o", str(d / "o"), "--device", "cuda:99"], "--device"),
        (lambda d: [str(d / "empty"), "-o", str(d / "o")], "no images"),
    ],
)
def test_refusals(tmp_path, capsys, make_args, match):
    (tmp_path / "in").mkdir()
    (tmp_path / "empty").mkdir()
    Image.fromarray(rng_image((8, 8, 3))).save(tmp_path / "in" / "a.png")
    before = digest(tmp_path / "in")
    with pytest.raises(SystemExit) as err:
        main(["defend", *make_args(tmp_path)])
    assert err.value.code == 2
    assert match in capsys.readouterr().err
    assert digest(tmp_path / "in") == before
    assert not (tmp_path / "o").exists()


def test_defenses_lists_registry(capsys):
    assert main(["defenses"]) == 0
    text = capsys.readouterr().out
    for name in ("fr", "jpeg", "fd", "bitdepth", "median", "gaussian", "none"):
        assert f"| {name} |" in text
    assert "pd=30" in text and "bpda / smooth" in text
    assert main(["defenses", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in items} >= {"fr", "jpeg"}


@pytest.mark.parametrize("shape", [(13, 11), (13, 11, 3), (9, 8, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_forward_numpy_is_the_numpy_forward_on_a_device(shape, dtype, device):
    fr = FrequencyRefinement(pad="zero").to(device)
    arr = rng_image(shape, dtype, seed=8)
    got = fr.forward_numpy(arr, device)
    assert got.dtype == arr.dtype and got.shape == arr.shape
    want = FrequencyRefinement(pad="zero")(arr)
    if device.type == "cpu":
        np.testing.assert_array_equal(got, want)
    else:  # another float64 matmul may round a .5 the other way
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert not np.array_equal(got, arr)


# --- one output folder, one defence ------------------------------------------------------


def one_image(tmp_path, name="x.png", shape=(16, 16, 3)):
    src = tmp_path / name
    Image.fromarray(rng_image(shape)).save(src)
    return src


def test_another_defence_into_a_recorded_folder_is_refused(tmp_path, capsys):
    src, out = one_image(tmp_path), tmp_path / "o"
    assert main(["defend", str(src), "-o", str(out), "--defense", "bitdepth:bits=1"]) == 0
    record = json.loads((out / "segshield-defend.json").read_text())
    assert record["defense"] == "bitdepth:bits=1,gradient=bpda"
    before = digest(out)
    for extra in ([], ["--overwrite"]):
        with pytest.raises(SystemExit) as err:
            main(["defend", str(src), "-o", str(out), "--defense", "none", *extra])
        assert err.value.code == 2
        msg = capsys.readouterr().err
        assert "holds images defended with --defense bitdepth:bits=1,gradient=bpda" in msg
        assert "this run asks for --defense none. Choose another output folder" in msg
        assert digest(out) == before


def test_outputs_without_a_record_need_overwrite(tmp_path, capsys):
    src, out = one_image(tmp_path), tmp_path / "o"
    out.mkdir()
    (out / "x.png").write_bytes(b"written by someone else")
    with pytest.raises(SystemExit) as err:
        main(["defend", str(src), "-o", str(out), "--defense", "none"])
    assert err.value.code == 2
    assert "already holds 1 of the outputs" in capsys.readouterr().err
    assert main(["defend", str(src), "-o", str(out), "--defense", "none", "--overwrite"]) == 0
    np.testing.assert_array_equal(read_image(out / "x.png"), read_image(src))


def test_an_unreadable_record_is_named(tmp_path, capsys):
    src, out = one_image(tmp_path), tmp_path / "o"
    out.mkdir()
    (out / "segshield-defend.json").write_text("{truncated")
    with pytest.raises(SystemExit) as err:
        main(["defend", str(src), "-o", str(out)])
    assert err.value.code == 2
    assert f"--output: cannot read {out / 'segshield-defend.json'} (" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["/proc/segshield-test/out", "FILE/sub"])
def test_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch, where):
    import segshield.defenses.files as files

    src = one_image(tmp_path)
    where = where.replace("FILE", str(src))
    calls = []
    monkeypatch.setattr(files, "defend_image_file", lambda *a: calls.append(a))
    with pytest.raises(SystemExit) as err:
        main(["defend", str(src), "-o", where])
    assert err.value.code == 2
    assert f"--output {where}: cannot create or write this folder" in capsys.readouterr().err
    assert calls == []


# --- image layouts --------------------------------------------------------------------------


def test_exif_orientation_6_jpeg_is_written_upright(tmp_path):
    src = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng_image((8, 24, 3))).save(src, exif=exif, quality=95)
    out = tmp_path / "o"
    assert main(["defend", str(src), "-o", str(out), "--defense", "none"]) == 0
    with Image.open(src) as im:
        upright = np.asarray(ImageOps.exif_transpose(im))
    with Image.open(out / "phone.png") as im:
        assert im.size == (8, 24) and 0x0112 not in im.getexif()
        np.testing.assert_array_equal(np.asarray(im), upright)


def test_modes_are_kept_and_alpha_is_untouched(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgba = rng_image((12, 10, 4), seed=1)
    rgba[:, :, 3] = 128
    Image.fromarray(rgba).save(src / "rgba.png")
    la = rng_image((12, 10, 2), seed=2)
    Image.fromarray(la).save(src / "la.png")
    bits = rng_image((12, 10), seed=3) > 127
    Image.fromarray(bits).save(src / "bits.png")
    la16 = rng_image((9, 11, 2), np.uint16, seed=4)
    (src / "la16.png").write_bytes(encode_png16(la16))
    out = tmp_path / "o"
    fr = FrequencyRefinement()
    assert main(["defend", str(src), "-o", str(out), "--defense", "fr"]) == 0
    with Image.open(out / "rgba.png") as im:
        assert im.mode == "RGBA"
        got = np.asarray(im)
    np.testing.assert_array_equal(got[:, :, 3], rgba[:, :, 3])  # 128 stays 128
    np.testing.assert_array_equal(got[:, :, :3], fr(rgba[:, :, :3]))
    with Image.open(out / "la.png") as im:
        assert im.mode == "LA"
        got = np.asarray(im)
    np.testing.assert_array_equal(got[:, :, 1], la[:, :, 1])
    np.testing.assert_array_equal(got[:, :, 0], fr(la[:, :, 0]))
    with Image.open(out / "bits.png") as im:
        assert im.mode == "1"
        got = np.asarray(im)
    np.testing.assert_array_equal(got, fr(bits.astype(np.uint8) * 255) >= 128)
    got16 = decode_png16((out / "la16.png").read_bytes())
    assert got16.shape == (9, 11, 2)
    np.testing.assert_array_equal(got16[:, :, 1], la16[:, :, 1])
    np.testing.assert_array_equal(got16[:, :, 0], fr(la16[:, :, 0]))


def test_bad_entries_are_named_and_the_rest_defended(tmp_path, caplog, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng_image((8, 8, 3))).save(src / "good.png")
    pages = [Image.fromarray(rng_image((4, 4), seed=s)) for s in range(2)]
    pages[0].save(src / "stack.tif", save_all=True, append_images=pages[1:])
    os.symlink(src / "gone.png", src / "dangling.png")
    os.symlink(src / "loop.png", src / "loop.png")
    (src / "x.png").mkdir()
    out = tmp_path / "o"
    with caplog.at_level(logging.ERROR, logger="segshield"):
        assert main(["defend", str(src), "-o", str(out), "--defense", "none"]) == 1
    assert "failed 4" in capsys.readouterr().out
    for text in (
        "stack.tif: holds 2 pages",
        "dangling.png: a dangling symbolic link",
        "loop.png: a symbolic link loop",
        "x.png: a folder, not an image file",
    ):
        assert text in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "segshield-defend.json"]


def test_only_bad_entries_is_a_usage_error_naming_them(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "x.png").mkdir()
    with pytest.raises(SystemExit) as err:
        main(["defend", str(src), "-o", str(tmp_path / "o")])
    assert err.value.code == 2
    assert "no images found" in (msg := capsys.readouterr().err) and "x.png: a folder" in msg


# --- kill -9 and resume -----------------------------------------------------------------------


@pytest.mark.slow  # a subprocess that imports torch
def test_kill_9_then_rerun_completes_without_temp_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(40):
        Image.fromarray(rng_image((96, 96, 3), seed=i)).save(src / f"{i:02d}.png")
    out = tmp_path / "o"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from segshield.cli.main import main; sys.exit(main(sys.argv[1:]))",
        "defend",
        str(src),
        "-o",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(segshield.__file__).parents[1])}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.glob("[0-9]*.png")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stale = out / f".00.png.segshield-{dead_pid()}.abcdefgh.tmp"
    stale.write_bytes(b"half")  # as a kill during a write leaves it (if this kill did not)
    assert main(["defend", str(src), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:02d}.png" for i in range(40)]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    fr = FrequencyRefinement()
    for i in (0, 39):
        np.testing.assert_array_equal(
            read_image(out / f"{i:02d}.png"), fr(read_image(src / f"{i:02d}.png"))
        )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_link_to_an_image_outside_the_folder_is_defended(tmp_path):
    (tmp_path / "in").mkdir()
    target = one_image(tmp_path, "outside.png")
    os.symlink(target, tmp_path / "in" / "link.png")
    out = tmp_path / "o"
    assert main(["defend", str(tmp_path / "in"), "-o", str(out), "--defense", "none"]) == 0
    np.testing.assert_array_equal(read_image(out / "link.png"), read_image(target))


def test_plan_outputs_moved_with_a_deprecation_alias():
    import segshield.cli.defend as cli_defend
    from segshield.defenses.files import plan_outputs

    with pytest.warns(DeprecationWarning, match="use segshield.defenses.files.plan_outputs"):
        assert cli_defend.plan_outputs is plan_outputs
