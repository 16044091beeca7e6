"""COCO images with several objects of ImageNet-mapped categories, ready for a classifier.

The paper's third evaluation scores maps against object boxes in natural
images. An image enters it when, after the object filter, it holds objects of
at least two different categories that map to ImageNet classes (the classes
then compete). The filter keeps an object when

- its category maps to at least one ImageNet class (``classes_of``, by default
  the WordNet-derived table :func:`var_utils.datasets.coco_classes.coco_imagenet_classes`), and
- its annotated area (COCO's ``area``: the segment's pixels) covers at least
  ``min_area`` of the image (2.5 % by default), and
- its box has a width and a height and overlaps the image (malformed boxes
  have nothing to score against).

Crowd annotations never enter (see :mod:`var_utils.datasets.coco`). Each image
is resized to the model's square input without cropping, so no object is cut
off (the aspect ratio is not kept; the boxes are scaled with the image).
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .._validation import check_loaded_model, check_positive, check_positive_int
from .coco import CocoData, CocoImage, CocoObject, coco_layout, load_coco_image, read_coco
from .coco_classes import coco_imagenet_classes
from .photos import unit_tensor

#: Smallest share of the image an object must cover to be scored (the paper's 2.5 %).
DEFAULT_MIN_AREA = 0.025


@dataclass(frozen=True)
class ObjectTarget:
    """One object to score, in the pixels of the model's input.

    Attributes
    ----------
    annotation_id : int
        COCO annotation id.
    category_id : int
        COCO category id.
    box : tuple of float
        ``(x0, y0, x1, y1)`` in pixels of the resized image.
    """

    annotation_id: int
    category_id: int
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class CocoObjectSample:
    """A model-ready image and the objects to score in it.

    Attributes
    ----------
    image : torch.Tensor
        (3, S, S) normalised image.
    objects : tuple of ObjectTarget
        The selected objects, in annotation order.
    """

    image: torch.Tensor
    objects: tuple[ObjectTarget, ...]


def area_fraction(obj: CocoObject, image: CocoImage) -> float:
    """Share of the image's area an object's annotated area covers.

    Parameters
    ----------
    obj : CocoObject
        The object (its ``area``: the segment's pixels, as COCO records it).
    image : CocoImage
        Its image.

    Returns
    -------
    float
        ``obj.area / (width × height)``.

    Examples
    --------
    >>> from pathlib import Path
    >>> cat = CocoObject(annotation_id=1, category_id=17, box=(0.0, 0.0, 40.0, 30.0), area=1200.0)
    >>> area_fraction(cat, CocoImage(7, Path("7.jpg"), width=200, height=240, objects=(cat,)))
    0.025
    """
    return obj.area / (image.width * image.height)


def leave_out_reason(
    obj: CocoObject, image: CocoImage, classes_of: Mapping[int, Sequence[int]], min_area: float = DEFAULT_MIN_AREA
) -> str | None:
    """Why an object cannot be scored, or None when it can.

    Parameters
    ----------
    obj : CocoObject
        The object.
    image : CocoImage
        Its image.
    classes_of : mapping of int to sequence of int
        COCO category id -> its ImageNet classes (empty or absent: unmapped).
    min_area : float, default 0.025
        Smallest :func:`area_fraction` kept; an object exactly at it is kept.

    Returns
    -------
    str or None
        ``"unmapped"`` (its category has no ImageNet class), ``"small"``
        (below ``min_area``), ``"no_box"`` (a box without width or height, or
        outside the image: nothing to score against), or None.
    """
    if not classes_of.get(obj.category_id):
        return "unmapped"
    if area_fraction(obj, image) < min_area:
        return "small"
    x, y, width, height = obj.box
    if width <= 0 or height <= 0 or x >= image.width or y >= image.height or x + width <= 0 or y + height <= 0:
        return "no_box"
    return None


def select_objects(
    image: CocoImage, classes_of: Mapping[int, Sequence[int]], min_area: float = DEFAULT_MIN_AREA
) -> tuple[CocoObject, ...]:
    """The objects of an image that can be scored: mapped to ImageNet classes, large enough, with a box.

    Parameters
    ----------
    image : CocoImage
        The image and its (non-crowd) objects.
    classes_of : mapping of int to sequence of int
        COCO category id -> its ImageNet classes (empty or absent: unmapped).
    min_area : float, default 0.025
        Smallest :func:`area_fraction` kept; an object exactly at it is kept.

    Returns
    -------
    tuple of CocoObject
        The objects without a :func:`leave_out_reason`, in the image's order.
    """
    return tuple(obj for obj in image.objects if leave_out_reason(obj, image, classes_of, min_area) is None)


def has_competing_objects(objects: Sequence[CocoObject]) -> bool:
    """Whether the objects belong to at least two different categories (so that their classes compete).

    Parameters
    ----------
    objects : sequence of CocoObject
        Selected objects of one image.

    Returns
    -------
    bool
        True for two or more distinct ``category_id``.
    """
    return len({obj.category_id for obj in objects}) >= 2


def _check_min_area(min_area: float) -> float:
    min_area = check_positive(min_area, "min_area")
    if min_area > 1:
        raise ValueError(f"`min_area` is a share of the image's area and must lie in (0, 1], got {min_area}.")
    return min_area


def _check_classes_of(classes_of: object) -> dict[int, tuple[int, ...]]:
    if not isinstance(classes_of, Mapping):
        raise TypeError(
            f"`classes_of` must map COCO category ids to ImageNet classes, got {type(classes_of).__name__}."
        )
    checked = {}
    for category, classes in classes_of.items():
        if not isinstance(category, numbers.Integral) or isinstance(category, bool):
            raise TypeError(f"`classes_of` keys must be COCO category ids (int), got {category!r}.")
        values = list(classes) if isinstance(classes, (tuple, list, range, np.ndarray)) else None
        if values is None or not all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < 1000 for c in values
        ):
            raise ValueError(
                f"`classes_of[{category!r}]` must be a sequence of ImageNet class indices in 0..999, got {classes!r}."
            )
        checked[int(category)] = tuple(int(c) for c in values)
    return checked


def _file_digest(path: Path) -> str:
    """The start of a file's SHA-256: names the annotations wherever the tree lies."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _mapping_digest(classes_of: Mapping[int, Sequence[int]]) -> str:
    """A short, stable name of a category -> classes table, recorded with results."""
    canonical = json.dumps(sorted((int(k), sorted(int(c) for c in v)) for k, v in classes_of.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class CocoObjectImages(torch.utils.data.Dataset):
    """COCO images with competing objects, resized and normalised for a classifier.

    Parameters
    ----------
    data : CocoData
        The annotations (:func:`var_utils.datasets.coco.read_coco`).
    input_size : int
        The model's square input size; images are resized to it without cropping.
    normalize : callable
        Maps a (N, 3, S, S) tensor in [0, 1] to model inputs (``model.preprocess.normalize``).
    classes_of : mapping of int to sequence of int, optional
        COCO category id -> ImageNet classes; default the shipped WordNet-derived table.
    min_area : float, default 0.025
        Smallest object area, as a share of the image.
    n_images : int, optional
        Keep only the first ``n_images`` selected images (in image id order).
    source : str, default "coco"
        Where the annotations came from, for :attr:`description`.

    Attributes
    ----------
    images : tuple of CocoImage
        The selected images, each with only its selected objects.
    unit_ids : list of int
        Their COCO image ids (the ``image`` column of the results).
    classes_of : dict of int to tuple of int
        The category table in use.
    counts : dict of str to int
        ``images``, ``objects``: all non-crowd ones read; ``objects_unmapped``,
        ``objects_small``, ``objects_no_box``: objects left out, by
        :func:`leave_out_reason`; ``images_kept``, ``objects_kept``: what is
        scored (objects of images without a competing category are neither).
    description : str
        The selection in words, recorded with results to make them resumable.

    Raises
    ------
    TypeError, ValueError
        Bad ``min_area``, ``input_size`` or ``classes_of`` (classes must lie in
        0..999), or no image holds two competing objects.
    """

    def __init__(
        self,
        data: CocoData,
        input_size: int,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        *,
        classes_of: Mapping[int, Sequence[int]] | None = None,
        min_area: float = DEFAULT_MIN_AREA,
        n_images: int | None = None,
        source: str = "coco",
    ) -> None:
        self.input_size = check_positive_int(input_size, "input_size")
        self.normalize = normalize
        self.min_area = _check_min_area(min_area)
        self.classes_of = _check_classes_of(coco_imagenet_classes() if classes_of is None else classes_of)
        selected = [(image, select_objects(image, self.classes_of, self.min_area)) for image in data.images]
        kept = [
            CocoImage(image.image_id, image.file, image.width, image.height, objects)
            for image, objects in selected
            if has_competing_objects(objects)
        ]
        if n_images is not None:
            kept = kept[: check_positive_int(n_images, "n_images")]
        if not kept:
            raise ValueError(
                f"no image of {source} holds objects of two ImageNet-mapped categories covering at least "
                f"{self.min_area:.1%} of the image each; nothing to evaluate."
            )
        self.images = tuple(kept)
        self.unit_ids = [image.image_id for image in kept]
        reasons = Counter(
            leave_out_reason(obj, image, self.classes_of, self.min_area)
            for image in data.images
            for obj in image.objects
        )
        self.counts = {
            "images": len(data.images),
            "objects": reasons.total(),
            **{f"objects_{reason}": reasons[reason] for reason in ("unmapped", "small", "no_box")},
            "images_kept": len(kept),
            "objects_kept": sum(len(image.objects) for image in kept),
        }
        # Neither the number of images nor the tree's location: a rerun may add images or read a moved copy.
        self.description = (
            f"{source}; min_area={self.min_area}; input={self.input_size}; classes={_mapping_digest(self.classes_of)}"
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> CocoObjectSample:
        image = self.images[index]
        size = self.input_size
        pixels = cv2.resize(load_coco_image(image), (size, size), interpolation=cv2.INTER_AREA)
        scale_x, scale_y = size / image.width, size / image.height
        objects = tuple(
            ObjectTarget(
                obj.annotation_id,
                obj.category_id,
                (
                    obj.box[0] * scale_x,
                    obj.box[1] * scale_y,
                    (obj.box[0] + obj.box[2]) * scale_x,
                    (obj.box[1] + obj.box[3]) * scale_y,
                ),
            )
            for obj in image.objects
        )
        return CocoObjectSample(self.normalize(unit_tensor(pixels)[None])[0], objects)


def collate_objects(samples: Sequence[CocoObjectSample]) -> tuple[torch.Tensor, list[tuple[ObjectTarget, ...]]]:
    """Batch samples of :class:`CocoObjectImages`; pass as ``collate_fn`` to a DataLoader.

    Parameters
    ----------
    samples : sequence of CocoObjectSample
        Images of one size.

    Returns
    -------
    images : torch.Tensor
        (B, 3, S, S).
    objects : list of tuple of ObjectTarget
        Each image's objects.
    """
    return torch.stack([sample.image for sample in samples]), [sample.objects for sample in samples]


def coco_object_images(
    model: nn.Module,
    root: str | Path | None = None,
    *,
    annotations: str | Path | None = None,
    images: str | Path | None = None,
    min_area: float = DEFAULT_MIN_AREA,
    n_images: int | None = None,
    classes_of: Mapping[int, Sequence[int]] | None = None,
) -> CocoObjectImages:
    """The COCO images of a tree that hold competing objects, prepared for ``model``.

    Parameters
    ----------
    model : nn.Module
        A model of :func:`var_utils.load_model` (needs ``.preprocess`` and ``.input_size``).
    root : str or Path, optional
        A COCO 2017 tree: ``annotations/instances_val2017.json`` and ``val2017/``.
    annotations, images : str or Path, optional
        The instances JSON and the image folder, overriding ``root``'s.
    min_area : float, default 0.025
        Smallest object area, as a share of the image.
    n_images : int, optional
        Keep the first ``n_images`` selected images.
    classes_of : mapping of int to sequence of int, optional
        COCO category id -> ImageNet classes; default the shipped WordNet-derived table.

    Returns
    -------
    CocoObjectImages
        The selected images.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing or malformed tree (the message lists what was expected), or no image to evaluate.
    TypeError
        ``model`` lacks ``.preprocess`` or ``.input_size``.
    """
    model = check_loaded_model(model)
    annotations_path, images_dir = coco_layout(root, annotations, images)
    return CocoObjectImages(
        read_coco(annotations_path, images_dir),
        model.input_size,
        model.preprocess.normalize,
        classes_of=classes_of,
        min_area=min_area,
        n_images=n_images,
        source=f"coco {annotations_path.name} (sha256 {_file_digest(annotations_path)})",
    )
