"""The grid pointing game: how well base and VAR maps put each class on its own cell.

A grid shows ``rows × cols`` images ("cells", row-major: top-left, top-right,
bottom-left, bottom-right for 2×2). Its class set is the labels of its cells,
and each label's map is scored on that label's cell (``docs/method.md``,
sections 4 and 5). The package is split by concern:

- :mod:`.sources`: grids of Fashion-MNIST, the offline photos and ImageNet;
- :mod:`.scoring`: class sets of grids and the per-cell scores;
- :mod:`.store`: the results CSV, its settings fingerprint, resuming;
- :mod:`.runner`: the one batch loop and :func:`evaluate_grid_pointing_game`;
- :mod:`.sensitivity`: the same game under several refine settings;
- :mod:`.binarization`: the same game under several binarisations;
- :mod:`.comparison`: paired, grid-by-grid comparison of two kinds of maps;
- :mod:`.contrastive`: VAR against the class-discriminative methods.
"""

from .binarization import BINARIZATION_COLUMN, binarization_comparison, summarize_binarizations
from .comparison import COMPARISON_COLUMNS, paired_comparison
from .contrastive import CONTRASTIVE_METHODS, CONTRASTIVE_REFERENCES, ContrastiveResults, contrastive_evaluation
from .runner import evaluate_grid_pointing_game, summarize
from .scoring import GPG_COLUMNS, GPG_METRICS, grid_class_sets
from .sensitivity import SENSITIVITY_COLUMNS, SENSITIVITY_SETTING_COLUMNS, refine_sensitivity, summarize_sensitivity
from .sources import (
    DEFAULT_MODELS,
    GPG_INTEGRATED_GRADIENTS,
    GRID_SOURCES,
    QUAD_PHOTOS,
    fashion_mnist_grids,
    grid_source,
    imagenet_grids,
    photo_grids,
)
from .store import read_gpg_table

__all__ = [
    "BINARIZATION_COLUMN",
    "COMPARISON_COLUMNS",
    "CONTRASTIVE_METHODS",
    "CONTRASTIVE_REFERENCES",
    "DEFAULT_MODELS",
    "GPG_COLUMNS",
    "GPG_INTEGRATED_GRADIENTS",
    "GPG_METRICS",
    "GRID_SOURCES",
    "QUAD_PHOTOS",
    "SENSITIVITY_COLUMNS",
    "SENSITIVITY_SETTING_COLUMNS",
    "ContrastiveResults",
    "binarization_comparison",
    "contrastive_evaluation",
    "evaluate_grid_pointing_game",
    "fashion_mnist_grids",
    "grid_class_sets",
    "grid_source",
    "imagenet_grids",
    "paired_comparison",
    "photo_grids",
    "read_gpg_table",
    "refine_sensitivity",
    "summarize",
    "summarize_binarizations",
    "summarize_sensitivity",
]
