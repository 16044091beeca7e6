"""Explanation functions ``explain(model, inputs, targets) -> maps`` for evaluation protocols.

Sanity checks, insertion/deletion and Quantus metrics call an explanation
function with a model, images and one target per image. :class:`VarExplainer`
turns a base method into such a function, returning either the target's base
map or its VAR map against a class set fixed per image; :func:`competing_classes`
fixes those sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from ._model_state import model_device, predict_logits
from ._validation import check_choice, check_images, check_logits, check_model, check_targets, renamed_keywords
from .engine import MODES, base_and_var_maps, class_matrix
from .methods import AttributionMethod, get_method
from .refine import check_refine_settings


def automatic_class_set(probabilities: torch.Tensor, top_k: int) -> list[int]:
    """The automatic class set: the ``top_k`` most probable classes, then the least probable one.

    This is the original project's set (``num_classes`` top predictions plus the
    least likely class as a contrast), as in
    :class:`var_utils.ContrastiveAttributionWrapper`.

    Parameters
    ----------
    probabilities : torch.Tensor
        (num_classes,) scores of one image (probabilities or logits).
    top_k : int
        Number of top predictions, 1 <= top_k < num_classes.

    Returns
    -------
    list of int
        ``top_k + 1`` class indices, most probable first.

    Examples
    --------
    >>> automatic_class_set(torch.tensor([0.1, 0.5, 0.05, 0.35]), top_k=2)
    [1, 3, 2]
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k < probabilities.numel():
        raise ValueError(
            f"`top_k` must be an int in 1..{probabilities.numel() - 1} (the model has {probabilities.numel()} "
            f"classes), got {top_k!r}."
        )
    order = probabilities.argsort(descending=True).tolist()
    return order[:top_k] + order[-1:]


@renamed_keywords(num_classes="set_size")
def competing_classes(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, set_size: int = 4) -> torch.Tensor:
    """Class sets (N, K): each image's target first, then the model's most probable other classes.

    Fixing the sets with the trained model keeps them the same when the model
    is later randomised (sanity checks) or the image perturbed.

    Parameters
    ----------
    model : nn.Module
        The classifier; it runs in eval mode, its training flags are restored.
    inputs : torch.Tensor
        Images (N, C, H, W).
    targets : torch.Tensor
        (N,) target class of each image.
    set_size : int, default 4
        K, the number of classes in each set (>= 2). Formerly ``num_classes``.

    Returns
    -------
    torch.Tensor
        (N, K) class indices, the target in column 0.

    Examples
    --------
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 6))
    >>> competing_classes(model, torch.rand(2, 1, 2, 2), torch.tensor([5, 0]), set_size=3).shape
    torch.Size([2, 3])
    """
    check_model(model)
    inputs = check_images(inputs)
    targets = check_targets(targets, inputs.shape[0])
    if isinstance(set_size, bool) or not isinstance(set_size, int) or set_size < 2:
        raise ValueError(f"`set_size` must be an int >= 2 (a target and at least one competitor), got {set_size!r}.")
    logits = check_logits(predict_logits(model, inputs), inputs.shape[0]).clone()
    if set_size > logits.shape[1]:
        raise ValueError(f"`set_size` = {set_size} exceeds the model's {logits.shape[1]} classes.")
    targets = targets.to(logits.device)
    logits.scatter_(1, targets.view(-1, 1), float("-inf"))
    others = logits.topk(set_size - 1, dim=1).indices
    return torch.cat([targets.view(-1, 1), others], dim=1)


class VarExplainer:
    """An explanation function for one base method, in one mode of :data:`var_utils.engine.MODES` (default VAR).

    Parameters
    ----------
    method : str, AttributionMethod, Captum attribution or callable
        The base method (see :func:`var_utils.get_method`).
    class_sets : torch.Tensor
        (N, K) class sets, one row per image, each holding its target (see
        :func:`competing_classes`); the explained batch must have N images.
    mode : str, default "var"
        The target's base map (``"base"``), its VAR map (``"var"``), or another
        map derived from the set's base maps (see :func:`var_utils.engine.derive_maps`).
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    **method_kwargs
        Settings of a named method.

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4))
    >>> explain = VarExplainer("saliency", torch.tensor([[0, 1, 2]]))
    >>> explain(model, torch.rand(1, 1, 8, 8), torch.tensor([1])).shape
    torch.Size([1, 1, 8, 8])
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
        self.refine_settings = check_refine_settings(refine_settings)

    def __call__(
        self, model: nn.Module, inputs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray
    ) -> torch.Tensor | np.ndarray:
        """The target's map in the explainer's mode (base, VAR, ...) for every image.

        Parameters
        ----------
        model : nn.Module
            The classifier to explain (e.g. a randomised copy in sanity checks).
        inputs : torch.Tensor or numpy.ndarray
            Images (N, C, H, W), as many as the explainer holds class sets. A
            numpy array (as Quantus passes its ``x_batch``) is moved to the
            model's device, and the maps come back as a numpy array.
        targets : torch.Tensor or numpy.ndarray
            (N,) target class of each image; each must belong to its image's
            row of ``class_sets``.

        Returns
        -------
        torch.Tensor or numpy.ndarray
            (N, C', H, W) maps of the targets, in the explainer's ``mode``; a
            numpy array when ``inputs`` is one.

        Raises
        ------
        ValueError
            The number of images differs from the number of class sets, or a
            target is not in its class set.
        """
        from_numpy = isinstance(inputs, np.ndarray)
        if from_numpy:
            inputs = torch.as_tensor(inputs, device=model_device(model))
            targets = torch.as_tensor(np.asarray(targets))
        targets = check_targets(targets, inputs.shape[0])
        if inputs.shape[0] != self.class_sets.shape[0]:
            raise ValueError(
                f"`inputs` has {inputs.shape[0]} images but the explainer holds {self.class_sets.shape[0]} class sets."
            )
        hits = self.class_sets == targets.view(-1, 1).to(self.class_sets.device)
        if not hits.any(dim=1).all():
            raise ValueError("Every target must belong to its image's class set (`class_sets` row).")
        maps = base_and_var_maps(model, inputs, self.class_sets, self.method, self.refine_settings, modes=(self.mode,))[
            self.mode
        ]
        rows = torch.arange(inputs.shape[0], device=maps.device)
        chosen = maps[rows, hits.float().argmax(dim=1).to(maps.device)]
        return chosen.cpu().numpy() if from_numpy else chosen
