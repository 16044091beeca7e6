"""Contrastive Grad-CAM ("why P, rather than Q", Prabhushankar et al. 2020) against the other classes of the set.

The original answers why the network predicts P rather than a contrast class Q: the
channel weights are the spatial means of the gradient of the cross-entropy loss
with Q as the label. Here P is the explained class t (so every class of the set
gets a map, as for VAR) and the loss is the cross-entropy of the pair {t, Q} with
label Q, whose gradient is ``σ(y_t − y_Q) (∇y_t − ∇y_Q)``. Against a set the map
uses the mixture of its other classes: the mean of that gradient over
``Q ∈ S ∖ {t}`` (``docs/method.md``, section 13).
"""

from __future__ import annotations

import torch

from .gradcam import GradCAM


def pairwise_contrast_gradients(gradients: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per class t, the mean over the other classes Q of the gradient of ``CE({y_t, y_Q}, Q)``.

    Parameters
    ----------
    gradients : torch.Tensor
        (N, K, ...) gradients ``∇y_k`` of the K logits of each image's set.
    logits : torch.Tensor
        (N, K) the logits.

    Returns
    -------
    torch.Tensor
        (N, K, ...) ``mean_{Q≠t} σ(y_t − y_Q) (∇y_t − ∇y_Q)``.

    Examples
    --------
    >>> pairwise_contrast_gradients(torch.tensor([[[1.0], [0.0]]]), torch.zeros(1, 2))  # σ(0) = 1/2
    tensor([[[ 0.5000],
             [-0.5000]]])
    """
    count = logits.shape[1]
    # weights[n, t, q] = σ(y_t − y_q): how far the pair's loss still pushes t above q; zero on the diagonal.
    weights = torch.sigmoid(logits.unsqueeze(2) - logits.unsqueeze(1)).to(gradients.dtype)
    weights = weights * (1 - torch.eye(count, dtype=gradients.dtype, device=gradients.device))
    flat = gradients.flatten(2)
    own = weights.sum(dim=2, keepdim=True) * flat
    others = torch.bmm(weights, flat)
    return ((own - others) / (count - 1)).view_as(gradients)


class ContrastiveGradCAM(GradCAM):
    """Grad-CAM of "why t rather than the other classes of the set", clamped at zero as in the original.

    Parameters
    ----------
    layer : nn.Module, str or None, default None
        As for :class:`~var_utils.methods.GradCAM`.
    relu : bool, default True
        Clamp the map at zero (the original's ``ReLU``).
    """

    name = "contrastive_gradcam"
    compares_classes = True

    def __init__(self, layer=None, relu: bool = True) -> None:
        super().__init__(layer=layer, relu=relu)

    def class_weights_gradients(self, gradients: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The gradients of the pairwise contrast losses (:func:`pairwise_contrast_gradients`)."""
        return pairwise_contrast_gradients(gradients, logits)
