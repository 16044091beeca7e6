"""A small vision transformer trained on Fashion-MNIST at 56 pixels (weights shipped as package data).

It is torchvision's :class:`~torchvision.models.VisionTransformer` (class token,
pre-norm blocks, multi-head attention, GELU MLP) with a one-channel patch
embedding, so every transformer method of :mod:`var_utils.methods` treats it
exactly as it treats ``vit_b_16``.

Why 56 pixels of upscaled single images: a ViT's position embeddings fix its
input size, and the grid pointing game shows it 2x2 grids of 28-pixel cells
(56 pixels). Training on single images upscaled to 56 pixels makes each grid
cell an object at half its training size, the same relation ImageNet models
have with 224-pixel grids of 112-pixel cells. Interpolating the position
embeddings of a 28-pixel model instead would show it positions it never
trained on. Patches of 7 pixels give an 8x8 token grid in which every
28-pixel cell is exactly 4x4 tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models import VisionTransformer

from ..datasets.fashion_mnist import FASHION_MNIST_CLASSES, resize_images
from ._weights import SHIPPED_WEIGHTS

#: The shipped weights of :func:`fashion_mnist_vit`.
FASHION_MNIST_VIT_WEIGHTS = SHIPPED_WEIGHTS / "fashion_mnist_vit.safetensors"
#: Input side of the Fashion-MNIST ViT: single images are upscaled 2x, grids of 28-pixel cells fit as they are.
FASHION_MNIST_VIT_SIZE = 56


def fashion_mnist_vit(num_classes: int = len(FASHION_MNIST_CLASSES)) -> VisionTransformer:
    """Build the (untrained) Fashion-MNIST vision transformer.

    56-pixel one-channel input, 7-pixel patches (8x8 tokens plus the class
    token), 4 pre-norm blocks of 4 heads, width 64, MLP width 128.

    Parameters
    ----------
    num_classes : int
        Number of output logits.

    Returns
    -------
    torchvision.models.VisionTransformer
        The model; inputs are (N, 1, 56, 56) images normalised with
        :func:`~var_utils.datasets.fashion_mnist.normalize_fashion_mnist`.

    Examples
    --------
    >>> fashion_mnist_vit()(torch.zeros(2, 1, 56, 56)).shape
    torch.Size([2, 10])
    """
    model = VisionTransformer(
        image_size=FASHION_MNIST_VIT_SIZE,
        patch_size=7,
        num_layers=4,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
        num_classes=num_classes,
    )
    model.conv_proj = nn.Conv2d(1, model.hidden_dim, kernel_size=model.patch_size, stride=model.patch_size)
    # torchvision's own initialisation of the patch embedding, for one input channel.
    nn.init.trunc_normal_(model.conv_proj.weight, std=math.sqrt(1 / (model.patch_size**2)))
    nn.init.zeros_(model.conv_proj.bias)
    return model


def upscale_to_vit(images: torch.Tensor) -> torch.Tensor:
    """Upscale 28-pixel Fashion-MNIST images to the ViT's 56 pixels (bilinear).

    Parameters
    ----------
    images : torch.Tensor
        (N, 1, 28, 28) normalised images.

    Returns
    -------
    torch.Tensor
        (N, 1, 56, 56).
    """
    return resize_images(images, FASHION_MNIST_VIT_SIZE)
