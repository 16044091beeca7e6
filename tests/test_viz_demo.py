"""Tests of the display normalisation, the figures, the demo helpers and the half-and-half acceptance case.

Independent references: hand-computed display values, scipy's Gaussian filter,
the left-half positive share computed by hand, and stub models with known logits.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter
from torch import nn

from var_utils.apps import demo
from var_utils.datasets.photos import center_square, load_photo, unit_tensor
from var_utils.engine import attribute_classes, base_and_var_maps
from var_utils.evaluation.metrics import region_attribution
from var_utils.models import Preprocessing, top_class
from var_utils.refine import refine_all
from var_utils.viz import display_map, display_scale, overlay_map, plot_class_maps

# Two channels; positive part [[1, 0], [3, 0]] and [[0, 4], [1, 2]], channel mean [[0.5, 2], [2, 1]].
HAND_MAP = torch.tensor([[[1.0, -2.0], [3.0, 0.0]], [[-1.0, 4.0], [1.0, 2.0]]])


# ---------------------------------------------------------------- display_map
@pytest.mark.parametrize(
    "percentile, expected",
    [
        (100.0, [[0.25, 1.0], [1.0, 0.5]]),  # scale = max = 2
        (50.0, [[1 / 3, 1.0], [1.0, 2 / 3]]),  # scale = median of (0.5, 1, 2, 2) = 1.5
        (25.0, [[0.5 / 0.875, 1.0], [1.0, 1.0]]),  # scale = 0.5 + 0.75 * (1 - 0.5) = 0.875
    ],
)
def test_display_map_by_hand(percentile, expected):
    shown = display_map(HAND_MAP, percentile=percentile)
    assert shown.shape == (2, 2)
    np.testing.assert_allclose(shown, expected, rtol=1e-12)


def test_display_map_accepts_two_dimensional_maps_and_an_explicit_scale():
    np.testing.assert_allclose(
        display_map(torch.tensor([[-1.0, 2.0], [4.0, 8.0]]), scale=4.0), [[0.0, 0.5], [1.0, 1.0]]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_display_map_range(seed):
    attribution = torch.randn(3, 12, 9, generator=torch.Generator().manual_seed(seed)) * 10**seed
    shown = display_map(attribution)
    assert shown.shape == (12, 9)
    assert shown.min() >= 0.0 and shown.max() == 1.0
    assert (shown[attribution.clamp(min=0).mean(0).numpy() == 0] == 0).all()


def test_display_map_of_zero_and_sparse_maps():
    assert (display_map(torch.zeros(1, 4, 4)) == 0).all()
    sparse = torch.zeros(1, 10, 10)
    sparse[0, 3, 4] = 4.0  # the 99th percentile is 0: the maximum is used instead
    shown = display_map(sparse)
    assert shown[3, 4] == 1.0 and shown.sum() == 1.0


def test_display_map_blur_is_a_gaussian_filter_of_the_normalised_map():
    attribution = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(
        display_map(attribution, blur_sigma=1.5), gaussian_filter(display_map(attribution), sigma=1.5), rtol=1e-6
    )


def test_common_scale_keeps_the_ratio_between_maps():
    weak = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(4))
    strong = 2 * weak
    scale = display_scale([weak, strong], percentile=100.0)
    assert scale == pytest.approx(strong.mean(0).max().item())
    np.testing.assert_allclose(display_map(weak, scale=scale), display_map(strong, scale=scale) / 2, rtol=1e-6)
    # Scaled separately, both fill the colour range.
    assert display_map(weak, percentile=100.0).max() == display_map(strong, percentile=100.0).max() == 1.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: display_map(HAND_MAP, percentile=0.0), ValueError, "`percentile`"),
        (lambda: display_map(HAND_MAP, percentile=101.0), ValueError, "`percentile`"),
        (lambda: display_map(HAND_MAP, scale=0.0), ValueError, "`scale`"),
        (lambda: display_map(HAND_MAP[None]), ValueError, "`attribution`"),
        (lambda: display_map(HAND_MAP.numpy()), TypeError, "`attribution`"),
    ],
)
def test_display_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- plot_class_maps
@pytest.mark.parametrize("num_rows, num_classes", [(1, 2), (2, 3)])
@pytest.mark.parametrize("common_scale, overlay", [(True, True), (False, False)])
def test_plot_class_maps_layout(num_rows, num_classes, common_scale, overlay):
    image = np.random.default_rng(0).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    rows = {f"row {r}": torch.rand(num_classes, 1, 8, 8) for r in range(num_rows)}
    names = [f"class {k}" for k in range(num_classes)]
    figure = plot_class_maps(image, rows, names, common_scale=common_scale, overlay=overlay, blur_sigma=1.0)
    try:
        assert isinstance(figure, Figure)
        assert len(figure.axes) == num_rows * (num_classes + 1)
        assert [figure.axes[k + 1].get_title() for k in range(num_classes)] == names
        assert [figure.axes[r * (num_classes + 1)].get_ylabel() for r in range(num_rows)] == list(rows)
        # The image, then one or two layers (grey image below the map) per class.
        assert len(figure.axes[1].images) == 1
    finally:
        plt.close(figure)


def test_plot_class_maps_common_scale_shows_the_weaker_class_dimmer():
    weak = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(5))
    maps = torch.stack([weak, 4 * weak])
    figure = plot_class_maps(
        np.zeros((6, 6, 3)), {"maps": maps}, ["a", "b"], common_scale=True, overlay=False, percentile=100.0
    )
    try:
        shown = [np.asarray(figure.axes[k].images[0].get_array()) for k in (1, 2)]
        np.testing.assert_allclose(shown[0], shown[1] / 4, rtol=1e-6)
    finally:
        plt.close(figure)


def test_plot_class_maps_rejects_rows_of_the_wrong_shape():
    with pytest.raises(ValueError, match="`rows"):
        plot_class_maps(np.zeros((4, 4, 3)), {"maps": torch.rand(3, 1, 4, 4)}, ["a", "b"])
    with pytest.raises(ValueError, match="`rows"):
        plot_class_maps(np.zeros((4, 4, 3)), {"maps": torch.rand(2, 4, 4)}, ["a", "b"])
    plt.close("all")


# ---------------------------------------------------------------- demo helpers
def test_region_table_on_tiny_maps():
    base = torch.tensor([[[[3.0, 1.0, 1.0, -5.0]]], [[[1.0, 0.0, 2.0, 2.0]]]])  # (K=2, 1, 1, 4)
    var = torch.tensor([[[[3.0, 0.0, 0.0, 0.0]]], [[[0.0, 0.0, -1.0, 2.0]]]])
    table = demo.region_table({"gradcam": {"base": base, "var": var}}, ["cat", "cup"], grid=(1, 2))
    expected = pd.DataFrame(
        {"method": ["gradcam", "gradcam"], "class": ["cat", "cup"], "RA base": [4 / 5, 4 / 5], "RA var": [1.0, 1.0]}
    )
    pd.testing.assert_frame_equal(table, expected)


class FixedLogits(nn.Module):
    """Predicts the class given by the image's mean brightness (0 dark … 3 bright), with a preprocess attached."""

    def __init__(self) -> None:
        super().__init__()
        self.preprocess = Preprocessing(8, 8, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.input_size = 16

    def forward(self, x):
        return -((x.mean(dim=(1, 2, 3), keepdim=True) * 4 - torch.arange(4).view(1, 4) - 0.5) ** 2).flatten(1)


def test_top_class_and_photo_grid():
    model = FixedLogits()
    assert top_class(model, np.zeros((10, 10, 3), np.uint8)) == 0
    assert top_class(model, np.full((10, 10, 3), 255, np.uint8)) == 3
    photos = ("chelsea", "coffee", "camera", "rocket")
    grid, labels = demo.photo_grid(model, photos)
    assert grid.shape == (1, 3, 16, 16)
    cells = [unit_tensor(center_square(load_photo(name), 8)) for name in photos]
    torch.testing.assert_close(grid[0, :, :8, :8], cells[0])
    torch.testing.assert_close(grid[0, :, :8, 8:], cells[1])
    torch.testing.assert_close(grid[0, :, 8:, :8], cells[2])
    torch.testing.assert_close(grid[0, :, 8:, 8:], cells[3])
    expected = [int(model(model.preprocess(load_photo(name))).argmax()) for name in photos]
    assert labels == expected
    with pytest.raises(ValueError, match="`photos`"):
        demo.photo_grid(model, photos[:3])


def test_base_and_var_maps(plain_cnn):
    image = torch.randn(1, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    maps = base_and_var_maps(plain_cnn, image, [1, 3], "input_x_gradient", {"tau": 0.0, "temperature": 0.01})
    gradients = []
    for target in (1, 3):
        x = image.clone().requires_grad_(True)
        gradients.append(x * torch.autograd.grad(plain_cnn(x)[0, target], x)[0])
    base = torch.cat(gradients).detach()
    torch.testing.assert_close(maps["base"][0], base)
    torch.testing.assert_close(maps["var"][0], refine_all(base, tau=0.0, temperature=0.01))


# ---------------------------------------------------------------- half-and-half acceptance (Lite0, Grad-CAM)
def left_positive_share(attribution: torch.Tensor) -> float:
    positive = attribution.sum(dim=0).clamp(min=0)
    return float(positive[:, : positive.shape[1] // 2].sum() / positive.sum())


def test_half_and_half_gradcam_var_separates_the_halves(lite0, half_and_half_input):
    cat, espresso = demo.HALF_AND_HALF_CLASSES
    assert (cat, espresso) == (285, 967)
    base = attribute_classes(lite0, half_and_half_input, [cat, espresso], "gradcam")[0]
    var = refine_all(base)
    shares = {name: [left_positive_share(m) for m in maps] for name, maps in (("base", base), ("var", var))}
    for name, maps in (("base", base), ("var", var)):
        for k in range(2):
            assert region_attribution(maps[k], 0, (1, 2)) == pytest.approx(shares[name][k], abs=1e-6)
    # Both put more positive mass on the cat half for the cat than for the espresso...
    assert shares["base"][0] > shares["base"][1]
    assert shares["var"][0] > shares["var"][1]
    # ...and VAR more so: the cat's map moves left, the espresso's right.
    assert shares["var"][0] > shares["base"][0]
    assert shares["var"][1] < shares["base"][1]


def test_run_demo_writes_figures_and_table(lite0, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "load_model", lambda name: lite0)
    table = demo.run_demo(tmp_path, methods={"gradcam": {}})
    assert list(table.columns) == ["image", "method", "class", "RA base", "RA var"]
    assert table["image"].tolist() == ["grid"] * 4 + ["half_and_half"] * 2
    assert table["class"].tolist()[4:] == ["Egyptian cat", "espresso"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grid_gradcam.png",
        "half_and_half_gradcam.png",
        "region_attribution.csv",
    ]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "region_attribution.csv"), table, check_dtype=False)
    assert table[["RA base", "RA var"]].apply(lambda column: column.between(0, 1)).all().all()


def test_overlay_map_blends_the_colour_map_over_the_luma_of_the_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    shown = rng.random((5, 6))
    blended = overlay_map(image, shown, cmap="viridis", alpha=0.3)
    luma = (image.astype(np.float64) / 255.0) @ np.array([0.299, 0.587, 0.114])
    colours = plt.get_cmap("viridis")(shown)[..., :3]
    np.testing.assert_allclose(blended, 0.3 * colours + 0.7 * luma[..., None], atol=1e-5)
    with pytest.raises(ValueError, match="`shown`"):
        overlay_map(image, shown[:4])
    with pytest.raises(ValueError, match="`alpha`"):
        overlay_map(image, shown, alpha=1.5)
