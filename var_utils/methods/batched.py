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
    """Run ``model`` once without gradients and count how often each leaf module ran.

    Parameters
    ----------
    model : nn.Module
        The model.
    inputs : torch.Tensor
        Its input batch.

    Returns
    -------
    output : torch.Tensor
        The model's output.
    calls : collections.Counter
        Leaf module -> number of calls during the forward pass.
    """
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
    """Check maps against their inputs and upsample them bilinearly to the inputs' size if needed.

    Parameters
    ----------
    maps : torch.Tensor
        (M, C', h, w) maps with C' equal to the inputs' C or 1.
    inputs : torch.Tensor
        The explained images (M, C, H, W).

    Returns
    -------
    torch.Tensor
        (M, C', H, W) maps.

    Raises
    ------
    TypeError
        ``maps`` is not a tensor.
    ValueError
        ``maps`` does not have shape (M, 1 or C, h, w).
    """
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


#: Modules the rule-based methods (``lrp``'s default composite, ``deeplift``) have no propagation rule for.
MODULES_WITHOUT_RULES = (nn.MultiheadAttention, nn.LayerNorm, nn.GELU)


def refuse_modules_without_rules(method: str, model: nn.Module) -> None:
    """Raise ``ValueError`` if ``model`` has attention, layer norms, GELUs or B-cos layers (no rule covers them).

    Without a rule these methods either fail deep inside their hooks (zennit) or treat the module
    as linear and return a map that silently misses its non-linearity (Captum).
    """
    unsupported = sorted(
        {
            type(module).__name__
            for module in model.modules()
            if isinstance(module, MODULES_WITHOUT_RULES) or type(module).__module__.startswith("bcos.")
        }
    )
    if unsupported:
        raise ValueError(
            f"Method {method!r} has no propagation rule for {unsupported} in {type(model).__name__}. Vision "
            "transformers have 'attnlrp' and B-cos networks 'bcos'; for other models with these modules (e.g. "
            "ConvNeXt) use a gradient method."
        )


class RepeatedInputMethod(AttributionMethod):
    """Base class of methods without a shared forward pass: one call with each image repeated K times.

    Subclasses implement :meth:`attribute_rows` for one target per row and
    may refuse models in :meth:`check_model`.
    """

    def attribute_rows(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Maps of one target class per image.

        Parameters
        ----------
        model : nn.Module
            Classifier returning logits (M, num_classes).
        inputs : torch.Tensor
            Images (M, C, H, W).
        targets : torch.Tensor
            (M,) class of each image.

        Returns
        -------
        torch.Tensor
            (M, C', h, w) maps of ``targets[m]`` for ``inputs[m]``, with C' = C
            or 1; :meth:`attribute` upsamples them to (H, W) if h, w differ.
        """
        raise NotImplementedError

    def check_model(self, model: nn.Module, calls: Counter) -> None:
        """Refuse models the method cannot explain correctly; the default accepts every model.

        Parameters
        ----------
        model : nn.Module
            The model to explain.
        calls : collections.Counter
            Leaf module -> number of calls in one forward pass (:func:`count_module_calls`).

        Raises
        ------
        ValueError
            The method cannot explain ``model`` correctly.
        """

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Maps (N, K, C', H, W) of ``classes`` via :meth:`attribute_rows`: see :meth:`AttributionMethod.attribute`."""
        logits, calls = count_module_calls(model, inputs)
        check_classes_in_range(classes, check_logits(logits, inputs.shape[0]).shape[1])
        self.check_model(model, calls)
        num_images, num_classes = classes.shape
        repeated = inputs.repeat_interleave(num_classes, dim=0)
        maps = self.attribute_rows(model, repeated, classes.flatten().to(inputs.device))
        return match_input_size(maps, repeated).detach().unflatten(0, (num_images, num_classes))


def default_lrp_composite(model: nn.Module):
    """Zennit's ``EpsilonPlusFlat`` with the canonizer of the architecture (ResNet, VGG) where one exists.

    Parameters
    ----------
    model : nn.Module
        The model to explain.

    Returns
    -------
    zennit.composites.EpsilonPlusFlat
        The composite, with ``ResNetCanonizer`` or ``VGGCanonizer`` for
        torchvision ResNets and VGGs.
    """
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

    Parameters
    ----------
    composite : zennit.core.Composite, optional
        A zennit composite; default ``EpsilonPlusFlat`` (ε for dense layers,
        z⁺ for convolutions, flat for the first layer) with the ResNet or VGG
        canonizer where the architecture has one (:func:`default_lrp_composite`).
    """

    name = "lrp"

    def __init__(self, composite=None) -> None:
        self.composite = composite

    def settings(self) -> dict[str, object]:
        """``{"composite": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"composite": self.composite}

    def check_model(self, model: nn.Module, calls: Counter) -> None:
        """With the default composite, refuse transformers and B-cos networks (see ``RepeatedInputMethod``)."""
        if self.composite is None:
            refuse_modules_without_rules(self.name, model)

    def attribute_rows(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """LRP relevance maps (M, C, H, W) of ``targets``: see :meth:`RepeatedInputMethod.attribute_rows`."""
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

    Parameters
    ----------
    baseline : torch.Tensor, float or None, default None
        ``None`` (zeros), a number or a tensor broadcastable to the inputs.
    """

    name = "deeplift"

    def __init__(self, baseline: torch.Tensor | float | None = None) -> None:
        self.baseline = baseline

    def settings(self) -> dict[str, object]:
        """``{"baseline": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"baseline": self.baseline}

    def check_model(self, model: nn.Module, calls: Counter) -> None:
        """Refuse models without rules or reusing a parameter-free module (see ``RepeatedInputMethod``)."""
        refuse_modules_without_rules(self.name, model)
        reused = sorted({type(m).__name__ for m, count in calls.items() if count > 1 and not list(m.parameters())})
        if reused:
            raise ValueError(
                f"DeepLift needs every activation module to run once per forward pass, but {type(model).__name__} "
                f"reuses {reused}; Captum's DeepLift would be incomplete. Use another method or a model with one "
                "module per activation."
            )

    def attribute_rows(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """DeepLift maps (M, C, H, W) of ``targets``: see :meth:`RepeatedInputMethod.attribute_rows`."""
        from captum.attr import DeepLift as CaptumDeepLift

        baselines = 0.0 if self.baseline is None else self.baseline
        return CaptumDeepLift(model).attribute(inputs, target=targets, baselines=baselines)


class Occlusion(RepeatedInputMethod):
    """Occlusion (Zeiler & Fergus 2014) through Captum: the logit drop when a square window is set to zero.

    Parameters
    ----------
    window : int, optional
        Side of the occluding square in pixels; default 1/14 of the image
        height (at least 1).
    stride : int, optional
        Step between windows in pixels; default half the window (at least 1).
    perturbations_per_eval : int, default 64
        Occluded images per forward pass (a performance setting: it does not
        change the maps).
    """

    name = "occlusion"
    performance_settings = ("perturbations_per_eval",)

    def __init__(self, window: int | None = None, stride: int | None = None, perturbations_per_eval: int = 64) -> None:
        self.window = None if window is None else check_positive_int(window, "window")
        self.stride = None if stride is None else check_positive_int(stride, "stride")
        self.perturbations_per_eval = check_positive_int(perturbations_per_eval, "perturbations_per_eval")

    def settings(self) -> dict[str, object]:
        """``window``, ``stride`` and ``perturbations_per_eval``: see :meth:`AttributionMethod.settings`."""
        return {"window": self.window, "stride": self.stride, "perturbations_per_eval": self.perturbations_per_eval}

    def attribute_rows(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Occlusion maps (M, C, H, W) of ``targets``: see :meth:`RepeatedInputMethod.attribute_rows`."""
        from captum.attr import Occlusion as CaptumOcclusion

        channels, height = inputs.shape[1], inputs.shape[2]
        window = self.window or max(1, height // 14)
        stride = self.stride or max(1, window // 2)
        maps = CaptumOcclusion(model).attribute(
            inputs,
            target=targets,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=0.0,
            perturbations_per_eval=self.perturbations_per_eval,
        )
        # Captum 0.9 sums the logit drops in the logits' dtype but returns them divided by the window counts in
        # float32; the maps of float64 inputs are cast back (they keep float32's precision).
        return maps.to(inputs.dtype)


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
        """The attribution's class name and the ``attribute`` keywords: see :meth:`AttributionMethod.settings`."""
        return {"attribution": type(self.attribution).__qualname__, **self.attribute_kwargs}

    def attribute_rows(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The Captum object's maps of ``targets``: see :meth:`RepeatedInputMethod.attribute_rows`."""
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
        """The function's qualified name: see :meth:`AttributionMethod.settings`."""
        return {"function": getattr(self.function, "__qualname__", type(self.function).__name__)}

    def attribute_rows(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The function's maps of ``targets`` (``model`` is unused): see :meth:`RepeatedInputMethod.attribute_rows`."""
        return self.function(inputs, targets)
