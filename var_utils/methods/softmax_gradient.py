"""Softmax-gradient attribution ("Why not other classes?", Wang & Wang 2022): the gradient of p_t over the set.

With ``p = softmax(y_S)`` over the logits of the class set S,

    ∇p_t = p_t (∇y_t − Σ_j p_j ∇y_j),

which explains the target against the other classes of the set rather than in
isolation. The K logit gradients come from one forward pass and K backward
passes; the softmax Jacobian is applied in closed form.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import AttributionMethod, class_gradients, selected_logits


def softmax_gradients(logit_gradients: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Gradients of the set's softmax probabilities from the gradients of its logits.

    Parameters
    ----------
    logit_gradients : torch.Tensor
        (N, K, ...) gradients ``∇y_k`` of the K logits of each image's set.
    logits : torch.Tensor
        (N, K) the logits ``y_k``.

    Returns
    -------
    torch.Tensor
        (N, K, ...) ``∇p_k = p_k (∇y_k − Σ_j p_j ∇y_j)`` with ``p = softmax(y)`` over K.

    Examples
    --------
    >>> softmax_gradients(torch.tensor([[[1.0], [0.0]]]), torch.zeros(1, 2))  # p = (1/2, 1/2)
    tensor([[[ 0.2500],
             [-0.2500]]])
    """
    probabilities = torch.softmax(logits.detach().to(logit_gradients.dtype), dim=1)
    shape = (*probabilities.shape, *([1] * (logit_gradients.dim() - 2)))
    probabilities = probabilities.view(shape)
    mixture = (probabilities * logit_gradients).sum(dim=1, keepdim=True)
    return probabilities * (logit_gradients - mixture)


class SoftmaxGradient(AttributionMethod):
    """The gradient of each class's softmax probability over the set, times the input by default.

    Parameters
    ----------
    multiply_by_inputs : bool, default True
        Return ``∇p_t ⊙ x`` (as input × gradient does for the logit) or the
        plain gradient ``∇p_t``.
    """

    name = "softmax_gradient"
    compares_classes = True

    def __init__(self, multiply_by_inputs: bool = True) -> None:
        if not isinstance(multiply_by_inputs, bool):
            raise TypeError(f"`multiply_by_inputs` must be True or False, got {multiply_by_inputs!r}.")
        self.multiply_by_inputs = multiply_by_inputs

    def settings(self) -> dict[str, object]:
        """``{"multiply_by_inputs": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"multiply_by_inputs": self.multiply_by_inputs}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Softmax-gradient maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        inputs = inputs.detach().requires_grad_(True)
        selected = selected_logits(model, inputs, classes)
        maps = softmax_gradients(class_gradients(selected, inputs), selected)
        return maps * inputs.detach().unsqueeze(1) if self.multiply_by_inputs else maps
