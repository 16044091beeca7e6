"""B-cos networks (the ``bcos`` package) behind the ``[u, 1 - u]`` input encoding.

A B-cos network is dynamic linear: ``y(x) = W(x)^T x``. In the package's
explanation mode (dynamic scaling and norm statistics detached from the
graph) ``W(x)`` is held fixed, so ``x * dy/dx`` is the contribution map
``W(x)^T x`` of the encoded input, and it sums to the logit minus the logit
layer's bias. :class:`BcosClassifier` takes the same normalised images as
the other models of this project and does the encoding itself, so the grid
pointing game, the demo and every gradient method see an ordinary classifier.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..datasets.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD
from ._weights import SHIPPED_WEIGHTS

#: The shipped weights of :func:`fashion_mnist_bcos`.
FASHION_MNIST_BCOS_WEIGHTS = SHIPPED_WEIGHTS / "fashion_mnist_bcos.safetensors"


class BcosClassifier(nn.Module):
    """A B-cos network fed ``[u, 1 - u]``, where ``u`` are the pixels in [0, 1].

    Parameters
    ----------
    network : nn.Module
        The B-cos network; it takes ``2 * C`` channels and ends in a
        ``bcos.modules.LogitLayer``.
    mean, std : sequence of float
        Per-channel statistics that normalised the inputs (``u = x * std + mean``);
        ``(0,) * C`` and ``(1,) * C`` for inputs already in [0, 1].

    Examples
    --------
    >>> model = fashion_mnist_bcos()
    >>> model.encode(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 2, 28, 28])
    """

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        from bcos.modules import LogitLayer

        logit_layers = [module for module in network.modules() if isinstance(module, LogitLayer)]
        if len(logit_layers) != 1:
            raise ValueError(f"`network` must contain exactly one bcos LogitLayer, found {len(logit_layers)}.")
        self.network = network
        self.logit_layer = logit_layers[0]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation and append the inverse image: (N, C, H, W) -> (N, 2C, H, W)."""
        unit = inputs * self.std.to(inputs.dtype) + self.mean.to(inputs.dtype)
        return torch.cat([unit, 1 - unit], dim=1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Return the logits of normalised images (N, C, H, W)."""
        return self.network(self.encode(inputs))

    @property
    def input_channels(self) -> int:
        """Channels of the images the model takes (half of what the network sees)."""
        return self.mean.shape[0]

    @property
    def logit_bias(self) -> float:
        """The constant the logit layer adds to every logit (0 when it has none)."""
        return float(self.logit_layer.logit_bias or 0.0)

    def gradcam_layer(self) -> nn.Module:
        """The layer Grad-CAM uses: a ResNet's last block, else the module feeding the last B-cos convolution.

        Raises
        ------
        ValueError
            The network is neither a ResNet nor a sequence of layers.
        """
        from bcos.modules import BcosConv2d

        if hasattr(self.network, "layer4"):
            return self.network.layer4[-1]
        layers = list(self.network.children()) if isinstance(self.network, nn.Sequential) else []
        convolutions = [index for index, layer in enumerate(layers) if isinstance(layer, BcosConv2d)]
        if not convolutions or convolutions[-1] == 0:
            raise ValueError(f"No default Grad-CAM layer for this {type(self.network).__name__}; pass `layer=`.")
        return layers[convolutions[-1] - 1]

    @contextmanager
    def explanation_mode(self) -> Iterator[BcosClassifier]:
        """Detach the dynamic weights and norm statistics inside the block, restoring the previous state after.

        Yields
        ------
        BcosClassifier
            This model.
        """
        from bcos.modules import DetachableModule

        detachable = [module for module in self.network.modules() if isinstance(module, DetachableModule)]
        before = [module.is_in_explanation_mode for module in detachable]
        for module in detachable:
            module.set_explanation_mode(True)
        try:
            yield self
        finally:
            for module, state in zip(detachable, before):
                module.set_explanation_mode(state)


def fashion_mnist_bcos(num_classes: int = len(FASHION_MNIST_CLASSES)) -> BcosClassifier:
    """Build the (untrained) Fashion-MNIST B-cos CNN.

    Four B-cos convolutions (b = 2, two max-out units; widths 32, 64, 64,
    classes), the middle two with stride 2, each of the first three followed
    by an uncentred batch norm without bias; average pooling; the logit layer
    with bias ``-log(classes - 1)`` as in the package's ImageNet models.

    Parameters
    ----------
    num_classes : int
        Number of output logits.

    Returns
    -------
    BcosClassifier
        Takes (N, 1, H, W) images normalised with
        :func:`~var_utils.datasets.fashion_mnist.normalize_fashion_mnist`, any H, W >= 4.
    """
    from bcos.modules import BatchNormUncentered2d, BcosConv2d, LogitLayer, NoBias

    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2 (the logit bias is -log(K - 1)), got {num_classes!r}.")

    norm = NoBias(BatchNormUncentered2d)
    widths = (2, 32, 64, 64)
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths, widths[1:])):
        stride = 1 if index == 0 else 2
        layers += [BcosConv2d(width_in, width_out, 3, stride=stride, padding=1, max_out=2), norm(width_out)]
    network = nn.Sequential(
        *layers,
        BcosConv2d(widths[-1], num_classes, 3, padding=1, max_out=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        LogitLayer(logit_bias=-math.log(num_classes - 1)),
    )
    return BcosClassifier(network, (FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,))


def bcos_resnet50(pretrained: bool = False) -> BcosClassifier:
    """The ``bcos`` package's ImageNet ResNet-50 taking [0, 1] RGB images.

    Parameters
    ----------
    pretrained : bool, default False
        Download the package's ImageNet weights (needs internet); offline, load
        a local file with ``load_model("bcos_resnet50", weights=PATH)``.

    Returns
    -------
    BcosClassifier
        The model.
    """
    from bcos.models.pretrained import resnet50

    return BcosClassifier(resnet50(pretrained=pretrained), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
