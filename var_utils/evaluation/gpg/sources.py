"""Grid sources of the grid pointing game: Fashion-MNIST, Quad-Photos and Quad-ImageNet.

Every source returns a :class:`~var_utils.datasets.grids.GridDataset` of 2×2
grids at the model's input size, normalised for the model, with a
``description`` (source, protocol, seed) that result files record. The
protocols are specified in ``docs/method.md`` (section 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn

from ..._model_state import predict_logits
from ..._validation import check_choice, check_loaded_model, check_positive_int
from ...datasets.fashion_mnist import load_fashion_mnist, resize_images
from ...datasets.grids import GRID_PROTOCOLS, GridDataset, all_distinct_combinations, grid_indices
from ...datasets.imagenet import imagenet_val_files, load_cell_image
from ...datasets.photos import PHOTOS, center_square, load_image, load_photo, unit_tensor
from ...models import top_class

GRID_SOURCES = ("fashion_mnist", "photos", "imagenet")
DEFAULT_MODELS = {
    "fashion_mnist": "fashion_mnist_cnn",
    "photos": "efficientnet_lite0",
    "imagenet": "efficientnet_lite0",
}
#: Integrated gradients of each source's default model in the grid pointing game: the fewest steps of the
#: ``riemann_graded`` rule whose median completeness error matches the original's 128 evenly spaced points
#: (``benchmarks/ig_accuracy.py``: 16 on EfficientNet-Lite0's 224-pixel grids, 32 on the Fashion-MNIST CNN).
GPG_INTEGRATED_GRADIENTS = {
    "fashion_mnist": {"n_steps": 32, "rule": "riemann_graded"},
    "photos": {"n_steps": 16, "rule": "riemann_graded"},
    "imagenet": {"n_steps": 16, "rule": "riemann_graded"},
}
#: Every offline photo but ``astronaut``, which shows no clear ImageNet class.
QUAD_PHOTOS = tuple(name for name in PHOTOS if name != "astronaut")

SOURCE_GRID = (2, 2)


def _check_n_grids(n_grids: int | None) -> int | None:
    return None if n_grids is None else check_positive_int(n_grids, "n_grids")


def _top1(model: nn.Module, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """The model's top-1 class of every image of ``batches``, shape (N,), on the CPU."""
    return torch.cat([predict_logits(model, batch).argmax(dim=1).cpu() for batch in batches])


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    return (items[start : start + size] for start in range(0, len(items), size))


def fashion_mnist_grids(
    n_grids: int | None = None,
    protocol: str = "paper",
    seed: int = 42,
    model: nn.Module | None = None,
    root: str | Path | None = None,
) -> GridDataset:
    """2×2 grids of the 10,000 Fashion-MNIST test images (28-pixel cells, 56×56 grids).

    Parameters
    ----------
    n_grids : int, optional
        Keep the first ``n_grids`` grids; all by default (2,500 for ``"paper"``).
    protocol : {"paper", "strict"}
        See :func:`var_utils.datasets.grids.grid_indices`. ``"strict"`` keeps
        correctly classified images of four distinct classes and needs ``model``.
    seed : int
        Seed of the shuffle; the paper uses 42.
    model : nn.Module, optional
        Classifier whose top-1 on every single test image decides "correct"
        (``"strict"`` only; unused by ``"paper"``). Images are resized to its
        ``input_size`` attribute when it has one (56 for the Fashion ViT).
    root : str or Path, optional
        Data folder of :func:`var_utils.datasets.fashion_mnist.load_fashion_mnist`.

    Returns
    -------
    GridDataset
        Grids of normalised images, shape (1, 56, 56) each.

    Examples
    --------
    >>> grids = fashion_mnist_grids(n_grids=3)
    >>> len(grids), tuple(grids[0].image.shape), grids.description["protocol"]
    (3, (1, 56, 56), 'paper')
    """
    n_grids = _check_n_grids(n_grids)
    check_choice(protocol, "protocol", GRID_PROTOCOLS)
    if protocol == "strict" and not isinstance(model, nn.Module):
        raise ValueError("protocol='strict' needs `model`: the classifier whose correct predictions are kept.")
    images, labels = load_fashion_mnist(root)
    correct = None
    if protocol == "strict":
        # Each model judges single images at its own input size (the Fashion ViT's is 56 pixels).
        singles = (resize_images(batch, getattr(model, "input_size", 28)) for batch in images.split(1000))
        correct = (_top1(model, singles) == labels).numpy()
    groups = grid_indices(labels, grid=SOURCE_GRID, protocol=protocol, seed=seed, correct=correct, max_grids=n_grids)
    description = {"source": "fashion_mnist", "protocol": protocol, "seed": seed}
    return GridDataset(images, labels, groups, SOURCE_GRID, description=description)


def labelled_photo_cells(model: nn.Module, photos: Sequence[str]) -> tuple[torch.Tensor, list[int]]:
    """Offline photos as normalised grid cells, each labelled by the model's top-1 class on the photo alone.

    Parameters
    ----------
    model : nn.Module
        A model of :func:`var_utils.load_model` (needs ``.preprocess`` and ``.input_size``).
    photos : sequence of str
        Names from :data:`var_utils.PHOTOS`.

    Returns
    -------
    cells : torch.Tensor
        (len(photos), 3, s, s) with s half the model's input size: each photo's
        centred square, resized and normalised for the model.
    labels : list of int
        The model's top-1 class of each whole photo.
    """
    model = check_loaded_model(model)
    images = [load_photo(name) for name in photos]
    labels = [top_class(model, image) for image in images]
    cell_size = model.input_size // SOURCE_GRID[0]
    cells = torch.stack([unit_tensor(center_square(image, cell_size)) for image in images])
    return model.preprocess.normalize(cells), labels


def photo_grids(model: nn.Module, photos: Sequence[str] = QUAD_PHOTOS, n_grids: int | None = None) -> GridDataset:
    """Quad-Photos: every 2×2 grid of offline photos with four distinct predicted classes.

    Each photo is labelled by the model's top-1 class on the photo alone (there
    is no ground truth), then cropped to its centred square and resized to half
    the model's input size, so a grid has the model's input size (224 for
    EfficientNet-Lite0). Grids are :func:`~var_utils.datasets.grids.all_distinct_combinations`
    of the photos, in lexicographic order; they have distinct, "correct" labels by
    construction, so the ``"paper"`` and ``"strict"`` protocols coincide here.

    Parameters
    ----------
    model : nn.Module
        A model of :func:`var_utils.load_model` (needs ``.preprocess`` and ``.input_size``).
    photos : sequence of str
        Names from :data:`var_utils.PHOTOS`; default all but ``astronaut``.
    n_grids : int, optional
        Keep the first ``n_grids`` grids.

    Returns
    -------
    GridDataset
        Normalised grids of shape (3, input_size, input_size); ``labels`` holds the photos' labels.

    Examples
    --------
    >>> from var_utils import load_model
    >>> len(photo_grids(load_model("efficientnet_lite0")))  # eight photos of distinct classes: C(8, 4)
    70
    """
    n_grids = _check_n_grids(n_grids)
    cells, labels = labelled_photo_cells(model, photos)
    groups = all_distinct_combinations(labels, SOURCE_GRID[0] * SOURCE_GRID[1], max_grids=n_grids)
    description = {"source": "photos", "photos": list(photos)}
    return GridDataset(cells, labels, groups, SOURCE_GRID, description=description)


def _imagenet_cell(files: Sequence[Path], cell_size: int, normalize: Callable, index: int) -> torch.Tensor:
    return load_cell_image(files[index], cell_size, normalize)


def imagenet_grids(
    root: str | Path,
    model: nn.Module,
    n_grids: int | None = None,
    protocol: str = "paper",
    seed: int = 42,
    *,
    layout: str = "auto",
    synset_mapping: str | Path | None = None,
    batch_size: int = 32,
) -> GridDataset:
    """Quad-ImageNet: 2×2 grids of the ImageNet validation images, loaded lazily.

    Cells are whole images resized to half the model's input size (112 for 224),
    normalised with the model's preprocessing. ``"strict"`` first classifies
    every validation image with the model's own preprocessing (resize, centre
    crop): 50,000 forward passes for the full set.

    Parameters
    ----------
    root : str or Path
        The validation set, see :func:`var_utils.datasets.imagenet.imagenet_val_files`.
    model : nn.Module
        A model of :func:`var_utils.load_model` (needs ``.preprocess`` and ``.input_size``).
    n_grids : int, optional
        Keep the first ``n_grids`` grids; all by default (12,500 for ``"paper"``).
    protocol : {"paper", "strict"}
        See :func:`var_utils.datasets.grids.grid_indices`.
    seed : int
        Seed of the shuffle; the paper uses 42.
    layout, synset_mapping
        As in :func:`var_utils.datasets.imagenet.imagenet_val_files`.
    batch_size : int
        Images per forward pass when ``"strict"`` classifies them.

    Returns
    -------
    GridDataset
        Grids of shape (3, input_size, input_size), composed on access.

    Raises
    ------
    FileNotFoundError
        ``root`` or a file of the validation set is missing.
    """
    model = check_loaded_model(model)
    n_grids = _check_n_grids(n_grids)
    check_choice(protocol, "protocol", GRID_PROTOCOLS)
    batch_size = check_positive_int(batch_size, "batch_size")
    files, labels = imagenet_val_files(root, layout, synset_mapping=synset_mapping)
    correct = None
    if protocol == "strict":
        batches = (
            torch.cat([model.preprocess(load_image(path)) for path in chunk]) for chunk in _chunks(files, batch_size)
        )
        correct = (_top1(model, batches) == torch.tensor(labels)).numpy()
    groups = grid_indices(labels, grid=SOURCE_GRID, protocol=protocol, seed=seed, correct=correct, max_grids=n_grids)
    cells = partial(_imagenet_cell, files, model.input_size // SOURCE_GRID[0], model.preprocess.normalize)
    description = {"source": "imagenet", "protocol": protocol, "seed": seed, "n_images": len(files)}
    return GridDataset(cells, labels, groups, SOURCE_GRID, description=description)


def grid_source(
    source: str,
    model: nn.Module,
    *,
    n_grids: int | None = None,
    protocol: str = "paper",
    seed: int = 42,
    root: str | Path | None = None,
) -> GridDataset:
    """The grids of a source by name (the command line's ``--source``).

    Parameters
    ----------
    source : {"fashion_mnist", "photos", "imagenet"}
        :func:`fashion_mnist_grids`, :func:`photo_grids` or :func:`imagenet_grids`.
    model : nn.Module
        The model to evaluate (labels the photos, decides ``"strict"``).
    n_grids, protocol, seed
        As in the source functions (photos ignore ``protocol`` and ``seed``).
    root : str or Path, optional
        The dataset folder: required for ImageNet, Fashion-MNIST's data folder otherwise.

    Returns
    -------
    GridDataset
        The grids, with their ``description``.
    """
    check_choice(source, "source", GRID_SOURCES)
    if source == "fashion_mnist":
        return fashion_mnist_grids(n_grids, protocol, seed, model=model, root=root)
    if source == "photos":
        return photo_grids(model, n_grids=n_grids)
    if root is None:
        raise ValueError("source='imagenet' needs `root`: the folder of the ImageNet validation set.")
    return imagenet_grids(root, model, n_grids, protocol, seed)
