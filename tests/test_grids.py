"""Tests of var_utils.grids: composing grids, choosing their cells and reading ImageNet validation sets.

References are independent of the implementation: pixel positions computed cell by cell, the
protocol's documented numpy permutation, hand-traced greedy runs, hand-written label tables of a
fake ImageNet tree written with PIL.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import Normalize

from var_utils.datasets.grids import (
    GridDataset,
    GridSample,
    all_distinct_combinations,
    collate_grids,
    compose_grid,
    grid_indices,
)
from var_utils.datasets.imagenet import imagenet_val_files, load_cell_image, read_synset_mapping

# --------------------------------------------------------------------------- compose_grid


def _painted_cells(n_cells: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Cell p, channel c holds the value 10 * p + c everywhere."""
    values = torch.tensor([[10.0 * p + c for c in range(channels)] for p in range(n_cells)])
    return values[:, :, None, None].expand(n_cells, channels, height, width).clone()


@pytest.mark.parametrize(
    "grid, channels, height, width",
    [((2, 2), 3, 5, 7), ((1, 3), 1, 4, 4), ((3, 2), 2, 3, 6), ((2, 3), 3, 2, 1), ((1, 1), 1, 2, 2)],
)
def test_compose_grid_places_cells_in_row_major_order(grid, channels, height, width):
    n_rows, n_cols = grid
    composed = compose_grid(_painted_cells(n_rows * n_cols, channels, height, width), grid)
    assert composed.shape == (channels, n_rows * height, n_cols * width)
    for c, y, x in itertools.product(range(channels), range(n_rows * height), range(n_cols * width)):
        cell = (y // height) * n_cols + x // width
        assert composed[c, y, x] == 10 * cell + c


def test_compose_grid_2x2_corners_are_tl_tr_bl_br():
    composed = compose_grid(_painted_cells(4, 1, 2, 2))[0]
    assert composed[0, 0] == 0 and composed[0, -1] == 10 and composed[-1, 0] == 20 and composed[-1, -1] == 30


@pytest.mark.parametrize("grid", [(2, 2), (1, 4), (3, 1)])
def test_compose_grid_keeps_cell_content_and_batches(grid):
    n_rows, n_cols = grid
    cells = torch.rand(5, n_rows * n_cols, 2, 3, 4, generator=torch.Generator().manual_seed(0))
    composed = compose_grid(cells, grid)
    assert composed.shape == (5, 2, n_rows * 3, n_cols * 4)
    for b, r, c in itertools.product(range(5), range(n_rows), range(n_cols)):
        block = composed[b, :, r * 3 : (r + 1) * 3, c * 4 : (c + 1) * 4]
        assert torch.equal(block, cells[b, r * n_cols + c])


def test_compose_grid_keeps_dtype():
    cells = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1)
    assert compose_grid(cells).dtype == torch.uint8


@pytest.mark.parametrize(
    "cells, grid, error, match",
    [
        (torch.zeros(3, 1, 2, 2), (2, 2), ValueError, "needs 4 cells"),
        (torch.zeros(2, 6, 1, 2, 2), (2, 2), ValueError, "needs 4 cells"),
        (torch.zeros(4, 2, 2), (2, 2), ValueError, "shape"),
        (torch.zeros(1, 1, 4, 1, 2, 2), (2, 2), ValueError, "shape"),
        (np.zeros((4, 1, 2, 2)), (2, 2), TypeError, "torch.Tensor"),
        (torch.zeros(4, 1, 2, 2), (4,), ValueError, "grid"),
        (torch.zeros(4, 1, 2, 2), (0, 4), ValueError, "n_rows"),
        (torch.zeros(4, 1, 2, 2), (2, 2.0), TypeError, "n_cols"),
    ],
)
def test_compose_grid_errors(cells, grid, error, match):
    with pytest.raises(error, match=match):
        compose_grid(cells, grid)


# --------------------------------------------------------------------------- grid_indices, paper


@pytest.mark.parametrize("n_images, grid, seed", [(10, (2, 2), 42), (16, (2, 2), 0), (23, (3, 3), 7), (4, (2, 2), 1)])
def test_paper_protocol_is_consecutive_groups_of_the_seeded_permutation(n_images, grid, seed):
    group_size = grid[0] * grid[1]
    labels = [i % 3 for i in range(n_images)]
    groups = grid_indices(labels, grid=grid, protocol="paper", seed=seed)
    order = np.random.default_rng(seed).permutation(n_images).tolist()
    expected = [tuple(order[g * group_size : (g + 1) * group_size]) for g in range(n_images // group_size)]
    assert groups == expected
    assert all(isinstance(index, int) for group in groups for index in group)


@pytest.mark.parametrize("n_images", [4, 5, 7, 8, 50, 101])
def test_paper_protocol_covers_floor_n_over_4_groups_each_index_once(n_images):
    groups = grid_indices(np.zeros(n_images, dtype=int))  # one class: repeats are allowed
    flat = [index for group in groups for index in group]
    assert len(groups) == n_images // 4
    assert all(len(group) == 4 for group in groups)
    assert len(flat) == len(set(flat)) and set(flat) <= set(range(n_images))


def test_paper_protocol_default_seed_is_42():
    labels = list(range(12))
    assert grid_indices(labels) == grid_indices(labels, seed=42)
    assert grid_indices(labels) != grid_indices(labels, seed=43)


@pytest.mark.parametrize("protocol", ["paper", "strict"])
def test_same_seed_same_groups_other_seed_other_groups(protocol):
    labels = np.arange(40) % 10
    correct = np.ones(40, dtype=bool)
    kwargs = {"correct": correct} if protocol == "strict" else {}
    first = grid_indices(labels, protocol=protocol, seed=3, **kwargs)
    assert first == grid_indices(labels, protocol=protocol, seed=3, **kwargs)
    assert first != grid_indices(labels, protocol=protocol, seed=4, **kwargs)


def test_labels_may_be_list_array_or_tensor():
    labels = [3, 1, 4, 1, 5, 9, 2, 6, 5]
    expected = grid_indices(labels, seed=5)
    assert grid_indices(np.array(labels), seed=5) == expected
    assert grid_indices(torch.tensor(labels), seed=5) == expected


@pytest.mark.parametrize("protocol", ["paper", "strict"])
def test_max_grids_keeps_the_first_groups(protocol):
    labels = np.arange(40) % 10
    kwargs = {"correct": np.ones(40, dtype=bool)} if protocol == "strict" else {}
    everything = grid_indices(labels, protocol=protocol, **kwargs)
    assert len(everything) > 3
    assert grid_indices(labels, protocol=protocol, max_grids=3, **kwargs) == everything[:3]
    assert grid_indices(labels, protocol=protocol, max_grids=1000, **kwargs) == everything


# --------------------------------------------------------------------------- grid_indices, strict


def test_strict_protocol_follows_the_documented_greedy_rule():
    # Assign labels along the shuffled order so the greedy run can be traced by hand:
    # positions 0..7 carry classes 0 1 1 0 2 3 2 3; the class-9 images at positions 8, 9 are incorrect.
    seed, n_images = 11, 10
    order = np.random.default_rng(seed).permutation(n_images)
    labels = np.empty(n_images, dtype=int)
    labels[order] = [0, 1, 1, 0, 2, 3, 2, 3, 9, 9]
    correct = np.ones(n_images, dtype=bool)
    correct[order[8:]] = False
    groups = grid_indices(labels, protocol="strict", correct=correct, seed=seed)
    # Grid 1 forms at position 5 from the oldest image of each class: positions 0, 1, 4, 5.
    # Positions 2 (class 1) and 3 (class 0) wait; grid 2 forms at position 7 from 2, 3, 6, 7,
    # its cells in the order drawn (class 1 before class 0).
    assert groups == [tuple(order[[0, 1, 4, 5]].tolist()), tuple(order[[2, 3, 6, 7]].tolist())]


@pytest.mark.parametrize("counts", [(3, 3, 3, 3), (5, 3, 4, 6), (1, 1, 1, 9)])
def test_strict_protocol_with_four_classes_uses_the_rarest_class_fully(counts):
    # With exactly 4 classes a grid forms whenever each class waits, so #grids = min(counts).
    labels = np.repeat(np.arange(4), counts)
    groups = grid_indices(labels, protocol="strict", correct=np.ones(labels.size, dtype=bool), seed=0)
    assert len(groups) == min(counts)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_strict_protocol_gives_distinct_correct_classes(seed):
    rng = np.random.default_rng(100 + seed)
    labels = rng.integers(0, 12, size=200)
    correct = rng.random(200) < 0.7
    groups = grid_indices(labels, protocol="strict", correct=correct, seed=seed)
    flat = [index for group in groups for index in group]
    assert len(groups) >= 25  # about 140 correct images over 12 classes
    assert len(flat) == len(set(flat))
    assert all(correct[index] for index in flat)
    assert all(len({labels[index] for index in group}) == 4 for group in groups)


def test_strict_protocol_on_a_3x3_grid():
    labels = np.arange(90) % 9
    groups = grid_indices(labels, grid=(3, 3), protocol="strict", correct=np.ones(90, dtype=bool))
    assert len(groups) == 10  # 9 classes, 10 images each
    assert all(sorted(labels[list(group)]) == list(range(9)) for group in groups)


# --------------------------------------------------------------------------- grid_indices, errors


@pytest.mark.parametrize(
    "labels, kwargs, error, match",
    [
        ([], {}, ValueError, "empty"),
        (np.array([], dtype=int), {"protocol": "strict", "correct": np.array([], dtype=bool)}, ValueError, "empty"),
        ([0, 1, 2], {}, ValueError, "no complete grid"),
        ([0, 1, 2, 3], {"grid": (3, 3)}, ValueError, "no complete grid"),
        ([0, 0, 1, 1, 2, 2], {"protocol": "strict", "correct": [True] * 6}, ValueError, "no complete grid"),
        ([0, 1, 2, 3], {"protocol": "strict", "correct": [True, True, True, False]}, ValueError, "no complete"),
        ([0, 1, 2, 3], {"protocol": "strict"}, ValueError, "needs `correct`"),
        ([0, 1, 2, 3], {"protocol": "strict", "correct": [True] * 3}, ValueError, "one entry per label"),
        ([0, 1, 2, 3], {"protocol": "strict", "correct": [1, 1, 1, 1]}, TypeError, "boolean"),
        ([0, 1, 2, 3], {"correct": [True] * 4}, ValueError, "only used by protocol='strict'"),
        ([0, 1, 2, 3], {"protocol": "b-cos"}, ValueError, "protocol"),
        ([0, 1, 2, 3], {"grid": (2, 0)}, ValueError, "n_cols"),
        ([0, 1, 2, 3], {"seed": -1}, ValueError, "seed"),
        ([0, 1, 2, 3], {"seed": 1.5}, TypeError, "seed"),
        ([0, 1, 2, 3], {"max_grids": 0}, ValueError, "max_grids"),
        ([0.0, 1.0, 2.0, 3.0], {}, TypeError, "integer"),
        ([[0, 1], [2, 3]], {}, ValueError, "one-dimensional"),
    ],
)
def test_grid_indices_errors(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        grid_indices(labels, **kwargs)


# --------------------------------------------------------------------------- all_distinct_combinations


@pytest.mark.parametrize(
    "labels, k, max_grids, expected",
    [
        ([7, 7, 1, 2, 3], 4, None, [(0, 2, 3, 4), (1, 2, 3, 4)]),
        ([5, 6, 7, 8, 9], 4, None, [(0, 1, 2, 3), (0, 1, 2, 4), (0, 1, 3, 4), (0, 2, 3, 4), (1, 2, 3, 4)]),
        ([5, 6, 7, 8, 9], 4, 2, [(0, 1, 2, 3), (0, 1, 2, 4)]),
        ([0, 1, 0, 2], 2, None, [(0, 1), (0, 3), (1, 2), (1, 3), (2, 3)]),
        ([4, 4, 4, 5], 2, None, [(0, 3), (1, 3), (2, 3)]),
    ],
)
def test_all_distinct_combinations(labels, k, max_grids, expected):
    assert all_distinct_combinations(labels, k=k, max_grids=max_grids) == expected


@pytest.mark.parametrize(
    "labels, k, error, match",
    [([0, 1, 2, 2], 4, ValueError, "3 distinct"), ([], 4, ValueError, "empty"), ([0, 1], 0, ValueError, "k")],
)
def test_all_distinct_combinations_errors(labels, k, error, match):
    with pytest.raises(error, match=match):
        all_distinct_combinations(labels, k=k)


# --------------------------------------------------------------------------- GridDataset


def test_grid_dataset_composes_on_access_only():
    cells = _painted_cells(8, 1, 3, 3)  # cell i holds 10 * i
    calls = []

    def get_cell(index: int) -> torch.Tensor:
        calls.append(index)
        return cells[index]

    labels = [10, 11, 12, 13, 14, 15, 16, 17]
    dataset = GridDataset(get_cell, labels, [(5, 0, 7, 2), (1, 3, 4, 6)])
    assert len(dataset) == 2 and calls == []
    sample = dataset[0]
    assert calls == [5, 0, 7, 2]
    assert isinstance(sample, GridSample)
    assert sample.labels == (15, 10, 17, 12) and sample.indices == (5, 0, 7, 2) and sample.grid == (2, 2)
    assert sample.image.shape == (1, 6, 6)
    assert [sample.image[0, 0, 0], sample.image[0, 0, 5], sample.image[0, 5, 0], sample.image[0, 5, 5]] == [
        50,
        0,
        70,
        20,
    ]


def test_grid_dataset_with_tensor_source_and_dataloader():
    images = _painted_cells(12, 1, 2, 2)
    labels = torch.arange(12) % 4
    groups = [(0, 1, 2, 3), (4, 5, 6, 7), (11, 10, 9, 8)]
    loader = torch.utils.data.DataLoader(GridDataset(images, labels, groups), batch_size=2, collate_fn=collate_grids)
    batches = list(loader)
    assert [batch[0].shape for batch in batches] == [(2, 1, 4, 4), (1, 1, 4, 4)]
    assert batches[1][1].tolist() == [[3, 2, 1, 0]] and batches[1][2].tolist() == [[11, 10, 9, 8]]
    assert batches[1][0][0, 0].tolist() == [
        [110, 110, 100, 100],
        [110, 110, 100, 100],
        [90, 90, 80, 80],
        [90, 90, 80, 80],
    ]


def test_grid_dataset_on_a_1x3_grid():
    dataset = GridDataset(_painted_cells(3, 1, 2, 2), [0, 1, 2], [(2, 1, 0)], grid=(1, 3))
    assert dataset[0].image[0, 0].tolist() == [20, 20, 10, 10, 0, 0]


@pytest.mark.parametrize(
    "cells, groups, grid, error, match",
    [
        (torch.zeros(8, 1, 2, 2), [(0, 1, 2)], (2, 2), ValueError, r"groups\[0\]` holds 3 indices"),
        (torch.zeros(8, 1, 2, 2), [(0, 1, 2, 3), (4, 5, 6, 8)], (2, 2), ValueError, r"groups\[1\].*outside"),
        (torch.zeros(8, 1, 2, 2), [(0, 1, 2, -1)], (2, 2), ValueError, "outside"),
        (42, [(0, 1, 2, 3)], (2, 2), TypeError, "callable or indexable"),
    ],
)
def test_grid_dataset_errors(cells, groups, grid, error, match):
    with pytest.raises(error, match=match):
        GridDataset(cells, list(range(8)), groups, grid)


def test_grid_dataset_rejects_cells_of_different_shapes():
    cells = [torch.zeros(1, 2, 2)] * 3 + [torch.zeros(1, 3, 3)]
    with pytest.raises(ValueError, match="differ in shape"):
        GridDataset(cells, [0, 1, 2, 3], [(0, 1, 2, 3)])[0]


def test_collate_grids_errors():
    small = GridSample(torch.zeros(1, 4, 4), (0, 1, 2, 3), (0, 1, 2, 3), (2, 2))
    large = GridSample(torch.zeros(1, 6, 6), (0, 1, 2, 3), (0, 1, 2, 3), (2, 2))
    with pytest.raises(ValueError, match="empty"):
        collate_grids([])
    with pytest.raises(ValueError, match="shapes"):
        collate_grids([small, large])


# --------------------------------------------------------------------------- fake ImageNet tree

# Synsets in mapping order (deliberately not sorted) and the image of each validation file.
MAPPING = [
    ("n02123045", "tabby, tabby cat"),
    ("n01440764", "tench, Tinca tinca"),
    ("n03792782", "mountain bike, all-terrain bike"),
    ("n01530575", "brambling, Fringilla montifringilla"),
]
VAL_IMAGES = {  # ImageId -> synset, written in this (unsorted) order
    "ILSVRC2012_val_00000005": "n01440764",
    "ILSVRC2012_val_00000002": "n02123045",
    "ILSVRC2012_val_00000010": "n03792782",
    "ILSVRC2012_val_00000001": "n01530575",
    "ILSVRC2012_val_00000007": "n02123045",
    "ILSVRC2012_val_00000003": "n01440764",
    "ILSVRC2012_val_00000004": "n03792782",
    "ILSVRC2012_val_00000008": "n01530575",
}
SORTED_IDS = [f"ILSVRC2012_val_{i:08d}" for i in (1, 2, 3, 4, 5, 7, 8, 10)]
# Class of SORTED_IDS in mapping order (tabby 0, tench 1, bike 2, brambling 3) ...
MAPPING_LABELS = [3, 0, 1, 2, 1, 0, 3, 2]
# ... and in sorted synset order (n01440764 0, n01530575 1, n02123045 2, n03792782 3).
SORTED_SYNSET_LABELS = [1, 2, 0, 3, 0, 2, 1, 3]


def _write_jpeg(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 6), (shade, 255 - shade, 128)).save(path, "JPEG")


def _write_mapping(path: Path) -> None:
    path.write_text("".join(f"{synset} {name}\n" for synset, name in MAPPING))


def _make_loc_tree(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _write_mapping(root / "LOC_synset_mapping.txt")
    rows = ["ImageId,PredictionString"]
    for number, (image_id, synset) in enumerate(VAL_IMAGES.items()):
        rows.append(f"{image_id},{synset} 1 2 30 40 {synset} 5 6 70 80")
        _write_jpeg(root / "ILSVRC/Data/CLS-LOC/val" / f"{image_id}.JPEG", 20 * number)
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


def _make_imagefolder_tree(root: Path, with_mapping: bool) -> Path:
    for number, (image_id, synset) in enumerate(VAL_IMAGES.items()):
        _write_jpeg(root / synset / f"{image_id}.JPEG", 20 * number)
    if with_mapping:
        _write_mapping(root / "LOC_synset_mapping.txt")
    return root


def test_loc_layout_sorted_by_file_name_with_mapping_labels(tmp_path):
    root = _make_loc_tree(tmp_path)
    for layout in ("auto", "loc"):
        files, labels = imagenet_val_files(root, layout)
        assert [f.name for f in files] == [f"{image_id}.JPEG" for image_id in SORTED_IDS]
        assert all(f == root / "ILSVRC/Data/CLS-LOC/val" / f.name and f.is_file() for f in files)
        assert labels == MAPPING_LABELS


@pytest.mark.parametrize("with_mapping, expected", [(True, MAPPING_LABELS), (False, SORTED_SYNSET_LABELS)])
def test_imagefolder_layout(tmp_path, with_mapping, expected):
    root = _make_imagefolder_tree(tmp_path, with_mapping)
    (root / ".ipynb_checkpoints").mkdir()  # hidden folders are no classes
    for layout in ("auto", "imagefolder"):
        files, labels = imagenet_val_files(root, layout)
        assert [f.name for f in files] == [f"{image_id}.JPEG" for image_id in SORTED_IDS]
        assert [f.parent.name for f in files] == [VAL_IMAGES[image_id] for image_id in SORTED_IDS]
        assert labels == expected


def test_imagefolder_with_an_explicit_mapping_file(tmp_path):
    root = _make_imagefolder_tree(tmp_path / "val", with_mapping=False)
    _write_mapping(tmp_path / "mapping.txt")
    assert imagenet_val_files(root, synset_mapping=tmp_path / "mapping.txt")[1] == MAPPING_LABELS


def test_both_layouts_give_the_same_grids(tmp_path):
    loc_files, loc_labels = imagenet_val_files(_make_loc_tree(tmp_path / "kaggle"))
    folder_files, folder_labels = imagenet_val_files(_make_imagefolder_tree(tmp_path / "folders", True))
    assert [f.name for f in loc_files] == [f.name for f in folder_files] and loc_labels == folder_labels
    assert grid_indices(loc_labels) == grid_indices(folder_labels)


def test_read_synset_mapping(tmp_path):
    path = tmp_path / "mapping.txt"
    path.write_text("n01440764 tench, Tinca tinca\n\nn01443537 goldfish, Carassius auratus\n")
    assert read_synset_mapping(path) == ["n01440764", "n01443537"]


def test_imagenet_end_to_end_grid(tmp_path):
    files, labels = imagenet_val_files(_make_loc_tree(tmp_path))
    groups = grid_indices(labels, seed=42)
    dataset = GridDataset(lambda i: load_cell_image(files[i], 8, Normalize([0.5] * 3, [0.5] * 3)), labels, groups)
    sample = dataset[1]
    assert len(dataset) == 2 and sample.image.shape == (3, 16, 16)
    assert sample.labels == tuple(labels[i] for i in groups[1])
    assert sample.image.min() >= -1 and sample.image.max() <= 1


# --------------------------------------------------------------------------- ImageNet errors


def _replace(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.mark.parametrize(
    "breakage, error, match",
    [
        (lambda root: (root / "LOC_synset_mapping.txt").unlink(), FileNotFoundError, "LOC_synset_mapping.txt"),
        (
            lambda root: _replace(root / "LOC_val_solution.csv", "id,label\nx,n01440764\n"),
            ValueError,
            "header 'ImageId,PredictionString'",
        ),
        (
            lambda root: _replace(root / "LOC_val_solution.csv", "ImageId,PredictionString\n"),
            ValueError,
            "no validation images",
        ),
        (
            lambda root: _replace(root / "LOC_val_solution.csv", "ImageId,PredictionString\nimg1,n09999999 1 2 3 4\n"),
            ValueError,
            "line 2",
        ),
        (
            lambda root: _replace(root / "LOC_val_solution.csv", "ImageId,PredictionString\nimg1\n"),
            ValueError,
            "line 2",
        ),
        (
            lambda root: _replace(root / "LOC_val_solution.csv", "ImageId,PredictionString\nimg1,\n"),
            ValueError,
            "line 2",
        ),
        (
            lambda root: _replace(
                root / "LOC_val_solution.csv", "ImageId,PredictionString\nimg1,n01440764\nimg1,n01440764\n"
            ),
            ValueError,
            "twice",
        ),
        (
            lambda root: _replace(root / "LOC_synset_mapping.txt", "tench n01440764\n"),
            ValueError,
            r"line 1: expected 'n<8 digits>",
        ),
        (lambda root: _replace(root / "LOC_synset_mapping.txt", "n01440764 a\nn01440764 b\n"), ValueError, "repeats"),
        (lambda root: _replace(root / "LOC_synset_mapping.txt", "\n"), ValueError, "empty"),
        (
            lambda root: (root / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000004.JPEG").unlink(),
            FileNotFoundError,
            "ILSVRC2012_val_00000004.JPEG",
        ),
    ],
)
def test_malformed_loc_tree(tmp_path, breakage, error, match):
    root = _make_loc_tree(tmp_path)
    breakage(root)
    with pytest.raises(error, match=match):
        imagenet_val_files(root)


def test_loc_tree_without_image_folder(tmp_path):
    root = _make_loc_tree(tmp_path)
    for image in (root / "ILSVRC/Data/CLS-LOC/val").iterdir():
        image.unlink()
    (root / "ILSVRC/Data/CLS-LOC/val").rmdir()
    with pytest.raises(FileNotFoundError, match="CLS-LOC/val"):
        imagenet_val_files(root, "loc")


def test_missing_root_lists_expected_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="LOC_val_solution.csv.*<synset>/\\*.JPEG"):
        imagenet_val_files(tmp_path / "nowhere")


def test_empty_root_lists_expected_layouts(tmp_path):
    (tmp_path / "n01440764").mkdir()  # a class folder without images
    with pytest.raises(FileNotFoundError, match="LOC_synset_mapping.txt.*ILSVRC/Data/CLS-LOC/val"):
        imagenet_val_files(tmp_path)


def test_empty_imagefolder_layout(tmp_path):
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(ValueError, match="no validation images"):
        imagenet_val_files(tmp_path, "imagefolder")


def test_imagefolder_folder_missing_from_mapping(tmp_path):
    root = _make_imagefolder_tree(tmp_path, with_mapping=True)
    _write_jpeg(root / "n09999999" / "ILSVRC2012_val_00000099.JPEG", 0)
    with pytest.raises(ValueError, match="n09999999"):
        imagenet_val_files(root)


def test_unknown_layout(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        imagenet_val_files(tmp_path, "tfrecord")


# --------------------------------------------------------------------------- load_cell_image


def test_load_cell_image_solid_colour_and_normalisation(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (9, 5), (255, 0, 51)).save(path)
    cell = load_cell_image(path, 4)
    assert cell.shape == (3, 4, 4) and cell.dtype == torch.float32
    assert torch.allclose(cell, torch.tensor([1.0, 0.0, 0.2])[:, None, None].expand(3, 4, 4), atol=1e-6)
    normalised = load_cell_image(path, 4, Normalize([0.5] * 3, [0.5] * 3))
    assert torch.allclose(normalised, torch.tensor([1.0, -1.0, -0.6])[:, None, None].expand(3, 4, 4), atol=1e-6)


def test_load_cell_image_resizes_the_whole_image_without_crop(tmp_path):
    # 40 x 10: left half white, right half black. A centre crop would leave only the middle.
    image = Image.new("L", (40, 10), 0)
    image.paste(255, (0, 0, 20, 10))
    path = tmp_path / "halves.png"
    image.save(path)
    cell = load_cell_image(path, 4)
    assert cell.shape == (3, 4, 4)
    # Bilinear downscaling by 10 is a triangle filter of half-width 10 pixels: output column 1
    # (centre x = 15) sees 8.75 of 10 weight units on white, column 2 the mirror image.
    expected_columns = torch.tensor([1.0, 0.875, 0.125, 0.0])
    assert torch.allclose(cell, expected_columns.expand(3, 4, 4), atol=1.5 / 255)


def test_load_cell_image_converts_grey_to_rgb(tmp_path):
    path = tmp_path / "grey.jpg"
    Image.new("L", (6, 6), 128).save(path)
    cell = load_cell_image(path, 3)
    assert cell.shape == (3, 3, 3) and torch.allclose(cell[0], cell[1]) and torch.allclose(cell[1], cell[2])


def test_load_cell_image_errors_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.JPEG"
    garbage.write_bytes(b"not an image at all")
    truncated = tmp_path / "truncated.JPEG"
    Image.effect_noise((64, 64), 50).convert("RGB").save(truncated, "JPEG")
    truncated.write_bytes(truncated.read_bytes()[:400])
    with pytest.raises(ValueError, match="garbage.JPEG"):
        load_cell_image(garbage, 4)
    with pytest.raises(ValueError, match="truncated.JPEG"):
        load_cell_image(truncated, 4)
    with pytest.raises(FileNotFoundError, match="missing.JPEG"):
        load_cell_image(tmp_path / "missing.JPEG", 4)
    with pytest.raises(ValueError, match="cell_size"):
        load_cell_image(garbage, 0)


def test_load_cell_image_checks_the_normalize_output(tmp_path):
    path = tmp_path / "ok.png"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ValueError, match="normalize"):
        load_cell_image(path, 4, lambda cell: cell[0])
