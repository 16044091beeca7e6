"""COCO 2017 instance annotations on disk: the layout, a checked reader and an image loader.

:func:`coco_layout` finds ``instances_val2017.json`` and the ``val2017`` image folder,
:func:`read_coco` reads them through :class:`pycocotools.coco.COCO` after checking the
parts this package relies on (boxes, ids, image files), and :func:`load_coco_image`
loads one image as RGB ``uint8``. Offline, :func:`var_utils.datasets.coco_scenes.make_coco_scenes`
writes small trees in the same layout.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .photos import load_image

DEFAULT_ANNOTATIONS = "annotations/instances_val2017.json"
DEFAULT_IMAGES = "val2017"

_EXPECTED_LAYOUT = (
    f"expected the COCO 2017 layout: ROOT/{DEFAULT_ANNOTATIONS} and ROOT/{DEFAULT_IMAGES}/*.jpg "
    "(or pass annotations= and images=)"
)
_TOP_LEVEL_KEYS = ("images", "annotations", "categories")
_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")
_CATEGORY_KEYS = ("id", "name")

PathLike = str | Path


@dataclass(frozen=True)
class CocoObject:
    """One annotated object of a COCO image.

    Parameters
    ----------
    annotation_id : int
        The annotation's ``id``.
    category_id : int
        COCO category id (1..90 for the 80 official categories).
    box : tuple of float
        ``(x, y, width, height)`` in pixels, COCO's ``bbox`` convention.
    area : float
        The annotation's ``area`` (the segmentation's area in COCO; the box area when the file has none).
    """

    annotation_id: int
    category_id: int
    box: tuple[float, float, float, float]
    area: float


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO annotation file with its non-crowd objects.

    Parameters
    ----------
    image_id : int
        The image's ``id``.
    file : Path
        Path of the image file.
    width, height : int
        Size in pixels as the annotation file states it.
    objects : tuple of CocoObject
        Non-crowd objects sorted by annotation id; empty for images without annotations.
    """

    image_id: int
    file: Path
    width: int
    height: int
    objects: tuple[CocoObject, ...]


@dataclass(frozen=True)
class CocoData:
    """The content of a COCO instances file.

    Parameters
    ----------
    images : tuple of CocoImage
        All images sorted by id, with or without objects.
    categories : dict of int to str
        Category name by category id.
    """

    images: tuple[CocoImage, ...]
    categories: dict[int, str]


def _optional_path(value: object, name: str) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise TypeError(f"`{name}` must be a str or Path, got {type(value).__name__}.")


def coco_layout(
    root: PathLike | None = None, annotations: PathLike | None = None, images: PathLike | None = None
) -> tuple[Path, Path]:
    """The instances JSON file and the image folder of a COCO 2017 tree.

    Parameters
    ----------
    root : str or Path, optional
        Dataset folder holding ``annotations/instances_val2017.json`` and ``val2017/``;
        may be omitted when both ``annotations`` and ``images`` are given.
    annotations : str or Path, optional
        Instances JSON file to use instead of ``root/annotations/instances_val2017.json``.
    images : str or Path, optional
        Image folder to use instead of ``root/val2017``.

    Returns
    -------
    annotations : Path
        The instances JSON file.
    images : Path
        The image folder.

    Raises
    ------
    TypeError
        An argument is neither a str, a Path nor None.
    ValueError
        ``root`` is omitted and ``annotations`` or ``images`` is missing.
    FileNotFoundError
        The JSON file or the image folder does not exist.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> from var_utils.datasets.coco_scenes import make_coco_scenes
    >>> root = make_coco_scenes(Path(folder.name) / "coco", n_scenes=1, size=(96, 128))
    >>> [path.relative_to(root).as_posix() for path in coco_layout(root)]
    ['annotations/instances_val2017.json', 'val2017']
    >>> folder.cleanup()
    """
    root_path = _optional_path(root, "root")
    annotations_path = _optional_path(annotations, "annotations")
    images_path = _optional_path(images, "images")
    if root_path is None and (annotations_path is None or images_path is None):
        raise ValueError(f"pass `root`, or both `annotations` and `images`; {_EXPECTED_LAYOUT}.")
    annotations_path = annotations_path or root_path / DEFAULT_ANNOTATIONS
    images_path = images_path or root_path / DEFAULT_IMAGES
    missing = [f"{annotations_path} (a JSON file)"] if not annotations_path.is_file() else []
    missing += [f"{images_path} (a folder of images)"] if not images_path.is_dir() else []
    if missing:
        raise FileNotFoundError(f"not found: {', '.join(missing)}; {_EXPECTED_LAYOUT}.")
    return annotations_path, images_path


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a JSON file ({error}).") from None
    if not isinstance(content, dict):
        raise ValueError(
            f"{path}: expected a JSON object with keys {list(_TOP_LEVEL_KEYS)}, got a {type(content).__name__}."
        )
    missing = [key for key in _TOP_LEVEL_KEYS if not isinstance(content.get(key), list)]
    if missing:
        raise ValueError(f"{path}: missing top-level key(s) {missing} (each a list); expected {list(_TOP_LEVEL_KEYS)}.")
    return content


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_non_negative_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _check_entries(path: Path, entries: list, kind: str, keys: tuple[str, ...]) -> None:
    """Every entry is an object with ``keys`` and a unique int ``id``."""
    seen: set[int] = set()
    for index, entry in enumerate(entries):
        missing = [key for key in keys if key not in entry] if isinstance(entry, dict) else list(keys)
        if missing:
            raise ValueError(f"{path}: {kind} #{index} lacks key(s) {missing}; each {kind} needs {list(keys)}.")
        if not _is_int(entry["id"]) or entry["id"] in seen:
            raise ValueError(f"{path}: {kind} #{index} has id {entry['id']!r}; ids must be distinct ints.")
        seen.add(entry["id"])


def _check_images(path: Path, images: list) -> None:
    _check_entries(path, images, "image", _IMAGE_KEYS)
    for image in images:
        sizes_ok = all(_is_int(image[key]) and image[key] > 0 for key in ("width", "height"))
        if not sizes_ok or not isinstance(image["file_name"], str):
            raise ValueError(
                f"{path}: image id {image['id']} needs a str file_name and positive int width and height, "
                f"got {image['file_name']!r}, {image['width']!r}, {image['height']!r}."
            )


def _check_annotations(path: Path, annotations: list, image_ids: set[int], category_ids: set[int]) -> None:
    _check_entries(path, annotations, "annotation", _ANNOTATION_KEYS)
    for annotation in annotations:
        where = f"{path}: annotation id {annotation['id']}"
        box = annotation["bbox"]
        if not isinstance(box, list) or len(box) != 4 or not all(map(_is_non_negative_number, box)):
            raise ValueError(f"{where}: bbox must be 4 non-negative numbers [x, y, width, height], got {box!r}.")
        if "area" in annotation and not _is_non_negative_number(annotation["area"]):
            raise ValueError(f"{where}: area must be a non-negative number, got {annotation['area']!r}.")
        if annotation["image_id"] not in image_ids:
            raise ValueError(f"{where}: unknown image_id {annotation['image_id']!r} (not in `images`).")
        if annotation["category_id"] not in category_ids:
            raise ValueError(f"{where}: unknown category_id {annotation['category_id']!r} (not in `categories`).")


def _check_image_files(path: Path, images: list, folder: Path) -> None:
    missing = [image["file_name"] for image in images if not (folder / image["file_name"]).is_file()]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} of {len(images)} listed image file(s) are missing from {folder}, "
            f"e.g. {missing[:3]}."
        )


def _check_dataset(path: Path, dataset: dict, folder: Path) -> None:
    """Check what :class:`pycocotools.coco.COCO` assumes without checking, and what this package reads."""
    _check_entries(path, dataset["categories"], "category", _CATEGORY_KEYS)
    _check_images(path, dataset["images"])
    image_ids = {image["id"] for image in dataset["images"]}
    category_ids = {category["id"] for category in dataset["categories"]}
    _check_annotations(path, dataset["annotations"], image_ids, category_ids)
    _check_image_files(path, dataset["images"], folder)


def _indexed_coco(dataset: dict):
    """A :class:`pycocotools.coco.COCO` over an already parsed dataset (its progress prints silenced)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    return coco


def _coco_object(annotation: dict) -> CocoObject:
    x, y, width, height = (float(value) for value in annotation["bbox"])
    return CocoObject(
        annotation_id=annotation["id"],
        category_id=annotation["category_id"],
        box=(x, y, width, height),
        area=float(annotation.get("area", width * height)),
    )


def read_coco(annotations: PathLike, images: PathLike) -> CocoData:
    """Read a COCO instances file and check it against its image folder.

    Crowd annotations (``iscrowd: 1``) are left out of the objects: their boxes
    cover a group of objects (a crowd of people, a pile of books), not one object.

    Parameters
    ----------
    annotations : str or Path
        Instances JSON file, e.g. ``annotations/instances_val2017.json``.
    images : str or Path
        Folder holding the images' ``file_name`` entries.

    Returns
    -------
    CocoData
        Images sorted by id (images without annotations included) with their
        non-crowd objects sorted by annotation id, and the category names by id.

    Raises
    ------
    TypeError
        ``annotations`` or ``images`` is neither a str nor a Path.
    FileNotFoundError
        ``annotations`` or ``images`` does not exist.
    ValueError
        The file is not JSON; it lacks ``images``, ``annotations`` or
        ``categories``; an entry lacks a key or repeats an id; a bbox is not 4
        non-negative numbers (or an area not one); an annotation names an unknown
        image or category; a listed image file is missing from ``images``.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> from var_utils.datasets.coco_scenes import make_coco_scenes
    >>> root = make_coco_scenes(Path(folder.name) / "coco", n_scenes=2, size=(96, 128))
    >>> data = read_coco(*coco_layout(root))
    >>> len(data.images), data.categories[1]
    (2, 'person')
    >>> folder.cleanup()
    """
    annotations_path, images_path = coco_layout(annotations=annotations, images=images)
    dataset = _read_json(annotations_path)
    _check_dataset(annotations_path, dataset, images_path)
    coco = _indexed_coco(dataset)
    coco_images = []
    for image_id in sorted(coco.imgs):
        entry = coco.imgs[image_id]
        kept = sorted((a for a in coco.imgToAnns[image_id] if not a.get("iscrowd", 0)), key=lambda a: a["id"])
        objects = tuple(_coco_object(annotation) for annotation in kept)
        file = images_path / entry["file_name"]
        coco_images.append(CocoImage(image_id, file, entry["width"], entry["height"], objects))
    categories = {category_id: coco.cats[category_id]["name"] for category_id in sorted(coco.cats)}
    return CocoData(images=tuple(coco_images), categories=categories)


def load_coco_image(image: CocoImage) -> np.ndarray:
    """Load the pixels of a COCO image as RGB ``uint8``.

    Parameters
    ----------
    image : CocoImage
        An image of :func:`read_coco`.

    Returns
    -------
    numpy.ndarray
        (height, width, 3) ``uint8`` RGB array.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not a readable image, or its size differs from the annotation file's width and height.
    """
    pixels = load_image(image.file)
    if pixels.shape[:2] != (image.height, image.width):
        raise ValueError(
            f"{image.file} is {pixels.shape[1]}x{pixels.shape[0]} pixels but its annotation (image id "
            f"{image.image_id}) says {image.width}x{image.height} (width x height)."
        )
    return pixels
