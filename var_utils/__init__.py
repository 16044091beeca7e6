"""var_utils: class-relevant saliency maps (VAR) on top of any attribution method.

The public API is re-exported here::

    from var_utils import refine, attribute_classes, ClassSpecificAttributionWrapper, load_model

The evaluation names (grid pointing game, COCO objects, localisation metrics)
load on first use, so ``import var_utils`` stays light (no pandas).
"""

from __future__ import annotations

import importlib

from .contrastive import competition_for_pixels, contrast_to_mean
from .datasets.photos import PHOTOS, half_and_half, load_image, load_photo
from .engine import MAP_MODES, MODES, attribute_classes, base_and_var_maps, derive_maps
from .explainers import VarExplainer, automatic_class_set, competing_classes
from .methods import METHODS, AttributionMethod, get_method
from .models import MODELS, load_model
from .refine import class_distribution, refine, refine_all, shared_map
from .wrappers import ClassSpecificAttributionWrapper, ContrastiveAttributionWrapper

_LAZY = {
    "box_localisation_table": "var_utils.evaluation.metrics",
    "coco_imagenet_classes": "var_utils.datasets.coco_classes",
    "coco_object_images": "var_utils.datasets.coco_objects",
    "evaluate_coco_objects": "var_utils.evaluation.coco",
    "evaluate_grid_pointing_game": "var_utils.evaluation.gpg",
    "make_coco_scenes": "var_utils.datasets.coco_scenes",
    "explore": "var_utils.apps.explore",
    "localisation_scores": "var_utils.evaluation.metrics",
    "region_attribution": "var_utils.evaluation.metrics",
}

__all__ = [
    "MAP_MODES",
    "METHODS",
    "MODES",
    "MODELS",
    "PHOTOS",
    "AttributionMethod",
    "ClassSpecificAttributionWrapper",
    "ContrastiveAttributionWrapper",
    "VarExplainer",
    "attribute_classes",
    "automatic_class_set",
    "base_and_var_maps",
    "box_localisation_table",
    "class_distribution",
    "coco_imagenet_classes",
    "coco_object_images",
    "competition_for_pixels",
    "competing_classes",
    "contrast_to_mean",
    "derive_maps",
    "evaluate_coco_objects",
    "evaluate_grid_pointing_game",
    "explore",
    "get_method",
    "half_and_half",
    "load_image",
    "load_model",
    "load_photo",
    "localisation_scores",
    "make_coco_scenes",
    "refine",
    "refine_all",
    "region_attribution",
    "shared_map",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'var_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
