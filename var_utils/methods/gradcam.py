"""Grad-CAM, signed, upsampled bilinearly to the input size; K classes from one forward pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import AttributionMethod, class_gradients, selected_logits


def _last_child(module: nn.Module) -> nn.Module:
    return list(module.children())[-1]


def default_gradcam_layer(model: nn.Module) -> nn.Module:
    """The Grad-CAM layer the paper uses for ``model``'s architecture.

    ResNet/ResNeXt/Wide-ResNet: ``layer4[-1]``; VGG: the last convolution of
    ``features`` (``features[28]`` for VGG-16); DenseNet: the last dense layer
    of ``features.denseblock4``; ConvNeXt: ``features[-1][-1]``; EfficientNet-Lite:
    ``_conv_head``; models with a ``gradcam_layer()`` method: its answer.
    Raises ``ValueError`` for other architectures: pass ``layer=`` explicitly.
    """
    from torchvision import models as tv

    if callable(getattr(model, "gradcam_layer", None)):
        return model.gradcam_layer()
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
    """Turn ``layer`` (module, dotted name or None for the default) into a module of ``model``."""
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
    """One forward pass returning ``layer``'s output (N, C, h, w) and the selected logits (N, K)."""
    captured = []

    def keep_output(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(
                f"The Grad-CAM layer must output a (N, C, h, w) tensor, got "
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
    """Grad-CAM from (N, C, h, w) activations and (N, K, C, h, w) gradients → (N, K, 1, H, W).

    ``relu`` clamps the layer-resolution map before upsampling, as the paper and Captum do.
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

    Args:
        layer: module of the model, its dotted name, or None for the paper's
            layer of known architectures (see :func:`default_gradcam_layer`).
        relu: clamp the map at zero (classic Grad-CAM).
    """

    name = "gradcam"

    def __init__(self, layer: nn.Module | str | None = None, relu: bool = False) -> None:
        if layer is not None and not isinstance(layer, (nn.Module, str)):
            raise TypeError(f"`layer` must be an nn.Module, a dotted name or None, got {type(layer).__name__}.")
        self.layer = layer
        self.relu = relu

    def settings(self) -> dict[str, object]:
        return {"layer": self.layer, "relu": self.relu}

    def attribute(self, model, inputs, classes):
        layer = resolve_layer(model, self.layer)
        activations, selected = layer_activations_and_logits(model, layer, inputs, classes)
        return gradcam_maps(activations, class_gradients(selected, activations), tuple(inputs.shape[2:]), self.relu)
