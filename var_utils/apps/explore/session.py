"""The explorer's state without widgets: loaded models, prepared images, cached base maps, and the VAR view.

Base maps are the expensive part (one attribution per image, model, method
setting and class set); VAR is cheap. :class:`ExplorerSession` caches the first
so that moving τ, the temperature, ``normalize`` or ``use_abs`` only re-runs
:func:`refine_view`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..._validation import check_positive_int
from ...engine import attribute_classes
from ...models import load_model
from ...refine import check_refine_settings, class_distribution, refine_all
from ..explanation import class_probabilities, display_image, kept_share, model_input


@dataclass(frozen=True)
class PreparedImage:
    """One image as one model sees it.

    Attributes
    ----------
    key : str
        Identifies the image's pixels (a hash), for the caches.
    inputs : torch.Tensor
        (1, C, H, W) model input.
    picture : numpy.ndarray
        (H, W, 3) RGB in [0, 1], the input as displayed.
    probabilities : torch.Tensor
        (num_classes,) the model's softmax probabilities.
    """

    key: str
    inputs: torch.Tensor
    picture: np.ndarray
    probabilities: torch.Tensor


@dataclass(frozen=True)
class VarView:
    """The refinement of K base maps under one setting, with what the explorer shows of it.

    Attributes
    ----------
    var : torch.Tensor
        (K, C', H, W) VAR maps.
    distribution : torch.Tensor
        (K, H, W) class distribution ``M`` averaged over channels.
    kept_where : torch.Tensor
        (K, H, W) bool: where VAR keeps something of the class (``M_k − 1/K > τ``
        in at least one channel).
    kept : torch.Tensor
        (K,) share of each class's positive base attribution that VAR keeps.
    kept_pixels : torch.Tensor
        (K,) share of the pixels where VAR keeps something of the class.
    """

    var: torch.Tensor
    distribution: torch.Tensor
    kept_where: torch.Tensor
    kept: torch.Tensor
    kept_pixels: torch.Tensor


def refine_view(base: torch.Tensor, settings: Mapping | None = None) -> VarView:
    """VAR maps, class distribution and per-class shares of (K, C', H, W) base maps.

    Parameters
    ----------
    base : torch.Tensor
        (K, C', H, W) base maps of the K classes of one image.
    settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` (defaults: the paper's).

    Returns
    -------
    VarView
        The refinement and its summaries.

    Examples
    --------
    >>> view = refine_view(torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]]))
    >>> view.kept.round(decimals=4).tolist(), view.kept_pixels.tolist()  # each class keeps its pixel
    ([1.0, 1.0], [0.5, 0.5])
    """
    settings = check_refine_settings(settings, "settings")
    softmax_settings = {key: settings[key] for key in ("temperature", "use_abs", "normalize")}
    var = refine_all(base, tau=settings["tau"], **softmax_settings)
    distribution = class_distribution(base, **softmax_settings)
    # The same test refine_all applies, per channel.
    kept_where = (distribution - 1.0 / base.shape[0] > settings["tau"]).any(dim=1)
    kept_pixels = kept_where.flatten(1).double().mean(dim=1)
    return VarView(var, distribution.mean(dim=1), kept_where, kept_share(base, var), kept_pixels)


def _pixels_key(image: np.ndarray) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(image).tobytes())
    digest.update(str(image.shape).encode())
    return digest.hexdigest()


class _LastUsed(OrderedDict):
    """A small least-recently-used cache."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def get_or_compute(self, key: Hashable, compute: Callable[[], object]) -> object:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = compute()
        self[key] = value
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


class ExplorerSession:
    """Models, images and base maps of an exploration, cached.

    Parameters
    ----------
    cache_size : int, default 16
        How many sets of base maps (and prepared images) are kept.
    loader : callable, default var_utils.load_model
        ``loader(name) -> model``; models stay loaded once used.

    Examples
    --------
    >>> from var_utils import load_photo
    >>> session = ExplorerSession()
    >>> image = session.prepare("fashion_mnist_cnn", load_photo("chelsea"))
    >>> base = session.base_maps("fashion_mnist_cnn", image, "gradcam", {}, [0, 1, 2])
    >>> base.shape, session.base_maps_computed
    (torch.Size([3, 1, 28, 28]), 1)
    >>> _ = session.base_maps("fashion_mnist_cnn", image, "gradcam", {}, [0, 1, 2])
    >>> session.base_maps_computed  # the second call was a cache hit
    1
    """

    def __init__(self, cache_size: int = 16, loader: Callable[[str], nn.Module] = load_model) -> None:
        check_positive_int(cache_size, "cache_size")
        if not callable(loader):
            raise TypeError(f"`loader` must be a callable name -> model, got {type(loader).__name__}.")
        self._loader = loader
        self._models: dict[str, nn.Module] = {}
        self._images = _LastUsed(cache_size)
        self._base = _LastUsed(cache_size)
        self.base_maps_computed = 0

    def is_loaded(self, name: str) -> bool:
        """Whether the model ``name`` is loaded already (the explorer shows progress otherwise)."""
        return name in self._models

    def model(self, name: str) -> nn.Module:
        """The model ``name``, loaded on first use."""
        if name not in self._models:
            self._models[name] = self._loader(name)
        return self._models[name]

    def prepare(self, model_name: str, image: np.ndarray) -> PreparedImage:
        """An RGB ``uint8`` image as the model's input, its display and its class probabilities."""
        key = (model_name, _pixels_key(image))

        def compute() -> PreparedImage:
            model = self.model(model_name)
            inputs = model_input(model, image)
            return PreparedImage(key[1], inputs, display_image(model, inputs), class_probabilities(model, inputs))

        return self._images.get_or_compute(key, compute)

    def base_maps(
        self, model_name: str, image: PreparedImage, method: str, settings: Mapping, classes: Sequence[int]
    ) -> torch.Tensor:
        """(K, C', H, W) base maps of ``classes``, computed once per (image, model, method, settings, classes)."""
        key = (model_name, image.key, method, tuple(sorted(settings.items())), tuple(classes))

        def compute() -> torch.Tensor:
            self.base_maps_computed += 1
            maps = attribute_classes(self.model(model_name), image.inputs, list(classes), method, **settings)
            return maps[0].detach()

        return self._base.get_or_compute(key, compute)
