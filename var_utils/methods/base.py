"""Shared machinery of the multi-class attribution engine.

Every method computes the base maps of K classes for N images and returns them
as one tensor of shape (N, K, C', H, W). Gradient methods share one forward
pass between the K classes and run K input-gradient backward passes; the
model's parameters never require grad meanwhile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from .._validation import check_classes_in_range, check_logits


def selected_logits(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Run ``model`` once and return the logits of each row's classes.

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
        (N, K) logits, part of the autograd graph of ``inputs``.

    Raises
    ------
    TypeError, ValueError
        The model does not return (N, num_classes) logits, or a class is out
        of range.
    """
    logits = check_logits(model(inputs), inputs.shape[0])
    check_classes_in_range(classes, logits.shape[1])
    return logits.gather(1, classes.to(logits.device))


def class_gradients(selected: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """Gradients of each of the K selected logits with respect to ``wrt``.

    Row n of ``wrt`` only influences row n of ``selected`` (models in eval mode
    treat the images of a batch independently), so summing column k over the
    batch gives every image's gradient of its own k-th logit in one backward.

    Parameters
    ----------
    selected : torch.Tensor
        (N, K) logits, computed from ``wrt`` by one forward pass.
    wrt : torch.Tensor
        (N, ...) tensor that requires grad (the inputs or a layer's output).

    Returns
    -------
    torch.Tensor
        (N, K, ...): one backward pass per class, the graph reused.
    """
    return class_gradients_of_many(selected, [wrt])[0]


def class_gradients_of_many(selected: torch.Tensor, wrt: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """:func:`class_gradients` with respect to several tensors at once (one backward pass per class).

    Parameters
    ----------
    selected : torch.Tensor
        (N, K) logits.
    wrt : sequence of torch.Tensor
        Tensors (N, ...) on the path from the inputs to ``selected``.

    Returns
    -------
    list of torch.Tensor
        One (N, K, ...) tensor per entry of ``wrt``.
    """
    num_classes = selected.shape[1]
    per_class = [
        torch.autograd.grad(selected[:, k].sum(), wrt, retain_graph=k < num_classes - 1) for k in range(num_classes)
    ]
    return [torch.stack([gradients[i] for gradients in per_class], dim=1) for i in range(len(wrt))]


def _json_setting(value: object, key: str) -> object:
    """A setting as a JSON value that identifies it; ``ValueError`` when it cannot be recorded faithfully."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_setting(item, key) for item in value]
    if isinstance(value, dict):
        return {str(name): _json_setting(item, key) for name, item in value.items()}
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest = hashlib.sha256(data.numpy().tobytes()).hexdigest()
        return {"tensor": list(data.shape), "dtype": str(data.dtype), "sha256": digest}
    if isinstance(value, nn.Module):
        # A module's repr lists its type and structure (never a memory address).
        return {"module": repr(value)}
    raise ValueError(
        f"setting `{key}` ({type(value).__name__}) cannot be recorded in a results file, so its results "
        "cannot be resumed; run without `out`, or wrap the method as a callable with an explicit `name=`."
    )


class AttributionMethod:
    """Base class: base maps of K classes for N images.

    Subclasses implement :meth:`attribute` and declare their settings in
    :meth:`settings`; callers go through :func:`var_utils.attribute_classes`,
    which validates the arguments and puts the model in
    :func:`var_utils.methods.attribution_mode`.

    Attributes
    ----------
    name : str
        The method's name in :data:`var_utils.METHODS`.
    performance_settings : tuple of str
        Settings that change speed or memory but not the maps; results files
        do not record them, so a run may resume with other values.
    compares_classes : bool
        Whether a class's map depends on the other classes of the set (the
        class-discriminative methods); such a method must only ever see a
        set's real classes, never padding.
    """

    name = "base"
    performance_settings: tuple[str, ...] = ()
    compares_classes = False

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Base maps of K classes for every image.

        Parameters
        ----------
        model : nn.Module
            Classifier returning logits (N, num_classes), already in
            :func:`var_utils.methods.attribution_mode`.
        inputs : torch.Tensor
            Images (N, C, H, W).
        classes : torch.Tensor
            (N, K) class indices, one row per image.

        Returns
        -------
        torch.Tensor
            (N, K, C', H, W) maps of ``classes``, with C' = C or 1.
        """
        raise NotImplementedError

    def settings(self) -> dict[str, object]:
        """The method's declared settings, by name (its constructor arguments).

        Returns
        -------
        dict of str to object
            Setting name -> value; empty for a method without settings.
        """
        return {}

    def fingerprint(self) -> dict[str, object]:
        """What identifies this method's maps, as JSON values: its name and the settings that change them.

        Returns
        -------
        dict
            ``{"method": name, "settings": {...}}``.

        Raises
        ------
        ValueError
            A setting cannot be recorded (e.g. an arbitrary object).

        Examples
        --------
        >>> from var_utils.methods import IntegratedGradients
        >>> IntegratedGradients(n_steps=16).fingerprint()
        {'method': 'integrated_gradients', 'settings': {'n_steps': 16, 'baseline': None, 'rule': 'gausslegendre'}}
        """
        recorded = {
            key: _json_setting(value, key)
            for key, value in self.settings().items()
            if key not in self.performance_settings
        }
        return {"method": self.name, "settings": recorded}

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({settings})"
