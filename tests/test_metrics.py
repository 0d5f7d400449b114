"""Segmentation metrics against hand-computed cases and the docs/ALGORITHMS.md §5 empty rules."""

from __future__ import annotations

import math

import pytest
import torch

from segshield.metrics import (
    compute_dice,
    compute_iou,
    logits_to_mask,
    pixel_accuracy,
    region_scores,
)


def test_iou_dice_hand_computed():
    # pred fg pixels: (0,1),(1,0),(1,1); target fg: (0,1),(1,1),(2,2)
    pred = torch.tensor([[[0, 1, 0], [1, 1, 0], [0, 0, 0]]])
    target = torch.tensor([[[0, 1, 0], [0, 1, 0], [0, 0, 1]]])
    iou = compute_iou(pred, target, 2)
    dice = compute_dice(pred, target, 2)
    # class 1: tp=2 fp=1 fn=1 ; class 0: tp=5 fp=1 fn=1
    assert iou[0, 1].item() == pytest.approx(2 / 4)
    assert dice[0, 1].item() == pytest.approx(4 / 6)
    assert iou[0, 0].item() == pytest.approx(5 / 7)
    assert pixel_accuracy(pred, target)[0].item() == pytest.approx(7 / 9)


def test_empty_rules():
    empty = torch.zeros(1, 4, 4, dtype=torch.long)
    some = empty.clone()
    some[0, 1, 1] = 1
    assert compute_iou(empty, empty, 2)[0, 1].item() == 1.0  # both empty
    assert compute_dice(empty, empty, 2)[0, 1].item() == 1.0
    assert math.isnan(compute_iou(some, empty, 2)[0, 1].item())  # empty GT only: NaN
    assert compute_iou(empty, some, 2)[0, 1].item() == 0.0  # missed lesion


def test_ignore_index_counts_nowhere():
    pred = torch.tensor([[[1, 1], [0, 0]]])
    target = torch.tensor([[[1, 255], [0, 255]]])
    assert compute_iou(pred, target, 2)[0, 1].item() == 1.0
    assert pixel_accuracy(pred, target)[0].item() == 1.0


def test_region_scores_fundus_disc_and_cup():
    pred = torch.tensor([[[0, 1, 2, 2]]])
    target = torch.tensor([[[1, 1, 2, 0]]])
    s = region_scores(pred, target, {"disc": (1, 2), "cup": (2,)})
    assert s["disc"]["iou"].item() == pytest.approx(2 / 4)
    assert s["cup"]["dice"].item() == pytest.approx(2 * 1 / (2 + 1))


def test_logits_to_mask_sigmoid_and_softmax():
    z1 = torch.tensor([[[[-0.5, 0.5]]]])
    assert logits_to_mask(z1).tolist() == [[[0, 1]]]
    z3 = torch.tensor([[[[0.0, 5.0]], [[1.0, 0.0]], [[2.0, 1.0]]]])
    assert logits_to_mask(z3).tolist() == [[[2, 0]]]


def test_bad_inputs_name_the_argument():
    with pytest.raises(TypeError, match="pred"):
        compute_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="target: expected shape"):
        compute_iou(
            torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.long), 2
        )
