"""One image, one model, one class set: what the explorer and ``python -m var_utils explain`` both compute.

Any RGB photo becomes the model's input (ImageNet models through their
``preprocess``; the Fashion-MNIST models get a grey, centred square at their input
size), the class set is chosen automatically or by names and ids, and the base
and VAR maps are summarised per class by the share of positive attribution that
VAR keeps.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from .._model_state import predict_logits
from ..datasets.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, normalize_fashion_mnist
from ..datasets.photos import center_square


def model_input(model: nn.Module, image: np.ndarray) -> torch.Tensor:
    """An RGB photo as the model's (1, C, H, W) input.

    Parameters
    ----------
    model : nn.Module
        A model of :func:`var_utils.load_model`: its ``preprocess`` is used when
        it has one; otherwise (the Fashion-MNIST models) the photo's centred
        square is resized to ``model.input_size``, turned grey and normalised
        as Fashion-MNIST.
    image : numpy.ndarray
        (H, W, 3) ``uint8`` RGB photo (grey and RGBA arrays are converted).

    Returns
    -------
    torch.Tensor
        The model input, float32.

    Examples
    --------
    >>> from var_utils import load_model, load_photo
    >>> model_input(load_model("fashion_mnist_cnn"), load_photo("chelsea")).shape
    torch.Size([1, 1, 28, 28])
    """
    if getattr(model, "preprocess", None) is not None:
        return model.preprocess(image)
    size = getattr(model, "input_size", None)
    if not isinstance(size, int):
        raise ValueError("`model` needs a `preprocess` or an int `input_size` (use var_utils.load_model).")
    grey = cv2.cvtColor(center_square(image, size), cv2.COLOR_RGB2GRAY)
    unit = torch.from_numpy(grey).float().div(255)
    return normalize_fashion_mnist(unit).view(1, 1, size, size)


def display_image(model: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """The model input of :func:`model_input` back as an (H, W, 3) RGB image in [0, 1], for display.

    Parameters
    ----------
    model : nn.Module
        The model whose input ``inputs`` is.
    inputs : torch.Tensor
        (1, C, H, W) model input.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) float64 RGB values in [0, 1].
    """
    image = inputs[0].detach().cpu().double()
    if getattr(model, "preprocess", None) is not None:
        image = model.preprocess.to_unit(image)
    else:
        image = (image * FASHION_MNIST_STD + FASHION_MNIST_MEAN).clamp(0, 1)
    return image.expand(3, -1, -1).permute(1, 2, 0).numpy()


def class_probabilities(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (num_classes,) of the model for one (1, C, H, W) input."""
    return torch.softmax(predict_logits(model, inputs)[0].double(), dim=0).cpu()


def resolve_class(item: int | str, class_names: Sequence[str]) -> int:
    """A class index from an index or a class name (case-insensitive; a number in a string is an index).

    Parameters
    ----------
    item : int or str
        A class index, or a name of ``class_names``.
    class_names : sequence of str
        The model's class names.

    Returns
    -------
    int
        The class index.

    Raises
    ------
    ValueError
        An index out of range, or a name that is not a class (the message
        suggests close names).

    Examples
    --------
    >>> resolve_class("Sandal", ["Bag", "sandal"]), resolve_class("0", ["Bag", "sandal"])
    (1, 0)
    """
    text = item.strip() if isinstance(item, str) else item
    if isinstance(text, str) and text.lstrip("-").isdigit():
        text = int(text)
    if isinstance(text, int) and not isinstance(text, bool):
        if not 0 <= text < len(class_names):
            raise ValueError(f"Class index {text} is out of range; the model has classes 0..{len(class_names) - 1}.")
        return text
    if not isinstance(text, str):
        raise TypeError(f"A class must be an index or a name, got {type(item).__name__}.")
    lowered = [name.lower() for name in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    typed = text.lower()
    # Names inside the typed text ("tabby" in "tabby kitten") or containing it, then spelling neighbours.
    overlapping = [name for name in lowered if name in typed or typed in name]
    close = list(dict.fromkeys(overlapping[:3] + difflib.get_close_matches(typed, lowered, n=3, cutoff=0.6)))[:3]
    hint = f" Did you mean {', '.join(repr(class_names[lowered.index(c)]) for c in close)}?" if close else ""
    raise ValueError(f"{item!r} is not a class name of this model.{hint}")


def resolve_classes(items: Sequence[int | str], class_names: Sequence[str]) -> list[int]:
    """Class indices of several items (see :func:`resolve_class`); at least two distinct classes.

    Parameters
    ----------
    items : sequence of int or str
        Class indices and names.
    class_names : sequence of str
        The model's class names.

    Returns
    -------
    list of int
        The class indices, in the given order.

    Raises
    ------
    ValueError
        An unknown class, a repeated class, or fewer than two classes.
    """
    classes = [resolve_class(item, class_names) for item in items]
    repeated = sorted({class_names[c] for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"Each class may appear once in the set; repeated: {repeated}.")
    if len(classes) < 2:
        raise ValueError(f"A class set needs at least two classes to compete, got {len(classes)}.")
    return classes


def positive_mass(maps: torch.Tensor) -> torch.Tensor:
    """Sum of the positive values of each map: (K, ...) maps -> (K,) float64."""
    return maps.detach().clamp(min=0).flatten(1).sum(dim=1).double().cpu()


def kept_share(base: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Per class, the share of its positive base attribution that its VAR map keeps.

    Parameters
    ----------
    base, var : torch.Tensor
        (K, C', H, W) base and VAR maps of the K classes.

    Returns
    -------
    torch.Tensor
        (K,) float64 ``Σ max(V_k, 0) / Σ max(A_k, 0)``; NaN for a class
        without positive base attribution.

    Examples
    --------
    >>> kept_share(torch.tensor([[2.0, -1.0], [0.0, 0.0]]), torch.tensor([[1.5, 0.0], [0.0, 0.0]]))
    tensor([0.7500,    nan], dtype=torch.float64)
    """
    total = positive_mass(base)
    return positive_mass(var) / torch.where(total > 0, total, torch.full_like(total, float("nan")))
