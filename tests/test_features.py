"""Shared vs discriminative maps and actionable removal, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from var_utils.evaluation.features import actionable_removal, top_pixels_mask
from var_utils.refine import refine_all, shared_map


def test_shared_map_hand_example():
    # Element 0: |1| vs |1| -> uniform M, no winner -> min(1, 1) = 1.
    # Element 1: 0.9 vs 0.1 -> M = softmax(9, 1) wins by far -> 0.
    # Element 2: 0.50 vs 0.49 -> M_0 = 1/(1+e^-0.1) = 0.525 -> wins by 0.025 > 0.01 -> 0.
    # Element 3: 0.5 vs 0.4995 -> M_0 - 1/2 = 0.00125 <= 0.01 -> min = 0.4995.
    maps = torch.tensor([[1.0, 0.9, 0.50, 0.5], [1.0, 0.1, 0.49, 0.4995]], dtype=torch.float64)
    expected = torch.tensor([1.0, 0.0, 0.0, 0.4995], dtype=torch.float64)
    assert 1 / (1 + math.exp(-0.1)) - 0.5 > 0.01
    torch.testing.assert_close(shared_map(maps), expected)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_shared_map_properties(num_classes, seed):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randn(num_classes, 3, 8, 8, generator=generator) * 0.05
    maps[:, 0] = maps[0, 0]  # one channel identical for every class: fully shared
    shared = shared_map(maps)
    var = refine_all(maps)
    assert (shared >= 0).all()
    assert (shared <= maps.clamp(min=0)).all(), "shared evidence never exceeds a class's positive evidence"
    assert not ((shared != 0) & (var != 0).any(dim=0)).any(), "shared and discriminative supports are disjoint"
    torch.testing.assert_close(shared[0], maps[0, 0].clamp(min=0))
    permuted = maps[torch.randperm(num_classes, generator=generator)]
    torch.testing.assert_close(shared_map(permuted), shared)


def test_shared_map_is_zero_for_disjoint_evidence():
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, :, :, :2] = 1.0
    maps[1, :, :, 2:] = 1.0
    assert (shared_map(maps) == 0).all()


def test_shared_map_rejects_bad_maps():
    with pytest.raises(ValueError, match="maps"):
        shared_map(torch.ones(1, 4))
    with pytest.raises(ValueError, match="maps"):
        shared_map(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


def test_top_pixels_mask_counts_and_row_major_ties():
    scores = torch.tensor([[[3.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 5.0]]])
    mask = top_pixels_mask(scores, torch.tensor([2, 1]))
    expected = torch.tensor([[[True, True], [False, False]], [[False, False], [False, True]]])
    assert torch.equal(mask, expected)


class HalfSum(nn.Module):
    """Logit 0 = mean of the left half, logit 1 = mean of the right half (1 channel)."""

    def forward(self, x):
        half = x.shape[-1] // 2
        return torch.stack([x[..., :half].mean(dim=(1, 2, 3)), x[..., half:].mean(dim=(1, 2, 3))], dim=1)


def test_actionable_removal_hand_computed():
    image = torch.zeros(1, 1, 2, 4)
    image[..., :2] = 4.0  # left half bright: class 0 wins with logits (4, 0)
    image[..., 3] = 2.0  # one right column: logits (4, 1)
    var_map = torch.zeros(1, 1, 2, 4)
    var_map[..., :2] = 1.0  # VAR selects the left half (4 pixels)
    base_map = torch.zeros(1, 1, 2, 4)
    base_map[..., 3] = 2.0  # base map prefers the right column (2 pixels), then ties in row-major order
    table = actionable_removal(HalfSum(), image, var_map, base_map, torch.tensor([0]), how="zeros")
    row = table.iloc[0]

    def softmax0(a, b):
        return math.exp(a) / (math.exp(a) + math.exp(b))

    assert row["area"] == pytest.approx(0.5)
    assert row["p_before"] == pytest.approx(softmax0(4, 1))
    assert row["p_after_var"] == pytest.approx(softmax0(0, 1))  # left half zeroed
    # Base region: column 3 (2 pixels) then the first two row-major ties (0,0), (0,1): left mean 2, right mean 0.
    assert row["p_after_base"] == pytest.approx(softmax0(2, 0))
    assert bool(row["changed_var"]) and not bool(row["changed_base"])
    assert row["top_after_var"] == 1 and row["top_after_base"] == 0


def test_actionable_removal_rejects_bad_input():
    image = torch.zeros(1, 1, 2, 4)
    with pytest.raises(ValueError, match="var_maps"):
        actionable_removal(HalfSum(), image, torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 2, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="targets"):
        actionable_removal(HalfSum(), image, torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="how"):
        actionable_removal(HalfSum(), image, torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.tensor([0]), how="x")
