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
from .contrastive import competition_for_pixels, contrast_to_mean
from .methods import AttributionMethod, get_method
from .refine import check_refine_settings, refine_all

#: The two kinds of map every evaluation compares: the base method's and VAR's.
MAP_MODES = ("base", "var")
#: Every kind of map derived from the K base maps of a set (``docs/method.md``, section 13):
#: the maps themselves, VAR with the given refine settings, VAR with ``normalize="joint"``,
#: CGI's competition for pixels and the contrast to the mean of the other classes.
MODES = (*MAP_MODES, "var_joint", "cgi", "contrast_mean")
_SET_FUNCTIONS = {"cgi": competition_for_pixels, "contrast_mean": contrast_to_mean}


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
        # A copy: inputs made under torch.inference_mode() cannot be marked as requiring grad.
        maps = attribution_method.attribute(model, inputs.detach().clone(), class_sets)
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


def _per_class_count(base: torch.Tensor, n_classes: torch.Tensor | None, compete: Callable) -> torch.Tensor:
    """``compete`` (maps (M, k, ...) -> maps) on each row's first ``n_classes`` columns of (N, K, ...) ``base``."""
    if n_classes is None:
        return compete(base)
    _check_n_classes(n_classes, base)
    derived = base.clone()
    for count in set(n_classes.tolist()) - {1}:
        rows = (n_classes == count).to(base.device)
        derived[rows, :count] = compete(base[rows, :count])
    return derived


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
    return _per_class_count(base, n_classes, lambda maps: refine_all(maps, class_dim=1, **settings))


def derive_maps(
    base: torch.Tensor, mode: str, refine_settings: Mapping | None = None, *, n_classes: torch.Tensor | None = None
) -> torch.Tensor:
    """The maps of one of :data:`MODES` from base maps (N, K, C', H, W).

    Parameters
    ----------
    base : torch.Tensor
        Base maps (N, K, C', H, W), e.g. of :func:`attribute_classes`.
    mode : str
        ``"base"`` (``base`` itself), ``"var"`` (:func:`var_from_base` with
        ``refine_settings``), ``"var_joint"`` (the same with
        ``normalize="joint"``), ``"cgi"``
        (:func:`var_utils.competition_for_pixels`) or ``"contrast_mean"``
        (:func:`var_utils.contrast_to_mean`).
    refine_settings : dict, optional
        VAR's settings, see :func:`var_utils.refine_all` (used by the VAR modes).
    n_classes : torch.Tensor, optional
        (N,) classes that really compete per row, see :func:`var_from_base`;
        every mode leaves the padding columns and single-class rows as they are.

    Returns
    -------
    torch.Tensor
        The derived maps, shape of ``base``.

    Examples
    --------
    >>> base = torch.tensor([[[3.0], [1.0]]])
    >>> derive_maps(base, "contrast_mean").flatten().tolist()
    [2.0, -2.0]
    """
    check_choice(mode, "mode", MODES)
    settings = check_refine_settings(refine_settings)
    if n_classes is not None:
        _check_n_classes(n_classes, base)
    if mode == "base":
        return base
    if mode in ("var", "var_joint"):
        settings = {**settings, "normalize": "joint"} if mode == "var_joint" else settings
        return var_from_base(base, settings, n_classes=n_classes)
    compete = _SET_FUNCTIONS[mode]
    return _per_class_count(base, n_classes, lambda maps: compete(maps, class_dim=1))


def check_modes(modes: object) -> tuple[str, ...]:
    """``modes`` as a tuple after checking it is a non-empty sequence of distinct names of :data:`MODES`.

    Parameters
    ----------
    modes : sequence of str
        E.g. ``("base", "var")``.

    Returns
    -------
    tuple of str
        The modes, in the given order.

    Raises
    ------
    TypeError, ValueError
        Not a sequence, empty, an unknown mode or a mode twice.
    """
    if isinstance(modes, str) or not isinstance(modes, Sequence):
        raise TypeError(f"`modes` must be a non-empty sequence from {list(MODES)}, e.g. ('var',); got {modes!r}.")
    if not modes:
        raise ValueError(f"`modes` is empty; give at least one of {list(MODES)}.")
    for mode in modes:
        check_choice(mode, "modes", MODES)
    if len(set(modes)) != len(modes):
        raise ValueError(f"`modes` must not repeat a mode, got {list(modes)}.")
    return tuple(modes)


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
    modes : sequence of str, default ("base", "var")
        Which maps to return, from :data:`MODES` (see :func:`derive_maps`).
    n_classes : torch.Tensor, optional
        (N,) classes that really compete per image, see :func:`var_from_base`.

    Returns
    -------
    dict of str to torch.Tensor
        ``{mode: maps}`` for every mode of ``modes``, each (N, K, C', H, W).

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    >>> maps = base_and_var_maps(model, torch.rand(2, 3, 8, 8), [0, 3], "input_x_gradient")
    >>> maps["base"].shape, maps["var"].shape
    (torch.Size([2, 2, 3, 8, 8]), torch.Size([2, 2, 3, 8, 8]))
    """
    modes = check_modes(modes)
    settings = check_refine_settings(refine_settings)
    base = attribute_classes(model, inputs, classes, method, **method_kwargs)
    return {mode: derive_maps(base, mode, settings, n_classes=n_classes) for mode in modes}
