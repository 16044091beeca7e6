"""Base attribution methods, one per module, all computing the maps of K classes at once."""

from __future__ import annotations

from collections.abc import Callable

from .._model_state import attribution_mode
from .attention import AttentionGradCAM, AttentionRollout, GradientRollout
from .attnlrp import AttnLRP
from .base import AttributionMethod
from .batched import LRP, CallableMethod, CaptumMethod, DeepLift, Occlusion
from .bcos import BcosContribution
from .contrastive_gradcam import ContrastiveGradCAM
from .contrastive_lrp import CLRP, SGLRP
from .gradcam import GradCAM, default_gradcam_layer
from .gradient import InputXGradient, Saliency, SmoothGrad
from .guided import GuidedBackprop, GuidedGradCAM
from .integrated_gradients import IntegratedGradients
from .softmax_gradient import SoftmaxGradient

METHODS: dict[str, type[AttributionMethod]] = {
    cls.name: cls
    for cls in (
        Saliency,
        InputXGradient,
        IntegratedGradients,
        GuidedBackprop,
        GradCAM,
        GuidedGradCAM,
        LRP,
        DeepLift,
        SmoothGrad,
        Occlusion,
        AttentionGradCAM,
        AttentionRollout,
        GradientRollout,
        AttnLRP,
        BcosContribution,
        SoftmaxGradient,
        ContrastiveGradCAM,
        CLRP,
        SGLRP,
    )
}


def get_method(method: str | AttributionMethod | Callable, **kwargs) -> AttributionMethod:
    """Turn a method name, a Captum attribution object or a callable into an :class:`AttributionMethod`.

    Parameters
    ----------
    method : str, AttributionMethod, Captum attribution or callable
        A name from ``METHODS`` (settings from ``kwargs``), an
        :class:`AttributionMethod` instance, an object with an ``attribute``
        method (Captum; ``kwargs`` go to its ``attribute``, except ``name``), or
        a callable ``(inputs, target) -> maps`` (``kwargs``: only ``name``).
        A Captum object or a callable needs ``name`` for its results to be
        recorded and resumed (:meth:`AttributionMethod.fingerprint`).
    **kwargs
        Settings of a named method; the ``attribute`` keywords (and ``name``)
        of a Captum object; ``name`` of a callable.

    Returns
    -------
    AttributionMethod
        The method, ready for :func:`var_utils.attribute_classes`.

    Raises
    ------
    ValueError
        An unknown method name, or an invalid setting value.
    TypeError
        Unknown settings for the method, settings given with an
        :class:`AttributionMethod` instance, or an unsupported ``method``.

    Examples
    --------
    >>> get_method("integrated_gradients", n_steps=16)
    IntegratedGradients(n_steps=16, baseline=None, rule='gausslegendre', internal_batch_size=16)
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"Unknown `method` {method!r}; expected one of {sorted(METHODS)}.")
        try:
            return METHODS[method](**kwargs)
        except TypeError as error:
            raise TypeError(f"Bad settings for method {method!r}: {error}") from None
    if kwargs and isinstance(method, AttributionMethod):
        raise TypeError(f"Settings {sorted(kwargs)} cannot be applied to an AttributionMethod instance.")
    if isinstance(method, AttributionMethod):
        return method
    if callable(getattr(method, "attribute", None)):
        return CaptumMethod(method, **kwargs)
    if callable(method):
        if set(kwargs) - {"name"}:
            raise TypeError(f"A callable method takes only `name=` as a setting, got {sorted(kwargs)}.")
        return CallableMethod(method, **kwargs)
    raise TypeError(
        f"`method` must be a method name, an AttributionMethod, a Captum attribution object or a callable, "
        f"got {type(method).__name__}."
    )


__all__ = [
    "METHODS",
    "AttentionGradCAM",
    "AttentionRollout",
    "AttnLRP",
    "AttributionMethod",
    "BcosContribution",
    "CLRP",
    "CallableMethod",
    "CaptumMethod",
    "ContrastiveGradCAM",
    "DeepLift",
    "GradCAM",
    "GradientRollout",
    "GuidedBackprop",
    "GuidedGradCAM",
    "InputXGradient",
    "IntegratedGradients",
    "LRP",
    "Occlusion",
    "SGLRP",
    "Saliency",
    "SmoothGrad",
    "SoftmaxGradient",
    "attribution_mode",
    "default_gradcam_layer",
    "get_method",
]
