"""The demo on the embedded defaults: a 2×2 grid of offline photos and the half-and-half image.

Everything runs offline with EfficientNet-Lite0; ``run_demo`` writes the
figures and a CSV to an output folder and returns the region attribution of
every class on its own cell, base vs VAR.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ._io import atomic_output_path
from .engine import attribute_classes
from .grids import compose_grid
from .images import center_square, half_and_half, load_photo, unit_tensor
from .metrics import region_attribution
from .refine import refine_all

DEMO_PHOTOS = ("chelsea", "coffee", "rocket", "camera")
DEMO_METHODS: dict[str, dict] = {
    "gradcam": {},
    "guided_backprop": {},
    "integrated_gradients": {"n_steps": 32},
}
HALF_AND_HALF_CLASSES = (285, 967)  # Egyptian cat (left half), espresso (right half)


def top_class(model: nn.Module, image) -> int:
    """The model's top-1 class for an RGB ``uint8`` photo, preprocessed by ``model.preprocess``."""
    with torch.no_grad():
        return int(model(model.preprocess(image)).argmax())


def photo_grid(model: nn.Module, photos: Sequence[str] = DEMO_PHOTOS, grid: tuple[int, int] = (2, 2)):
    """A grid of offline photos at the model's input size and the model's label for each cell.

    Each photo is labelled by the model's top-1 prediction on the photo alone,
    then cropped to its centred square and resized to one cell.

    Returns
    -------
    tuple of torch.Tensor and list of int
        The (1, 3, H, W) normalised grid image and the cell labels in row-major order.
    """
    if len(photos) != grid[0] * grid[1]:
        raise ValueError(f"`photos` must name {grid[0] * grid[1]} photos for a {grid} grid, got {len(photos)}.")
    cell_size = model.input_size // grid[0]
    images = [load_photo(name) for name in photos]
    labels = [top_class(model, image) for image in images]
    cells = torch.stack([unit_tensor(center_square(image, cell_size)) for image in images])
    return model.preprocess.normalize(compose_grid(cells, grid)).unsqueeze(0), labels


def base_and_var_maps(
    model: nn.Module, image: torch.Tensor, classes: Sequence[int], method: str, refine_settings: Mapping | None = None,
    **method_kwargs,
) -> dict[str, torch.Tensor]:
    """Base and VAR maps, each (K, C', H, W), of the classes for one (1, C, H, W) image."""
    base = attribute_classes(model, image, classes, method, **method_kwargs)[0]
    return {"base": base, "var": refine_all(base, **(refine_settings or {}))}


def region_table(
    maps: Mapping[str, Mapping[str, torch.Tensor]], class_names: Sequence[str], grid: tuple[int, int]
) -> pd.DataFrame:
    """Region attribution of class k on cell k for every method and mode: one row per (method, class)."""
    rows = []
    for method, by_mode in maps.items():
        for cell, name in enumerate(class_names):
            row = {"method": method, "class": name}
            row.update({f"RA {mode}": region_attribution(m[cell], cell, grid) for mode, m in by_mode.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def save_figure(figure, path: Path) -> None:
    """Write a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_output_path(path) as temporary:
            figure.savefig(temporary, dpi=80, format=path.suffix.lstrip("."))
    finally:
        plt.close(figure)


def run_demo(output_dir: str | Path = "outputs", methods: Mapping[str, dict] = DEMO_METHODS) -> pd.DataFrame:
    """Run the demo with EfficientNet-Lite0 and write its figures to ``output_dir``.

    Returns
    -------
    pandas.DataFrame
        One row per (image, method, class): region attribution of the class
        on its own cell (grid) or half (half-and-half), base vs VAR.
    """
    from .models import load_model
    from .viz import plot_class_maps

    torch.manual_seed(0)
    output_dir = Path(output_dir)
    model = load_model("efficientnet_lite0")
    tables = []
    scenes = {
        "grid": (*photo_grid(model), (2, 2)),
        "half_and_half": (model.preprocess(half_and_half()), list(HALF_AND_HALF_CLASSES), (1, 2)),
    }
    for scene, (image, classes, grid) in scenes.items():
        maps = {method: base_and_var_maps(model, image, classes, method, **kwargs) for method, kwargs in methods.items()}
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
