"""Methods without a shared forward pass: one batched call with each image repeated K times.

Used for LRP (zennit), DeepLift and Occlusion (Captum), any Captum attribution
object and any user callable ``(inputs, target) -> attributions``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_classes_in_range, check_logits, check_positive_int
from .base import AttributionMethod


def count_module_calls(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, Counter]:
    """Run ``model`` without gradients; return its output and how often each leaf module ran."""
    calls: Counter = Counter()
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda module, _i, _o: calls.update([module])) for m in leaves]
    try:
        with torch.no_grad():
            output = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return output, calls


def match_input_size(maps: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Check (M, C', h, w) maps against (M, C, H, W) inputs; upsample bilinearly if h, w differ."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"The base method must return a tensor, got {type(maps).__name__}.")
    if maps.dim() != 4 or maps.shape[0] != inputs.shape[0] or maps.shape[1] not in (1, inputs.shape[1]):
        raise ValueError(
            f"The base method must return maps of shape ({inputs.shape[0]}, 1 or {inputs.shape[1]}, h, w) for inputs "
            f"of shape {tuple(inputs.shape)}, got {tuple(maps.shape)}."
        )
    if maps.shape[2:] != inputs.shape[2:]:
        maps = F.interpolate(maps, size=tuple(inputs.shape[2:]), mode="bilinear")
    return maps


class RepeatedInputMethod(AttributionMethod):
    """Base class: subclasses implement :meth:`attribute_rows` for one target per row."""

    def attribute_rows(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Maps (M, C', h, w) of ``targets[m]`` for ``inputs[m]``."""
        raise NotImplementedError

    def check_model(self, model: nn.Module, calls: Counter) -> None:
        """Refuse models the method cannot explain correctly (given leaf-module call counts)."""

    def attribute(self, model, inputs, classes):
        logits, calls = count_module_calls(model, inputs)
        check_classes_in_range(classes, check_logits(logits, inputs.shape[0]).shape[1])
        self.check_model(model, calls)
        num_images, num_classes = classes.shape
        repeated = inputs.repeat_interleave(num_classes, dim=0)
        maps = self.attribute_rows(model, repeated, classes.flatten().to(inputs.device))
        return match_input_size(maps, repeated).detach().unflatten(0, (num_images, num_classes))


def default_lrp_composite(model: nn.Module):
    """Zennit's ``EpsilonPlusFlat`` with the canonizer of the architecture (ResNet, VGG) where one exists."""
    from torchvision import models as tv
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if isinstance(model, tv.ResNet):
        return EpsilonPlusFlat(canonizers=[ResNetCanonizer()])
    if isinstance(model, tv.VGG):
        return EpsilonPlusFlat(canonizers=[VGGCanonizer()])
    return EpsilonPlusFlat()


class LRP(RepeatedInputMethod):
    """Layer-wise Relevance Propagation through zennit.

    Args:
        composite: a zennit composite; default ``EpsilonPlusFlat`` (ε for dense
            layers, z⁺ for convolutions, flat for the first layer) with the
            ResNet or VGG canonizer where the architecture has one.
    """

    name = "lrp"

    def __init__(self, composite=None) -> None:
        self.composite = composite

    def settings(self) -> dict[str, object]:
        return {"composite": self.composite}

    def attribute_rows(self, model, inputs, targets):
        from zennit.attribution import Gradient

        composite = self.composite if self.composite is not None else default_lrp_composite(model)
        inputs = inputs.detach().requires_grad_(True)
        # The target's logit is the output relevance (Bach et al. 2015): each class's map sums to about its logit.
        with Gradient(model=model, composite=composite) as attributor:
            _, relevance = attributor(
                inputs, lambda output: F.one_hot(targets, output.shape[1]).to(output.dtype) * output
            )
        return relevance


class DeepLift(RepeatedInputMethod):
    """DeepLift (Shrikumar et al. 2017) through Captum, rescale rule.

    Captum's DeepLift is not complete when one activation module runs at
    several call sites (EfficientNet-Lite, torchvision ResNets): such models
    are refused with a ``ValueError``.

    Args:
        baseline: ``None`` (zeros), a number or a tensor broadcastable to the inputs.
    """

    name = "deeplift"

    def __init__(self, baseline: torch.Tensor | float | None = None) -> None:
        self.baseline = baseline

    def settings(self) -> dict[str, object]:
        return {"baseline": self.baseline}

    def check_model(self, model, calls):
        reused = sorted({type(m).__name__ for m, count in calls.items() if count > 1 and not list(m.parameters())})
        if reused:
            raise ValueError(
                f"DeepLift needs every activation module to run once per forward pass, but {type(model).__name__} "
                f"reuses {reused}; Captum's DeepLift would be incomplete. Use another method or a model with one "
                "module per activation."
            )

    def attribute_rows(self, model, inputs, targets):
        from captum.attr import DeepLift as CaptumDeepLift

        baselines = 0.0 if self.baseline is None else self.baseline
        return CaptumDeepLift(model).attribute(inputs, target=targets, baselines=baselines)


class Occlusion(RepeatedInputMethod):
    """Occlusion (Zeiler & Fergus 2014) through Captum: the logit drop when a square window is set to zero.

    Args:
        window: side of the occluding square in pixels (default: 1/14 of the image height).
        stride: step between windows (default: half the window).
        perturbations_per_eval: occluded images per forward pass.
    """

    name = "occlusion"
    performance_settings = ("perturbations_per_eval",)

    def __init__(self, window: int | None = None, stride: int | None = None, perturbations_per_eval: int = 64) -> None:
        self.window = None if window is None else check_positive_int(window, "window")
        self.stride = None if stride is None else check_positive_int(stride, "stride")
        self.perturbations_per_eval = check_positive_int(perturbations_per_eval, "perturbations_per_eval")

    def settings(self) -> dict[str, object]:
        return {"window": self.window, "stride": self.stride, "perturbations_per_eval": self.perturbations_per_eval}

    def attribute_rows(self, model, inputs, targets):
        from captum.attr import Occlusion as CaptumOcclusion

        channels, height = inputs.shape[1], inputs.shape[2]
        window = self.window or max(1, height // 14)
        stride = self.stride or max(1, window // 2)
        return CaptumOcclusion(model).attribute(
            inputs,
            target=targets,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=0.0,
            perturbations_per_eval=self.perturbations_per_eval,
        )


class _NamedMethod(RepeatedInputMethod):
    """A method whose behaviour its settings cannot describe: an explicit ``name`` identifies its results."""

    def __init__(self, name: str | None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"`name` must be a non-empty string or None, got {name!r}.")
        self.identifier = name

    def fingerprint(self) -> dict[str, object]:
        if self.identifier is None:
            raise ValueError(
                f"a {self.name} method has no settings that identify its maps; pass `name=` (e.g. "
                "get_method(function, name='my_saliency_v1')) to record and resume its results."
            )
        return {"method": self.name, "name": self.identifier, "settings": super().fingerprint()["settings"]}


class CaptumMethod(_NamedMethod):
    """Any Captum attribution object, called once with every image repeated K times.

    Parameters
    ----------
    attribution : captum.attr.Attribution
        E.g. ``captum.attr.IntegratedGradients(model)``.
    name : str, optional
        Identifies the maps in results files (needed to resume a run).
    **attribute_kwargs
        Passed to its ``attribute`` (``n_steps``, ``baselines``, ...).
    """

    name = "captum"

    def __init__(self, attribution, name: str | None = None, **attribute_kwargs) -> None:
        if not callable(getattr(attribution, "attribute", None)):
            raise TypeError(f"`attribution` must have an `attribute` method, got {type(attribution).__name__}.")
        super().__init__(name)
        self.attribution = attribution
        self.attribute_kwargs = attribute_kwargs

    def settings(self) -> dict[str, object]:
        return {"attribution": type(self.attribution).__qualname__, **self.attribute_kwargs}

    def attribute_rows(self, model, inputs, targets):
        return self.attribution.attribute(inputs, target=targets, **self.attribute_kwargs)


class CallableMethod(_NamedMethod):
    """A user function ``(inputs (M, C, H, W), target (M,) LongTensor) -> maps (M, C', h, w)``.

    Parameters
    ----------
    function : callable
        The attribution function.
    name : str, optional
        Identifies the maps in results files (needed to resume a run).
    """

    name = "callable"

    def __init__(self, function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str | None = None) -> None:
        if not callable(function):
            raise TypeError(f"`function` must be callable, got {type(function).__name__}.")
        super().__init__(name)
        self.function = function

    def settings(self) -> dict[str, object]:
        return {"function": getattr(self.function, "__qualname__", type(self.function).__name__)}

    def attribute_rows(self, model, inputs, targets):
        return self.function(inputs, targets)
