"""The grid pointing game on the CNN, the ViT and the B-cos network.

The comparison refines one set of base maps twice; its rows are checked
against separate runs of :func:`var_utils.evaluate_grid_pointing_game` (one per
refine setting), and the strict grids against each model's own predictions.
"""

from __future__ import annotations

import json

import matplotlib
import pandas as pd
import pytest
import torch

from var_utils import evaluate_grid_pointing_game, load_model
from var_utils.apps.cli import main
from var_utils.datasets.fashion_mnist import load_fashion_mnist, resize_images
from var_utils.evaluation.gpg import fashion_mnist_grids, summarize
from var_utils.evaluation.gpg.architectures import ARCHITECTURE_METHODS, compare_architectures, setting_table
from var_utils.viz import plot_setting_bars

matplotlib.use("Agg")

FEW_METHODS = {
    "fashion_mnist_cnn": {"gradcam": {}},
    "fashion_mnist_vit": {"attention_gradcam": {}, "attnlrp": {}},
    "fashion_mnist_bcos": {"bcos": {}},
}


@pytest.fixture(scope="module")
def comparison() -> pd.DataFrame:
    return compare_architectures(list(FEW_METHODS), n_grids=6, methods=FEW_METHODS, progress=False)


def test_rows_per_model_method_and_setting(comparison):
    expected = [
        (model, setting, method)
        for model, methods in FEW_METHODS.items()
        for setting in ("base", "paper", "joint")
        for method in methods
    ]
    got = list(zip(comparison["model"], comparison["setting"], comparison["method"]))
    assert sorted(got) == sorted(expected)
    assert (comparison["n"] == 24).all() and (comparison["protocol"] == "paper").all()


@pytest.mark.parametrize("model_name", list(FEW_METHODS))
def test_each_setting_equals_its_own_grid_pointing_game_run(comparison, model_name):
    model = load_model(model_name)
    grids = fashion_mnist_grids(6)
    for setting, refine_settings in (("paper", {}), ("joint", {"normalize": "joint"})):
        table = evaluate_grid_pointing_game(
            model, grids, FEW_METHODS[model_name], refine_settings=refine_settings, progress=False
        )
        reference = summarize(table)
        for mode, label in (("base", "base"), ("var", setting)):
            ours = comparison[(comparison["model"] == model_name) & (comparison["setting"] == label)]
            theirs = reference[reference["mode"] == mode]
            for method in FEW_METHODS[model_name]:
                a = ours[ours["method"] == method].iloc[0]
                b = theirs[theirs["method"] == method].iloc[0]
                for metric in ("region_attribution_mean", "pointing_mean", "iou_mean"):
                    assert a[metric] == pytest.approx(b[metric], abs=1e-9)


def test_strict_grids_hold_images_the_vit_classifies_correctly_at_56_pixels():
    vit = load_model("fashion_mnist_vit")
    grids = fashion_mnist_grids(5, protocol="strict", model=vit)
    images, labels = load_fashion_mnist()
    for sample in grids:
        cells = sample.image.unfold(1, 28, 28).unfold(2, 28, 28).reshape(1, 4, 28, 28).permute(1, 0, 2, 3)
        with torch.no_grad():
            predictions = vit(resize_images(cells, 56)).argmax(dim=1)
        assert predictions.tolist() == list(sample.labels)
        assert len(set(sample.labels)) == 4


def test_every_default_method_runs_on_its_model():
    for name, methods in ARCHITECTURE_METHODS.items():
        table = compare_architectures([name], n_grids=1, progress=False, methods={name: methods})
        assert set(table["method"]) == set(methods)
        assert table.filter(like="_mean").notna().all().all()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="resnet50"):
        compare_architectures(["resnet50"], n_grids=1)
    with pytest.raises(ValueError, match="protocol"):
        compare_architectures(n_grids=1, protocol="easy")


def test_cli_writes_the_summary(tmp_path, capsys):
    out = tmp_path / "summary.csv"
    main(["architectures", "--models", "fashion_mnist_bcos", "--grids", "2", "--no-progress", "--out", str(out)])
    table = pd.read_csv(out)
    assert table["setting"].tolist()[:3] == ["base", "base", "base"] and len(table) == 3 * 5
    assert "Summary written" in capsys.readouterr().out
    settings = json.loads((tmp_path / "summary.csv.settings.json").read_text())
    assert settings["source"] == {"source": "fashion_mnist", "protocol": "paper", "seed": 42, "grids": 2}
    assert settings["refine_settings"]["joint"]["normalize"] == "joint"
    assert settings["refine_settings"]["paper"] == {"tau": 0.01, "temperature": 0.1, "use_abs": True, "normalize": None}
    assert settings["methods"]["fashion_mnist_bcos"]["integrated_gradients"]["settings"]["n_steps"] == 16


def test_setting_bars_draw_one_bar_per_method_and_setting(comparison):
    figure = plot_setting_bars(comparison, "pointing")
    axes = figure.axes
    assert len(axes) == 3
    vit_axis = axes[1]
    heights = sorted(round(patch.get_height(), 9) for patch in vit_axis.patches)
    expected = comparison[comparison["model"] == "fashion_mnist_vit"]["pointing_mean"].round(9)
    assert heights == sorted(expected)
    with pytest.raises(ValueError, match="iou_mean"):
        plot_setting_bars(comparison.drop(columns="iou_mean"), "iou")


def test_setting_table_puts_the_settings_side_by_side(comparison):
    table = setting_table(comparison, "iou")
    assert list(table.columns) == ["base", "paper", "joint"]
    row = comparison[(comparison["model"] == "fashion_mnist_vit") & (comparison["method"] == "attnlrp")]
    for setting in ("base", "paper", "joint"):
        expected = row[row["setting"] == setting]["iou_mean"].item()
        assert table.loc[("paper", "fashion_mnist_vit", "attnlrp"), setting] == expected


def test_bad_model_lists_are_refused_before_any_work():
    with pytest.raises(TypeError, match="list of model names"):
        compare_architectures("fashion_mnist_vit", n_grids=1)
    with pytest.raises(SystemExit):
        main(["architectures", "--models", "fashion_mnist_vit, fashion_mnist_cnm", "--grids", "1"])


def test_setting_bars_refuse_several_protocols_or_nothing(comparison):
    twice = pd.concat([comparison, comparison.assign(protocol="strict")])
    with pytest.raises(ValueError, match="one row per"):
        plot_setting_bars(twice, "pointing")
    with pytest.raises(ValueError, match="one row per"):
        plot_setting_bars(comparison.iloc[:0], "pointing")
