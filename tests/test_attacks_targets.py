"""Target masks: derangement of the batch, empty, full, shift, scale, fundus cup-up."""

from __future__ import annotations

import pytest
import torch

from segshield.attacks import derangement, list_targets, make_targets


def _masks(b=5, h=12, w=12):
    m = torch.zeros(b, h, w, dtype=torch.long)
    for i in range(b):
        m[i, i : i + 4, 2 : 6 + i] = 1
    m[:, 0, 0] = 255
    return m


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_has_no_fixed_point_and_repeats(n):
    for seed in range(5):
        p = derangement(n, seed)
        assert sorted(p.tolist()) == list(range(n))
        assert all(p[i] != i for i in range(n))
        assert torch.equal(p, derangement(n, seed))
    if n > 3:
        assert len({tuple(derangement(n, s).tolist()) for s in range(10)}) > 1


def test_other_gt_takes_another_images_mask():
    m = _masks()
    t = make_targets("other-gt", m, seed=4)
    perm = derangement(5, 4)
    for i in range(5):
        assert torch.equal(t[i], m[perm[i]])
        assert not torch.equal(t[i], m[i])
    with pytest.raises(ValueError, match="at least 2"):
        make_targets("other-gt", m[:1])


def test_empty_full_keep_ignore():
    m = _masks()
    e = make_targets("empty", m)
    assert (e[:, 1:, :] == 0).all() and (e[:, 0, 0] == 255).all()
    f = make_targets("full", m, cls=2)
    assert ((f == 2) | (m == 255)).all() and (f[:, 0, 0] == 255).all()


def test_shift_moves_the_mask():
    m = _masks(b=2)
    s = make_targets("shift", m, dx=2, dy=-1)
    m0 = m.masked_fill(m == 255, 0)
    expect = torch.zeros_like(m)
    expect[:, :-1, 2:] = m0[:, 1:, :-2]
    expect[:, 0, 0] = 255
    assert torch.equal(s, expect)
    with pytest.raises(TypeError, match="dx"):
        make_targets("shift", m, dx=1.5)


def test_scale_changes_area_about_centroid():
    m = torch.zeros(1, 32, 32, dtype=torch.long)
    m[0, 12:20, 10:18] = 1  # 8x8 square, centroid (15.5, 13.5)
    big = make_targets("scale", m, factor=2.0)
    small = make_targets("scale", m, factor=0.5)
    assert 3.5 * 64 <= int(big.sum()) <= 4.5 * 64
    assert 0.15 * 64 <= int(small.sum()) <= 0.4 * 64
    ys, xs = torch.nonzero(big[0], as_tuple=True)
    assert abs(ys.double().mean() - 15.5) < 1 and abs(xs.double().mean() - 13.5) < 1
    assert torch.equal(make_targets("scale", m, factor=1.0), m)
    with pytest.raises(ValueError, match="factor"):
        make_targets("scale", m, factor=0)


def test_cup_up_raises_the_vertical_cup_to_disc_ratio():
    m = torch.zeros(1, 40, 40, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    r2 = (yy - 20) ** 2 + (xx - 20) ** 2
    m[0][r2 <= 14**2] = 1
    m[0][r2 <= 5**2] = 2
    t = make_targets("cup-up", m, factor=2.0)

    def vheight(mask):
        rows = mask.any(1).nonzero()
        return int(rows.max() - rows.min() + 1)

    cdr0 = vheight(m[0] == 2) / vheight(m[0] >= 1)
    cdr1 = vheight(t[0] == 2) / vheight(t[0] >= 1)
    assert cdr1 > cdr0 * 1.6
    assert torch.equal(t >= 1, m >= 1)  # the disc is unchanged
    with pytest.raises(ValueError, match="factor"):
        make_targets("cup-up", m, factor=0.5)


def test_bad_kind_and_params_list_the_valid_ones():
    m = _masks()
    with pytest.raises(ValueError, match="'other-gt', 'empty', 'full', 'shift'"):
        make_targets("other", m)
    with pytest.raises(ValueError, match="valid: dx, dy"):
        make_targets("shift", m, factor=2)
    with pytest.raises(TypeError, match="masks"):
        make_targets("empty", m.float())
    assert list_targets()["scale"] == ("factor",)


def test_lesion_down_shrinks_the_lesion_area():
    m = torch.zeros(2, 32, 32, dtype=torch.long)
    m[:, 8:24, 8:24] = 1
    m[1, 0, 0] = 255
    t = make_targets("lesion-down", m, factor=0.5)
    area = (t == 1).flatten(1).sum(1)
    assert torch.all(area <= 0.3 * 256) and torch.all(area >= 0.2 * 256)
    assert t[1, 0, 0] == 255  # ignore kept
    with pytest.raises(ValueError, match="factor"):
        make_targets("lesion-down", m, factor=1.5)
