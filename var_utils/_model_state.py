"""Context managers that put a model in the state an attribution or a prediction needs, then restore it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``model`` in eval mode and restore each module's own flag afterwards.

    Restoring per module (rather than ``model.train(was_training)``) keeps
    mixed states intact, e.g. a frozen batch-norm inside a training model.

    Parameters
    ----------
    model : nn.Module
        The model; restored also when the block raises.

    Yields
    ------
    nn.Module
        ``model``, in eval mode.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> with eval_mode(model):
    ...     model[1].training
    False
    >>> model[1].training
    True
    """
    flags = {module: module.training for module in model.modules()}
    try:
        yield model.eval()
    finally:
        for module, training in flags.items():
            module.training = training


@contextlib.contextmanager
def attribution_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Prepare ``model`` for attribution and restore it afterwards.

    Inside the context the model is in :func:`eval_mode`, its parameters do
    not require grad (so backward passes compute input gradients only) and
    in-place activations are switched off (they break hooks and guided rules).
    Training flags, ``requires_grad`` flags and ``inplace`` flags are restored
    on exit, also when an error is raised.

    Parameters
    ----------
    model : nn.Module
        The model to prepare.

    Yields
    ------
    nn.Module
        ``model``, ready for attribution.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True))
    >>> with attribution_mode(model):
    ...     model[0].weight.requires_grad, model[1].inplace
    (False, False)
    >>> model[0].weight.requires_grad, model[1].inplace
    (True, True)
    """
    grad_flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    inplace_modules = [module for module in model.modules() if getattr(module, "inplace", False) is True]
    with eval_mode(model):
        try:
            for parameter, _ in grad_flags:
                parameter.requires_grad_(False)
            for module in inplace_modules:
                module.inplace = False
            yield model
        finally:
            for parameter, flag in grad_flags:
                parameter.requires_grad_(flag)
            for module in inplace_modules:
                module.inplace = True


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``inputs`` in eval mode, without gradients; the model's state is kept."""
    with eval_mode(model):
        return model(inputs.to(model_device(model)))
