"""Shared machinery of the multi-class attribution engine.

Every method computes the base maps of K classes for N images and returns them
as one tensor of shape (N, K, C', H, W). Gradient methods share one forward
pass between the K classes and run K input-gradient backward passes; the
model's parameters never require grad meanwhile.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .._checks import check_classes_in_range, check_logits


@contextlib.contextmanager
def attribution_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Prepare ``model`` for attribution and restore it afterwards.

    Inside the context the model is in eval mode, its parameters do not
    require grad (so backward passes compute input gradients only) and
    in-place activations are switched off (they break hooks and guided rules).
    Training mode, ``requires_grad`` flags and ``inplace`` flags are restored
    on exit, also when an error is raised.
    """
    was_training = model.training
    grad_flags = [(p, p.requires_grad) for p in model.parameters()]
    inplace_modules = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    try:
        model.eval()
        for parameter, _ in grad_flags:
            parameter.requires_grad_(False)
        for module in inplace_modules:
            module.inplace = False
        yield model
    finally:
        model.train(was_training)
        for parameter, flag in grad_flags:
            parameter.requires_grad_(flag)
        for module in inplace_modules:
            module.inplace = True


def selected_logits(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Run ``model`` once and return the logits of each row's classes, shape (N, K)."""
    logits = check_logits(model(inputs), inputs.shape[0])
    check_classes_in_range(classes, logits.shape[1])
    return logits.gather(1, classes.to(logits.device))


def class_gradients(selected: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """Gradients of each of the K selected logits with respect to ``wrt``.

    ``selected`` is (N, K) and ``wrt`` (N, ...), computed by one forward pass.
    Row n of ``wrt`` only influences row n of ``selected`` (models in eval mode
    treat the images of a batch independently), so summing column k over the
    batch gives every image's gradient of its own k-th logit in one backward.

    Returns
    -------
    torch.Tensor
        (N, K, ...): one backward pass per class, the graph reused.
    """
    num_classes = selected.shape[1]
    gradients = [
        torch.autograd.grad(selected[:, k].sum(), wrt, retain_graph=k < num_classes - 1)[0]
        for k in range(num_classes)
    ]
    return torch.stack(gradients, dim=1)


class AttributionMethod:
    """Base class: base maps of K classes for N images.

    Subclasses implement :meth:`attribute`; callers go through
    :func:`var_utils.attribute_classes`, which validates the arguments and
    puts the model in :func:`attribution_mode`.
    """

    name = "base"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Return the (N, K, C', H, W) maps of ``classes`` (N, K) for ``inputs`` (N, C, H, W)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({settings})"
