"""Plumbing for vision transformers: blocks, differentiable attention, token grids.

torchvision's encoder blocks call ``nn.MultiheadAttention`` with
``need_weights=False`` and apply its output projection functionally, so the
attention probabilities are never a tensor on the path to the logits and hooks
on them never fire. :func:`exposed_attention` swaps each block's attention for
:class:`ExplicitAttention`, which computes ``softmax(QK^T / sqrt(d))`` from the
same parameters and keeps it, for the duration of one attribution: the logits
are those of the unmodified model (to float rounding), and gradients with
respect to every block's attention are available.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice

#: How :class:`ExplicitAttention` back-propagates through the attention probabilities.
ATTENTION_RULES = ("gradient", "constant", "uniform")


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by a constant."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        return gradient * ctx.factor, None


def scale_gradient(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    """Return ``tensor`` unchanged, with the gradient flowing back through it multiplied by ``factor``."""
    return _ScaleGradient.apply(tensor, factor)


class ExplicitAttention(nn.Module):
    """The computation of a batch-first ``nn.MultiheadAttention``, written out so the attention is a tensor.

    After each forward pass, :attr:`weights` holds the attention probabilities
    (N, heads, T, T), part of the autograd graph.

    Parameters
    ----------
    attention : nn.MultiheadAttention
        The module to mirror (its parameters are shared, not copied).
    rule : str, default "gradient"
        The backward pass through the attention: ``"gradient"`` (exact),
        ``"constant"`` (queries and keys detached: the probabilities act as
        constant weights, the conservative treatment of CP-LRP) or
        ``"uniform"`` (AttnLRP's uniform rule for the two products: the
        gradients reaching queries and keys are divided by 4, those reaching
        values by 2).
    """

    def __init__(self, attention: nn.MultiheadAttention, rule: str = "gradient") -> None:
        super().__init__()
        check_choice(rule, "rule", ATTENTION_RULES)
        plain = attention.batch_first and attention._qkv_same_embed_dim
        if not plain or attention.bias_k is not None or attention.add_zero_attn:
            raise ValueError(
                "Only batch-first self-attention with one input projection, no extra key/value bias and no zero "
                "attention is supported (torchvision's VisionTransformer)."
            )
        self.attention = attention
        self.rule = rule
        self.weights: torch.Tensor | None = None

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unmasked self-attention of ``query`` (N, T, E), in ``nn.MultiheadAttention``'s calling convention."""
        if not (query is key is value):
            raise ValueError("ExplicitAttention computes self-attention only: query, key and value must be one tensor.")
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError("ExplicitAttention does not support attention masks (a ViT uses none).")
        module = self.attention
        heads = module.num_heads
        q, k, v = F.linear(query, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (part.unflatten(-1, (heads, -1)).transpose(1, 2) for part in (q, k, v))
        if self.rule == "constant":
            q, k = q.detach(), k.detach()
        elif self.rule == "uniform":
            q, k, v = scale_gradient(q, 0.25), scale_gradient(k, 0.25), scale_gradient(v, 0.5)
        self.weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        # As nn.MultiheadAttention: dropout on the probabilities in training mode only (none during attribution).
        mixed = (F.dropout(self.weights, module.dropout, module.training) @ v).transpose(1, 2).flatten(2)
        if not need_weights:
            return module.out_proj(mixed), None
        return module.out_proj(mixed), (self.weights.mean(dim=1) if average_attn_weights else self.weights)


def vit_blocks(model: nn.Module, method: str) -> list[nn.Module]:
    """The encoder blocks of a torchvision ``VisionTransformer``.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    method : str
        The method asking, named in the error.

    Returns
    -------
    list of nn.Module
        ``model.encoder.layers``, each with a ``self_attention`` module.

    Raises
    ------
    ValueError
        ``model`` is not a torchvision ``VisionTransformer``.
    """
    from torchvision.models import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"Method {method!r} needs a vision transformer (torchvision's VisionTransformer, e.g. "
            f"'fashion_mnist_vit' or 'vit_b_16'), got {type(model).__name__}."
        )
    return list(model.encoder.layers)


@contextmanager
def exposed_attention(model: nn.Module, method: str, rule: str = "gradient") -> Iterator[list[ExplicitAttention]]:
    """Within the block, every encoder block of the ViT uses :class:`ExplicitAttention`.

    Parameters
    ----------
    model : nn.Module
        A torchvision ``VisionTransformer``.
    method : str
        The method asking, named in errors.
    rule : str, default "gradient"
        See :class:`ExplicitAttention`.

    Yields
    ------
    list of ExplicitAttention
        One per block, in order; their ``weights`` fill on each forward pass.
    """
    blocks = vit_blocks(model, method)
    originals = [block.self_attention for block in blocks]
    explicit = [ExplicitAttention(attention, rule) for attention in originals]
    for block, replacement in zip(blocks, explicit):
        block.self_attention = replacement
    try:
        yield explicit
    finally:
        for block, original in zip(blocks, originals):
            block.self_attention = original


def patch_grid(model: nn.Module, num_tokens: int) -> tuple[int, int]:
    """The (rows, columns) of ``num_tokens`` tokens, class token first: the ViT's own grid, else the square one.

    Raises
    ------
    ValueError
        The patch tokens do not form a square grid and the model declares none.
    """
    if hasattr(model, "image_size") and hasattr(model, "patch_size"):
        side = model.image_size // model.patch_size
        return side, side
    side = round((num_tokens - 1) ** 0.5)
    if side * side != num_tokens - 1:
        raise ValueError(
            f"Token maps need a class token plus a square grid of patches; {type(model).__name__}'s layer outputs "
            f"{num_tokens} tokens."
        )
    return side, side


def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Drop the class token and lay the patch tokens out on the patch grid.

    Parameters
    ----------
    tokens : torch.Tensor
        (..., 1 + rows * columns, D) token features, class token first.
    grid : tuple of int
        (rows, columns) of the patches.

    Returns
    -------
    torch.Tensor
        (..., D, rows, columns).

    Raises
    ------
    ValueError
        The number of tokens is not one plus the number of patches.
    """
    rows, columns = grid
    if tokens.shape[-2] != 1 + rows * columns:
        raise ValueError(f"Expected 1 + {rows}x{columns} tokens (class token and patches), got {tokens.shape[-2]}.")
    patches = tokens[..., 1:, :].transpose(-1, -2)
    return patches.unflatten(-1, (rows, columns))


def patch_maps_to_image(maps: torch.Tensor, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Lay per-patch scores (N, K, P) out on ``model``'s patch grid and upsample them bilinearly to (N, K, 1, H, W)."""
    grid = patch_grid(model, maps.shape[-1] + 1)
    patches = maps.unflatten(-1, grid).flatten(0, 1).unsqueeze(1)
    upsampled = F.interpolate(patches, size=tuple(inputs.shape[2:]), mode="bilinear", align_corners=False)
    return upsampled.unflatten(0, maps.shape[:2])
