"""The grid pointing game: how well base and VAR maps put each class on its own cell.

A grid shows ``rows × cols`` images ("cells", row-major: top-left, top-right,
bottom-left, bottom-right for 2×2). Its class set is the labels of its cells,
and each label's map is scored on that label's cell (``docs/method.md``,
sections 4 and 5). The package is split by concern:

- :mod:`.sources`: grids of Fashion-MNIST, the offline photos and ImageNet;
- :mod:`.scoring`: class sets of grids and the per-cell scores;
- :mod:`.store`: the results CSV, its settings fingerprint, resuming;
- :mod:`.runner`: the one batch loop and :func:`evaluate_grid_pointing_game`;
- :mod:`.sensitivity`: the same game under several refine settings.
"""

from .runner import evaluate_grid_pointing_game, summarize
from .scoring import GPG_COLUMNS, GPG_METRICS, grid_class_sets
from .sensitivity import SENSITIVITY_COLUMNS, SENSITIVITY_SETTING_COLUMNS, refine_sensitivity, summarize_sensitivity
from .sources import (
    DEFAULT_MODELS,
    GRID_SOURCES,
    QUAD_PHOTOS,
    fashion_mnist_grids,
    grid_source,
    imagenet_grids,
    photo_grids,
)
from .store import read_gpg_table

__all__ = [
    "DEFAULT_MODELS",
    "GPG_COLUMNS",
    "GPG_METRICS",
    "GRID_SOURCES",
    "QUAD_PHOTOS",
    "SENSITIVITY_COLUMNS",
    "SENSITIVITY_SETTING_COLUMNS",
    "evaluate_grid_pointing_game",
    "fashion_mnist_grids",
    "grid_class_sets",
    "grid_source",
    "imagenet_grids",
    "photo_grids",
    "read_gpg_table",
    "refine_sensitivity",
    "summarize",
    "summarize_sensitivity",
]
