"""Argument validation shared by the public functions.

Every check raises a ``ValueError`` or ``TypeError`` that names the offending
argument and says what was expected, so users never see a bare traceback from
deep inside torch.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

Function = TypeVar("Function", bound=Callable)


def check_tensor(value: object, name: str) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}.")
    return value


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``tensor`` holds NaN or infinite values."""
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"`{name}` contains {bad} non-finite value(s) (NaN or inf); expected finite numbers.")


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as float if it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}.")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value}.")
    return float(value)


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (1 unless told)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return value


def check_images(images: object, name: str = "inputs") -> torch.Tensor:
    """Check a batch of images of shape (N, C, H, W) with finite values."""
    images = check_tensor(images, name)
    if images.dim() != 4:
        raise ValueError(f"`{name}` must have shape (N, C, H, W), got shape {tuple(images.shape)}.")
    if not images.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {images.dtype}.")
    check_finite(images, name)
    return images


def check_channels(images: torch.Tensor, expected: int | None, name: str = "inputs") -> None:
    """Raise if ``images`` (N, C, H, W) does not have ``expected`` channels (skip when None)."""
    if expected is not None and images.shape[1] != expected:
        raise ValueError(
            f"`{name}` must have {expected} channel(s) for this model, got {images.shape[1]} "
            f"(shape {tuple(images.shape)})."
        )


def check_fixed_size(model: nn.Module, images: torch.Tensor, name: str = "inputs") -> None:
    """Raise ``ValueError`` if ``model`` takes one image size only (a ViT's ``image_size``) and ``images`` differ."""
    size = getattr(model, "image_size", None)
    if isinstance(size, int) and hasattr(model, "patch_size") and tuple(images.shape[-2:]) != (size, size):
        raise ValueError(
            f"`{name}` must be {size}x{size} images for this {type(model).__name__} (its position embeddings fix "
            f"the size), got {images.shape[-2]}x{images.shape[-1]}."
        )


def check_class_set(classes: object, name: str = "class_indices") -> list[int]:
    """Return ``classes`` as a list of >= 2 distinct non-negative ints."""
    if isinstance(classes, torch.Tensor):
        if classes.dim() != 1:
            raise ValueError(f"`{name}` must be one-dimensional, got shape {tuple(classes.shape)}.")
        classes = classes.tolist()
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(f"`{name}` must be a sequence of class indices, got {type(classes).__name__}.")
    result = []
    for value in classes:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{name}` must hold ints, got {value!r} ({type(value).__name__}).")
        if value < 0:
            raise ValueError(f"`{name}` must hold non-negative class indices, got {value}.")
        result.append(value)
    if len(result) < 2:
        raise ValueError(f"`{name}` must hold at least two classes to compete, got {result}.")
    if len(set(result)) != len(result):
        raise ValueError(f"`{name}` must not repeat a class, got {result}.")
    return result


def check_logits(logits: object, batch_size: int) -> torch.Tensor:
    """Check that a model returned logits of shape (N, num_classes)."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"`model` must return a tensor of logits, got {type(logits).__name__}.")
    if logits.dim() != 2 or logits.shape[0] != batch_size:
        raise ValueError(
            f"`model` must return logits of shape (N, num_classes) = ({batch_size}, num_classes), "
            f"got shape {tuple(logits.shape)}."
        )
    return logits


def check_classes_in_range(classes: torch.Tensor, num_classes: int, name: str = "class_indices") -> None:
    """Raise if a class index is not below the model's number of outputs."""
    if classes.numel() and int(classes.max()) >= num_classes:
        raise ValueError(
            f"`{name}` holds class {int(classes.max())}, but the model has only {num_classes} outputs "
            f"(valid indices 0..{num_classes - 1})."
        )


def check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    """Raise ``ValueError`` if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


def check_grid(grid: object) -> tuple[int, int]:
    """Return ``grid`` as ``(n_rows, n_cols)`` of positive ints."""
    if not isinstance(grid, (tuple, list)):
        raise TypeError(f"`grid` must be a pair (n_rows, n_cols) of ints, got {grid!r}.")
    if len(grid) != 2:
        raise ValueError(f"`grid` must be a pair (n_rows, n_cols), got {grid!r}.")
    return check_positive_int(grid[0], "grid[0] (n_rows)"), check_positive_int(grid[1], "grid[1] (n_cols)")


def check_model(model: object, name: str = "model") -> nn.Module:
    """Return ``model`` if it is a ``torch.nn.Module``, else raise ``TypeError`` naming ``name``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`{name}` must be a torch.nn.Module, got {type(model).__name__}.")
    return model


def check_loaded_model(model: object) -> nn.Module:
    """Raise unless ``model`` is a module with the ``preprocess`` and ``input_size`` of :func:`var_utils.load_model`.

    Parameters
    ----------
    model : object
        The model to check.

    Returns
    -------
    nn.Module
        ``model``.

    Raises
    ------
    TypeError
        Not a module, or without ``.preprocess`` or an int ``.input_size``.
    """
    check_model(model)
    if getattr(model, "preprocess", None) is None or not isinstance(getattr(model, "input_size", None), int):
        raise TypeError(
            "`model` needs `.preprocess` (with `.normalize`) and `.input_size` attributes, as the models of "
            "var_utils.load_model have."
        )
    return model


def check_targets(targets: object, num_images: int, name: str = "targets") -> torch.Tensor:
    """Check one non-negative integer class per image, shape (N,), and return it as int64."""
    targets = check_tensor(targets, name)
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise TypeError(f"`{name}` must be an integer tensor (e.g. torch.long), got dtype {targets.dtype}.")
    if targets.dim() != 1 or targets.shape[0] != num_images:
        raise ValueError(
            f"`{name}` must have shape (N,) = ({num_images},), one class per image, got shape {tuple(targets.shape)}."
        )
    if targets.numel() and int(targets.min()) < 0:
        raise ValueError(f"`{name}` must hold non-negative class indices, got {int(targets.min())}.")
    return targets.long()


def channel_summed_maps(attributions: object, inputs: torch.Tensor, name: str = "attributions") -> torch.Tensor:
    """Check attribution maps against ``inputs`` and sum them over channels.

    Parameters
    ----------
    attributions : torch.Tensor
        Shape (N, C', H, W) with C' equal to the inputs' C or 1, or (N, H, W).
    inputs : torch.Tensor
        The explained images, shape (N, C, H, W).
    name : str, default "attributions"
        Argument name used in error messages.

    Returns
    -------
    torch.Tensor
        The channel-summed maps, shape (N, H, W).
    """
    attributions = check_tensor(attributions, name)
    num_images, channels, height, width = inputs.shape
    if attributions.dim() == 3:
        attributions = attributions.unsqueeze(1)
    valid = (
        attributions.dim() == 4
        and attributions.shape[0] == num_images
        and attributions.shape[1] in (1, channels)
        and tuple(attributions.shape[2:]) == (height, width)
    )
    if not valid:
        raise ValueError(
            f"`{name}` must have shape (N, C', H, W) with C' in {{1, {channels}}} or (N, H, W) matching the "
            f"inputs (N={num_images}, H={height}, W={width}), got shape {tuple(attributions.shape)}."
        )
    if not attributions.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {attributions.dtype}.")
    check_finite(attributions, name)
    return attributions.sum(dim=1)


def renamed_keywords(**renames: str) -> Callable[[Function], Function]:
    """Accept the old name of renamed keyword arguments, with a ``FutureWarning``.

    Parameters
    ----------
    **renames : str
        ``old_name="new_name"`` pairs.

    Returns
    -------
    callable
        A decorator for functions (and ``__init__`` methods) whose keyword
        ``new_name`` used to be called ``old_name``. Passing both raises
        ``TypeError``.

    Examples
    --------
    >>> @renamed_keywords(normalise="normalize")
    ... def scale(x, normalize=False):
    ...     return x / 2 if normalize else x
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     scale(4, normalise=True)
    2.0
    """

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def with_old_names(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"pass `{new}` only: `{old}` is its former name.")
                warnings.warn(f"`{old}` is now called `{new}`; please pass `{new}=`.", FutureWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return with_old_names

    return decorate
