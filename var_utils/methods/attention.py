"""Attention-based maps of vision transformers: attention Grad-CAM and the two rollouts.

All three read the attention of the class token to the patch tokens, laid out
on the patch grid and upsampled bilinearly to the input size. Attention
Grad-CAM and the gradient-weighted rollout take one forward pass and one
backward pass per class of the set; attention rollout has no gradient and is
the same map for every class.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice
from .base import AttributionMethod, class_gradients_of_many, selected_logits
from .transformer import exposed_attention, patch_maps_to_image


def attention_and_gradients(
    model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, method: str, block: int | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Attention (N, h, T, T) and its gradients (N, K, h, T, T) for the K classes: every block's, or one ``block``'s.

    Raises
    ------
    ValueError
        ``block`` is out of range (checked before any backward pass).
    """
    # The parameters are frozen during attribution: only a graph from the inputs makes the attention differentiable.
    inputs = inputs.detach().requires_grad_(True)
    with exposed_attention(model, method) as blocks:
        if block is not None and not -len(blocks) <= block < len(blocks):
            raise ValueError(f"`block` {block} is out of range for a ViT with {len(blocks)} blocks.")
        selected = selected_logits(model, inputs, classes)
    attentions = [layer.weights for layer in blocks]
    if block is not None:
        attentions = [attentions[block]]
    return attentions, class_gradients_of_many(selected, attentions)


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=-1, keepdim=True)
    span = maps.amax(dim=-1, keepdim=True) - low
    return (maps - low) / span.clamp(min=torch.finfo(maps.dtype).tiny)


class AttentionGradCAM(AttributionMethod):
    """The original VAR project's Grad-CAM for ViTs, on one block's attention.

    For each class, head ``h`` is weighted by the mean gradient of the class
    logit with respect to the class token's attention to the patches,
    ``w_h = mean_j dy/dA[h, 0, j]``; the map is ``mean_h(w_h A[h, 0, 1:])``,
    clamped at zero and min-max normalised per map (as the original does),
    then upsampled.

    Parameters
    ----------
    block : int, default -1
        The encoder block whose attention is used (the last, as the original).
    relu : bool, default True
        Clamp the patch map at zero.
    normalize : bool, default True
        Min-max normalise each class's patch map to [0, 1].
    """

    name = "attention_gradcam"

    def __init__(self, block: int = -1, relu: bool = True, normalize: bool = True) -> None:
        if not isinstance(block, int) or isinstance(block, bool):
            raise TypeError(f"`block` must be an int (an index into the encoder blocks), got {type(block).__name__}.")
        self.block = block
        self.relu = relu
        self.normalize = normalize

    def settings(self) -> dict[str, object]:
        """``block``, ``relu`` and ``normalize``: see :meth:`AttributionMethod.settings`."""
        return {"block": self.block, "relu": self.relu, "normalize": self.normalize}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Attention Grad-CAM maps (N, K, 1, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        (attention,), (gradient,) = attention_and_gradients(model, inputs, classes, self.name, self.block)
        attention = attention[:, :, 0, 1:].unsqueeze(1)  # (N, 1, h, P)
        gradient = gradient[:, :, :, 0, 1:]  # (N, K, h, P)
        head_weights = gradient.mean(dim=-1, keepdim=True)
        maps = (head_weights * attention).mean(dim=2)
        if self.relu:
            maps = maps.clamp(min=0)
        if self.normalize:
            maps = _min_max(maps)
        return patch_maps_to_image(maps, model, inputs)


def rollout(per_block: list[torch.Tensor], step: str) -> torch.Tensor:
    """Combine per-block token-mixing matrices (…, T, T) across blocks.

    Parameters
    ----------
    per_block : list of torch.Tensor
        One (…, T, T) matrix per block, first block first.
    step : str
        ``"product"``: ``R = M_L ... M_1`` (attention rollout, the matrices
        already include the residual identity); ``"residual"``:
        ``R <- R + M_l R`` from ``R = I`` (Chefer et al.'s update).

    Returns
    -------
    torch.Tensor
        (…, T) the class token's row of ``R``.
    """
    check_choice(step, "step", ("product", "residual"))
    tokens = per_block[0].shape[-1]
    eye = torch.eye(tokens, dtype=per_block[0].dtype, device=per_block[0].device)
    relevance = eye.expand_as(per_block[0])
    for mixing in per_block:
        relevance = mixing @ relevance if step == "product" else relevance + mixing @ relevance
    return relevance[..., 0, :]


class AttentionRollout(AttributionMethod):
    """Attention rollout (Abnar & Zuidema 2020): how much each patch feeds the class token, through all blocks.

    Per block, ``A_hat = mean_h A + I`` with rows renormalised to sum to 1;
    the product over blocks, read at the class token's row. It uses no
    gradient, so every class of the set gets the same map: VAR cannot make it
    class-specific (all classes tie everywhere), which the benchmarks show.
    """

    name = "attention_rollout"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Rollout maps (N, K, 1, H, W), identical across the K classes: see :meth:`AttributionMethod.attribute`."""
        with torch.no_grad(), exposed_attention(model, self.name) as blocks:
            selected_logits(model, inputs, classes)
        mixing = []
        for block in blocks:
            attention = block.weights.mean(dim=1)
            attention = attention + torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
            mixing.append(attention / attention.sum(dim=-1, keepdim=True))
        maps = rollout(mixing, "product")[:, 1:].unsqueeze(1).expand(-1, classes.shape[1], -1)
        return patch_maps_to_image(maps, model, inputs)


class GradientRollout(AttributionMethod):
    """Gradient-weighted attention rollout (Chefer et al. 2021, "Generic attention-model explainability").

    Per class and block, ``A_bar = mean_h((dy/dA * A).clamp(min=0))``; from
    ``R = I``, each block updates ``R <- R + A_bar R``; the map is the class
    token's row over the patches.
    """

    name = "gradient_rollout"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Gradient-rollout maps (N, K, 1, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        attentions, gradients = attention_and_gradients(model, inputs, classes, self.name)
        mixing = [
            (gradient * attention.unsqueeze(1)).clamp(min=0).mean(dim=2)
            for attention, gradient in zip(attentions, gradients)
        ]
        maps = rollout(mixing, "residual")[..., 1:]
        return patch_maps_to_image(maps, model, inputs)
