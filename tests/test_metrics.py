"""Tests of the localisation metrics against independent references.

References: quantus 0.6.0 (``Focus``, ``PointingGame``), scikit-learn
(precision, recall, F1, Jaccard), scipy (uniform filter for the B-cos
smoothing), numpy re-implementations written from the definitions, and small
hand-computed examples.
"""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from scipy.ndimage import uniform_filter
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from var_utils.evaluation.metrics import (
    binarize,
    cell_mask,
    grid_cell_shares,
    localisation_scores,
    localisation_table,
    pointing_accuracy,
    region_attribution,
)

SEEDS = (0, 1, 2)


# ---------------------------------------------------------------- helpers
def random_maps(seed: int, count: int = 8, channels: int = 3, size: int = 16) -> np.ndarray:
    """Heavy-tailed maps with both signs, float32, (N, C, H, W)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(count, channels, size, size)) * np.exp(rng.normal(size=(count, channels, size, size)))
    return values.astype(np.float32)


def numpy_cell_mask(height: int, width: int, cell: int, grid: tuple[int, int]) -> np.ndarray:
    """Cell mask written from the row-major definition, independent of ``cell_mask``."""
    rows, cols = grid
    row, col = cell // cols, cell % cols
    mask = np.zeros((height, width), dtype=bool)
    cell_h, cell_w = height // rows, width // cols
    mask[row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = True
    return mask


def one_hot(cell: int) -> tuple[int, int, int, int]:
    return tuple(int(index == cell) for index in range(4))


@pytest.fixture(scope="module")
def dummy_model() -> torch.nn.Module:
    """Quantus needs a model even when the attributions are given; it is never used to explain."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))


def quantus_focus(model, maps: np.ndarray, cells) -> np.ndarray:
    metric = quantus.Focus(normalise=False, abs=False, disable_warnings=True)
    inputs = np.zeros_like(maps)  # never read: a_batch is given
    scores = metric(
        model=model,
        x_batch=inputs,
        y_batch=np.zeros(maps.shape[0], dtype=int),
        a_batch=maps,
        custom_batch=[one_hot(int(cell)) for cell in cells],
        channel_first=True,
    )
    return np.asarray(scores, dtype=np.float64)


def quantus_pointing(model, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    metric = quantus.PointingGame(normalise=False, abs=False, disable_warnings=True)
    inputs = np.zeros_like(maps)  # never read: a_batch is given
    scores = metric(
        model=model,
        x_batch=inputs,
        y_batch=np.zeros(maps.shape[0], dtype=int),
        a_batch=maps,
        s_batch=masks[:, None].astype(np.float32),
        channel_first=True,
    )
    return np.asarray(scores, dtype=np.float64)


# ---------------------------------------------------------------- cell_mask
LABELS = [
    # (shape, grid, cell label of every pixel, written out by hand)
    ((4, 4), (2, 2), [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]),
    ((3, 6), (3, 3), [[0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5], [6, 6, 7, 7, 8, 8]]),
    ((2, 3), (2, 3), [[0, 1, 2], [3, 4, 5]]),
]


@pytest.mark.parametrize("shape, grid, labels", LABELS)
def test_cell_mask_is_row_major(shape, grid, labels):
    labels = torch.tensor(labels)
    for cell in range(grid[0] * grid[1]):
        mask = cell_mask(shape, cell, grid)
        assert mask.dtype == torch.bool and mask.shape == shape
        assert torch.equal(mask, labels == cell)


# ---------------------------------------------------------------- region attribution
def test_region_attribution_hand_example():
    attribution = torch.tensor(
        [[1.0, 2.0, -1.0, 0.0], [3.0, -4.0, 0.0, 4.0], [0.0, 0.0, 5.0, -5.0], [-1.0, 0.0, 0.0, 0.0]]
    )
    # Positive mass per cell: 1+2+3, 4, 0, 5 of a total 15.
    expected = [6 / 15, 4 / 15, 0.0, 5 / 15]
    for cell, value in enumerate(expected):
        assert region_attribution(attribution, cell) == pytest.approx(value)
    # A 1x4 grid on the first row: every pixel is a cell; positive values 1 and 2.
    assert region_attribution(attribution[:1], 3, grid=(1, 4)) == pytest.approx(0.0)
    assert region_attribution(attribution[:1], 1, grid=(1, 4)) == pytest.approx(2 / 3)


def test_region_attribution_sums_channels_before_positive_part(dummy_model):
    # Channel 0 says +2 at the top-left pixel, channel 1 says -2 there: no evidence left.
    attribution = np.array([[[2.0, 0.0], [0.0, 0.0]], [[-2.0, 1.0], [0.0, 0.0]]], dtype=np.float32)
    assert region_attribution(attribution, 0) == 0.0
    assert region_attribution(attribution, 1) == 1.0
    # quantus.Focus clips each channel first, so it sees 2 of 3 in cell 0: the documented difference.
    assert quantus_focus(dummy_model, attribution[None], [0])[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_region_attribution_matches_quantus_focus(seed, channels, dummy_model):
    maps = random_maps(seed, channels=channels)
    cells = np.random.default_rng(seed).integers(0, 4, size=len(maps))
    expected = quantus_focus(dummy_model, maps.sum(axis=1, keepdims=True), cells)
    ours = [region_attribution(torch.from_numpy(m), int(c)) for m, c in zip(maps, cells)]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    table = localisation_table(torch.from_numpy(maps), torch.from_numpy(cells))
    np.testing.assert_allclose(table["region_attribution"].numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_region_attribution_matches_focus_on_raw_channels_that_share_a_sign(seed, dummy_model):
    rng = np.random.default_rng(seed)
    sign = np.sign(rng.normal(size=(6, 1, 16, 16)))
    maps = (sign * np.abs(rng.normal(size=(6, 3, 16, 16)))).astype(np.float32)
    cells = rng.integers(0, 4, size=6)
    expected = quantus_focus(dummy_model, maps, cells)
    ours = localisation_table(maps, cells)["region_attribution"].numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("attribution", [torch.zeros(4, 4), -torch.ones(2, 4, 4)])
def test_region_attribution_without_positive_mass_is_zero(attribution):
    assert [region_attribution(attribution, cell) for cell in range(4)] == [0.0] * 4


# ---------------------------------------------------------------- pointing
POINTING_CASES = [
    # (map, grid, expected score of every cell)
    ([[0.0, 5.0], [5.0, 1.0]], (2, 2), [0.0, 0.5, 0.5, 0.0]),  # a tie split over two cells
    ([[9.0, 9.0, 9.0, 0.0], [0.0, 0.0, 0.0, 0.0]], (1, 2), [2 / 3, 1 / 3]),
    ([[-1.0, -2.0], [-3.0, -4.0]], (2, 2), [0.0, 0.0, 0.0, 0.0]),  # no positive value points nowhere
    ([[0.0, 0.0], [0.0, 0.0]], (2, 2), [0.0, 0.0, 0.0, 0.0]),
    ([[[5.0, 0.0], [0.0, 0.0]], [[-5.0, 0.0], [0.0, 1.0]]], (2, 2), [0.0, 0.0, 0.0, 1.0]),  # channel sum
    ([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]], (3, 3), [0, 0, 0, 0, 0, 1.0, 0, 0, 0]),
]


@pytest.mark.parametrize("attribution, grid, expected", POINTING_CASES)
def test_pointing_hand_examples(attribution, grid, expected):
    attribution = torch.tensor(attribution)
    scores = [pointing_accuracy(attribution, cell, grid) for cell in range(len(expected))]
    assert scores == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_pointing_matches_quantus_pointing_game(seed, dummy_model):
    maps = random_maps(seed).sum(axis=1, keepdims=True)
    cells = np.random.default_rng(seed).integers(0, 4, size=len(maps))
    masks = np.stack([numpy_cell_mask(16, 16, int(c), (2, 2)) for c in cells])
    expected = quantus_pointing(dummy_model, maps, masks)
    ours = [pointing_accuracy(m, int(c)) for m, c in zip(maps, cells)]
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(localisation_table(maps, cells)["pointing"].numpy(), expected)


def test_pointing_differs_from_quantus_on_maps_without_positive_values(dummy_model):
    maps = np.stack([random_maps(0, count=1, channels=1)[0], np.zeros((1, 16, 16)), -np.ones((1, 16, 16))])
    maps[2, 0, 0, 0] = -0.5  # the least negative pixel lies in cell 0
    maps = maps.astype(np.float32)
    masks = np.stack([numpy_cell_mask(16, 16, 0, (2, 2))] * 3)
    reference = quantus_pointing(dummy_model, maps, masks)
    assert reference[1:].tolist() == [1.0, 1.0]  # quantus: every pixel of a flat map is a maximum
    ours = localisation_table(maps, [0, 0, 0])["pointing"]
    assert ours[1:].tolist() == [0.0, 0.0]
    assert ours[0] == reference[0]


# ---------------------------------------------------------------- binarisation
BINARIZE_CASES = [
    # (map, method, keyword arguments, expected binary map)
    # positive values 4, 2, 1, 3, 6 have mean 3.2
    ([[4, 2, 1, -3], [0, 3, 6, 0]], "positive", {}, [[1, 1, 1, 0], [0, 1, 1, 0]]),
    ([[4, 2, 1, -3], [0, 3, 6, 0]], "mean", {}, [[1, 0, 0, 0], [0, 0, 1, 0]]),
    ([[4, 2, 1, -3], [0, 3, 6, 0]], "top", {"top_fraction": 0.5}, [[1, 1, 0, 0], [0, 1, 1, 0]]),
    ([[4, 2, 1, -3], [0, 3, 6, 0]], "top", {}, [[1, 0, 0, 0], [0, 0, 1, 0]]),
    ([[4, 2, 1, -3], [0, 3, 6, 0]], "max", {}, [[1, 0, 0, 0], [0, 1, 1, 0]]),
    ([[4, 2, 1, -3], [0, 3, 6, 0]], "max", {"max_fraction": 0.9}, [[0, 0, 0, 0], [0, 0, 1, 0]]),
    ([[1, 1], [1, 0]], "top", {"top_fraction": 0.25}, [[1, 1], [1, 0]]),  # ties at the cut are kept
    ([[0.1] * 7] * 3, "mean", {}, [[1] * 7] * 3),  # equal values: rounding must not empty the map
    ([[-1, -2], [0, -4]], "mean", {}, [[0, 0], [0, 0]]),
    ([[-1, -2], [0, -4]], "positive", {}, [[0, 0], [0, 0]]),
    ([[1e-30, 0], [-1e-30, 0]], "positive", {}, [[1, 0], [0, 0]]),  # any positive value counts
    ([[-1, -2], [0, -4]], "top", {"top_fraction": 1.0}, [[0, 0], [0, 0]]),  # non-positive never kept
    ([[-1, -2], [0, -4]], "max", {}, [[0, 0], [0, 0]]),
    ([[[3, 1], [2, 0]], [[-3, 0], [0, 0]]], "mean", {}, [[0, 0], [1, 0]]),  # channel sum [[0,1],[2,0]]
    ([[[3, 1], [2, 0]], [[-3, 0], [0, 0]]], "positive", {}, [[0, 1], [1, 0]]),
]


@pytest.mark.parametrize("attribution, method, kwargs, expected", BINARIZE_CASES)
def test_binarize_hand_examples(attribution, method, kwargs, expected):
    binary = binarize(torch.tensor(attribution, dtype=torch.float32), method, **kwargs)
    assert binary.dtype == torch.bool
    assert torch.equal(binary, torch.tensor(expected, dtype=torch.bool))


def numpy_binarize(attribution: np.ndarray, method: str) -> np.ndarray:
    """Written from the documented definitions with numpy (defaults: top 25 %, half the maximum)."""
    summed = attribution.astype(np.float64).sum(axis=0)
    if method == "positive":
        threshold = 0.0
    elif method == "mean":
        threshold = summed[summed > 0].mean()
    elif method == "top":
        threshold = np.sort(summed.ravel())[::-1][round(0.25 * summed.size) - 1]
    else:
        threshold = 0.5 * summed.max()
    return (summed > 0) & (summed >= threshold)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["positive", "mean", "top", "max"])
def test_binarize_matches_numpy_reference(seed, method):
    maps = random_maps(seed)
    expected = np.stack([numpy_binarize(m, method) for m in maps])
    np.testing.assert_array_equal(binarize(torch.from_numpy(maps), method).numpy(), expected)
    np.testing.assert_array_equal(binarize(maps[0], method).numpy(), expected[0])


# ---------------------------------------------------------------- precision / recall / F1 / IoU
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", ["positive", "mean", "top", "max"])
@pytest.mark.parametrize("grid", [(2, 2), (4, 4)])
def test_overlap_scores_match_sklearn(seed, method, grid):
    maps = random_maps(seed)
    maps[-1] = -np.abs(maps[-1])  # an empty binarised map: precision is 0/0, defined as 0
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, grid[0] * grid[1], size=len(maps))
    table = localisation_table(maps, cells, grid, binarization=method)
    for index, (attribution, cell) in enumerate(zip(maps, cells)):
        y_pred = binarize(attribution, method).numpy().ravel()
        y_true = numpy_cell_mask(16, 16, int(cell), grid).ravel()
        expected = {
            "precision": precision_score(y_true, y_pred, zero_division=0),
            "recall": recall_score(y_true, y_pred),
            "f1": f1_score(y_true, y_pred),
            "iou": jaccard_score(y_true, y_pred),
        }
        single = localisation_scores(attribution, int(cell), grid, binarization=method)
        for name, value in expected.items():
            assert table[name][index].item() == pytest.approx(value, abs=1e-6), name
            assert single[name] == pytest.approx(value, abs=1e-6), name
    assert table["precision"][-1] == 0.0


def test_localisation_scores_hand_example():
    # Cells of 2x2 pixels holding 4, 2, 1 and -3, with one 8 in the top-left cell.
    attribution = torch.tensor([[4.0, 2.0], [1.0, -3.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    attribution[0, 0] = 8.0  # positive values 8, 4x3, 2x4, 1x4: sum 32, mean 32/12 keeps the top-left cell
    scores = localisation_scores(attribution, 1, binarization="mean")
    assert scores == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0, "region_attribution": 8 / 32, "pointing": 0.0}
    )
    scores = localisation_scores(attribution, 0, binarization="max", max_fraction=0.25)
    # Kept: the top-left cell (8, 4, 4, 4) and the top-right cell (2 each): 8 pixels, 4 in the target.
    assert scores == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "iou": 0.5, "region_attribution": 20 / 32, "pointing": 1.0}
    )
    scores = localisation_scores(attribution, 2)  # default "positive": all 12 pixels of the three positive cells
    assert scores == pytest.approx(
        {"precision": 4 / 12, "recall": 1.0, "f1": 0.5, "iou": 4 / 12, "region_attribution": 4 / 32, "pointing": 0.0}
    )


# ---------------------------------------------------------------- grid cell shares
def test_grid_cell_shares_hand_examples():
    attribution = torch.zeros(4, 4)
    attribution[1, 1] = 9.0
    assert grid_cell_shares(attribution).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    # 3x3 mean with zero padding spreads 1.0 over rows 0-2, cols 0-2: 4, 2, 2, 1 pixels per cell.
    assert grid_cell_shares(attribution, smoothing_kernel=3).tolist() == pytest.approx([4 / 9, 2 / 9, 2 / 9, 1 / 9])
    # Smoothing comes before the clamp: +9 and -9 side by side cancel where both are in the window.
    attribution[1, 2] = -9.0
    assert grid_cell_shares(attribution).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert grid_cell_shares(attribution, smoothing_kernel=3).tolist() == pytest.approx([2 / 3, 0.0, 1 / 3, 0.0])
    assert grid_cell_shares(-attribution.abs()).tolist() == [0.0] * 4
    assert grid_cell_shares(attribution, smoothing_kernel=1).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])


def numpy_grid_shares(attribution: np.ndarray, grid: tuple[int, int], kernel: int | None) -> np.ndarray:
    summed = attribution.astype(np.float64).sum(axis=0)
    if kernel is not None:
        summed = uniform_filter(summed, size=kernel, mode="constant", cval=0.0)
    positive = np.clip(summed, 0, None)
    rows, cols = grid
    cell_h, cell_w = summed.shape[0] // rows, summed.shape[1] // cols
    sums = [
        positive[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w].sum()
        for r in range(rows)
        for c in range(cols)
    ]
    return np.asarray(sums) / positive.sum()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("grid", [(2, 2), (4, 4)])
@pytest.mark.parametrize("kernel", [None, 3, 5])
def test_grid_cell_shares_match_scipy_reference(seed, grid, kernel):
    maps = random_maps(seed)
    expected = np.stack([numpy_grid_shares(m, grid, kernel) for m in maps])
    batch = grid_cell_shares(torch.from_numpy(maps), grid, kernel)
    assert batch.shape == (len(maps), grid[0] * grid[1])
    np.testing.assert_allclose(batch.numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(batch.sum(dim=1).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(grid_cell_shares(maps[0], grid, kernel).numpy(), expected[0], rtol=1e-5, atol=1e-7)


def test_grid_cell_shares_column_major_mapping():
    # B-cos reads its cells column-major: mean-pool over cells, then transpose the cell grid.
    maps = torch.from_numpy(random_maps(3, count=2, channels=1, size=12)).clamp(min=0)
    rows = cols = 3
    pooled = torch.nn.functional.avg_pool2d(maps, 4, stride=4).permute(0, 1, 3, 2).reshape(2, -1)
    bcos = pooled / pooled.sum(dim=1, keepdim=True)
    ours = grid_cell_shares(maps, (rows, cols))
    for index in range(rows * cols):
        torch.testing.assert_close(ours[:, (index % rows) * cols + index // rows], bcos[:, index])


# ---------------------------------------------------------------- types and devices of results
def test_numpy_and_torch_inputs_agree():
    maps = random_maps(5, count=4)
    from_numpy = localisation_table(maps, np.array([0, 1, 2, 3]))
    from_torch = localisation_table(torch.from_numpy(maps), torch.tensor([0, 1, 2, 3]))
    assert from_numpy.keys() == {"precision", "recall", "f1", "iou", "region_attribution", "pointing"}
    for name in from_numpy:
        assert from_numpy[name].shape == (4,)
        torch.testing.assert_close(from_numpy[name], from_torch[name])
    assert isinstance(region_attribution(maps[0].astype(np.float64), 0), float)


# ---------------------------------------------------------------- bad input
MAP = torch.ones(3, 4, 4)
BATCH = torch.ones(2, 3, 4, 4)
BAD_INPUTS = [
    (region_attribution, (torch.ones(2, 3, 4, 4), 0), ValueError, "attribution"),
    (region_attribution, (torch.ones(4), 0), ValueError, "attribution"),
    (region_attribution, (torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), 0), ValueError, "non-finite"),
    (region_attribution, (torch.tensor([[[float("inf")]], [[-float("inf")]]]), 0), ValueError, "non-finite"),
    (region_attribution, (torch.full((2, 2, 2), 3e38), 0), ValueError, "overflows"),
    (region_attribution, (torch.ones(4, 4, dtype=torch.int64), 0), TypeError, "floating"),
    (region_attribution, ([[1.0, 2.0], [3.0, 4.0]], 0), TypeError, "attribution"),
    (region_attribution, (torch.ones(5, 4), 0), ValueError, "grid"),
    (region_attribution, (MAP, 4), ValueError, "cell"),
    (region_attribution, (MAP, -1), ValueError, "cell"),
    (region_attribution, (MAP, 1.0), TypeError, "cell"),
    (region_attribution, (MAP, True), TypeError, "cell"),
    (region_attribution, (MAP, 0, "2x2"), TypeError, "grid"),
    (region_attribution, (MAP, 0, (0, 2)), ValueError, "grid"),
    (region_attribution, (MAP, 0, (2.0, 2)), TypeError, "grid"),
    (pointing_accuracy, (torch.ones(4, 6), 0, (3, 3)), ValueError, "grid"),
    (pointing_accuracy, (MAP, 9, (3, 3)), ValueError, "cell"),
    (pointing_accuracy, (np.ones((4, 4), dtype=np.int32), 0), TypeError, "floating"),
    (binarize, (MAP, "median"), ValueError, "method"),
    (grid_cell_shares, (MAP, (2, 2), 2), ValueError, "smoothing_kernel"),
    (grid_cell_shares, (MAP, (2, 2), 0), ValueError, "smoothing_kernel"),
    (grid_cell_shares, (MAP, (2, 2), 1.5), TypeError, "smoothing_kernel"),
    (grid_cell_shares, (torch.ones(2, 2, 3, 4, 4),), ValueError, "attribution"),
    (grid_cell_shares, (torch.ones(3, 5),), ValueError, "grid"),
    (localisation_table, (MAP, [0, 0, 0]), ValueError, "attributions"),
    (localisation_table, (BATCH, [0]), ValueError, "cells"),
    (localisation_table, (BATCH, [[0, 1]]), ValueError, "cells"),
    (localisation_table, (BATCH, [0, 4]), ValueError, "cells"),
    (localisation_table, (BATCH, [0, -1]), ValueError, "cells"),
    (localisation_table, (BATCH, [0.0, 1.0]), TypeError, "cells"),
    (localisation_table, (BATCH, [True, False]), TypeError, "cells"),
    (localisation_table, (BATCH, "01"), TypeError, "cells"),
    (localisation_table, (torch.ones(2, 3, 4, 5), [0, 1]), ValueError, "grid"),
    (cell_mask, ((4,), 0), TypeError, "shape_hw"),
    (cell_mask, ((0, 4), 0), ValueError, "shape_hw"),
    (cell_mask, ((4, 4), 4), ValueError, "cell"),
    (cell_mask, ((4, 6), 0, (3, 3)), ValueError, "grid"),
]
BAD_KEYWORDS = [
    (binarize, (MAP,), {"method": "top", "top_fraction": 0.0}, ValueError, "top_fraction"),
    (binarize, (MAP,), {"method": "top", "top_fraction": 1.5}, ValueError, "top_fraction"),
    (binarize, (MAP,), {"max_fraction": -1.0}, ValueError, "max_fraction"),
    (localisation_scores, (MAP, 0), {"binarization": "otsu"}, ValueError, "binarization"),
    (localisation_table, (BATCH, [0, 1]), {"binarization": None}, ValueError, "binarization"),
    (localisation_table, (BATCH, [0, 1]), {"max_fraction": "half"}, TypeError, "max_fraction"),
]


@pytest.mark.parametrize("function, args, error, match", BAD_INPUTS)
def test_bad_positional_input_raises(function, args, error, match):
    with pytest.raises(error, match=match):
        function(*args)


@pytest.mark.parametrize("function, args, kwargs, error, match", BAD_KEYWORDS)
def test_bad_keyword_input_raises(function, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        function(*args, **kwargs)


def test_empty_batch_gives_empty_scores():
    table = localisation_table(torch.zeros(0, 3, 8, 8), [])
    assert all(value.shape == (0,) for value in table.values())
    assert grid_cell_shares(torch.zeros(0, 1, 8, 8)).shape == (0, 4)
