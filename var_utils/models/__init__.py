"""Models by name (:func:`load_model`), with their preprocessing and class names attached.

One module per architecture family: the Fashion-MNIST CNN, ViT and B-cos
network this project trains and ships, and :mod:`.loading` for the registry,
the ImageNet models and the preprocessing.
"""

from .bcos_networks import (
    FASHION_MNIST_BCOS_WEIGHTS,
    BcosClassifier,
    bcos_resnet50,
    fashion_mnist_bcos,
)
from .fashion_cnn import FASHION_MNIST_CNN_WEIGHTS, FashionMNISTCNN, load_fashion_mnist_cnn
from .fashion_vit import (
    FASHION_MNIST_VIT_SIZE,
    FASHION_MNIST_VIT_WEIGHTS,
    fashion_mnist_vit,
    upscale_to_vit,
)
from .loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODELS,
    TORCHVISION_MODELS,
    Preprocessing,
    imagenet_class_names,
    load_model,
    top_class,
)

__all__ = [
    "FASHION_MNIST_BCOS_WEIGHTS",
    "FASHION_MNIST_CNN_WEIGHTS",
    "FASHION_MNIST_VIT_SIZE",
    "FASHION_MNIST_VIT_WEIGHTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "TORCHVISION_MODELS",
    "BcosClassifier",
    "FashionMNISTCNN",
    "Preprocessing",
    "bcos_resnet50",
    "fashion_mnist_bcos",
    "fashion_mnist_vit",
    "imagenet_class_names",
    "load_fashion_mnist_cnn",
    "load_model",
    "top_class",
    "upscale_to_vit",
]
