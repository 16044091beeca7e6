"""The multi-class attribution engine: base maps of K classes for N images in shared passes, then VAR.

:func:`attribute_classes` computes the base maps; :func:`base_and_var_maps` is the
one place where base maps become VAR maps, used by the wrappers, the explainers,
the grid pointing game, the evaluation tables and the demo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ._model_state import attribution_mode
from ._validation import check_channels, check_choice, check_class_set, check_fixed_size, check_images, check_model
from .methods import AttributionMethod, get_method
from .refine import check_refine_settings, refine_all

#: The two kinds of map every evaluation compares: the base method's and VAR's.
MAP_MODES = ("base", "var")


def class_matrix(classes: Sequence[int] | torch.Tensor, num_images: int, name: str = "classes") -> torch.Tensor:
    """Validate a class set and return it as an (N, K) LongTensor.

    Parameters
    ----------
    classes : sequence of int or torch.Tensor
        One set for every image (a sequence of K ints or a 1-D tensor) or one
        set per image (an (N, K) integer tensor). Each set needs at least two
        distinct, non-negative classes.
    num_images : int
        N, the number of images.
    name : str, default "classes"
        Argument name used in error messages.

    Returns
    -------
    torch.Tensor
        (N, K) int64 class indices; a single set is expanded over the N rows.

    Raises
    ------
    TypeError, ValueError
        A malformed set, or an (N, K) tensor with the wrong number of rows or
        a non-integer dtype.

    Examples
    --------
    >>> class_matrix([2, 0], num_images=3)
    tensor([[2, 0],
            [2, 0],
            [2, 0]])
    """
    if isinstance(classes, torch.Tensor) and classes.dim() == 2:
        if classes.shape[0] != num_images:
            raise ValueError(f"`{name}` has {classes.shape[0]} rows but there are {num_images} images.")
        if classes.dtype in (torch.bool,) or classes.is_floating_point():
            raise TypeError(f"`{name}` must hold integer class indices, got dtype {classes.dtype}.")
        for row in classes.tolist():
            check_class_set(row, name)
        return classes.long()
    return torch.tensor(check_class_set(classes, name), dtype=torch.long).expand(num_images, -1)


def expected_channels(model: nn.Module) -> int | None:
    """Input channels of the model: its ``input_channels`` attribute, else its first ``nn.Conv2d``'s (None: unknown)."""
    if isinstance(getattr(model, "input_channels", None), int):
        return model.input_channels
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return None if first_conv is None else first_conv.in_channels


def attribute_classes(
    model: nn.Module,
    inputs: torch.Tensor,
    classes: Sequence[int] | torch.Tensor,
    method: str | AttributionMethod | Callable = "saliency",
    **method_kwargs,
) -> torch.Tensor:
    """Base attribution maps of every class of a set, for a batch of images.

    Gradient methods (saliency, input × gradient, integrated gradients, SmoothGrad,
    Grad-CAM, guided backprop, guided Grad-CAM) run one forward pass shared by
    the K classes and K input-gradient backward passes; other methods run one
    batched call with each image repeated K times. The model is put in eval
    mode with frozen parameters for the call and restored afterwards.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits of shape (N, num_classes).
    inputs : torch.Tensor
        Images (N, C, H, W).
    classes : sequence of int or torch.Tensor
        The class set: K >= 2 distinct classes for every image, or an (N, K)
        tensor with one set per image.
    method : str, AttributionMethod, Captum attribution or callable
        See :func:`var_utils.methods.get_method`; ``method_kwargs`` configure it.

    Returns
    -------
    torch.Tensor
        (N, K, C', H, W) maps with C' = C, or 1 for Grad-CAM.

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> attribute_classes(model, torch.rand(2, 3, 8, 8), [0, 3, 4], "input_x_gradient").shape
    torch.Size([2, 3, 3, 8, 8])
    """
    check_model(model)
    inputs = check_images(inputs)
    check_channels(inputs, expected_channels(model))
    check_fixed_size(model, inputs)
    class_sets = class_matrix(classes, inputs.shape[0]).to(inputs.device)
    attribution_method = get_method(method, **method_kwargs)
    with attribution_mode(model):
        maps = attribution_method.attribute(model, inputs.detach(), class_sets)
    return maps.detach()


def _check_n_classes(n_classes: object, base: torch.Tensor) -> None:
    """Raise unless ``n_classes`` is an (N,) integer tensor with values in 1..K for (N, K, ...) ``base``."""
    if not isinstance(n_classes, torch.Tensor) or n_classes.is_floating_point() or n_classes.dtype == torch.bool:
        raise TypeError(f"`n_classes` must be an integer tensor or None, got {type(n_classes).__name__}.")
    if n_classes.shape != base.shape[:1]:
        raise ValueError(
            f"`n_classes` must have shape ({base.shape[0]},), one count per row, got {tuple(n_classes.shape)}."
        )
    if n_classes.numel() and not (1 <= int(n_classes.min()) and int(n_classes.max()) <= base.shape[1]):
        raise ValueError(f"`n_classes` must lie in 1..{base.shape[1]} (the classes per row), got {n_classes.tolist()}.")


def var_from_base(
    base: torch.Tensor, refine_settings: Mapping | None = None, *, n_classes: torch.Tensor | None = None
) -> torch.Tensor:
    """VAR maps of every class from base maps (N, K, C', H, W).

    Parameters
    ----------
    base : torch.Tensor
        Base maps (N, K, C', H, W), e.g. of :func:`attribute_classes`.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    n_classes : torch.Tensor, optional
        (N,) number of classes that really compete in each row; the columns
        after them only pad the rows to one width and are left as they are.
        A row with a single class has no competitor and keeps its base maps.
        Default: all K classes compete in every row.

    Returns
    -------
    torch.Tensor
        The VAR maps, shape of ``base``.

    Examples
    --------
    >>> base = torch.tensor([[[1.0], [0.1], [5.0]]])
    >>> var_from_base(base, n_classes=torch.tensor([2]))
    tensor([[[0.9999],
             [0.0000],
             [5.0000]]])
    """
    settings = check_refine_settings(refine_settings)
    if n_classes is None:
        return refine_all(base, class_dim=1, **settings)
    _check_n_classes(n_classes, base)
    refined = base.clone()
    for count in set(n_classes.tolist()) - {1}:
        rows = (n_classes == count).to(base.device)
        refined[rows, :count] = refine_all(base[rows, :count], class_dim=1, **settings)
    return refined


def base_and_var_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    classes: Sequence[int] | torch.Tensor,
    method: str | AttributionMethod | Callable = "saliency",
    refine_settings: Mapping | None = None,
    *,
    modes: Sequence[str] = MAP_MODES,
    n_classes: torch.Tensor | None = None,
    **method_kwargs,
) -> dict[str, torch.Tensor]:
    """Base maps of every class of a set and, from the same maps, their VAR maps.

    Parameters
    ----------
    model, inputs, classes, method
        As in :func:`attribute_classes`; ``method_kwargs`` configure a named method.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    modes : sequence of {"base", "var"}, default ("base", "var")
        Which maps to return.
    n_classes : torch.Tensor, optional
        (N,) classes that really compete per image, see :func:`var_from_base`.

    Returns
    -------
    dict of str to torch.Tensor
        ``{"base": ..., "var": ...}`` (those of ``modes``), each (N, K, C', H, W).

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> maps = base_and_var_maps(model, torch.rand(2, 3, 8, 8), [0, 3], "input_x_gradient")
    >>> maps["base"].shape, maps["var"].shape
    (torch.Size([2, 2, 3, 8, 8]), torch.Size([2, 2, 3, 8, 8]))
    """
    if isinstance(modes, str) or not isinstance(modes, Sequence) or not modes:
        raise TypeError(f"`modes` must be a non-empty sequence from {list(MAP_MODES)}, e.g. ('var',); got {modes!r}.")
    for mode in modes:
        check_choice(mode, "modes", MAP_MODES)
    settings = check_refine_settings(refine_settings)
    base = attribute_classes(model, inputs, classes, method, **method_kwargs)
    maps = {"base": base}
    if "var" in modes:
        maps["var"] = var_from_base(base, settings, n_classes=n_classes)
    return {mode: maps[mode] for mode in modes}
