"""The demo on the embedded defaults: a 2×2 grid of offline photos and the half-and-half image.

Everything runs offline with EfficientNet-Lite0; ``run_demo`` writes the
figures and a CSV to an output folder and returns the region attribution of
every class on its own cell, base vs VAR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .._io import atomic_output_path
from ..datasets.grids import compose_grid
from ..datasets.photos import half_and_half
from ..engine import base_and_var_maps
from ..evaluation.gpg.sources import labelled_photo_cells
from ..evaluation.metrics import region_attribution
from ..models import load_model
from ..viz import plot_class_maps

DEMO_PHOTOS = ("chelsea", "coffee", "rocket", "camera")
DEMO_METHODS: dict[str, dict] = {
    "gradcam": {},
    "guided_backprop": {},
    "integrated_gradients": {"n_steps": 32},
}
HALF_AND_HALF_CLASSES = (285, 967)  # Egyptian cat (left half), espresso (right half)


def photo_grid(model: nn.Module, photos: Sequence[str] = DEMO_PHOTOS) -> tuple[torch.Tensor, list[int]]:
    """A 2×2 grid of four offline photos at the model's input size, and the model's label of each cell.

    The cells are those of Quad-Photos
    (:func:`var_utils.evaluation.gpg.sources.labelled_photo_cells`): each photo
    labelled by the model's top-1 prediction on the photo alone, cropped to
    its centred square and resized to one cell.

    Parameters
    ----------
    model : nn.Module
        A model of :func:`var_utils.load_model` (needs ``.preprocess`` and ``.input_size``).
    photos : sequence of str
        Four names from :data:`var_utils.PHOTOS`.

    Returns
    -------
    tuple of torch.Tensor and list of int
        The (1, 3, H, W) normalised grid image and the cell labels in row-major order.
    """
    if len(photos) != 4:
        raise ValueError(f"`photos` must name 4 photos for a 2x2 grid, got {len(photos)}.")
    cells, labels = labelled_photo_cells(model, photos)
    return compose_grid(cells).unsqueeze(0), labels


def image_maps(
    model: nn.Module,
    image: torch.Tensor,
    classes: Sequence[int],
    method: str = "saliency",
    refine_settings: Mapping | None = None,
    **method_kwargs,
) -> dict[str, torch.Tensor]:
    """Base and VAR maps (K, C', H, W) of the classes for one (1, C, H, W) image.

    The single-image view of :func:`var_utils.base_and_var_maps`.

    Parameters
    ----------
    model, image, classes, method, refine_settings, **method_kwargs
        As in :func:`var_utils.base_and_var_maps`, with one image (1, C, H, W).

    Returns
    -------
    dict of str to torch.Tensor
        ``{"base": ..., "var": ...}``, each (K, C', H, W).
    """
    maps = base_and_var_maps(model, image, classes, method, refine_settings, **method_kwargs)
    return {mode: class_maps[0] for mode, class_maps in maps.items()}


def region_table(
    maps: Mapping[str, Mapping[str, torch.Tensor]], class_names: Sequence[str], grid: tuple[int, int]
) -> pd.DataFrame:
    """Region attribution of class k on cell k for every method and mode.

    Parameters
    ----------
    maps : mapping of str to mapping of str to torch.Tensor
        Method -> mode -> (K, C', H, W) maps of the K classes, class k
        belonging on cell k (e.g. of :func:`image_maps`).
    class_names : sequence of str
        Name of each class, in the order of the maps.
    grid : tuple of int
        ``(rows, cols)`` of the image.

    Returns
    -------
    pandas.DataFrame
        One row per (method, class): columns ``method``, ``class`` and
        ``RA <mode>`` for every mode.
    """
    rows = []
    for method, by_mode in maps.items():
        for cell, name in enumerate(class_names):
            row = {"method": method, "class": name}
            row.update({f"RA {mode}": region_attribution(m[cell], cell, grid) for mode, m in by_mode.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def save_figure(figure, path: Path) -> None:
    """Write a matplotlib figure atomically and close it.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        The figure; closed also when writing fails.
    path : Path
        Output file; its suffix gives the format (e.g. ``.png``).
    """
    import matplotlib.pyplot as plt

    try:
        with atomic_output_path(path) as temporary:
            figure.savefig(temporary, dpi=80, format=path.suffix.lstrip("."))
    finally:
        plt.close(figure)


def run_demo(output_dir: str | Path = "outputs", methods: Mapping[str, dict] = DEMO_METHODS) -> pd.DataFrame:
    """Run the demo with EfficientNet-Lite0 and write its figures to ``output_dir``.

    Parameters
    ----------
    output_dir : str or Path, default "outputs"
        Folder of the figures (``<image>_<method>.png``) and of
        ``region_attribution.csv``.
    methods : mapping of str to dict, default DEMO_METHODS
        Method name -> its settings.

    Returns
    -------
    pandas.DataFrame
        One row per (image, method, class): region attribution of the class
        on its own cell (grid) or half (half-and-half), base vs VAR.
    """
    torch.manual_seed(0)
    output_dir = Path(output_dir)
    model = load_model("efficientnet_lite0")
    tables = []
    scenes = {
        "grid": (*photo_grid(model), (2, 2)),
        "half_and_half": (model.preprocess(half_and_half()), list(HALF_AND_HALF_CLASSES), (1, 2)),
    }
    for scene, (image, classes, grid) in scenes.items():
        maps = {method: image_maps(model, image, classes, method, **kwargs) for method, kwargs in methods.items()}
        names = [model.class_names[c] for c in classes]
        tables.append(region_table(maps, names, grid).assign(image=scene))
        picture = model.preprocess.to_unit(image[0]).permute(1, 2, 0).numpy()
        for method, by_mode in maps.items():
            rows = {f"{method} {mode}": m for mode, m in by_mode.items()}
            save_figure(plot_class_maps(picture, rows, names, common_scale=True), output_dir / f"{scene}_{method}.png")
    table = pd.concat(tables, ignore_index=True)[["image", "method", "class", "RA base", "RA var"]]
    with atomic_output_path(output_dir / "region_attribution.csv") as temporary:
        table.to_csv(temporary, index=False)
    return table
