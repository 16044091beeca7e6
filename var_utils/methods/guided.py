"""Guided Backprop and Guided Grad-CAM, with the guided rule at every ReLU and GELU call site.

Captum's ``GuidedBackprop`` rewrites ``nn.ReLU`` modules only, so on models with
``nn.ReLU6``, functional ReLUs or one activation module reused at several call
sites (EfficientNet-Lite) it silently returns the plain gradient. Here every
call of a ReLU-family function is intercepted through a ``TorchFunctionMode``,
whatever module or function made it, and the gradient flowing back into that
call's output is clamped at zero. The activation's own backward then applies
its 0/1 derivative, which together is the guided rule
``grad_in = max(grad_out, 0) ⊙ 1[active]``.

Transformers have GELUs instead, whose derivative can be negative; there the
rule of the original VAR project applies: the gradient leaving the GELU is
clamped, ``grad_in = max(grad_out ⊙ GELU'(x), 0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .base import AttributionMethod, class_gradients, selected_logits
from .gradcam import GradCAM

RELU_FAMILY = frozenset(
    {
        F.relu,
        F.relu_,
        F.relu6,
        F.hardtanh,
        F.hardtanh_,
        torch.relu,
        torch.relu_,
        torch.Tensor.relu,
        torch.Tensor.relu_,
    }
)


def _clamp_negative(gradient: torch.Tensor) -> torch.Tensor:
    return gradient.clamp(min=0)


class _GuidedGelu(torch.autograd.Function):
    """GELU forward; the backward clamps ``grad_out * GELU'(x)`` at zero."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, approximate: str) -> torch.Tensor:
        ctx.save_for_backward(inputs)
        ctx.approximate = approximate
        return F.gelu(inputs, approximate=approximate)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inputs,) = ctx.saved_tensors
        with torch.enable_grad():
            leaf = inputs.detach().requires_grad_(True)
            (local,) = torch.autograd.grad(F.gelu(leaf, approximate=ctx.approximate), leaf, gradient)
        return local.clamp(min=0), None


class GuidedActivationMode(TorchFunctionMode):
    """While active, every ReLU-family and GELU call back-propagates by the guided rule.

    Attributes
    ----------
    gated_calls : int
        The number of calls that were guided, so callers can refuse models
        without ReLUs instead of returning a plain gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gated_calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.gelu and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            self.gated_calls += 1
            return _GuidedGelu.apply(args[0], kwargs.get("approximate", args[1] if len(args) > 1 else "none"))
        output = func(*args, **kwargs)
        if func in RELU_FAMILY and isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(_clamp_negative)
            self.gated_calls += 1
        return output


def guided_gradients(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Guided backprop maps of K classes: one guided forward, K backward passes.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits (N, num_classes).
    inputs : torch.Tensor
        Images (N, C, H, W).
    classes : torch.Tensor
        (N, K) class indices, one row per image.

    Returns
    -------
    torch.Tensor
        (N, K, C, H, W) guided gradients.

    Raises
    ------
    ValueError
        The model makes no ReLU-family call (the guided rule would have
        nothing to act on and the result would be a plain gradient).
    """
    inputs = inputs.detach().requires_grad_(True)
    with GuidedActivationMode() as mode:
        selected = selected_logits(model, inputs, classes)
    if mode.gated_calls == 0:
        raise ValueError(
            f"Guided backprop needs ReLU-family or GELU activations; {type(model).__name__} made no such call, so "
            "the result would be the plain gradient. Use another method (for B-cos networks: 'bcos')."
        )
    return class_gradients(selected, inputs)


class GuidedBackprop(AttributionMethod):
    """Guided Backpropagation (Springenberg et al. 2015) of K classes at once."""

    name = "guided_backprop"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Guided-backprop maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        return guided_gradients(model, inputs, classes)


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: guided backprop times the ReLU'd, upsampled Grad-CAM (Selvaraju et al. 2017).

    Parameters
    ----------
    layer : nn.Module, str or None, default None
        The Grad-CAM layer, as in :class:`GradCAM`.
    """

    name = "guided_gradcam"

    def __init__(self, layer: nn.Module | str | None = None) -> None:
        super().__init__(layer=layer, relu=True)

    def settings(self) -> dict[str, object]:
        """``{"layer": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"layer": self.layer}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Guided Grad-CAM maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        return guided_gradients(model, inputs, classes) * super().attribute(model, inputs, classes)
