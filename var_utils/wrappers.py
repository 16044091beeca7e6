"""Wrappers with the original project's interface: a base method plus a class set gives VAR maps."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ._checks import check_class_set, check_positive_int
from .engine import attribute_classes
from .methods import AttributionMethod, get_method
from .refine import refine_all


def as_single_image(image: torch.Tensor, name: str = "img") -> torch.Tensor:
    """Return ``image`` as a (1, C, H, W) batch; accepts (C, H, W) or (1, C, H, W)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(image).__name__}.")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"`{name}` must be one image of shape (C, H, W) or (1, C, H, W), got {tuple(image.shape)}.")
    return image


class _VarWrapper:
    """Shared settings of the wrappers: the base method, the model and the refinement."""

    def __init__(
        self,
        base_method: str | AttributionMethod | Callable,
        model: nn.Module,
        *,
        tau: float,
        temperature: float,
        use_abs: bool,
        normalize: str | None,
        **method_kwargs,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        self.method = get_method(base_method, **method_kwargs)
        self.model = model
        self.refine_settings = dict(tau=tau, temperature=temperature, use_abs=use_abs, normalize=normalize)
        # Validate the refinement settings now rather than at the first call.
        refine_all(torch.zeros(2, 1), **self.refine_settings)

    def _base_maps(self, image: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """Base maps (K, C', H, W) of ``classes`` for one image."""
        return attribute_classes(self.model, as_single_image(image), classes, self.method)[0]

    def _var_maps(self, image: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """VAR maps (K, C', H, W) of ``classes`` for one image."""
        return refine_all(self._base_maps(image, classes), **self.refine_settings)


class ClassSpecificAttributionWrapper(_VarWrapper):
    """VAR maps for a given set of competing classes.

    The model is put in eval mode for the attribution and restored afterwards.

    Args:
        base_method: a method name (``var_utils.METHODS``), an
            :class:`AttributionMethod`, a Captum attribution object or a
            callable ``(inputs, target) -> maps``.
        model: the classifier (logits of shape (N, classes)).
        class_indices: the K >= 2 distinct classes that compete.
        tau: threshold ``τ`` on ``M − 1/K`` (default 0.01, as the original).
        temperature: softmax temperature ``t`` (default 0.1, as the original).
        use_abs: compare ``|A|`` across classes (default True).
        normalize: ``None`` or ``"joint"`` (see :func:`var_utils.refine`).
        **method_kwargs: settings of a named base method (``n_steps``, ``layer``, …).

    Example:
        >>> from var_utils import load_model, half_and_half
        >>> model = load_model("efficientnet_lite0")
        >>> wrapper = ClassSpecificAttributionWrapper("gradcam", model, class_indices=[285, 967])
        >>> wrapper.attribute(model.preprocess(half_and_half()), target=285).shape
        torch.Size([1, 1, 224, 224])
    """

    def __init__(
        self,
        base_method: str | AttributionMethod | Callable,
        model: nn.Module,
        class_indices: Sequence[int],
        tau: float = 0.01,
        *,
        temperature: float = 0.1,
        use_abs: bool = True,
        normalize: str | None = None,
        **method_kwargs,
    ) -> None:
        super().__init__(
            base_method, model, tau=tau, temperature=temperature, use_abs=use_abs, normalize=normalize, **method_kwargs
        )
        self.class_indices = check_class_set(class_indices, "class_indices")

    def attribute(self, img: torch.Tensor, target: int) -> torch.Tensor:
        """VAR map (1, C', H, W) of ``target``, which must belong to ``class_indices``."""
        if target not in self.class_indices:
            raise ValueError(f"`target` {target!r} is not in the class set `class_indices` {self.class_indices}.")
        return self.attribute_all(img)[self.class_indices.index(target)].unsqueeze(0)

    def attribute_all(self, img: torch.Tensor) -> torch.Tensor:
        """VAR maps (K, C', H, W) of every class of the set, in the order of ``class_indices``."""
        return self._var_maps(img, self.class_indices)

    def base_maps(self, img: torch.Tensor) -> torch.Tensor:
        """The base method's maps (K, C', H, W) of every class of the set."""
        return self._base_maps(img, self.class_indices)


class ContrastiveAttributionWrapper(_VarWrapper):
    """VAR maps against an automatically chosen class set.

    The set is the ``num_classes`` most probable classes plus the least
    probable one; a target outside them is put first (method.md §2). The set
    used by the last call is kept in ``last_classes``. The model is put in
    eval mode for the attribution and restored afterwards.

    Args:
        base_method, model, tau, temperature, use_abs, normalize, **method_kwargs:
            as in :class:`ClassSpecificAttributionWrapper`.
        num_classes: how many top predictions compete (>= 1).
    """

    def __init__(
        self,
        base_method: str | AttributionMethod | Callable,
        model: nn.Module,
        tau: float = 0.01,
        num_classes: int = 2,
        *,
        temperature: float = 0.1,
        use_abs: bool = True,
        normalize: str | None = None,
        **method_kwargs,
    ) -> None:
        super().__init__(
            base_method, model, tau=tau, temperature=temperature, use_abs=use_abs, normalize=normalize, **method_kwargs
        )
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.last_classes: list[int] = []

    def select_classes(self, img: torch.Tensor, target: int | None = None) -> list[int]:
        """The competing classes for ``img``: top ``num_classes`` predictions and the least probable class."""
        image = as_single_image(img)
        was_training = self.model.training
        try:
            with torch.no_grad():
                logits = self.model.eval()(image)
        finally:
            self.model.train(was_training)
        if logits.dim() != 2 or logits.shape[1] <= self.num_classes:
            raise ValueError(
                f"`model` must return (1, num_classes) logits with more than `num_classes`={self.num_classes} "
                f"classes, got shape {tuple(logits.shape)}."
            )
        order = logits[0].argsort(descending=True).tolist()
        classes = order[: self.num_classes] + order[-1:]
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < logits.shape[1]:
                raise ValueError(f"`target` must be a class index in 0..{logits.shape[1] - 1}, got {target!r}.")
            if target not in classes:
                classes = [target] + classes
        return classes

    def attribute(self, img: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """VAR map (1, C', H, W) of ``target`` (default: the top prediction)."""
        classes = self.select_classes(img, target)
        target = classes[0] if target is None else target
        self.last_classes = classes
        return self._var_maps(img, classes)[classes.index(target)].unsqueeze(0)
