"""Wrappers with the original project's interface: a base method plus a class set gives VAR maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._model_state import predict_logits
from ._validation import check_class_set, check_model, check_positive_int, renamed_keywords
from .engine import base_and_var_maps
from .explainers import automatic_class_set
from .methods import AttributionMethod, get_method
from .refine import DEFAULT_TAU, DEFAULT_TEMPERATURE, check_refine_settings


def as_single_image(image: torch.Tensor, name: str = "img") -> torch.Tensor:
    """Return ``image`` as a (1, C, H, W) batch.

    Parameters
    ----------
    image : torch.Tensor
        One image, (C, H, W) or (1, C, H, W).
    name : str, default "img"
        Argument name used in error messages.

    Returns
    -------
    torch.Tensor
        (1, C, H, W) view of ``image``.

    Raises
    ------
    TypeError
        ``image`` is not a tensor.
    ValueError
        ``image`` is not a single image of one of those shapes.

    Examples
    --------
    >>> as_single_image(torch.zeros(3, 4, 4)).shape
    torch.Size([1, 3, 4, 4])
    """
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
        self.method = get_method(base_method, **method_kwargs)
        self.model = check_model(model)
        self.refine_settings = check_refine_settings(
            {"tau": tau, "temperature": temperature, "use_abs": use_abs, "normalize": normalize}
        )

    def _maps(self, image: torch.Tensor, classes: Sequence[int], mode: str) -> torch.Tensor:
        """Base or VAR maps (K, C', H, W) of ``classes`` for one image."""
        maps = base_and_var_maps(
            self.model, as_single_image(image), classes, self.method, self.refine_settings, modes=(mode,)
        )
        return maps[mode][0]


class ClassSpecificAttributionWrapper(_VarWrapper):
    """VAR maps for a given set of competing classes.

    The model is put in eval mode for the attribution and restored afterwards.

    Parameters
    ----------
    base_method : str, AttributionMethod, Captum attribution or callable
        A method name (:data:`var_utils.METHODS`), an :class:`AttributionMethod`,
        a Captum attribution object or a callable ``(inputs, target) -> maps``.
    model : nn.Module
        The classifier (logits of shape (N, classes)).
    class_indices : sequence of int
        The K >= 2 distinct classes that compete.
    tau : float, default 0.01
        Threshold ``τ`` on ``M − 1/K``, as the original.
    temperature : float, default 0.1
        Softmax temperature ``t``, as the original.
    use_abs : bool, default True
        Compare ``|A|`` across classes.
    normalize : {None, "joint"}, default None
        See :func:`var_utils.class_distribution`.
    **method_kwargs
        Settings of a named base method (``n_steps``, ``layer``, ...).

    Examples
    --------
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
        tau: float = DEFAULT_TAU,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        use_abs: bool = True,
        normalize: str | None = None,
        **method_kwargs,
    ) -> None:
        super().__init__(
            base_method, model, tau=tau, temperature=temperature, use_abs=use_abs, normalize=normalize, **method_kwargs
        )
        self.class_indices = check_class_set(class_indices, "class_indices")

    def attribute(self, img: torch.Tensor, target: int) -> torch.Tensor:
        """VAR map of one class of the set.

        Parameters
        ----------
        img : torch.Tensor
            One image, (C, H, W) or (1, C, H, W).
        target : int
            The class to explain; it must belong to ``class_indices``.

        Returns
        -------
        torch.Tensor
            (1, C', H, W) VAR map of ``target``.

        Raises
        ------
        ValueError
            ``target`` is not in ``class_indices``.
        """
        if target not in self.class_indices:
            raise ValueError(f"`target` {target!r} is not in the class set `class_indices` {self.class_indices}.")
        return self.attribute_all(img)[self.class_indices.index(target)].unsqueeze(0)

    def attribute_all(self, img: torch.Tensor) -> torch.Tensor:
        """VAR maps of every class of the set.

        Parameters
        ----------
        img : torch.Tensor
            One image, (C, H, W) or (1, C, H, W).

        Returns
        -------
        torch.Tensor
            (K, C', H, W) VAR maps, in the order of ``class_indices``.
        """
        return self._maps(img, self.class_indices, "var")

    def base_maps(self, img: torch.Tensor) -> torch.Tensor:
        """The base method's maps of every class of the set (before VAR).

        Parameters
        ----------
        img : torch.Tensor
            One image, (C, H, W) or (1, C, H, W).

        Returns
        -------
        torch.Tensor
            (K, C', H, W) base maps, in the order of ``class_indices``.
        """
        return self._maps(img, self.class_indices, "base")


class ContrastiveAttributionWrapper(_VarWrapper):
    """VAR maps against an automatically chosen class set.

    The set is the ``top_k`` most probable classes plus the least probable
    one; a target outside them is put first (``docs/method.md``, section 2).
    The set used by the last call is kept in ``last_classes``. The model is
    put in eval mode for the attribution and restored afterwards.

    Parameters
    ----------
    base_method, model, tau, temperature, use_abs, normalize, **method_kwargs
        As in :class:`ClassSpecificAttributionWrapper`.
    top_k : int, default 2
        How many top predictions compete (>= 1). The original calls it
        ``num_classes``, which is accepted with a ``FutureWarning``.

    Examples
    --------
    >>> from var_utils import load_model, load_photo
    >>> model = load_model("efficientnet_lite0")
    >>> wrapper = ContrastiveAttributionWrapper("gradcam", model, top_k=2)
    >>> wrapper.attribute(model.preprocess(load_photo("chelsea"))).shape
    torch.Size([1, 1, 224, 224])
    >>> len(wrapper.last_classes)  # the top 2 and the least probable class
    3
    """

    @renamed_keywords(num_classes="top_k")
    def __init__(
        self,
        base_method: str | AttributionMethod | Callable,
        model: nn.Module,
        tau: float = DEFAULT_TAU,
        top_k: int = 2,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        use_abs: bool = True,
        normalize: str | None = None,
        **method_kwargs,
    ) -> None:
        super().__init__(
            base_method, model, tau=tau, temperature=temperature, use_abs=use_abs, normalize=normalize, **method_kwargs
        )
        self.top_k = check_positive_int(top_k, "top_k")
        self.last_classes: list[int] = []

    def select_classes(self, img: torch.Tensor, target: int | None = None) -> list[int]:
        """The competing classes for ``img``: the ``top_k`` predictions and the least probable class.

        Parameters
        ----------
        img : torch.Tensor
            One image, (C, H, W) or (1, C, H, W).
        target : int, optional
            A class that must compete; put first when it is not among them.

        Returns
        -------
        list of int
            The class set, most probable first (``target`` first if added).

        Raises
        ------
        ValueError
            The model has no more than ``top_k`` classes, or ``target`` is not
            a valid class index.
        """
        logits = predict_logits(self.model, as_single_image(img))
        if logits.dim() != 2 or logits.shape[1] <= self.top_k:
            raise ValueError(
                f"`model` must return (1, num_classes) logits with more than `top_k`={self.top_k} "
                f"classes, got shape {tuple(logits.shape)}."
            )
        classes = automatic_class_set(logits[0], self.top_k)
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < logits.shape[1]:
                raise ValueError(f"`target` must be a class index in 0..{logits.shape[1] - 1}, got {target!r}.")
            if target not in classes:
                classes = [target] + classes
        return classes

    def attribute(self, img: torch.Tensor, target: int | None = None) -> torch.Tensor:
        """VAR map of ``target`` against the classes of :meth:`select_classes`.

        The class set used is kept in ``last_classes``.

        Parameters
        ----------
        img : torch.Tensor
            One image, (C, H, W) or (1, C, H, W).
        target : int, optional
            The class to explain; default the top prediction.

        Returns
        -------
        torch.Tensor
            (1, C', H, W) VAR map of ``target``.
        """
        classes = self.select_classes(img, target)
        target = classes[0] if target is None else target
        self.last_classes = classes
        return self._maps(img, classes, "var")[classes.index(target)].unsqueeze(0)
