"""The small ReLU CNN trained on Fashion-MNIST by this project (weights shipped as package data)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..datasets.fashion_mnist import FASHION_MNIST_CLASSES
from ._weights import SHIPPED_WEIGHTS, load_trained

#: The shipped weights of :class:`FashionMNISTCNN` (package data).
FASHION_MNIST_CNN_WEIGHTS = SHIPPED_WEIGHTS / "fashion_mnist_cnn.safetensors"


class FashionMNISTCNN(nn.Module):
    """Small ReLU CNN for 1-channel Fashion-MNIST images of any size >= 4x4.

    Layout: conv(32) - ReLU - maxpool - conv(64) - ReLU - maxpool -
    ``features`` [conv(128) - ReLU - conv(128) - ReLU] - global average
    pool - linear(10). Every ReLU is its own, non-inplace module, so hooks
    and rule-based attribution (LRP, guided backprop) see each activation
    exactly once. ``features`` runs at 1/4 of the input resolution: 7x7 for
    28x28 images, 14x14 for 2x2 grids of 28-pixel cells.

    Expects inputs normalised with :func:`normalize_fashion_mnist`.

    Parameters
    ----------
    num_classes : int
        Number of output logits.

    Examples
    --------
    >>> model = FashionMNISTCNN()
    >>> model(torch.zeros(2, 1, 56, 56)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = len(FASHION_MNIST_CLASSES)) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.features = nn.Sequential(
            nn.Conv2d(64, 128, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, 128, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)
        # He initialisation keeps activations from shrinking through the ReLU stack;
        # torch's default init made training markedly slower.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (N, num_classes) for images of shape (N, 1, H, W)."""
        x = self.features(self.blocks(x))
        return self.classifier(torch.flatten(self.pool(x), 1))

    def gradcam_layer(self) -> nn.Module:
        """Return the layer whose output Grad-CAM should use: the last ReLU.

        Its output is the rectified last feature map, the activations Grad-CAM
        weights by their pooled gradients.
        """
        return self.features[-1]


def load_fashion_mnist_cnn(weights_path: str | Path | None = None) -> FashionMNISTCNN:
    """Return the trained :class:`FashionMNISTCNN` in eval mode.

    Parameters
    ----------
    weights_path : str, Path or None
        A safetensors file; ``None`` uses the shipped
        weights (:data:`FASHION_MNIST_CNN_WEIGHTS`).

    Returns
    -------
    FashionMNISTCNN
        The model with its weights loaded, in eval mode.

    Raises
    ------
    FileNotFoundError
        If the weights file does not exist.

    Examples
    --------
    >>> model = load_fashion_mnist_cnn()
    >>> model.training
    False
    """
    return load_trained(FashionMNISTCNN(), weights_path, FASHION_MNIST_CNN_WEIGHTS, "cnn")
