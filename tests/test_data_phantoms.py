"""Procedural phantoms: determinism, geometry, labels, and that a threshold does not solve them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segshield.data import load_dataset, make_derm_phantom, make_fundus_phantom

MAKERS = [make_derm_phantom, make_fundus_phantom]


def best_threshold_dice(channel: np.ndarray, fg: np.ndarray) -> float:
    """Best Dice of ``channel <= t`` or ``channel > t`` over all 256 thresholds (reference)."""
    ch = channel.astype(np.int64).ravel()
    fg = fg.ravel()
    fg_hist = np.bincount(ch[fg], minlength=256)
    all_hist = np.bincount(ch, minlength=256)
    tp_lo, pred_lo = np.cumsum(fg_hist), np.cumsum(all_hist)
    tp_hi, pred_hi = fg_hist.sum() - tp_lo, all_hist.sum() - pred_lo
    n = fg.sum()
    dice = np.concatenate([2 * tp_lo / (pred_lo + n), 2 * tp_hi / (pred_hi + n)])
    return float(dice.max())


def grey(img: np.ndarray) -> np.ndarray:
    return np.rint(img.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))


@pytest.mark.parametrize("maker", MAKERS)
def test_same_seed_same_bytes_other_seed_differs(maker):
    a = maker(48, seed=5, index=2)
    b = maker(48, seed=5, index=2)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.mask.tobytes() == b.mask.tobytes()
    assert a.meta == b.meta
    assert maker(48, seed=6, index=2).image.tobytes() != a.image.tobytes()
    assert maker(48, seed=5, index=3).image.tobytes() != a.image.tobytes()


@pytest.mark.parametrize("maker", MAKERS)
@pytest.mark.parametrize("size,hw", [(40, (40, 40)), ((36, 60), (36, 60)), ([64, 32], (64, 32))])
def test_any_size(maker, size, hw):
    p = maker(size, seed=0, index=1)
    assert p.image.shape == (*hw, 3) and p.image.dtype == np.uint8
    assert p.mask.shape == hw and p.mask.dtype == np.uint8


@pytest.mark.parametrize("maker", MAKERS)
def test_bad_arguments(maker):
    with pytest.raises(ValueError, match="size"):
        maker(4)
    with pytest.raises(ValueError, match="size"):
        maker((32, 32, 3))
    with pytest.raises(TypeError, match="seed"):
        maker(32, seed=1.5)
    with pytest.raises(ValueError, match="index"):
        maker(32, index=-1)


def test_derm_masks_binary_non_empty_and_labels():
    fracs, malignant = [], []
    for i in range(24):
        p = make_derm_phantom(64, seed=1, index=i)
        assert set(np.unique(p.mask).tolist()) <= {0, 1}
        fracs.append(p.mask.mean())
        m = p.meta
        assert 0.0 <= m["asymmetry"] <= 1.0 and 0.0 <= m["variegation"] <= 1.0
        assert m["malignant"] == int(m["asymmetry"] + m["variegation"] > 1.0)
        malignant.append(m["malignant"])
    assert min(fracs) > 0.01 and max(fracs) < 0.7
    assert 0 < sum(malignant) < len(malignant)  # both labels occur


def test_derm_lesion_differs_from_surrounding_skin():
    """Learnable: the lesion's mean colour stands out from a ring of skin around it."""
    seen = 0
    for i in range(20):
        p = make_derm_phantom(96, seed=2, index=i)
        m = p.mask.astype(bool)
        img = p.image.astype(np.float64) / 255
        t = torch.from_numpy(m.astype(np.float32))[None, None]
        grown = torch.nn.functional.max_pool2d(t, 15, stride=1, padding=7)[0, 0].numpy() > 0
        ring = grown & ~m
        if ring.sum() < 20:
            continue
        seen += 1
        diff = np.linalg.norm(img[m].mean(0) - img[ring].mean(0))
        assert diff > 0.04, f"index {i}: lesion colour too close to the skin ({diff:.3f})"
    assert seen >= 15


def test_fundus_masks_cup_inside_disc_and_cdr_matches_label():
    for i in range(12):
        p = make_fundus_phantom(256, seed=4, index=i)
        vals = set(np.unique(p.mask).tolist())
        assert vals == {0, 1, 2}
        disc_rows = np.nonzero((p.mask >= 1).any(1))[0]
        cup_rows = np.nonzero((p.mask == 2).any(1))[0]
        assert disc_rows.min() <= cup_rows.min() and cup_rows.max() <= disc_rows.max()
        cdr = (cup_rows.max() - cup_rows.min() + 1) / (disc_rows.max() - disc_rows.min() + 1)
        assert abs(cdr - p.meta["cdr"]) < 0.06, (i, cdr, p.meta["cdr"])
        assert p.meta["glaucoma"] == int(p.meta["cdr"] >= 0.6)
        # black outside the circular field of view
        assert p.image[:4, :4].max() < 10 and p.image[-4:, -4:].max() < 10
        # the disc is brighter than the retina on average
        g = grey(p.image)
        assert g[p.mask >= 1].mean() > g[(p.mask == 0) & (g > 20)].mean()


@pytest.mark.parametrize(
    "maker,fg",
    [
        (make_derm_phantom, lambda m: m == 1),
        (make_fundus_phantom, lambda m: m >= 1),
        (make_fundus_phantom, lambda m: m == 2),
    ],
    ids=["derm-lesion", "fundus-disc", "fundus-cup"],
)
def test_no_global_threshold_solves_the_phantoms(maker, fg):
    scores: dict[str, list[float]] = {"grey": [], "r": [], "g": [], "b": []}
    for i in range(30):
        p = maker(80, seed=7, index=i)
        m = fg(p.mask)
        scores["grey"].append(best_threshold_dice(grey(p.image), m))
        for c, k in enumerate("rgb"):
            scores[k].append(best_threshold_dice(p.image[..., c], m))
    for k, v in scores.items():
        assert np.mean(v) < 0.8, f"{k}: a global threshold reaches Dice {np.mean(v):.3f}"


def test_reference_threshold_dice_is_exact_on_a_separable_image():
    ch = np.array([[10, 10, 200, 200]])
    assert best_threshold_dice(ch, ch > 100) == 1.0


def test_load_dataset_phantom_splits_are_disjoint_deterministic_and_cover():
    parts = {
        s: load_dataset("phantom-derm", size=16, split=s, n=40) for s in ("train", "val", "test")
    }
    names = {s: set(d.names) for s, d in parts.items()}
    assert [len(names[s]) for s in ("train", "val", "test")] == [28, 6, 6]
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    everything = set(load_dataset("phantom-derm", size=16, split="all", n=40).names)
    assert names["train"] | names["val"] | names["test"] == everything
    again = load_dataset("phantom-derm", size=16, split="val", n=40)
    assert again.names == parts["val"].names
    assert torch.equal(again[0]["image"], parts["val"][0]["image"])
    other = load_dataset("phantom-derm", size=16, split="val", n=40, seed=1)
    assert set(other.names) != names["val"]


def test_load_dataset_phantom_items():
    ds = load_dataset("phantom-fundus", size=(24, 40), split="train", n=10)
    assert ds.kind == "phantom-fundus" and ds.num_classes == 3
    assert ds.class_names == ("background", "rim", "cup")
    assert ds.regions == {"disc": (1, 2), "cup": (2,)}
    item = ds[0]
    assert item["image"].shape == (3, 24, 40) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["mask"].shape == (24, 40) and item["mask"].dtype == torch.int64
    assert isinstance(item["cdr"], float) and isinstance(item["name"], str)
    # the item is the generator's output, unchanged
    idx = int(item["name"].rsplit("_", 1)[1])
    raw = make_fundus_phantom((24, 40), seed=0, index=idx)
    assert torch.equal(item["mask"], torch.from_numpy(raw.mask.astype(np.int64)))
    assert torch.equal(
        (item["image"] * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(raw.image)
    )
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 24, 40) and batch["cdr"].shape == (4,)


def test_load_dataset_default_size_and_n():
    ds = load_dataset("phantom-derm", n=5)
    assert len(ds) == 5 and ds[0]["image"].shape == (3, 128, 128)
    assert ds.problems == []


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"spec": "phantom-derm:/tmp"}, ValueError, "takes no PATH"),
        ({"spec": "nope"}, ValueError, "phantom-derm, phantom-fundus, isic"),
        ({"spec": 3}, TypeError, "spec"),
        ({"spec": "isic"}, ValueError, "needs a folder"),
        ({"spec": "phantom-derm", "split": "training"}, ValueError, "split"),
        ({"spec": "phantom-derm", "resize": "crop"}, ValueError, "resize"),
        ({"spec": "phantom-derm", "size": 2}, ValueError, "size"),
        ({"spec": "phantom-derm", "n": 0}, ValueError, "n:"),
        ({"spec": "phantom-derm", "seed": -1}, ValueError, "seed"),
    ],
)
def test_load_dataset_bad_arguments(kwargs, exc, match):
    spec = kwargs.pop("spec")
    with pytest.raises(exc, match=match):
        load_dataset(spec, **kwargs)


# --- properties that pin the generators without stored reference images ---------------


@pytest.mark.parametrize("maker", MAKERS)
def test_each_image_is_a_pure_function_of_seed_index_and_size(maker):
    other = make_fundus_phantom if maker is make_derm_phantom else make_derm_phantom
    forward = [maker((40, 56), seed=3, index=i) for i in range(4)]
    for i in reversed(range(4)):
        other(32, seed=3, index=i)  # the other family draws in between
        p = maker((40, 56), seed=3, index=i)
        assert p.image.tobytes() == forward[i].image.tobytes()
        assert p.mask.tobytes() == forward[i].mask.tobytes() and p.meta == forward[i].meta


@pytest.mark.parametrize("maker", MAKERS)
def test_labels_and_geometry_do_not_depend_on_the_resolution(maker):
    # square images draw the same numbers up to the final noise, so the labels are equal
    # and the masks cover the same fraction of the image at any size
    for i in range(6):
        small, large = maker(64, seed=9, index=i), maker(192, seed=9, index=i)
        assert small.meta == large.meta == maker(17, seed=9, index=i).meta
        for cls in (1, 2) if maker is make_fundus_phantom else (1,):
            f_small, f_large = (small.mask >= cls).mean(), (large.mask >= cls).mean()
            assert abs(f_small - f_large) < 0.01, (i, cls, f_small, f_large)


def test_phantom_canvas_and_blend():
    from segshield.data._render import blend, phantom_canvas

    rng, hw, u, v, s = phantom_canvas((8, 12), seed=4, index=5, stream=2)
    assert rng.uniform() == np.random.default_rng([4, 5, 2]).uniform()
    assert hw == (8, 12) and u.shape == v.shape == hw and s == 8.0
    assert u.min() == -u.max() and v.min() == -v.max()  # centred pixel grid
    with pytest.raises(ValueError, match="index"):
        phantom_canvas(8, seed=0, index=-1, stream=1)
    img = np.full((2, 3, 3), 0.5, np.float32)
    layer = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]], np.float32)
    out = blend(img, layer, np.array([1.0, 0.0, 0.2], np.float32), 0.8)
    np.testing.assert_allclose(out[0, 0], img[0, 0])  # no coverage: unchanged
    np.testing.assert_allclose(out[0, 1], 0.2 * 0.5 + 0.8 * np.array([1.0, 0.0, 0.2]), rtol=1e-6)
