"""var_utils: class-relevant saliency maps (VAR) on top of any attribution method.

The public API is re-exported here::

    from var_utils import refine, attribute_classes, ClassSpecificAttributionWrapper, load_model
"""
from .engine import attribute_classes
from .explainers import VarExplainer, competing_classes
from .features import shared_map
from .gpg import evaluate_grid_pointing_game
from .images import PHOTOS, half_and_half, load_image, load_photo
from .metrics import localisation_scores, region_attribution
from .methods import METHODS, AttributionMethod, get_method
from .models import MODELS, load_model
from .refine import class_distribution, refine, refine_all
from .wrappers import ClassSpecificAttributionWrapper, ContrastiveAttributionWrapper

__all__ = [
    "METHODS",
    "MODELS",
    "PHOTOS",
    "AttributionMethod",
    "VarExplainer",
    "ClassSpecificAttributionWrapper",
    "ContrastiveAttributionWrapper",
    "attribute_classes",
    "class_distribution",
    "competing_classes",
    "evaluate_grid_pointing_game",
    "get_method",
    "half_and_half",
    "load_image",
    "load_model",
    "load_photo",
    "localisation_scores",
    "refine",
    "region_attribution",
    "refine_all",
    "shared_map",
]
