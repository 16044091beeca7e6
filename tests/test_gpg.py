"""Tests of var_utils.gpg: the grid pointing game runner, its grid sources and its command line.

Known answers come from a hand-built "colour" model: class k's logit is the sum over pixels of
ReLU(channel k), so Grad-CAM of class k on its ReLU is exactly ReLU(x_k), and Input×Gradient of
class k is x_k on channel k and zero on the other channels. Cells are pure colours: channel j is
1 in a cell of class j and B = 0.5 on the other channels, so every region attribution, base and
VAR, has a closed form (softmax shares written out with math.exp).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet18

from var_utils.apps.cli import main
from var_utils.datasets.fashion_mnist import load_fashion_mnist
from var_utils.datasets.grids import GridDataset, collate_grids
from var_utils.datasets.imagenet import load_cell_image
from var_utils.datasets.photos import center_square, load_photo, unit_tensor
from var_utils.evaluation.gpg import (
    GPG_COLUMNS,
    GPG_METRICS,
    QUAD_PHOTOS,
    evaluate_grid_pointing_game,
    fashion_mnist_grids,
    grid_class_sets,
    grid_source,
    imagenet_grids,
    photo_grids,
    read_gpg_table,
    summarize,
)
from var_utils.evaluation.gpg.store import settings_path
from var_utils.models import FashionMNISTCNN, Preprocessing, load_model

B = 0.5  # value of the other channels in a colour cell
CELL = 4  # cell side: grids are 8x8
N_COLOURS = 4
METHODS = {"gradcam": {}, "input_x_gradient": {}}
# Distinct classes: 4, 3 (class 0 twice), 1 (one class in every cell).
MIXED_GROUPS = [(0, 1, 2, 3), (0, 0, 1, 2), (0, 0, 0, 0)]
SIX_GROUPS = MIXED_GROUPS + [(3, 2, 1, 0), (1, 1, 2, 2), (2, 3, 0, 1)]


class ColourModel(nn.Module):
    """logit_k = sum over pixels of ReLU(x_k): class k responds to colour channel k only."""

    name = "colour_model"  # recorded by result files, as load_model's models record theirs

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(N_COLOURS, N_COLOURS, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(N_COLOURS).view(N_COLOURS, N_COLOURS, 1, 1))
        self.relu = nn.ReLU()
        self.images_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += x.shape[0]
        return self.relu(self.conv(x)).sum(dim=(2, 3))

    def gradcam_layer(self) -> nn.Module:
        return self.relu


class CrashingColourModel(ColourModel):
    """Raises on its ``crash_at``-th forward pass, like a run killed half-way."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.calls, self.crash_at = 0, crash_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        return super().forward(x)


def colour_grids(groups) -> GridDataset:
    cells = torch.full((N_COLOURS, N_COLOURS, CELL, CELL), B)
    for colour in range(N_COLOURS):
        cells[colour, colour] = 1.0
    return GridDataset(cells, list(range(N_COLOURS)), groups)


def share(win: float, lose: float, n_lose: int) -> float:
    """Softmax share (temperature 0.1) of a value ``win`` against ``n_lose`` values ``lose``."""
    return math.exp(10 * win) / (math.exp(10 * win) + n_lose * math.exp(10 * lose))


def expected_region_attribution(group: tuple[int, ...], cell: int, method: str, mode: str) -> float:
    """Closed-form region attribution of the colour model (see the module docstring)."""
    label = group[cell]
    n_cells_of_label = group.count(label)
    n_other_cells = len(group) - n_cells_of_label
    n_classes = len(set(group))
    # Base: the label's channel is 1 on its own cells and B elsewhere, for both methods.
    if mode == "base" or n_classes == 1:
        return 1 / (n_cells_of_label + n_other_cells * B)
    if method == "gradcam":
        # One map per class: the label wins its own cells (share >> 1/K + tau) and loses all others.
        return 1 / n_cells_of_label
    # Input x gradient: classes live on disjoint channels, so every value of the label's channel
    # competes against K - 1 zeros and survives, scaled by its softmax share.
    on_cell, off_cell = share(1.0, 0.0, n_classes - 1), B * share(B, 0.0, n_classes - 1)
    return on_cell / (n_cells_of_label * on_cell + n_other_cells * off_cell)


@pytest.fixture(scope="module")
def reference_table() -> pd.DataFrame:
    return evaluate_grid_pointing_game(ColourModel(), colour_grids(SIX_GROUPS), METHODS, batch_size=3, progress=False)


# --------------------------------------------------------------------------- class sets


@pytest.mark.parametrize(
    "labels, classes, positions, n_classes",
    [
        ([[3, 3, 5, 7]], [[3, 5, 7]], [[0, 0, 1, 2]], [3]),
        ([[2, 2, 2, 2]], [[2, 0]], [[0, 0, 0, 0]], [1]),
        ([[0, 1, 2, 3], [1, 1, 1, 1]], [[0, 1, 2, 3], [1, 0, 2, 3]], [[0, 1, 2, 3], [0, 0, 0, 0]], [4, 1]),
        ([[9, 8, 9, 8], [4, 0, 1, 0]], [[9, 8, 0], [4, 0, 1]], [[0, 1, 0, 1], [0, 1, 2, 1]], [2, 3]),
    ],
)
def test_grid_class_sets_hand_examples(labels, classes, positions, n_classes):
    got = grid_class_sets(torch.tensor(labels))
    for tensor, expected in zip(got, (classes, positions, n_classes)):
        assert tensor.tolist() == expected


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("tau", [0.01, 0.3])
def test_region_attribution_matches_closed_form(tau):
    # tau = 0.3 separates our choice from letting a repeated class compete against its own copy:
    # with the copy its share is ~1/2 and 1/2 - 1/4 < 0.3, so the map would vanish (RA 0, not 1/2).
    table = evaluate_grid_pointing_game(
        ColourModel(), colour_grids(MIXED_GROUPS), METHODS, batch_size=3, refine_settings={"tau": tau}, progress=False
    )
    assert len(table) == len(MIXED_GROUPS) * 4 * len(METHODS) * 2
    for row in table.itertuples():
        group = MIXED_GROUPS[row.grid]
        assert row.label == group[row.cell]
        assert row.n_classes == len(set(group))
        expected = expected_region_attribution(group, row.cell, row.method, row.mode)
        assert row.region_attribution == pytest.approx(expected, rel=1e-5), row
    base = table[table["mode"] == "base"].reset_index(drop=True)
    var = table[table["mode"] == "var"].reset_index(drop=True)
    assert (var["region_attribution"] >= base["region_attribution"] - 1e-6).all()


def test_base_maps_are_computed_once_per_batch_and_method():
    model = ColourModel()
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    evaluate_grid_pointing_game(model, colour_grids(SIX_GROUPS), METHODS, batch_size=3, progress=False)
    # Two batches of three grids, two methods, one forward each; VAR reuses the base maps.
    assert calls == [3, 3, 3, 3]


@pytest.mark.parametrize(
    "metric_settings, base_scores",
    [
        # Mean of the positive values (1 on 16 pixels, 0.5 on 48) is 0.625: only the cell survives.
        ({"binarization": "mean"}, {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0, "pointing": 1.0}),
        # The default keeps every positive pixel: all 64, 16 of them in the cell.
        ({}, {"precision": 0.25, "recall": 1.0, "f1": 0.4, "iou": 0.25, "pointing": 1.0}),
        # 0.4 * max keeps every pixel: 16 of 64 in the cell.
        (
            {"binarization": "max", "max_fraction": 0.4},
            {"precision": 0.25, "recall": 1.0, "f1": 0.4, "iou": 0.25, "pointing": 1.0},
        ),
    ],
)
def test_overlap_scores_of_four_distinct_colours(metric_settings, base_scores):
    table = evaluate_grid_pointing_game(
        ColourModel(), colour_grids([(0, 1, 2, 3)]), {"gradcam": {}}, metric_settings=metric_settings, progress=False
    )
    for mode, expected in [("base", base_scores), ("var", dict.fromkeys(base_scores, 1.0))]:
        rows = table[table["mode"] == mode]
        for metric, value in expected.items():
            assert rows[metric].to_numpy() == pytest.approx([value] * 4), (mode, metric)


def test_single_class_grid_scores_var_as_base():
    table = evaluate_grid_pointing_game(ColourModel(), colour_grids([(2, 2, 2, 2)]), METHODS, progress=False)
    base = table[table["mode"] == "base"].reset_index(drop=True)
    var = table[table["mode"] == "var"].reset_index(drop=True)
    assert (table["n_classes"] == 1).all()
    # Every cell shows the class: a constant map, a quarter of everything in each cell.
    assert base["region_attribution"].to_numpy() == pytest.approx([0.25] * 8)
    assert base["pointing"].to_numpy() == pytest.approx([0.25] * 8)
    pd.testing.assert_frame_equal(base[list(GPG_METRICS)], var[list(GPG_METRICS)])


def test_modes_and_method_aliases():
    table = evaluate_grid_pointing_game(
        ColourModel(),
        colour_grids([(0, 1, 2, 3)]),
        {"cam": {"method": "gradcam"}},
        modes=("var",),
        progress=False,
    )
    assert set(table["method"]) == {"cam"} and set(table["mode"]) == {"var"}
    assert table["region_attribution"].to_numpy() == pytest.approx([1.0] * 4)


def test_iterable_of_batches_gives_the_dataset_result(reference_table):
    loader = torch.utils.data.DataLoader(colour_grids(SIX_GROUPS), batch_size=4, collate_fn=collate_grids)
    table = evaluate_grid_pointing_game(ColourModel(), loader, METHODS, progress=False)
    pd.testing.assert_frame_equal(table, reference_table)


def test_table_layout(reference_table):
    assert tuple(reference_table.columns) == GPG_COLUMNS
    assert len(reference_table) == len(SIX_GROUPS) * 4 * len(METHODS) * 2
    first = reference_table.iloc[:16]
    assert first["grid"].eq(0).all()
    assert first["method"].tolist() == ["gradcam"] * 8 + ["input_x_gradient"] * 8
    assert first["mode"].tolist() == (["base"] * 4 + ["var"] * 4) * 2
    assert first["cell"].tolist() == [0, 1, 2, 3] * 4


# --------------------------------------------------------------------------- resuming and atomic writes


def _leftovers(folder: Path, out: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in {out.name, f"{out.name}.settings.json"})


def test_resume_skips_finished_grids_and_matches_one_shot(tmp_path, reference_table):
    out = tmp_path / "gpg.csv"
    first_half = colour_grids(SIX_GROUPS[:3])
    evaluate_grid_pointing_game(ColourModel(), first_half, METHODS, batch_size=2, out=out, progress=False)
    assert len(read_gpg_table(out)) == 3 * 4 * len(METHODS) * 2
    model = ColourModel()
    table = evaluate_grid_pointing_game(model, colour_grids(SIX_GROUPS), METHODS, batch_size=2, out=out, progress=False)
    assert model.images_seen == 3 * len(METHODS)  # only grids 3, 4 and 5, once per method
    pd.testing.assert_frame_equal(table, reference_table)
    on_disk = read_gpg_table(out).sort_values(["grid", "method", "mode", "cell"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(on_disk, reference_table)
    assert _leftovers(tmp_path, out) == []
    # A third run has nothing left to do.
    idle = ColourModel()
    pd.testing.assert_frame_equal(
        evaluate_grid_pointing_game(idle, colour_grids(SIX_GROUPS), METHODS, out=out, progress=False), reference_table
    )
    assert idle.images_seen == 0


def test_killed_run_leaves_whole_batches_and_resumes(tmp_path, reference_table):
    out = tmp_path / "gpg.csv"
    # Forward passes: batch 0 Grad-CAM, batch 0 IxG, batch 1 Grad-CAM <- killed here.
    with pytest.raises(KeyboardInterrupt):
        evaluate_grid_pointing_game(
            CrashingColourModel(crash_at=3), colour_grids(SIX_GROUPS), METHODS, batch_size=2, out=out, progress=False
        )
    partial = read_gpg_table(out)
    assert set(zip(partial["grid"], partial["method"])) == {(g, m) for g in (0, 1) for m in METHODS}
    assert len(partial) == 2 * 4 * len(METHODS) * 2
    assert _leftovers(tmp_path, out) == []
    model = ColourModel()
    table = evaluate_grid_pointing_game(model, colour_grids(SIX_GROUPS), METHODS, batch_size=2, out=out, progress=False)
    assert model.images_seen == 4 * len(METHODS)
    pd.testing.assert_frame_equal(table, reference_table)


def test_resume_adds_a_new_method_only(tmp_path, reference_table):
    out = tmp_path / "gpg.csv"
    evaluate_grid_pointing_game(ColourModel(), colour_grids(SIX_GROUPS), {"gradcam": {}}, out=out, progress=False)
    model = ColourModel()
    table = evaluate_grid_pointing_game(model, colour_grids(SIX_GROUPS), METHODS, batch_size=3, out=out, progress=False)
    assert model.images_seen == len(SIX_GROUPS)  # input_x_gradient only
    pd.testing.assert_frame_equal(table, reference_table)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"refine_settings": {"tau": 0.2}}, "refine_settings"),
        ({"metric_settings": {"binarization": "top"}}, "metric_settings"),
        ({"modes": ("base",)}, "modes"),
        ({"methods": {"gradcam": {"relu": True}}}, "methods\\['gradcam'\\]"),
    ],
)
def test_resume_refuses_other_settings(tmp_path, changes, match):
    out = tmp_path / "gpg.csv"
    evaluate_grid_pointing_game(ColourModel(), colour_grids(SIX_GROUPS[:2]), {"gradcam": {}}, out=out, progress=False)
    arguments = {"methods": {"gradcam": {}}, **changes}
    with pytest.raises(ValueError, match=match):
        evaluate_grid_pointing_game(ColourModel(), colour_grids(SIX_GROUPS), out=out, progress=False, **arguments)


def test_resume_refuses_a_csv_without_settings(tmp_path):
    out = tmp_path / "gpg.csv"
    evaluate_grid_pointing_game(ColourModel(), colour_grids(SIX_GROUPS[:1]), {"gradcam": {}}, out=out, progress=False)
    (tmp_path / "gpg.csv.settings.json").unlink()
    with pytest.raises(ValueError, match="settings file"):
        evaluate_grid_pointing_game(ColourModel(), colour_grids(SIX_GROUPS), {"gradcam": {}}, out=out, progress=False)


# --------------------------------------------------------------------------- summary


def test_summary_matches_groupby_by_hand(reference_table):
    summary = summarize(reference_table)
    assert list(zip(summary["method"], summary["mode"])) == [(m, mode) for m in METHODS for mode in ("base", "var")]
    for row in summary.itertuples():
        rows = reference_table[(reference_table["method"] == row.method) & (reference_table["mode"] == row.mode)]
        assert row.n == len(rows) == len(SIX_GROUPS) * 4
        for metric in GPG_METRICS:
            values = rows[metric].to_numpy()
            assert getattr(row, f"{metric}_mean") == pytest.approx(np.mean(values))
            assert getattr(row, f"{metric}_se") == pytest.approx(scipy.stats.sem(values), nan_ok=True)


# --------------------------------------------------------------------------- grid sources


def test_fashion_mnist_paper_grids_follow_the_seeded_permutation():
    images, labels = load_fashion_mnist()
    grids = fashion_mnist_grids(n_grids=5)
    order = np.random.default_rng(42).permutation(10_000)[:20].reshape(5, 4)
    assert len(grids) == 5
    for index, expected in enumerate(order):
        sample = grids[index]
        assert sample.indices == tuple(expected.tolist())
        assert sample.labels == tuple(labels[expected].tolist())
        assert torch.equal(sample.image[:, :28, 28:], images[expected[1]])  # top-right cell
    assert len(fashion_mnist_grids()) == 2_500


class NearestMeanModel(nn.Module):
    """Nearest class mean of the Fashion-MNIST test images: a real, imperfect classifier."""

    def __init__(self, means: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("means", means.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(x.flatten(1), self.means)


def test_fashion_mnist_strict_grids_hold_correct_images_of_distinct_classes():
    images, labels = load_fashion_mnist()
    model = NearestMeanModel(torch.stack([images[labels == k].mean(0) for k in range(10)]))
    with torch.no_grad():
        correct = (model(images).argmax(1) == labels).numpy()
    assert 0.3 < correct.mean() < 0.95  # the protocol has something to filter
    grids = fashion_mnist_grids(n_grids=50, protocol="strict", model=model)
    assert len(grids) == 50
    for group in grids.groups:
        assert correct[list(group)].all()
        assert len(set(labels[list(group)].tolist())) == 4


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0")


def test_photo_grids_are_all_distinct_combinations(lite0):
    grids = photo_grids(lite0)
    assert "astronaut" not in QUAD_PHOTOS and len(QUAD_PHOTOS) == 8
    with torch.no_grad():
        labels = [int(lite0(lite0.preprocess(load_photo(name))).argmax()) for name in QUAD_PHOTOS]
    expected = [c for c in itertools.combinations(range(8), 4) if len({labels[i] for i in c}) == 4]
    assert grids.groups == expected
    first = grids[0]
    assert first.image.shape == (3, 224, 224) and first.labels == tuple(labels[i] for i in expected[0])
    bottom_left = lite0.preprocess.normalize(unit_tensor(center_square(load_photo(QUAD_PHOTOS[expected[0][2]]), 112)))
    assert torch.allclose(first.image[:, 112:, :112], bottom_left)
    table = evaluate_grid_pointing_game(lite0, torch.utils.data.Subset(grids, [0]), {"gradcam": {}}, progress=False)
    assert len(table) == 8 and table["region_attribution"].between(0, 1).all()


def _write_image(path: Path, colour: tuple[int, int, int], seed: int) -> None:
    noise = np.random.default_rng(seed).integers(0, 30, size=(20, 24, 3))
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path)


PALETTE = [(225, 0, 0), (0, 225, 0), (0, 0, 225), (0, 0, 0)]


def _fake_imagenet(root: Path, per_class: int, mislabelled: dict[int, int] | None = None) -> list[tuple[str, int]]:
    """ImageFolder tree with ``per_class`` images of each palette colour; returns (file name, label) sorted."""
    mislabelled = mislabelled or {}
    files = []
    number = itertools.count(1)
    for label in range(len(PALETTE)):
        folder = root / f"n{label:08d}"
        folder.mkdir(parents=True)
        for _ in range(per_class):
            index = next(number)
            name = f"ILSVRC2012_val_{index:08d}.png"
            _write_image(folder / name, PALETTE[mislabelled.get(index, label)], index)
            files.append((name, label))
    return files


def _attach_preprocessing(model: nn.Module) -> nn.Module:
    model.preprocess = Preprocessing(36, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    model.input_size = 32
    return model.eval()


def test_imagenet_grids_on_a_fake_tree_with_a_random_resnet(tmp_path):
    files = _fake_imagenet(tmp_path, per_class=3)
    torch.manual_seed(0)
    model = _attach_preprocessing(resnet18(weights=None, num_classes=len(PALETTE)))
    grids = imagenet_grids(tmp_path, model)
    order = np.random.default_rng(42).permutation(len(files)).reshape(3, 4)
    assert len(grids) == 3
    for index, expected in enumerate(order):
        assert grids[index].labels == tuple(files[i][1] for i in expected)
    sample = grids[0]
    top_left = tmp_path / f"n{files[order[0, 0]][1]:08d}" / files[order[0, 0]][0]
    assert sample.image.shape == (3, 32, 32)
    assert torch.equal(sample.image[:, :16, :16], load_cell_image(top_left, 16, model.preprocess.normalize))
    table = evaluate_grid_pointing_game(model, grids, {"gradcam": {}, "saliency": {}}, batch_size=2, progress=False)
    assert len(table) == 3 * 4 * 2 * 2
    assert np.isfinite(table[list(GPG_METRICS)].to_numpy()).all()
    # Decoded and composed by two DataLoader worker processes instead: the same rows.
    methods = {"gradcam": {}, "saliency": {}}
    with_workers = evaluate_grid_pointing_game(model, grids, methods, batch_size=2, progress=False, workers=2)
    pd.testing.assert_frame_equal(with_workers, table)


class NearestColourModel(nn.Module):
    """Nearest palette colour of the image's mean (inputs normalised to [-1, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("palette", torch.tensor(PALETTE, dtype=torch.float32) / 127.5 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(x.mean(dim=(2, 3)), self.palette)


def test_imagenet_strict_grids_drop_misclassified_images(tmp_path):
    # Image 9 sits in class 2's folder but is red: the model calls it class 0.
    files = _fake_imagenet(tmp_path, per_class=3, mislabelled={9: 0})
    grids = imagenet_grids(tmp_path, _attach_preprocessing(NearestColourModel()), protocol="strict")
    used = [index for group in grids.groups for index in group]
    assert len(grids) >= 1 and 8 not in used  # file 9 is index 8 in name order
    for group in grids.groups:
        assert len({files[i][1] for i in group}) == 4


# --------------------------------------------------------------------------- command line


@pytest.fixture()
def random_fashion_cnn(monkeypatch):
    """The CLI's model loader returns a seeded random Fashion-MNIST CNN (the tests need no trained weights)."""

    def load(name, weights="DEFAULT"):
        assert name == "fashion_mnist_cnn"
        torch.manual_seed(0)
        return load_model(name, weights=None)

    monkeypatch.setattr("var_utils.apps.cli.load_model", load)


def test_cli_fashion_mnist_writes_the_expected_rows(tmp_path, capsys, random_fashion_cnn):
    out = tmp_path / "results" / "gpg.csv"
    argv = ["gpg", "--methods", "gradcam,saliency", "--grids", "8", "--batch-size", "4", "--out", str(out)]
    argv.append("--no-progress")
    assert main(argv) == 0
    table = read_gpg_table(out)
    assert len(table) == 8 * 4 * 2 * 2
    assert set(table["grid"]) == set(range(8)) and set(table["method"]) == {"gradcam", "saliency"}
    _, labels = load_fashion_mnist()
    order = np.random.default_rng(42).permutation(10_000)[:32]
    by_cell = table.drop_duplicates(["grid", "cell"]).sort_values(["grid", "cell"])
    assert by_cell["label"].tolist() == labels[order].tolist()
    printed = capsys.readouterr().out
    assert "region_attribution" in printed and "±" in printed and str(out) in printed


@pytest.mark.parametrize(
    "argv, match",
    [
        (["gpg", "--source", "mnist"], "invalid choice"),
        (["gpg", "--methods", "gradcam,nope"], "unknown method"),
        (["gpg", "--grids", "0"], "must be an integer >= 1"),
        (["gpg", "--batch-size", "-2"], "must be an integer >= 1"),
        (["gpg", "--source", "imagenet"], "needs --root"),
        (["gpg", "--workers", "-1"], "must be an integer >= 0"),
        (["gpg", "--device", "tpu"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit) as error:
        main(argv)
    assert error.value.code == 2
    assert match in capsys.readouterr().err


def test_cli_reports_a_settings_conflict_without_a_traceback(tmp_path, capsys, random_fashion_cnn):
    argv = ["gpg", "--methods", "gradcam", "--grids", "2", "--no-progress", "--out", str(tmp_path / "gpg.csv")]
    assert main(argv) == 0
    with pytest.raises(SystemExit) as error:
        main([*argv, "--tau", "0.2"])
    assert error.value.code == 2
    assert "holds results computed with other refine_settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, recorded",
    [
        ([], {"n_steps": 32, "rule": "riemann_graded"}),
        (["--n-steps", "8"], {"n_steps": 8, "rule": "riemann_graded"}),
        (["--ig-rule", "riemann_endpoints", "--n-steps", "128"], {"n_steps": 128, "rule": "riemann_endpoints"}),
    ],
)
def test_cli_integrated_gradients_settings(tmp_path, random_fashion_cnn, options, recorded):
    out = tmp_path / "gpg.csv"
    argv = ["gpg", "--methods", "integrated_gradients", "--grids", "1", "--no-progress", "--out", str(out), *options]
    assert main(argv) == 0
    settings = json.loads(settings_path(out).read_text())["methods"]["integrated_gradients"]["settings"]
    assert settings == {**recorded, "baseline": None}


def test_cli_device_cuda_runs_on_the_gpu_or_says_there_is_none(tmp_path, capsys, random_fashion_cnn):
    out = tmp_path / "gpg.csv"
    argv = ["gpg", "--methods", "gradcam", "--grids", "2", "--no-progress", "--device", "cuda", "--out", str(out)]
    if torch.cuda.is_available():
        assert main(argv) == 0 and len(read_gpg_table(out)) == 2 * 4 * 2
    else:
        with pytest.raises(SystemExit) as error:
            main(argv)
        assert error.value.code == 2 and "needs a GPU for local rank 0" in capsys.readouterr().err
        assert not out.exists()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"methods": {"nope": {}}}, ValueError, "Unknown `method`"),
        ({"methods": {}}, TypeError, "non-empty dict"),
        ({"methods": ["gradcam"]}, TypeError, "non-empty dict"),
        ({"methods": {"saliency": {"bogus": 1}}}, TypeError, "Bad settings"),
        ({"modes": ("base", "best")}, ValueError, "modes"),
        ({"modes": "base"}, TypeError, "modes"),
        ({"modes": ("var", "var")}, ValueError, "repeat"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"refine_settings": {"taux": 0.1}}, ValueError, "unknown key"),
        ({"refine_settings": {"temperature": -1.0}}, ValueError, "temperature"),
        ({"metric_settings": {"binarization": "median"}}, ValueError, "binarization"),
        ({"grids": 5}, TypeError, "grids"),
        ({"grids": GridDataset(torch.zeros(4, 4, 4, 4), [0, 1, 2, 3], [])}, ValueError, "empty"),
        ({"model": "colour"}, TypeError, "model"),
    ],
)
def test_evaluate_rejects_bad_input(kwargs, error, match):
    arguments = {"model": ColourModel(), "grids": colour_grids(MIXED_GROUPS), "methods": METHODS, "progress": False}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        evaluate_grid_pointing_game(**arguments)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: fashion_mnist_grids(n_grids=0), ValueError, "n_grids"),
        (lambda: fashion_mnist_grids(protocol="loose"), ValueError, "protocol"),
        (lambda: fashion_mnist_grids(protocol="strict"), ValueError, "needs `model`"),
        (lambda: grid_source("mnist", FashionMNISTCNN()), ValueError, "source"),
        (lambda: grid_source("imagenet", _attach_preprocessing(FashionMNISTCNN())), ValueError, "root"),
        (
            lambda: imagenet_grids("/no/such/imagenet", _attach_preprocessing(FashionMNISTCNN())),
            FileNotFoundError,
            "not a directory",
        ),
        (lambda: imagenet_grids("/no/such/imagenet", FashionMNISTCNN()), TypeError, "preprocess"),
        (lambda: photo_grids(nn.Linear(2, 2)), TypeError, "preprocess"),
        (lambda: summarize(pd.DataFrame({"method": ["m"]})), ValueError, "lacks the column"),
    ],
)
def test_sources_and_helpers_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_read_gpg_table_rejects_other_csv(tmp_path):
    other = tmp_path / "other.csv"
    pd.DataFrame({"grid": [0], "score": [1.0]}).to_csv(other, index=False)
    with pytest.raises(ValueError, match="not a grid pointing game table"):
        read_gpg_table(other)
