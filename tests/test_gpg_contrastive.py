"""Tests of the grid pointing game's extra modes, binarisation comparison, paired comparison and contrastive run.

Independent references:

* every mode's rows against a per-grid path through the public single-map functions
  (:func:`attribute_classes` of the grid's distinct labels, then :func:`refine`,
  :func:`competition_for_pixels` or :func:`contrast_to_mean` on those maps and
  :func:`localisation_scores` per cell);
* each binarisation's rows against a separate :func:`evaluate_grid_pointing_game`;
* the Wilcoxon p-value against an exact enumeration of all sign patterns, the
  per-grid means against pandas by hand, the bootstrap interval against the normal
  interval of a large sample.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from var_utils import competition_for_pixels, contrast_to_mean, derive_maps
from var_utils.apps.cli import main
from var_utils.datasets.grids import GridDataset
from var_utils.engine import MODES, attribute_classes, check_modes, var_from_base
from var_utils.evaluation.gpg import (
    COMPARISON_COLUMNS,
    GPG_COLUMNS,
    GPG_METRICS,
    binarization_comparison,
    contrastive_evaluation,
    evaluate_grid_pointing_game,
    paired_comparison,
    summarize_binarizations,
)
from var_utils.evaluation.gpg.comparison import bootstrap_interval, wilcoxon_p
from var_utils.evaluation.metrics import BINARIZATIONS, localisation_scores
from var_utils.evaluation.tables import perturbation_table, sanity_check_table
from var_utils.models import FashionMNISTCNN
from var_utils.refine import refine

CELL = 12
METHODS = {"gradcam": {}, "input_x_gradient": {}}
CELL_LABELS = [0, 1, 2, 3, 0, 1, 2, 3]
# Four classes, a repeated class, a single class, two more.
GROUPS = [(0, 1, 2, 3), (0, 4, 1, 2), (0, 4, 0, 4), (3, 2, 5, 6), (7, 6, 1, 4)]


def make_model() -> FashionMNISTCNN:
    torch.manual_seed(0)
    model = FashionMNISTCNN().eval()
    with torch.no_grad():
        model.classifier.weight.mul_(1000.0)  # attributions of order one
    return model


def make_grids() -> GridDataset:
    cells = torch.randn(len(CELL_LABELS), 1, CELL, CELL, generator=torch.Generator().manual_seed(3))
    return GridDataset(cells, CELL_LABELS, GROUPS)


@pytest.fixture(scope="module")
def model() -> FashionMNISTCNN:
    return make_model()


@pytest.fixture(scope="module")
def all_modes(model) -> pd.DataFrame:
    return evaluate_grid_pointing_game(model, make_grids(), METHODS, modes=MODES, batch_size=2, progress=False)


# --------------------------------------------------------------------------- modes


def single_map(maps: torch.Tensor, target: int, mode: str) -> torch.Tensor:
    """The target's map of one grid's distinct-class maps (K, C, H, W), from the public single-map functions."""
    if mode == "base":
        return maps[target]
    if mode in ("var", "var_joint"):
        return refine(maps, target, normalize="joint" if mode == "var_joint" else None)
    compete = competition_for_pixels if mode == "cgi" else contrast_to_mean
    return compete(maps)[target]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", METHODS)
def test_every_mode_equals_the_single_map_path(model, all_modes, method, mode):
    rows = all_modes[(all_modes["method"] == method) & (all_modes["mode"] == mode)]
    grids = make_grids()
    assert len(rows) == 4 * len(GROUPS)
    for row in rows.itertuples():
        sample = grids[row.grid]
        distinct = list(dict.fromkeys(sample.labels))
        if row.cell == 0:
            classes = distinct if len(distinct) > 1 else [distinct[0], distinct[0] + 1]
            maps = attribute_classes(model, sample.image[None], classes, method)[0]
        target = distinct.index(sample.labels[row.cell])
        # A single class has no competitor: every mode keeps its base map.
        expected_map = maps[0] if len(distinct) == 1 else single_map(maps, target, mode)
        expected = localisation_scores(expected_map, row.cell, (2, 2))
        for metric in GPG_METRICS:
            assert getattr(row, metric) == pytest.approx(expected[metric], rel=1e-4, abs=1e-5), (row, metric)


def test_modes_give_different_rows(all_modes):
    # Guards the comparison above against maps on which every mode coincides.
    for method in METHODS:
        by_mode = {
            mode: all_modes[(all_modes["method"] == method) & (all_modes["mode"] == mode)][list(GPG_METRICS)].to_numpy()
            for mode in MODES
        }
        for first, second in itertools.combinations(MODES, 2):
            assert not np.allclose(by_mode[first], by_mode[second]), (method, first, second)


def test_derive_maps_leaves_padding_and_single_class_rows_alone():
    base = torch.randn(3, 4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    n_classes = torch.tensor([4, 2, 1])
    for mode in MODES:
        derived = derive_maps(base, mode, n_classes=n_classes)
        assert torch.equal(derived[1, 2:], base[1, 2:]) and torch.equal(derived[2], base[2]), mode
    assert torch.allclose(derive_maps(base, "cgi", n_classes=n_classes)[1, :2], competition_for_pixels(base[1, :2]))
    assert torch.allclose(derive_maps(base, "contrast_mean")[0], contrast_to_mean(base[0]))
    joint = var_from_base(base, {"normalize": "joint", "tau": 0.0})
    assert torch.equal(derive_maps(base, "var_joint", {"tau": 0.0}), joint)


@pytest.mark.parametrize(
    "modes, error, match",
    [
        ("var", TypeError, "sequence"),
        ([], ValueError, "empty"),
        (["var", "cgi", "var"], ValueError, "repeat"),
        (["argmax"], ValueError, "modes"),
    ],
)
def test_check_modes_rejects_bad_modes(modes, error, match):
    with pytest.raises(error, match=match):
        check_modes(modes)


def test_derive_maps_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        derive_maps(torch.zeros(1, 2, 1, 2, 2), "hard_max")


@pytest.mark.parametrize("method", ["softmax_gradient", "contrastive_gradcam", "clrp"])
def test_methods_that_compare_classes_see_only_each_grid_s_own_set(model, method):
    # Batches of five grids with 4, 3, 1, 4 and 4 distinct classes: the sets are padded to four columns, yet each
    # grid's maps must equal those of its own distinct classes alone; the single-class grid has nothing to contrast.
    table = evaluate_grid_pointing_game(
        model, make_grids(), {method: {}}, modes=("base",), batch_size=5, progress=False
    )
    grids = make_grids()
    assert sorted(set(table["grid"])) == [0, 1, 3, 4]
    for grid_id, rows in table.groupby("grid"):
        sample = grids[grid_id]
        distinct = list(dict.fromkeys(sample.labels))
        maps = attribute_classes(model, sample.image[None], distinct, method)[0]
        for row in rows.itertuples():
            expected = localisation_scores(maps[distinct.index(sample.labels[row.cell])], row.cell)
            for metric in GPG_METRICS:
                assert getattr(row, metric) == pytest.approx(expected[metric], rel=1e-4, abs=1e-5), (row, metric)


# --------------------------------------------------------------------------- binarisations


@pytest.fixture(scope="module")
def by_binarization(model) -> pd.DataFrame:
    return binarization_comparison(model, make_grids(), METHODS, modes=("base", "cgi"), batch_size=2, progress=False)


@pytest.mark.parametrize("binarization", BINARIZATIONS)
def test_each_binarisation_equals_a_separate_run(model, by_binarization, binarization):
    separate = evaluate_grid_pointing_game(
        model,
        make_grids(),
        METHODS,
        modes=("base", "cgi"),
        metric_settings={"binarization": binarization},
        batch_size=3,
        progress=False,
    )
    rows = by_binarization[by_binarization["binarization"] == binarization][list(GPG_COLUMNS)]
    order = ["grid", "method", "mode", "cell"]
    rows = rows.sort_values(order).reset_index(drop=True)
    separate = separate.sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, separate, check_exact=False, rtol=1e-6, atol=1e-7)


def test_binarisations_change_only_the_overlap_scores(by_binarization):
    tables = [rows.reset_index(drop=True) for _, rows in by_binarization.groupby("binarization", sort=False)]
    for table in tables[1:]:
        pd.testing.assert_frame_equal(
            table[["region_attribution", "pointing"]], tables[0][["region_attribution", "pointing"]]
        )
        assert not np.allclose(table["f1"], tables[0]["f1"])


@pytest.mark.parametrize(
    "binarizations, error, match",
    [
        ("mean", TypeError, "binarizations"),
        ([], TypeError, "binarizations"),
        (["mean", "mean"], ValueError, "repeat"),
        (["otsu"], ValueError, "binarization"),
    ],
)
def test_binarization_comparison_rejects_bad_lists(model, binarizations, error, match):
    with pytest.raises(error, match=match):
        binarization_comparison(model, make_grids(), METHODS, binarizations, progress=False)


# --------------------------------------------------------------------------- paired comparison


def exact_wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided exact p-value by enumerating every sign pattern of the ranks (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(differences))) + 1
    observed = ranks[differences > 0].sum()
    sums = np.array([ranks[list(signs)].sum() for signs in itertools.product([False, True], repeat=len(ranks))])
    return min(1.0, 2 * min(np.mean(sums <= observed), np.mean(sums >= observed)))


@pytest.mark.parametrize("seed", range(4))
def test_wilcoxon_p_against_exact_enumeration(seed):
    rng = np.random.default_rng(seed)
    differences = rng.normal(0.4, 1.0, size=9)
    assert wilcoxon_p(differences) == pytest.approx(exact_wilcoxon_p(differences), rel=1e-9)


def test_wilcoxon_p_of_no_difference_is_one():
    assert wilcoxon_p(np.zeros(6)) == 1.0


def test_bootstrap_interval_matches_the_normal_interval_of_a_large_sample():
    differences = np.random.default_rng(1).normal(0.3, 2.0, size=4000)
    low, high = bootstrap_interval(differences, np.random.default_rng(2), 2000, 0.95)
    half_width = 1.96 * differences.std(ddof=1) / np.sqrt(len(differences))
    assert low < differences.mean() < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)


def comparison_table() -> pd.DataFrame:
    """Two grids × two cells of methods a and b in modes base and var, with hand-chosen pointing scores."""
    rows = []
    scores = {
        ("a", "base"): [0, 0, 1, 1],
        ("a", "var"): [1, 1, 1, 0],
        ("b", "base"): [1, 1, 0, 0],
        ("b", "var"): [0, 0, 0, 0],
    }
    for (method, mode), values in scores.items():
        for (grid, cell), value in zip(itertools.product([0, 1], [0, 1]), values):
            rows.append({"grid": grid, "cell": cell, "method": method, "mode": mode, "pointing": float(value)})
    return pd.DataFrame(rows)


def test_paired_comparison_by_hand():
    result = paired_comparison(comparison_table(), {"b": "a"}, metrics=["pointing"], n_resamples=200)
    assert list(result.columns) == list(COMPARISON_COLUMNS)
    pairs = {(row.method, row.mode): row for row in result.itertuples()}
    # Reference rows: a/var for everything but itself. Per-grid means: a/base (0, 1), a/var (1, 0.5), b/base (1, 0),
    # b/var (0, 0).
    assert set(pairs) == {("a", "base"), ("b", "base"), ("b", "var")}
    assert pairs["a", "base"].mean == 0.5 and pairs["a", "base"].reference_mean == 0.75
    assert pairs["a", "base"].difference == pytest.approx(-0.25)  # grid differences -1 and +0.5
    assert pairs["b", "var"].difference == pytest.approx(-0.75)
    assert all(row.n_grids == 2 and row.reference_method == "a" for row in result.itertuples())
    assert all(row.ci_low <= row.difference <= row.ci_high for row in result.itertuples())


def test_paired_comparison_pairs_only_shared_grids():
    table = comparison_table()
    table = table[~((table["method"] == "a") & (table["mode"] == "base") & (table["grid"] == 1))]
    row = paired_comparison(table, metrics=["pointing"], n_resamples=50).iloc[0]
    assert (row["method"], row["mode"], row["n_grids"], row["difference"]) == ("a", "base", 1, -1.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"table": "not a table"}, TypeError, "DataFrame"),
        ({"table": pd.DataFrame(columns=["grid", "cell", "method", "mode", "pointing"])}, ValueError, "empty"),
        ({"metrics": ["accuracy"]}, ValueError, "metrics"),
        ({"metrics": "pointing"}, TypeError, "metrics"),
        ({"references": ["a"]}, TypeError, "references"),
        ({"references": {"b": "c"}}, ValueError, "'c'"),
        ({"references": {"softmax_grad": "a"}}, ValueError, "softmax_grad"),
        ({"table": pd.concat([comparison_table()] * 2)}, ValueError, "several rows"),
        ({"seed": "x"}, TypeError, "seed"),
        ({"reference_mode": "cgi"}, ValueError, "cgi"),
        ({"n_resamples": 0}, ValueError, "n_resamples"),
        ({"confidence": 1.0}, ValueError, "confidence"),
    ],
)
def test_paired_comparison_rejects_bad_arguments(kwargs, error, match):
    arguments = {"table": comparison_table(), "metrics": ["pointing"], **kwargs}
    with pytest.raises(error, match=match):
        paired_comparison(**arguments)


# --------------------------------------------------------------------------- the contrastive run


def test_contrastive_evaluation_compares_each_method_with_var_on_its_base(model, tmp_path):
    methods = {"gradcam": {}, "contrastive_gradcam": {}, "input_x_gradient": {}, "softmax_gradient": {}}
    results = contrastive_evaluation(model, make_grids(), methods, batch_size=2, progress=False, n_resamples=100)
    assert results.summary[["method", "mode"]].apply(tuple, axis=1).tolist() == [
        (method, mode) for method in methods for mode in MODES
    ]
    references = results.comparison.groupby("method")["reference_method"].first().to_dict()
    assert references == {
        "gradcam": "gradcam",
        "contrastive_gradcam": "gradcam",
        "input_x_gradient": "input_x_gradient",
        "softmax_gradient": "input_x_gradient",
    }
    assert sorted(set(results.comparison["reference_mode"])) == ["var", "var_joint"]
    assert results.settings["comparison"]["references"] == {
        "contrastive_gradcam": "gradcam",
        "softmax_gradient": "input_x_gradient",
    }
    assert results.settings["grids"] == len(GROUPS) and results.settings["comparison"]["n_resamples"] == 100
    assert results.settings["metric_settings"]["binarization"] == "positive"
    summary_path, comparison_path = results.save(tmp_path / "run")
    pd.testing.assert_frame_equal(pd.read_csv(summary_path), results.summary, check_exact=False, rtol=1e-9)
    assert len(pd.read_csv(comparison_path)) == len(results.comparison)
    settings = json.loads((tmp_path / "run_comparison.csv.settings.json").read_text())
    assert settings["modes"] == list(MODES)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "run_comparison.csv",
        "run_comparison.csv.settings.json",
        "run_summary.csv",
        "run_summary.csv.settings.json",
    ]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"reference_modes": ("VAR",)}, ValueError, "reference_mode"),
        ({"reference_modes": "var"}, TypeError, "reference_modes"),
        ({"n_resamples": 0}, ValueError, "n_resamples"),
        ({"references": ["gradcam"]}, TypeError, "references"),
        ({"seed": "x"}, TypeError, "seed"),
    ],
)
def test_contrastive_evaluation_checks_its_comparison_settings_before_the_run(kwargs, error, match):
    model = make_model()
    calls = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(1))
    with pytest.raises(error, match=match):
        contrastive_evaluation(model, make_grids(), {"gradcam": {}}, progress=False, **kwargs)
    assert calls == []


def test_contrastive_command_writes_summary_comparison_and_resumable_cells(tmp_path, capsys):
    # contrastive_gradcam alone: gradcam, whose VAR maps it is compared with, runs too.
    arguments = ["contrastive", "--grids", "2", "--methods", "contrastive_gradcam", "--no-progress"]
    arguments += ["--cells", str(tmp_path / "cells.csv"), "--out-dir", str(tmp_path / "results")]
    assert main(arguments) == 0
    summary = pd.read_csv(tmp_path / "results" / "contrastive_fashion_mnist_paper_2grids_summary.csv")
    assert summary["method"].unique().tolist() == ["gradcam", "contrastive_gradcam"]
    assert summary["n"].tolist() == [8] * 10
    assert "contrastive_gradcam" in capsys.readouterr().out
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert len(cells) == 2 * 4 * 2 * len(MODES)
    comparison = pd.read_csv(tmp_path / "results" / "contrastive_fashion_mnist_paper_2grids_comparison.csv")
    assert set(comparison.loc[comparison["method"] == "contrastive_gradcam", "reference_method"]) == {"gradcam"}


def test_gpg_command_scores_the_chosen_modes(tmp_path):
    out = tmp_path / "gpg.csv"
    arguments = ["gpg", "--grids", "2", "--methods", "gradcam", "--modes", "base,cgi", "--out", str(out)]
    assert main([*arguments, "--no-progress"]) == 0
    assert sorted(set(pd.read_csv(out)["mode"])) == ["base", "cgi"]


@pytest.mark.parametrize("modes, message", [("base,argmax", "argmax"), ("var,var", "twice")])
def test_gpg_command_rejects_bad_modes(capsys, modes, message):
    with pytest.raises(SystemExit) as raised:
        main(["gpg", "--modes", modes])
    assert raised.value.code == 2 and message in capsys.readouterr().err


# --------------------------------------------------------------------------- sanity and perturbation tables


def test_sanity_and_perturbation_tables_score_the_chosen_modes(model):
    inputs = make_grids()[0].image[None].repeat(2, 1, 1, 1)
    class_sets = torch.tensor([[0, 1, 2], [1, 0, 2]])
    sanity = sanity_check_table(model, inputs, class_sets, {"gradcam": {}}, modes=("cgi", "contrast_mean"))
    assert sorted(set(sanity["mode"])) == ["cgi", "contrast_mean"]
    curves = perturbation_table(model, inputs, class_sets, {"gradcam": {}}, step=48, modes=("base", "cgi"))
    assert sorted(set(curves["mode"])) == ["base", "cgi"]
    with pytest.raises(ValueError, match="modes"):
        sanity_check_table(model, inputs, class_sets, {"gradcam": {}}, modes=("hard",))


def test_binarizations_command_writes_a_summary_per_binarisation(tmp_path):
    out = tmp_path / "binarizations.csv"
    arguments = ["binarizations", "--source", "fashion_mnist", "--grids", "2", "--binarizations", "positive,max"]
    assert main([*arguments, "--out", str(out), "--no-progress"]) == 0
    summary = pd.read_csv(out)
    assert summary[["binarization", "mode"]].apply(tuple, axis=1).tolist() == [
        ("positive", "base"),
        ("positive", "var"),
        ("max", "base"),
        ("max", "var"),
    ]
    # Region attribution does not depend on the binarisation; F1 does.
    assert summary["region_attribution_mean"].iloc[0] == summary["region_attribution_mean"].iloc[2]
    assert summary["f1_mean"].iloc[0] != summary["f1_mean"].iloc[2]
    assert json.loads((tmp_path / "binarizations.csv.settings.json").read_text())["binarizations"] == [
        "positive",
        "max",
    ]


def test_summarize_binarizations_rejects_other_tables():
    with pytest.raises(ValueError, match="binarization"):
        summarize_binarizations(pd.DataFrame({"method": ["m"], "mode": ["base"]}))
    with pytest.raises(TypeError, match="DataFrame"):
        summarize_binarizations([1, 2])


def test_contrastive_and_binarizations_take_the_seed_and_name_their_outputs_by_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = ["contrastive", "--grids", "2", "--methods", "contrastive_gradcam", "--seed", "7", "--no-progress"]
    assert main(arguments) == 0
    summary = tmp_path / "results" / "contrastive_fashion_mnist_paper_2grids_seed7_summary.csv"
    assert json.loads(Path(f"{summary}.settings.json").read_text())["source"]["seed"] == 7
    assert main(["binarizations", "--source", "fashion_mnist", "--grids", "2", "--seed", "7", "--no-progress"]) == 0
    recorded = json.loads((tmp_path / "results" / "binarizations_fashion_mnist_seed7.csv.settings.json").read_text())
    assert recorded["source"]["seed"] == 7
    # The seed changes the grids: another seed, other cells.
    cells = pd.read_csv(tmp_path / "outputs" / "contrastive_fashion_mnist_paper_2grids_seed7_cells.csv")
    assert main(["contrastive", "--grids", "2", "--methods", "contrastive_gradcam", "--no-progress"]) == 0
    default_cells = pd.read_csv(tmp_path / "outputs" / "contrastive_fashion_mnist_paper_2grids_cells.csv")
    assert cells["label"].tolist() != default_cells["label"].tolist()
