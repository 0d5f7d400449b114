"""Cup-to-disc ratio, glaucoma call, downstream fundus/lesion values, target transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segshield.diagnosis import (
    cdr_from_mask,
    downstream_fundus,
    downstream_lesion,
    enlarge_cup,
    glaucoma_call,
    scale_region,
    shrink_lesion,
    vertical_cdr,
    vertical_extent,
)


def _fundus(h: int, w: int, disc_rows: tuple[int, int], cup_rows: tuple[int, int] | None):
    """Class mask with a rectangular disc and cup over the given row ranges (end excl.)."""
    m = torch.zeros(h, w, dtype=torch.long)
    m[disc_rows[0] : disc_rows[1], 10 : w - 10] = 1
    if cup_rows is not None:
        m[cup_rows[0] : cup_rows[1], w // 2 - 5 : w // 2 + 5] = 2
    return m


def _ref_extent(mask: np.ndarray) -> int:
    rows = np.flatnonzero(mask.any(axis=1))
    return 0 if rows.size == 0 else int(rows[-1] - rows[0] + 1)


def test_contract_disc_100_rows_cup_50_rows_is_half():
    disc = np.zeros((256, 256), dtype=bool)
    disc[60:160, 40:200] = True
    cup = np.zeros_like(disc)
    cup[80:130, 100:140] = True
    assert vertical_cdr(disc, cup) == 0.5
    assert float(vertical_cdr(torch.from_numpy(disc), torch.from_numpy(cup))) == 0.5


def test_vertical_cdr_uses_extent_not_area_and_ignores_holes():
    disc = torch.zeros(120, 120, dtype=torch.bool)
    disc[10:110, 50:52] = True  # thin but tall: 100 rows
    cup = torch.zeros_like(disc)
    cup[20:21, 50] = True
    cup[59:60, 51] = True  # two specks 40 rows apart: rows 20..59 = 40 rows
    assert float(vertical_cdr(disc, cup)) == pytest.approx(0.4)


def test_vertical_cdr_empty_disc_is_nan_and_empty_cup_is_zero():
    disc = torch.zeros(2, 30, 30, dtype=torch.bool)
    cup = torch.zeros_like(disc)
    disc[1, 5:25, 5:25] = True
    out = vertical_cdr(disc, cup)
    assert out.shape == (2,) and out.dtype == torch.float64
    assert math.isnan(out[0].item())
    assert out[1].item() == 0.0


def test_vertical_cdr_batched_matches_reference_on_random_boxes():
    gen = np.random.default_rng(0)
    disc = np.zeros((6, 64, 48), dtype=bool)
    cup = np.zeros_like(disc)
    for i in range(6):
        t, b = sorted(gen.choice(64, 2, replace=False))
        disc[i, t : b + 1, 5:40] = True
        ct = gen.integers(t, b + 1)
        cb = gen.integers(ct, b + 1)
        cup[i, ct : cb + 1, 20:25] = True
    out = vertical_cdr(disc, cup)
    assert isinstance(out, np.ndarray) and out.shape == (6,)
    ref = [_ref_extent(cup[i]) / _ref_extent(disc[i]) for i in range(6)]
    np.testing.assert_allclose(out, ref)


def test_vertical_extent_counts_rows():
    m = torch.zeros(3, 10, 10, dtype=torch.bool)
    m[1, 4, 2] = True
    m[2, 0, 0] = m[2, 9, 9] = True
    assert vertical_extent(m).tolist() == [0, 1, 10]


def test_cdr_from_mask_disc_includes_cup_and_ignores_255():
    m = _fundus(100, 80, (20, 80), (40, 70))
    assert float(cdr_from_mask(m)) == pytest.approx(30 / 60)
    # cup alone, touching top of disc, still counts as disc
    m2 = m.clone()
    m2[10:20, 40] = 2
    assert float(cdr_from_mask(m2)) == pytest.approx(float(vertical_cdr(m2 > 0, m2 == 2)))
    m3 = m.clone()
    m3[0:5, :] = 255  # ignore rows are neither disc nor cup
    assert float(cdr_from_mask(m3)) == pytest.approx(0.5)


def test_cdr_from_mask_matches_vertical_cdr_on_region_masks():
    m = torch.stack([_fundus(64, 64, (5, 55), (20, 30)), _fundus(64, 64, (0, 64), None)])
    np.testing.assert_allclose(cdr_from_mask(m).numpy(), [10 / 50, 0.0])


def test_glaucoma_call_threshold_inclusive_and_configurable():
    cdr = torch.tensor([0.3, 0.59, 0.6, 0.9, float("nan")], dtype=torch.float64)
    assert glaucoma_call(cdr).tolist() == [False, False, True, True, False]
    assert glaucoma_call(cdr, threshold=0.3).tolist() == [True, True, True, True, False]
    assert bool(glaucoma_call(0.65)) is True


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_glaucoma_call_rejects_bad_threshold(bad):
    with pytest.raises(ValueError, match="threshold"):
        glaucoma_call(torch.tensor([0.5]), threshold=bad)


def test_glaucoma_call_rejects_non_number_threshold():
    with pytest.raises(TypeError, match="threshold"):
        glaucoma_call(0.5, threshold="0.6")


def test_bad_inputs_raise_with_argument_name():
    with pytest.raises(TypeError, match="disc: expected a boolean or integer mask"):
        vertical_cdr(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="cup"):
        vertical_cdr(torch.zeros(4, 4, dtype=torch.bool), [[0]])
    with pytest.raises(ValueError, match=r"disc: expected shape \(H, W\) or \(B, H, W\)"):
        vertical_cdr(torch.zeros(1, 1, 4, 4, dtype=torch.bool), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="cup: expected the shape of disc"):
        vertical_cdr(torch.zeros(4, 4, dtype=torch.bool), torch.zeros(5, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        cdr_from_mask(torch.zeros(4, 4, dtype=torch.bool))


def test_downstream_fundus_values_and_flip():
    gt = torch.stack(
        [
            _fundus(80, 60, (10, 70), (30, 50)),  # CDR 20/60
            _fundus(80, 60, (10, 70), (15, 65)),  # CDR 50/60
            _fundus(80, 60, (10, 70), (30, 50)),
        ]
    )
    pred = torch.stack(
        [
            _fundus(80, 60, (10, 70), (15, 65)),  # flips to glaucoma
            _fundus(80, 60, (10, 70), (14, 66)),  # stays glaucoma
            torch.zeros(80, 60, dtype=torch.long),  # disc vanished
        ]
    )
    out = downstream_fundus(pred, gt)
    assert set(out) == {"cdr_pred", "cdr_gt", "cdr_abs_error", "call_pred", "call_gt"} | {
        "call_flipped"
    }
    assert all(v.shape == (3,) for v in out.values())
    np.testing.assert_allclose(out["cdr_gt"].numpy(), [20 / 60, 50 / 60, 20 / 60])
    np.testing.assert_allclose(out["cdr_abs_error"][:2].numpy(), [30 / 60, 2 / 60])
    assert math.isnan(out["cdr_abs_error"][2].item())
    assert out["call_flipped"][:2].tolist() == [1.0, 0.0]
    assert math.isnan(out["call_flipped"][2].item())
    # a higher threshold means neither sample 0 nor 1 is called glaucoma
    hi = downstream_fundus(pred, gt, threshold=0.9)
    assert hi["call_flipped"][:2].tolist() == [0.0, 0.0]


def test_downstream_fundus_errors():
    m = torch.zeros(2, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="gt: expected shape"):
        downstream_fundus(m, m[:1])
    with pytest.raises(TypeError, match="boolean"):
        downstream_fundus(m.bool(), m)
    with pytest.raises(TypeError, match="integer class ids"):
        downstream_fundus(m.float(), m)
    with pytest.raises(ValueError, match="threshold"):
        downstream_fundus(m, m, threshold=2.0)


def test_downstream_lesion_relative_area_error():
    gt = torch.zeros(3, 20, 20, dtype=torch.long)
    gt[0, 0:10, 0:10] = 1
    gt[1, 0:4, 0:5] = 1
    pred = torch.zeros_like(gt)
    pred[0, 0:10, 0:5] = 1  # half the area
    pred[1, 0:4, 0:10] = 1  # twice
    pred[2, 0:3, 0:3] = 1  # gt empty
    out = downstream_lesion(pred, gt)
    np.testing.assert_allclose(out["area_rel_error"][:2].numpy(), [-0.5, 1.0])
    np.testing.assert_allclose(out["area_abs_rel_error"][:2].numpy(), [0.5, 1.0])
    assert math.isnan(out["area_rel_error"][2].item())
    assert out["area_pred"].tolist() == [50.0, 40.0, 9.0]


def test_downstream_lesion_ignores_pixels_ignored_in_gt():
    gt = torch.zeros(1, 10, 10, dtype=torch.long)
    gt[0, :5, :] = 1
    gt[0, 9, :] = 255
    pred = torch.ones_like(gt)
    out = downstream_lesion(pred, gt)
    assert out["area_pred"].item() == 90.0
    assert out["area_rel_error"].item() == pytest.approx(90 / 50 - 1)


def test_enlarge_cup_raises_cdr_and_flips_call():
    m = torch.stack([_fundus(100, 80, (20, 80), (40, 60)), _fundus(100, 80, (20, 80), None)])
    before = cdr_from_mask(m)
    out = enlarge_cup(m, 2.0)
    after = cdr_from_mask(out)
    assert after[0].item() == pytest.approx(2 * before[0].item(), abs=1 / 60)
    assert bool(glaucoma_call(after[0])) and not bool(glaucoma_call(before[0]))
    # disc unchanged, cup inside disc, empty-cup sample untouched, input untouched
    assert torch.equal(out > 0, m > 0)
    assert torch.equal(out[1], m[1])
    assert cdr_from_mask(m)[0].item() == before[0].item()


def test_enlarge_cup_clipped_to_disc_and_keeps_ignore():
    m = _fundus(100, 80, (20, 80), (30, 70)).unsqueeze(0)
    m[0, 0, 0] = 255
    out = enlarge_cup(m, 5.0)
    assert out[0, 0, 0].item() == 255
    assert cdr_from_mask(out).item() == pytest.approx(1.0)
    shrunk = enlarge_cup(m, 0.5)
    assert cdr_from_mask(shrunk).item() == pytest.approx(20 / 60, abs=1 / 60)


def test_shrink_lesion_area_scales_by_factor_squared():
    m = torch.zeros(2, 64, 64, dtype=torch.long)
    m[0, 10:50, 12:52] = 1
    m[0, 63, 63] = 255
    out = shrink_lesion(m, 0.5)
    assert out[0].eq(1).sum().item() == pytest.approx(0.25 * 1600, rel=0.06)
    assert out[0, 63, 63].item() == 255
    assert out[1].eq(0).all()
    assert torch.equal(shrink_lesion(m, 1.0), m)
    # the shrunk lesion lies inside the original one and keeps its centre
    assert bool((out[0] == 1).le(m[0] == 1).all())
    ys, xs = torch.nonzero(out[0] == 1, as_tuple=True)
    assert ys.double().mean().item() == pytest.approx(29.5, abs=0.6)
    assert xs.double().mean().item() == pytest.approx(31.5, abs=0.6)


def test_scale_region_and_transform_errors():
    r = torch.zeros(1, 8, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="factor"):
        scale_region(r, 0.0)
    with pytest.raises(TypeError, match="boolean"):
        scale_region(r.long(), 2.0)
    with pytest.raises(ValueError, match="factor"):
        shrink_lesion(r.long(), 1.5)
    with pytest.raises(ValueError, match="factor"):
        enlarge_cup(r.long(), -1.0)
    with pytest.raises(TypeError, match="boolean"):
        enlarge_cup(r, 2.0)
    with pytest.raises(TypeError, match="boolean"):
        shrink_lesion(r, 0.5)
    with pytest.raises(ValueError, match=r"mask: expected shape \(B, H, W\)"):
        shrink_lesion(r[0].long(), 0.5)


def test_diagnosis_on_device(device):
    m = _fundus(64, 64, (4, 60), (20, 40)).unsqueeze(0).to(device)
    out = downstream_fundus(enlarge_cup(m, 2.0), m)
    assert out["cdr_pred"].device.type == device.type
    assert out["call_flipped"].item() == 1.0


def test_origa_masks_give_plausible_cdr(shared_data):
    from segshield.utils.imageio import read_mask

    folder = shared_data / "origa" / "masks"
    files = sorted(folder.glob("*.png"))[:5]
    if not files:
        pytest.skip("no ORIGA masks under SEGSHIELD_SHARED_DATA/origa/masks")
    for f in files:
        m = torch.from_numpy(read_mask(f))
        cdr = float(cdr_from_mask(m))
        ref = _ref_extent((m == 2).numpy()) / _ref_extent((m > 0).numpy())
        assert 0.2 < cdr < 1.0
        assert cdr == pytest.approx(ref)
