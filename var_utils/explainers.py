"""Explanation functions ``explain(model, inputs, targets) -> maps`` for evaluation protocols.

Sanity checks, insertion/deletion and Quantus metrics call an explanation
function with a model, images and one target per image. :class:`VarExplainer`
turns a base method into such a function, returning either the target's base
map or its VAR map against a class set fixed per image.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from ._checks import check_choice, check_images, check_logits
from .engine import attribute_classes, class_matrix
from .methods import AttributionMethod, get_method
from .perturbation import check_targets
from .refine import refine_all

MODES = ("base", "var")


def competing_classes(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, num_classes: int = 4) -> torch.Tensor:
    """Class sets (N, K): each image's target first, then the model's most probable other classes.

    Fixing the sets with the trained model keeps them the same when the model
    is later randomised (sanity checks) or the image perturbed.
    """
    inputs = check_images(inputs)
    targets = check_targets(targets, inputs.shape[0])
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be >= 2, got {num_classes}.")
    was_training = model.training
    try:
        with torch.no_grad():
            logits = check_logits(model.eval()(inputs), inputs.shape[0]).clone()
    finally:
        model.train(was_training)
    if num_classes > logits.shape[1]:
        raise ValueError(f"`num_classes` = {num_classes} exceeds the model's {logits.shape[1]} classes.")
    logits.scatter_(1, targets.view(-1, 1), float("-inf"))
    others = logits.topk(num_classes - 1, dim=1).indices
    return torch.cat([targets.view(-1, 1), others], dim=1)


class VarExplainer:
    """An explanation function for one base method, in ``base`` or ``var`` mode.

    Args:
        method: method name, :class:`AttributionMethod`, Captum object or callable.
        class_sets: (N, K) class sets, one row per image, each holding its target
            (see :func:`competing_classes`); the explained batch must have N images.
        mode: ``"base"`` (the target's base map) or ``"var"`` (its VAR map).
        refine_settings: ``tau``, ``temperature``, ``use_abs``, ``normalize``.
        **method_kwargs: settings of a named method.

    Calling it as ``explainer(model, inputs, targets)`` returns (N, C', H, W).
    """

    def __init__(
        self,
        method: str | AttributionMethod | Callable,
        class_sets: torch.Tensor,
        *,
        mode: str = "var",
        refine_settings: Mapping | None = None,
        **method_kwargs,
    ) -> None:
        check_choice(mode, "mode", MODES)
        if not isinstance(class_sets, torch.Tensor) or class_sets.dim() != 2:
            raise ValueError("`class_sets` must be an (N, K) tensor of class indices, one row per image.")
        self.method = get_method(method, **method_kwargs)
        self.class_sets = class_matrix(class_sets, class_sets.shape[0], "class_sets")
        self.mode = mode
        self.refine_settings = dict(refine_settings or {})
        refine_all(torch.zeros(2, 1), **self.refine_settings)

    def __call__(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = check_targets(targets, inputs.shape[0])
        if inputs.shape[0] != self.class_sets.shape[0]:
            raise ValueError(
                f"`inputs` has {inputs.shape[0]} images but the explainer holds {self.class_sets.shape[0]} class sets."
            )
        hits = self.class_sets == targets.view(-1, 1).to(self.class_sets.device)
        if not hits.any(dim=1).all():
            raise ValueError("Every target must belong to its image's class set (`class_sets` row).")
        maps = attribute_classes(model, inputs, self.class_sets, self.method)
        if self.mode == "var":
            maps = refine_all(maps, class_dim=1, **self.refine_settings)
        return maps[torch.arange(inputs.shape[0]), hits.float().argmax(dim=1)]
