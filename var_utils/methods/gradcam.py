"""Grad-CAM, signed, upsampled bilinearly to the input size; K classes from one forward pass.

On a vision transformer the layer outputs tokens (N, 1 + h*w, D): the class
token is dropped and the patch tokens are laid out on the patch grid, for the
activations and their gradients alike, as pytorch-grad-cam's reshape transform does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import AttributionMethod, class_gradients, selected_logits
from .transformer import patch_grid, tokens_to_grid


def _last_child(module: nn.Module) -> nn.Module:
    return list(module.children())[-1]


def default_gradcam_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM layer the paper uses for ``model``'s architecture.

    ResNet/ResNeXt/Wide-ResNet: ``layer4[-1]``; VGG: the last convolution of
    ``features`` (``features[28]`` for VGG-16); DenseNet: the last dense layer
    of ``features.denseblock4``; ConvNeXt: ``features[-1][-1]``; EfficientNet-Lite:
    ``_conv_head``; torchvision ViT: the input norm of the last block
    (``encoder.layers[-1].ln_1``, whose patch tokens still receive gradient,
    unlike the last block's output); models with a ``gradcam_layer()`` method: its answer.

    Parameters
    ----------
    model : nn.Module
        The classifier.

    Returns
    -------
    nn.Module
        A submodule of ``model``.

    Raises
    ------
    ValueError
        No default is known for the architecture: pass ``layer=`` explicitly.
    """
    from torchvision import models as tv

    if callable(getattr(model, "gradcam_layer", None)):
        return model.gradcam_layer()
    if isinstance(model, tv.VisionTransformer):
        return model.encoder.layers[-1].ln_1
    if isinstance(model, tv.ResNet):
        return model.layer4[-1]
    if isinstance(model, tv.VGG):
        return [m for m in model.features if isinstance(m, nn.Conv2d)][-1]
    if isinstance(model, tv.DenseNet):
        return _last_child(model.features.denseblock4)
    if isinstance(model, tv.ConvNeXt):
        return _last_child(model.features[-1])
    if type(model).__name__ == "EfficientNet" and hasattr(model, "_conv_head"):
        return model._conv_head
    raise ValueError(
        f"No default Grad-CAM layer is known for {type(model).__name__}; pass `layer=` (a module of the model "
        "or its dotted name, e.g. 'layer4.2')."
    )


def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """Turn ``layer`` (module, dotted name or None for the default) into a module of ``model``.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    layer : nn.Module, str or None
        A module of ``model``, its dotted name (e.g. ``"layer4.2"``), or None
        for :func:`default_gradcam_layer`.

    Returns
    -------
    nn.Module
        The layer, a submodule of ``model``.

    Raises
    ------
    ValueError
        ``layer`` is not a submodule of ``model``, or None for an architecture
        without a known default.
    TypeError
        ``layer`` is neither a module, a string nor None.
    """
    if layer is None:
        return default_gradcam_layer(model)
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"`layer` {layer!r} is not a submodule of {type(model).__name__}.") from None
    if isinstance(layer, nn.Module):
        if not any(layer is m for m in model.modules()):
            raise ValueError("`layer` must be a module of `model`.")
        return layer
    raise TypeError(f"`layer` must be an nn.Module, a dotted name or None, got {type(layer).__name__}.")


def layer_activations_and_logits(
    model: nn.Module, layer: nn.Module, inputs: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass returning ``layer``'s output and the selected logits.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits (N, num_classes).
    layer : nn.Module
        A module of ``model`` that runs once per forward pass and outputs a
        4-D tensor.
    inputs : torch.Tensor
        Images (N, C, H, W).
    classes : torch.Tensor
        (N, K) class indices, one row per image.

    Returns
    -------
    activations : torch.Tensor
        ``layer``'s output, (N, C, h, w) or tokens (N, T, D), which requires grad.
    selected : torch.Tensor
        (N, K) logits of each row's classes.

    Raises
    ------
    ValueError
        ``layer``'s output is neither a 4-D tensor nor 3-D tokens, or the
        layer does not run exactly once.
    """
    captured = []

    def keep_output(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() not in (3, 4):
            raise ValueError(
                f"The Grad-CAM layer of {type(model).__name__} must output a (N, C, h, w) feature map or "
                "(N, tokens, D) transformer tokens, got "
                f"{tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__}."
            )
        # Without input gradients nothing upstream of the layer is recorded.
        output.requires_grad_(True)
        captured.append(output)

    handle = layer.register_forward_hook(keep_output)
    try:
        selected = selected_logits(model, inputs, classes)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"The Grad-CAM layer must run exactly once per forward pass, it ran {len(captured)} times.")
    return captured[0], selected


def gradcam_maps(
    activations: torch.Tensor, gradients: torch.Tensor, size: tuple[int, int], relu: bool = False
) -> torch.Tensor:
    """Grad-CAM maps from a layer's activations and the gradients of K classes.

    The gradients are averaged over each channel's positions into channel
    weights, and the weighted activations are summed over channels.

    Parameters
    ----------
    activations : torch.Tensor
        (N, C, h, w) layer output.
    gradients : torch.Tensor
        (N, K, C, h, w) gradients of the K logits with respect to ``activations``.
    size : tuple of int
        ``(H, W)``, the size the maps are upsampled to (bilinear).
    relu : bool, default False
        Clamp the layer-resolution map at zero before upsampling, as the
        paper and Captum do.

    Returns
    -------
    torch.Tensor
        (N, K, 1, H, W) maps.
    """
    channel_weights = gradients.mean(dim=(3, 4), keepdim=True)
    cams = (channel_weights * activations.unsqueeze(1)).sum(dim=2, keepdim=True)
    if relu:
        cams = cams.clamp(min=0)
    return F.interpolate(cams.flatten(0, 1), size=size, mode="bilinear").unflatten(0, cams.shape[:2])


class GradCAM(AttributionMethod):
    """Grad-CAM (Selvaraju et al. 2017) of K classes from one forward pass.

    The map is signed (no ReLU, as in the paper's use with VAR) unless
    ``relu=True``, and upsampled bilinearly to the input size. The K backward
    passes stop at ``layer``.

    Parameters
    ----------
    layer : nn.Module, str or None, default None
        Module of the model, its dotted name, or None for the paper's layer of
        known architectures (see :func:`default_gradcam_layer`).
    relu : bool, default False
        Clamp the map at zero (classic Grad-CAM).
    """

    name = "gradcam"

    def __init__(self, layer: nn.Module | str | None = None, relu: bool = False) -> None:
        if layer is not None and not isinstance(layer, (nn.Module, str)):
            raise TypeError(f"`layer` must be an nn.Module, a dotted name or None, got {type(layer).__name__}.")
        self.layer = layer
        self.relu = relu

    def settings(self) -> dict[str, object]:
        """``{"layer": ..., "relu": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"layer": self.layer, "relu": self.relu}

    def class_weights_gradients(self, gradients: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The gradients whose spatial means weight the channels: the K logits' own (subclasses contrast them).

        Parameters
        ----------
        gradients : torch.Tensor
            (N, K, C, h, w) gradients of the K selected logits with respect to the layer.
        logits : torch.Tensor
            (N, K) the selected logits.

        Returns
        -------
        torch.Tensor
            (N, K, C, h, w) gradients, here ``gradients`` unchanged.
        """
        return gradients

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Grad-CAM maps (N, K, 1, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        layer = resolve_layer(model, self.layer)
        activations, selected = layer_activations_and_logits(model, layer, inputs, classes)
        gradients = self.class_weights_gradients(class_gradients(selected, activations), selected.detach())
        if activations.dim() == 3:
            grid = patch_grid(model, activations.shape[1])
            activations, gradients = tokens_to_grid(activations, grid), tokens_to_grid(gradients, grid)
        return gradcam_maps(activations, gradients, tuple(inputs.shape[2:]), self.relu)
