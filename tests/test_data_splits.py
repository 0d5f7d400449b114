"""Split helpers of segshield.data.splits: a split as tensors, one split halved."""

from __future__ import annotations

import pytest
import torch

from segshield.data import load_dataset
from segshield.data.splits import (
    SplitTensors,
    disjoint_halves,
    divide_split,
    load_split,
    stack_split,
)


@pytest.mark.parametrize("n", [2, 3, 10, 11])
def test_disjoint_halves_cover_the_range_once(n):
    a, b = disjoint_halves(n, seed=3)
    assert len(a) == n // 2 and len(b) == n - n // 2
    assert sorted(a.tolist() + b.tolist()) == list(range(n))


def test_disjoint_halves_are_the_seeded_permutation_cut_in_two():
    # The division segshield tune has always made: randperm with a private seeded generator.
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(5))
    a, b = disjoint_halves(9, seed=5)
    assert torch.equal(a, perm[:4]) and torch.equal(b, perm[4:])
    assert torch.equal(disjoint_halves(9, seed=5)[0], a)
    assert any(not torch.equal(disjoint_halves(9, seed=s)[0], a) for s in range(6, 10))


def test_disjoint_halves_leave_the_global_generator_alone():
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    disjoint_halves(8, seed=1)
    assert torch.equal(torch.rand(3), want)


def test_disjoint_halves_errors():
    with pytest.raises(ValueError, match="n"):
        disjoint_halves(1)
    with pytest.raises(TypeError, match="seed"):
        disjoint_halves(4, seed=0.5)


def test_divide_split_keeps_images_and_masks_paired():
    x = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 4, 4) / 10
    m = torch.arange(6).view(6, 1, 1).expand(6, 4, 4).clone()
    (xa, ma), (xb, mb) = divide_split(x, m, seed=2)
    assert xa.shape[0] == 3 and xb.shape[0] == 3
    for xs, ms in ((xa, ma), (xb, mb)):
        assert torch.equal((xs[:, 0, 0, 0] * 10).round().long(), ms[:, 0, 0])
    ids = sorted(ma[:, 0, 0].tolist() + mb[:, 0, 0].tolist())
    assert ids == list(range(6))
    with pytest.raises(ValueError, match="masks"):
        divide_split(x, m[:5])


def test_stack_split_and_its_messages():
    ds = load_dataset("phantom-derm", size=16, split="val", n=40)
    x, m = stack_split(ds, limit=3)
    assert x.shape == (3, 3, 16, 16) and m.shape == (3, 16, 16)
    assert torch.equal(x[1], ds[1]["image"]) and torch.equal(m[2], ds[2]["mask"])
    assert stack_split(ds)[0].shape[0] == len(ds)
    one = load_dataset("phantom-derm", size=16, split="val", n=6)
    with pytest.raises(ValueError, match=r"--data: split 'val' has 1 item\(s\); need at least 2"):
        stack_split(one, split="val", arg_prefix="--")
    with pytest.raises(ValueError, match=r"^data: split 'all' has 1 item"):
        stack_split(one)

    class Mixed:
        def __len__(self):
            return 2

        def __getitem__(self, i):
            side = 8 * (i + 1)
            return {"image": torch.zeros(1, side, side), "mask": torch.zeros(side, side)}

    with pytest.raises(ValueError, match="--size: images of split 'x' differ in size.*pass --size"):
        stack_split(Mixed(), split="x", arg_prefix="--")


def test_load_split_reads_the_split_with_its_regions():
    s = load_split("phantom-fundus", "test", size=16, n=40, limit=4, seed=1)
    assert isinstance(s, SplitTensors)
    assert s.images.shape == (4, 3, 16, 16) and s.masks.shape == (4, 16, 16)
    assert s.regions == {"disc": (1, 2), "cup": (2,)}
    ds = load_dataset("phantom-fundus", size=16, split="test", n=40, seed=1)
    assert torch.equal(s.images[3], ds[3]["image"])
    assert s.images.device == torch.device("cpu")
