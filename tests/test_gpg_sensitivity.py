"""Tests of var_utils.gpg.refine_sensitivity and summarize_sensitivity.

Two independent references for the rows of every refine setting:

* :func:`evaluate_grid_pointing_game` run separately with ``refine_settings=setting``
  (its own attribution calls, its own refinement per run);
* a per-grid path through the public single-map functions: base maps of the grid's
  distinct labels from :func:`attribute_classes`, :func:`refine` per cell label and
  :func:`localisation_scores` per cell (no batching, padding or cell gathering).

The model is a seeded random Fashion-MNIST CNN whose classifier is scaled up so that
attributions are of order one and the settings really change the VAR maps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from var_utils.datasets.grids import GridDataset
from var_utils.engine import attribute_classes
from var_utils.evaluation.gpg import (
    GPG_COLUMNS,
    GPG_METRICS,
    SENSITIVITY_COLUMNS,
    SENSITIVITY_SETTING_COLUMNS,
    evaluate_grid_pointing_game,
    refine_sensitivity,
    summarize_sensitivity,
)
from var_utils.evaluation.metrics import localisation_scores
from var_utils.models import FashionMNISTCNN
from var_utils.refine import refine

CELL = 12  # cell side: grids are 24x24
METHODS = {"gradcam": {}, "input_x_gradient": {}}
# Cells 0..7 carry labels 0,1,2,3,0,1,2,3; groups: four classes, a repeated class, a single class, two more.
CELL_LABELS = [0, 1, 2, 3, 0, 1, 2, 3]
GROUPS = [(0, 1, 2, 3), (0, 4, 1, 2), (0, 4, 0, 4), (3, 2, 5, 6), (7, 6, 1, 4)]
SETTINGS = [
    {"tau": 0.0},
    {},  # the defaults: tau 0.01, temperature 0.1, |A|, no normalisation
    {"tau": 0.1, "temperature": 1.0},
    {"temperature": 0.05, "normalize": "joint"},
    {"use_abs": False, "tau": 0.005},
]
DEFAULTS = {"tau": 0.01, "temperature": 0.1, "use_abs": True, "normalize": None}


def make_model() -> FashionMNISTCNN:
    torch.manual_seed(0)
    model = FashionMNISTCNN().eval()
    with torch.no_grad():
        model.classifier.weight.mul_(1000.0)  # attributions of order one instead of 1e-3
    return model


def make_grids(groups=GROUPS) -> GridDataset:
    cells = torch.randn(len(CELL_LABELS), 1, CELL, CELL, generator=torch.Generator().manual_seed(3))
    return GridDataset(cells, CELL_LABELS, groups)


def forward_counter(model: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    return calls


@pytest.fixture(scope="module")
def model() -> FashionMNISTCNN:
    return make_model()


@pytest.fixture(scope="module")
def sweep(model) -> pd.DataFrame:
    return refine_sensitivity(model, make_grids(), METHODS, SETTINGS, batch_size=2, progress=False)


def setting_rows(sweep: pd.DataFrame, method: str, position: int | None) -> pd.DataFrame:
    """Rows of one method and one setting (``None``: the base rows), GPG columns only."""
    of_method = sweep[sweep["method"] == method]
    labels = list(dict.fromkeys(of_method["setting"]))  # "base", then the settings in order
    label = "base" if position is None else labels[1 + position]
    return of_method[of_method["setting"] == label][list(GPG_COLUMNS)].reset_index(drop=True)


# --------------------------------------------------------------------------- equal to the independent paths


@pytest.mark.parametrize("position", range(len(SETTINGS)))
def test_each_setting_equals_a_separate_grid_pointing_game(model, sweep, position):
    separate = evaluate_grid_pointing_game(
        model, make_grids(), METHODS, refine_settings=SETTINGS[position], batch_size=3, progress=False
    )
    for method in METHODS:
        for mode, rows in (("var", setting_rows(sweep, method, position)), ("base", setting_rows(sweep, method, None))):
            expected = separate[(separate["method"] == method) & (separate["mode"] == mode)].reset_index(drop=True)
            pd.testing.assert_frame_equal(rows, expected, check_exact=False, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("position", range(len(SETTINGS)))
@pytest.mark.parametrize("method", METHODS)
def test_each_setting_equals_single_map_refine_and_scores(model, sweep, method, position):
    rows = setting_rows(sweep, method, position)
    grids = make_grids()
    for row in rows.itertuples():
        sample = grids[row.grid]
        distinct = list(dict.fromkeys(sample.labels))
        if row.cell == 0:  # one attribution call per grid, of its distinct labels
            # A single class has no competitor (VAR = base by the module's convention); class + 1 only pads the set.
            classes = distinct if len(distinct) > 1 else [distinct[0], distinct[0] + 1]
            maps = attribute_classes(model, sample.image[None], classes, method)[0]
        target = distinct.index(sample.labels[row.cell])
        expected_map = maps[0] if len(distinct) == 1 else refine(maps, target, **SETTINGS[position])
        expected = localisation_scores(expected_map, row.cell, (2, 2))
        assert row.label == sample.labels[row.cell] and row.n_classes == len(distinct)
        for metric in GPG_METRICS:
            assert getattr(row, metric) == pytest.approx(expected[metric], rel=1e-4, abs=1e-5), (row, metric)


def test_settings_change_the_var_rows(sweep):
    # Guards the comparisons above against a degenerate model on which every setting gives the same maps.
    for method in METHODS:
        tables = [setting_rows(sweep, method, position)[list(GPG_METRICS)] for position in range(len(SETTINGS))]
        for first in range(len(tables)):
            for second in range(first + 1, len(tables)):
                assert not np.allclose(tables[first].to_numpy(), tables[second].to_numpy()), (method, first, second)


def test_base_maps_are_computed_once_per_batch_and_method():
    model = make_model()
    calls = forward_counter(model)
    refine_sensitivity(model, make_grids(), METHODS, SETTINGS, batch_size=2, progress=False)
    # Batches of 2, 2 and 1 grids, one forward per method, however many settings.
    assert calls == [2, 2, 2, 2, 1, 1]


# --------------------------------------------------------------------------- layout


def test_table_layout_and_order(sweep):
    assert tuple(sweep.columns) == SENSITIVITY_COLUMNS
    n_rows = len(GROUPS) * 4
    assert len(sweep) == len(METHODS) * (1 + len(SETTINGS)) * n_rows
    blocks = [sweep.iloc[start : start + n_rows] for start in range(0, len(sweep), n_rows)]
    expected_order = [(method, position) for method in METHODS for position in [None, *range(len(SETTINGS))]]
    for block, (method, position) in zip(blocks, expected_order):
        assert block["method"].eq(method).all()
        assert block["grid"].tolist() == [grid for grid in range(len(GROUPS)) for _ in range(4)]
        assert block["cell"].tolist() == [0, 1, 2, 3] * len(GROUPS)
        if position is None:
            assert block["setting"].eq("base").all() and block["mode"].eq("base").all()
            assert block[["tau", "temperature"]].isna().all().all()
            assert block["use_abs"].isna().all() and block["normalize"].isna().all()
        else:
            setting = {**DEFAULTS, **SETTINGS[position]}
            assert block["mode"].eq("var").all() and block["setting"].nunique() == 1
            for key, value in setting.items():
                assert block[key].tolist() == [value] * n_rows, key


def test_setting_labels_are_unique_and_readable(sweep):
    labels = list(dict.fromkeys(sweep["setting"]))
    assert labels[:3] == ["base", "tau=0.0, t=0.1, abs, normalize=none", "tau=0.01, t=0.1, abs, normalize=none"]
    assert labels[4] == "tau=0.01, t=0.05, abs, normalize=joint"
    assert labels[5] == "tau=0.005, t=0.1, signed, normalize=none"


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    "settings, error, match",
    [
        ({"tau": 0.1}, TypeError, "`settings` must be a list of dicts"),
        ("tau", TypeError, "`settings` must be a list of dicts"),
        (None, TypeError, "`settings` must be a list of dicts"),
        ([], ValueError, "`settings` is empty"),
        ([{"tau": 0.1}, 3], TypeError, r"`settings\[1\]` must be a dict"),
        ([{"tau": 0.1, "temp": 1.0}], ValueError, r"`settings\[0\]` has unknown key\(s\) \['temp'\]"),
        ([{"class_dim": 1}], ValueError, "unknown key"),
        ([{"temperature": 0.0}], ValueError, "temperature"),
        ([{"temperature": -1.0}], ValueError, "temperature"),
        ([{"normalize": "max"}], ValueError, "normalize"),
        ([{"tau": "0.1"}], TypeError, "tau"),
        ([{}, {"tau": 0.01}], ValueError, r"`settings\[1\]` repeats `settings\[0\]`"),
        ([{"temperature": 10}, {"temperature": 10.0}], ValueError, "repeats"),
        ([{}, {"use_abs": "yes"}], TypeError, "use_abs"),
    ],
)
def test_bad_settings_raise_before_any_attribution(settings, error, match):
    model = make_model()
    calls = forward_counter(model)
    with pytest.raises(error, match=match):
        refine_sensitivity(model, make_grids(), METHODS, settings, progress=False)
    assert calls == []


@pytest.mark.parametrize(
    "arguments, error, match",
    [
        ({"methods": {}}, TypeError, "`methods`"),
        ({"methods": {"nope": {}}}, ValueError, "Unknown `method`"),
        ({"metric_settings": {"binarization": "otsu"}}, ValueError, "binarization"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"model": "model"}, TypeError, "`model`"),
    ],
)
def test_other_bad_arguments_raise(arguments, error, match):
    given = {"model": make_model(), "methods": METHODS, **arguments}
    with pytest.raises(error, match=match):
        refine_sensitivity(given.pop("model"), make_grids(), given.pop("methods"), [{}], progress=False, **given)


@pytest.mark.parametrize("grids", [[], torch.utils.data.Subset(make_grids(), [])])
def test_no_grids_raise(grids):
    with pytest.raises(ValueError, match="`grids`"):
        refine_sensitivity(make_model(), grids, METHODS, [{}], progress=False)


# --------------------------------------------------------------------------- summary


def test_summary_matches_groupby_by_hand(sweep):
    summary = summarize_sensitivity(sweep)
    assert list(summary.columns[: len(SENSITIVITY_SETTING_COLUMNS)]) == list(SENSITIVITY_SETTING_COLUMNS)
    labels = list(dict.fromkeys(sweep["setting"]))
    assert list(zip(summary["setting"], summary["method"])) == [(s, m) for s in labels for m in METHODS]
    for row in summary.itertuples():
        rows = sweep[(sweep["setting"] == row.setting) & (sweep["method"] == row.method)]
        assert row.n == len(rows) == len(GROUPS) * 4
        assert row.mode == ("base" if row.setting == "base" else "var")
        first = rows.iloc[0]
        for key in ("use_abs", "normalize"):
            assert getattr(row, key) == first[key]
        for key in ("tau", "temperature"):
            assert getattr(row, key) == pytest.approx(first[key], nan_ok=True)
        for metric in GPG_METRICS:
            values = rows[metric].to_numpy()
            assert getattr(row, f"{metric}_mean") == pytest.approx(np.mean(values))
            assert getattr(row, f"{metric}_se") == pytest.approx(scipy.stats.sem(values), nan_ok=True)


@pytest.mark.parametrize(
    "table, error, match",
    [
        ("table", TypeError, "DataFrame"),
        (pd.DataFrame({"method": ["m"], "mode": ["var"], **dict.fromkeys(GPG_METRICS, [0.5])}), ValueError, "setting"),
        (pd.DataFrame(columns=list(SENSITIVITY_COLUMNS)), ValueError, "empty"),
    ],
)
def test_summary_rejects_bad_tables(table, error, match):
    with pytest.raises(error, match=match):
        summarize_sensitivity(table)
