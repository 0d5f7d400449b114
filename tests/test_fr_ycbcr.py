"""FR in luma and chroma (``fr:space=ycbcr``): conversion, tables, JPEG agreement, tuner.

References are independent of the code under test: Pillow's ``convert("YCbCr")`` and
its libjpeg round trip (quality tables read back from the JPEG file), hand-computed box
averages, and the RGB FR path itself for the default.
"""

from __future__ import annotations

import io
import json
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segshield.cli.main import main
from segshield.defenses import FrequencyRefinement, get_defense
from segshield.defenses.dct import quantize_blocks
from segshield.defenses.tables import IJG_CHROMA, IJG_LUMA, band_table, ijg_table
from segshield.defenses.ycbcr import (
    rgb_to_ycbcr,
    subsample_chroma,
    upsample_chroma,
    ycbcr_to_rgb,
)
from segshield.export import traceable_defense
from segshield.models import build_model, save
from segshield.tuning import SearchSpace, TuneConfig, TuneData, tune_table
from segshield.tuning.objective import candidates_dice
from segshield.tuning.scoring import variant_dice
from segshield.tuning.space import PAPER_CANDIDATE, PAPER_YCBCR, Candidate, stack_tables

SHARED = os.environ.get("SEGSHIELD_SHARED_DATA", "")
ISIC_VAL = Path(SHARED) / "isic2017" / "ISIC-2017_Validation_Data" if SHARED else None


def _smooth_image(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A synthetic 8-bit RGB image: colour gradients, a blob and mild noise (photo-like)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = []
    for _ in range(3):
        a, b, f = g.uniform(0.2, 0.8, 3)
        blob = np.exp(-(((yy - a) ** 2 + (xx - b) ** 2) / 0.05))
        base = 60 + 120 * (a * yy + b * xx) + 60 * blob + 10 * np.sin(8 * f * xx)
        chans.append(base + g.normal(0, 3, (h, w)))
    return np.clip(np.round(np.stack(chans, -1)), 0, 255).astype(np.uint8)


def _tensor(a: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].to(dtype) / 255.0


def _pillow_jpeg(a: np.ndarray, quality: int, **kw) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality, **kw)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).astype(np.float64)


def _mad(y: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(y[0].permute(1, 2, 0).double().numpy() * 255.0 - ref).mean())


# -- conversion and subsampling ---------------------------------------------------------
def test_rgb_to_ycbcr_matches_pillow_within_one_level():
    a = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    ours = rgb_to_ycbcr(_tensor(a, torch.float64) * 255.0)[0].permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(a).convert("YCbCr")).astype(np.float64)
    assert np.abs(ours - pil).max() <= 1.0
    back = ycbcr_to_rgb(rgb_to_ycbcr(_tensor(a, torch.float64) * 255.0))
    assert torch.allclose(back, _tensor(a, torch.float64) * 255.0, atol=1e-9)


def test_subsample_is_a_box_average_and_upsample_the_libjpeg_weights():
    c = torch.arange(30.0).view(1, 1, 5, 6)  # odd height: the last row is repeated
    s = subsample_chroma(c)
    assert s.shape == (1, 1, 3, 3)
    assert s[0, 0, 0, 0].item() == (0 + 1 + 6 + 7) / 4
    assert s[0, 0, 2, 1].item() == (26 + 27 + 26 + 27) / 4
    up = upsample_chroma(torch.tensor([[[[0.0, 16.0], [32.0, 48.0]]]]), 4, 4)
    # (1, 1): 9/16 of (0, 0), 3/16 of (0, 1) and (1, 0), 1/16 of (1, 1)
    assert up[0, 0, 1, 1].item() == pytest.approx((9 * 0 + 3 * 16 + 3 * 32 + 48) / 16)
    assert up[0, 0, 0, 0].item() == 0.0 and up.shape == (1, 1, 4, 4)
    assert torch.equal(
        upsample_chroma(torch.full((1, 2, 3, 3), 7.0), 5, 6), torch.full((1, 2, 5, 6), 7.0)
    )


# -- contract ---------------------------------------------------------------------------
def test_ones_band_table_on_luma_and_chroma_is_the_identity_to_one_level():
    fr = get_defense("fr:space=ycbcr,pd=1,ac=1,gd=1")
    assert fr.space == "ycbcr" and torch.equal(fr.table, torch.ones(8, 8, dtype=torch.float64))
    for seed in range(3):
        x = _tensor(_smooth_image(seed))
        d = (fr(x) - x).abs() * 255
        # steps of 1 round each coefficient (and the 8-bit Y, Cb, Cr samples) by <= 0.5
        assert d.mean() <= 1.0 and d.max() <= 3.0
    fine = get_defense("fr:space=ycbcr,pd=30,ac=5,gd=60")
    assert torch.equal(fine.table, band_table())  # the band table, luma and chroma alike


def test_ijg_tables_and_quality_scaling_equal_what_pillow_writes():
    a = _smooth_image(1)
    for q in (10, 30, 50, 75, 95):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=q)
        tables = Image.open(io.BytesIO(buf.getvalue())).quantization
        assert ijg_table("luma", q).flatten().tolist() == [float(v) for v in tables[0]], q
        assert ijg_table("chroma", q).flatten().tolist() == [float(v) for v in tables[1]], q
    fr = get_defense("fr:space=ycbcr,quality=50,subsample=420")
    assert fr.table[0].flatten().tolist() == list(map(float, IJG_LUMA))
    assert fr.table[1].flatten().tolist() == list(map(float, IJG_CHROMA))
    assert torch.equal(fr.table[1], fr.table[2]) and fr.subsample == "420"


def test_ijg_q50_420_is_close_to_pillow_jpeg_on_synthetic_images():
    fr = get_defense("fr:space=ycbcr,quality=50,subsample=420")
    for seed in range(4):
        a = _smooth_image(seed, 64, 80)
        ref = _pillow_jpeg(a, 50)
        mad = _mad(fr(_tensor(a)), ref)
        # measured 0.6-0.8 levels (libjpeg's integer DCT and 8-bit intermediate planes)
        assert mad <= 1.5, (seed, mad)
        assert mad < 0.5 * float(np.abs(ref - a).mean()) + 1.0  # far closer than JPEG's loss
    q90 = get_defense("fr:space=ycbcr,quality=90")  # 4:4:4 when asked
    a = _smooth_image(7, 64, 80)
    assert _mad(q90(_tensor(a)), _pillow_jpeg(a, 90, subsampling=0)) <= 1.0


@pytest.mark.skipif(
    ISIC_VAL is None or not ISIC_VAL.is_dir(), reason="SEGSHIELD_SHARED_DATA has no isic2017"
)
def test_ijg_q50_420_is_within_1_5_levels_of_pillow_on_isic():
    fr = get_defense("fr:space=ycbcr,quality=50,subsample=420")
    paths = sorted(p for p in ISIC_VAL.glob("*.jpg") if "superpixels" not in p.name)[:12]
    mads = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB"))
        mads.append(_mad(fr(_tensor(a)), _pillow_jpeg(a, 50)))
    assert max(mads) <= 1.5, mads  # measured 1.0-1.3 on these images


# -- the default stays the paper's FR -------------------------------------------------
def test_rgb_stays_the_default_and_bit_identical():
    x = torch.rand(2, 3, 21, 19)
    fr = get_defense("fr")
    assert fr.space == "rgb" and fr.tile_block == 8
    assert torch.equal(fr(x), quantize_blocks(x, band_table()))
    assert fr.spec() == "fr:pd=30,ac=5,gd=60,pd_size=2,ac_size=4,pad=edge,clip=true,gradient=bpda"
    assert torch.equal(get_defense("fr:space=rgb,quality=30")(x), get_defense("fr:quality=30")(x))


def test_table_files_and_specs_carry_the_colour_space(tmp_path):
    fr = get_defense("fr:space=ycbcr,quality=40,subsample=420,gradient=smooth")
    fr.to_file(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["space"] == "ycbcr" and data["subsample"] == "420"
    back = FrequencyRefinement.from_file(tmp_path / "t.json")
    assert (back.space, back.subsample, back.gradient) == ("ycbcr", "420", "smooth")
    assert torch.equal(back.table, fr.table)
    x = torch.rand(1, 3, 16, 24)
    assert torch.equal(back(x), fr(x))
    via_spec = get_defense(f"fr:file={tmp_path / 't.json'}")
    assert torch.equal(via_spec(x), fr(x))
    for spec in (
        fr.spec(),
        "fr:space=ycbcr,chroma=ijg,pd=20",
        "fr:space=ycbcr,luma=" + "/".join(["4"] * 64) + ",chroma=ijg,quality=75",
    ):
        d = get_defense(spec)
        assert torch.equal(get_defense(d.spec()).table, d.table), spec
        assert torch.equal(get_defense(d.spec())(x), d(x)), spec
    FrequencyRefinement().to_file(tmp_path / "rgb.json")  # RGB files as before
    assert "space" not in json.loads((tmp_path / "rgb.json").read_text())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fr:subsample=420", "subsample: only with space='ycbcr'"),
        ("fr:chroma=ijg", "chroma: only with space='ycbcr'"),
        ("fr:luma=ijg,pd=20", "luma: only with space='ycbcr'"),
        ("fr:space=lab", "space: expected one of 'rgb', 'ycbcr', got 'lab'"),
        ("fr:space=ycbcr,subsample=422", "subsample: expected one of '444', '420'"),
        ("fr:space=ycbcr,luma=jpeg", "luma: expected 'ijg' (the standard table) or 64 steps"),
        ("fr:space=ycbcr,table=" + "/".join(["2"] * 128), "(Y, Cb, Cr) steps"),
    ],
)
def test_bad_settings_give_clear_errors(spec, message):
    with pytest.raises(ValueError, match=None) as exc:
        get_defense(spec)
    assert message in str(exc.value)


def test_ycbcr_on_grey_images_says_use_rgb():
    with pytest.raises(ValueError, match="use space='rgb'"):
        get_defense("fr:space=ycbcr")(torch.rand(1, 1, 8, 8))


# -- gradients, export, numpy ---------------------------------------------------------
def test_gradient_policies_as_fr():
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    get_defense("fr:space=ycbcr,subsample=420")(x).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # bpda: identity backward
    x.grad = None
    smooth = get_defense("fr:space=ycbcr,subsample=420,gradient=smooth")
    smooth(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not torch.allclose(x.grad, torch.ones_like(x))


def test_traceable_form_gives_the_eager_numbers():
    x = torch.rand(2, 3, 23, 17)
    for spec in ("fr:space=ycbcr,pd=20,ac=4,gd=40", "fr:space=ycbcr,quality=75,subsample=420"):
        d = get_defense(spec)
        # the 8-bit Y, Cb, Cr samples put some DC/step on a rounding tie, which float
        # summation order may break either way: a few blocks may differ, no more
        diff = (traceable_defense(d)(x) - d(x)).abs()
        assert (diff > 1e-5).float().mean() < 0.02 and diff.max() < 0.1, spec


@pytest.mark.slow
def test_onnx_export_of_ycbcr_fr_matches_pytorch(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from segshield.export import export_defended

    torch.manual_seed(0)
    model = build_model("unet", width=4, depth=2).eval()
    defense = get_defense("fr:space=ycbcr,quality=50,subsample=420")
    export_defended(model, defense, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for shape in ((2, 3, 23, 19), (1, 3, 32, 48)):  # any size: odd ones too
        x = torch.rand(*shape)
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            ref = torch.sigmoid(model(defense(x)))
        assert float((torch.from_numpy(out) - ref).abs().gt(1e-4).float().mean()) < 0.01


def test_forward_numpy_whole_image_for_420_and_tiles_for_444():
    a = _smooth_image(3, 40, 24)
    fr420 = get_defense("fr:space=ycbcr,subsample=420")
    assert fr420.tile_block == 0
    assert np.array_equal(
        fr420.forward_numpy(a),
        np.clip(np.round(fr420(_tensor(a))[0].permute(1, 2, 0).numpy() * 255), 0, 255),
    )
    fr444 = get_defense("fr:space=ycbcr,quality=60")
    assert np.array_equal(fr444.forward_numpy(a, tile_rows=8), fr444.forward_numpy(a))


# -- the tuner ------------------------------------------------------------------------
def test_candidates_in_ycbcr_keep_rgb_keys_and_build_their_fr():
    assert "space" not in PAPER_CANDIDATE.key()
    c = replace(PAPER_YCBCR, chroma_scale=2.0, subsample="420")
    assert json.loads(c.key())["space"] == "ycbcr"
    assert Candidate.from_layout(json.loads(json.dumps(c.__dict__))) == c
    t = c.table()
    assert t.shape == (3, 8, 8) and torch.equal(t[1], 2 * t[0]) and torch.equal(t[1], t[2])
    d = c.defense()
    assert (d.space, d.subsample) == ("ycbcr", "420")
    with pytest.raises(ValueError, match="only for space='ycbcr'"):
        replace(PAPER_CANDIDATE, subsample="420")
    with pytest.raises(ValueError, match="RGB candidates only"):
        replace(PAPER_YCBCR, channel_scales=(1.0, 2.0, 2.0))
    with pytest.raises(ValueError, match="candidates_dice"):
        stack_tables([c], 3)
    space = SearchSpace(spaces=("rgb", "ycbcr"), chroma_scales=(1.0, 2.0), subsamples=("420",))
    moves = space.neighbours(replace(c, chroma_scale=1.0), 3)
    assert {m.space for m in moves} == {"ycbcr"} and any(m.chroma_scale == 2.0 for m in moves)
    assert space.searched_spaces(1) == ("rgb",)
    with pytest.raises(ValueError, match="ycbcr needs RGB images"):
        SearchSpace(spaces=("ycbcr",)).searched_spaces(1)
    with pytest.raises(ValueError, match="spaces: expected one of"):
        SearchSpace(spaces=("lab",))


def test_rgb_only_search_draws_as_before():
    from segshield.tuning.search import _coarse_sample

    space = SearchSpace()
    rng = random.Random(3)  # the draws before colour spaces existed
    shared = [c for c in space.shared_candidates() if c != PAPER_CANDIDATE]
    drawn = rng.sample(shared, 9)
    old = [PAPER_CANDIDATE] + [
        replace(c, channel_scales=rng.choice(space.scale_choices(3))) for c in drawn
    ]
    assert _coarse_sample(space, 3, 20, 3) == old


def test_candidates_dice_scores_ycbcr_through_its_fr():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 1, 3, padding=1)
    x = torch.rand(3, 3, 16, 16)
    m = (x[:, 0] > 0.5).long()
    c = replace(PAPER_YCBCR, subsample="420", chroma_scale=4.0)
    d = candidates_dice(net, x, m, [PAPER_CANDIDATE, c], {"fg": (1,)})
    with torch.no_grad():
        ref = variant_dice(net, c.defense()(x), m, {"fg": (1,)})[0]
        ref_rgb = variant_dice(net, get_defense("fr")(x), m, {"fg": (1,)})[0]
    assert torch.equal(d[1], ref) and torch.equal(d[0], ref_rgb)


def test_tune_both_spaces_reports_each_and_compares_with_every_jpeg(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 1, 3, padding=1)
    x = torch.rand(6, 3, 16, 16)
    m = (x[:, 0] > 0.5).long()
    adv = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    data = TuneData(x, m, x, m, val_adversarial=adv, heldout_adversarial=adv)
    space = SearchSpace(spaces=("rgb", "ycbcr"))
    cfg = TuneConfig(budget=12, jpeg_qualities=(30, 60, 90), max_benign_loss=1.0, space=space)
    res = tune_table(net, data, cfg)
    assert {"tuned:rgb", "tuned:ycbcr", "jpeg:q=30", "jpeg:q=90"} <= set(res.heldout)
    specs = res.config["tuned_per_space"]
    assert get_defense(specs["ycbcr"]).space == "ycbcr" and get_defense(specs["rgb"]).space == "rgb"
    comp = res.jpeg_comparison["tuned:ycbcr"]
    rows = res.heldout
    for q in ("jpeg:q=30", "jpeg:q=60", "jpeg:q=90"):  # the target, recomputed
        beats = rows[q]["benign_loss"] >= rows["tuned:ycbcr"]["benign_loss"] and (
            rows[q]["recovered_dice"] > rows["tuned:ycbcr"]["recovered_dice"]
        )
        assert (q in comp["beaten_by"]) == beats
        pair = comp["paired"][q]["recovered_dice"]
        gap = rows["tuned:ycbcr"]["recovered_dice"] - rows[q]["recovered_dice"]
        assert pair["n"] == 6 and pair["mean"] == pytest.approx(gap)
    as_lossy = [
        q for q in comp["paired"] if rows[q]["benign_loss"] >= rows["tuned:ycbcr"]["benign_loss"]
    ]
    assert comp["target_met"] == (bool(as_lossy) and not comp["beaten_by"])
    assert comp["dominates_every_jpeg"] == (len(comp["dominates"]) == 3)

    res.to_file(tmp_path / "t.json")
    fr = FrequencyRefinement.from_file(tmp_path / "t.json")
    assert fr.space == res.candidate.space
    assert torch.equal(fr(x), res.candidate.defense()(x))


def test_jpeg_comparison_needs_a_jpeg_quality_at_least_as_lossy():
    from segshield.tuning.report import jpeg_comparison

    rows = {
        "tuned": {"benign_loss": 0.05, "recovered_dice": 0.9},  # lossier than every JPEG
        "jpeg:q=50": {"benign_loss": 0.02, "recovered_dice": 0.4},
        "identity": {"benign_loss": 0.0, "recovered_dice": 0.3},
    }
    c = jpeg_comparison(rows)
    assert set(c) == {"tuned"}
    assert c["tuned"]["target_met"] is False and c["tuned"]["beaten_by"] == []
    rows["jpeg:q=30"] = {"benign_loss": 0.06, "recovered_dice": 0.95}
    c = jpeg_comparison(rows)["tuned"]
    assert c["target_met"] is False and c["beaten_by"] == ["jpeg:q=30"]
    rows["jpeg:q=30"]["recovered_dice"] = 0.5
    c = jpeg_comparison(rows)["tuned"]
    assert c["target_met"] and c["dominates"] == ["jpeg:q=30"] and not c["dominates_every_jpeg"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    stem = tmp_path_factory.mktemp("ckpt") / "m"
    save(build_model("small", width=4), stem)
    return str(stem)


def test_cli_tune_space_rgb_ycbcr(checkpoint, tmp_path, capsys):
    out = tmp_path / "t.json"
    argv = ["tune", "--model", checkpoint, "--data", "phantom-derm", "--size", "16"]
    argv += ["--limit", "4", "--attack", "asma:steps=2", "--budget", "6", "--jpeg", "30,90"]
    code = main([*argv, "--space", "rgb,ycbcr", "--subsample", "420", "-o", str(out)])
    assert code in (0, 1)
    data = json.loads(out.read_text())
    assert {"tuned:rgb", "tuned:ycbcr", "jpeg:q=30", "jpeg:q=90"} <= set(data["heldout"])
    assert data["config"]["space"]["spaces"] == ["rgb", "ycbcr"]
    assert "target (recovered Dice >= every JPEG quality" in capsys.readouterr().out
