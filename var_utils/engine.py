"""The multi-class attribution engine: base maps of K classes for N images in shared passes."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ._checks import check_channels, check_class_set, check_images
from .methods import AttributionMethod, attribution_mode, get_method


def class_matrix(classes: Sequence[int] | torch.Tensor, num_images: int, name: str = "classes") -> torch.Tensor:
    """Validate a class set and return it as an (N, K) LongTensor.

    ``classes`` is one set for every image (a sequence of K ints or a 1-D
    tensor) or one set per image (an (N, K) tensor). Each set needs at least
    two distinct, non-negative classes.
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
    """Input channels of the model's first convolution (None when it has none)."""
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    inputs = check_images(inputs)
    check_channels(inputs, expected_channels(model))
    class_sets = class_matrix(classes, inputs.shape[0]).to(inputs.device)
    attribution_method = get_method(method, **method_kwargs)
    with attribution_mode(model):
        maps = attribution_method.attribute(model, inputs.detach(), class_sets)
    return maps.detach()
