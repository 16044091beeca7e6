"""Small COCO-format datasets made from the offline photos, for tests and notebooks without COCO.

:func:`make_coco_scenes` pastes two or three of the photos of :data:`PHOTO_OBJECTS`
(each with hand-drawn boxes around its objects) at random non-overlapping places
on a grey or blurred background, and writes the scenes and their boxes in the COCO
2017 layout that :func:`var_utils.datasets.coco.read_coco` reads.

Besides the COCO keys, the JSON records where each photo went: every image entry has
``pasted_photos`` (``[{"name": ..., "bbox": [x, y, width, height]}, ...]``) and every
annotation has ``photo`` (the photo's name). :mod:`pycocotools` ignores both.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .._validation import check_choice, check_positive_int
from .coco import DEFAULT_ANNOTATIONS, DEFAULT_IMAGES
from .photos import PHOTOS, load_photo

Box = tuple[int, int, int, int]

PHOTO_OBJECTS: dict[str, tuple[tuple[int, Box], ...]] = {
    "chelsea": ((17, (0, 0, 400, 300)),),
    "coffee": ((47, (172, 18, 412, 305)), (50, (322, 65, 425, 326))),
    "motorcycle": ((4, (92, 95, 686, 452)),),
    "camera": ((1, (0, 62, 332, 512)),),
    "astronaut": ((1, (20, 15, 365, 512)),),
    "grace_hopper": ((1, (10, 22, 512, 600)), (32, (215, 408, 300, 470))),
}
"""Objects of the offline photos: name -> ((COCO category id, (x0, y0, x1, y1) in the photo's pixels), ...).

Drawn by hand: the cat of ``chelsea``, the cup and spoon of ``coffee``, the motorcycle,
the photographer of ``camera``, the astronaut, and Grace Hopper with her tie.
"""

SCENE_BACKGROUNDS = ("grey", "blurred", "mixed")
MIN_SCENE_SIDE = 64
"""Smallest scene height or width in pixels: smaller scenes shrink the photos' objects to a few pixels."""

_SCALE_RANGE = (0.3, 0.6)  # a pasted photo's longer side, as a fraction of the scene's shorter side
_PLACEMENT_TRIES = 50
_SHRINK = 0.8
_GREY = 128
_JPEG_QUALITY = 95

PathLike = str | Path


@dataclass(frozen=True)
class _Paste:
    """A photo pasted at ``(left, top)`` with size ``width`` x ``height``."""

    name: str
    left: int
    top: int
    width: int
    height: int

    def overlaps(self, other: _Paste) -> bool:
        return (
            self.left < other.left + other.width
            and other.left < self.left + self.width
            and self.top < other.top + other.height
            and other.top < self.top + self.height
        )


def _coco_categories() -> list[dict]:
    table = importlib.resources.files("var_utils") / "data" / "coco_categories.csv"
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{"id": int(row["id"]), "name": row["name"], "supercategory": row["supercategory"]} for row in rows]


def _check_pair(value: object, name: str) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"`{name}` must be a pair of ints, got {value!r}.")
    return check_positive_int(value[0], f"{name}[0]"), check_positive_int(value[1], f"{name}[1]")


def _check_size(size: object) -> tuple[int, int]:
    height, width = _check_pair(size, "size")
    if min(height, width) < MIN_SCENE_SIDE:
        raise ValueError(f"`size` (height, width) must be at least {MIN_SCENE_SIDE} pixels each, got {size!r}.")
    return height, width


def _check_photos_per_scene(photos_per_scene: object) -> tuple[int, int]:
    if isinstance(photos_per_scene, int) and not isinstance(photos_per_scene, bool):
        photos_per_scene = (photos_per_scene, photos_per_scene)
    low, high = _check_pair(photos_per_scene, "photos_per_scene")
    if not 2 <= low <= high <= len(PHOTO_OBJECTS):
        raise ValueError(
            f"`photos_per_scene` must be (low, high) with 2 <= low <= high <= {len(PHOTO_OBJECTS)} "
            f"(the number of annotated photos), got {photos_per_scene!r}."
        )
    return low, high


def _check_root(root: object, overwrite: bool) -> Path:
    """``root`` as a Path, once sure that writing there destroys nothing but an old COCO tree."""
    if not isinstance(root, (str, Path)):
        raise TypeError(f"`root` must be a str or Path, got {type(root).__name__}.")
    root = Path(root)
    if not root.exists():
        return root
    if not root.is_dir():
        raise FileExistsError(f"`root` {root} exists and is not a folder.")
    entries = sorted(entry.name for entry in root.iterdir())
    if not entries:
        return root
    if not ((root / DEFAULT_ANNOTATIONS).exists() or (root / DEFAULT_IMAGES).exists()):
        raise FileExistsError(f"`root` {root} is not empty ({entries[:5]}); choose a new or empty folder.")
    if not overwrite:
        raise FileExistsError(f"`root` {root} already holds a COCO tree; pass overwrite=True to replace it.")
    extra = [entry for entry in entries if entry not in (Path(DEFAULT_ANNOTATIONS).parts[0], DEFAULT_IMAGES)]
    if extra:
        # overwrite=True replaces the whole folder: never delete files this function did not write.
        raise FileExistsError(f"`root` {root} also holds {extra}; overwrite=True only replaces a generated tree.")
    return root


def _choose_photos(rng: np.random.Generator, photos_per_scene: tuple[int, int]) -> list[str]:
    """Distinct photo names showing at least two different categories."""
    count = int(rng.integers(photos_per_scene[0], photos_per_scene[1] + 1))
    names = sorted(PHOTO_OBJECTS)
    while True:
        chosen = [str(name) for name in rng.choice(names, size=count, replace=False)]
        categories = {category for name in chosen for category, _ in PHOTO_OBJECTS[name]}
        if len(categories) >= 2:
            return chosen


def _fitted_size(photo_shape: tuple[int, ...], longer_side: int) -> tuple[int, int]:
    """(width, height) of a photo resized so that its longer side is ``longer_side``, aspect ratio kept."""
    height, width = photo_shape[:2]
    scale = longer_side / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _place(
    rng: np.random.Generator, name: str, photo_shape: tuple[int, ...], scene_size: tuple[int, int], taken: list[_Paste]
) -> _Paste:
    """Paste position and size for one photo, clear of ``taken``; shrinks the photo when no place is free."""
    scene_height, scene_width = scene_size
    longer_side = round(rng.uniform(*_SCALE_RANGE) * min(scene_size))
    while longer_side >= 1:
        width, height = _fitted_size(photo_shape, longer_side)
        for _ in range(_PLACEMENT_TRIES):
            left = int(rng.integers(0, scene_width - width + 1))
            top = int(rng.integers(0, scene_height - height + 1))
            paste = _Paste(name, left, top, width, height)
            if not any(paste.overlaps(other) for other in taken):
                return paste
        longer_side = math.floor(longer_side * _SHRINK)
    raise RuntimeError(f"no free place for photo {name!r} in a {scene_width}x{scene_height} scene.")


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    # INTER_AREA averages the pixels a shrunk pixel covers (no aliasing); it is blocky when enlarging.
    shrinking = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _blurred_background(rng: np.random.Generator, photo: np.ndarray, scene_size: tuple[int, int]) -> np.ndarray:
    """A random crop of ``photo`` covering the scene, blurred until no object is recognisable."""
    scene_height, scene_width = scene_size
    scale = max(scene_height / photo.shape[0], scene_width / photo.shape[1])
    cover = _resized(photo, math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[0] * scale))
    top = int(rng.integers(0, cover.shape[0] - scene_height + 1))
    left = int(rng.integers(0, cover.shape[1] - scene_width + 1))
    crop = cover[top : top + scene_height, left : left + scene_width]
    return cv2.GaussianBlur(crop, (0, 0), sigmaX=min(scene_size) / 16)


def _background(
    rng: np.random.Generator,
    kind: str,
    used: list[str],
    scene_size: tuple[int, int],
    photo: Callable[[str], np.ndarray],
) -> np.ndarray:
    if kind == "grey":
        return np.full((*scene_size, 3), _GREY, dtype=np.uint8)
    # Any offline photo may serve as background, as long as its objects are not also pasted in the scene.
    candidates = sorted(set(PHOTOS) - set(used))
    return _blurred_background(rng, photo(str(rng.choice(candidates))), scene_size)


def _box_annotations(paste: _Paste, photo_shape: tuple[int, ...], image_id: int, first_id: int) -> list[dict]:
    """COCO annotations of a pasted photo's hand boxes, moved by the paste's scale and offset."""
    scale_x, scale_y = paste.width / photo_shape[1], paste.height / photo_shape[0]
    annotations = []
    for offset, (category_id, (x0, y0, x1, y1)) in enumerate(PHOTO_OBJECTS[paste.name]):
        left, right = round(paste.left + x0 * scale_x, 2), round(paste.left + x1 * scale_x, 2)
        top, bottom = round(paste.top + y0 * scale_y, 2), round(paste.top + y1 * scale_y, 2)
        width, height = round(right - left, 2), round(bottom - top, 2)
        annotations.append(
            {
                "id": first_id + offset,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [left, top, width, height],
                "area": round(width * height, 2),
                # No masks: the box itself serves as the segmentation polygon.
                "segmentation": [[left, top, right, top, right, bottom, left, bottom]],
                "iscrowd": 0,
                "photo": paste.name,
            }
        )
    return annotations


def _scene(
    rng: np.random.Generator,
    background: str,
    scene_size: tuple[int, int],
    photos_per_scene: tuple[int, int],
    photo: Callable[[str], np.ndarray],
) -> tuple[np.ndarray, list[_Paste]]:
    """One RGB scene and the photos pasted into it."""
    names = _choose_photos(rng, photos_per_scene)
    pastes: list[_Paste] = []
    for name in names:
        pastes.append(_place(rng, name, photo(name).shape, scene_size, pastes))
    scene = _background(rng, background, names, scene_size, photo).copy()
    for paste in pastes:
        resized = _resized(photo(paste.name), paste.width, paste.height)
        scene[paste.top : paste.top + paste.height, paste.left : paste.left + paste.width] = resized
    return scene, pastes


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name} as JPEG.")
    path.write_bytes(encoded.tobytes())


def _write_scenes(
    tree: Path,
    n_scenes: int,
    seed: int,
    size: tuple[int, int],
    photos_per_scene: tuple[int, int],
    background: str,
) -> None:
    """Write the images and the instances JSON of all scenes under ``tree``."""
    rng = np.random.default_rng(seed)
    photo = functools.cache(load_photo)  # each photo is decoded once per call
    image_folder = tree / DEFAULT_IMAGES
    image_folder.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, n_scenes + 1):
        # "mixed" alternates, so that even two scenes show both backgrounds.
        kind = background if background != "mixed" else ("grey", "blurred")[(image_id - 1) % 2]
        scene, pastes = _scene(rng, kind, size, photos_per_scene, photo)
        file_name = f"{image_id:012d}.jpg"
        _write_jpeg(image_folder / file_name, scene)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": size[1],
                "height": size[0],
                "pasted_photos": [{"name": p.name, "bbox": [p.left, p.top, p.width, p.height]} for p in pastes],
            }
        )
        for paste in pastes:
            annotations += _box_annotations(paste, photo(paste.name).shape, image_id, len(annotations) + 1)
    dataset = {
        "info": {"description": "Scenes pasted from offline photos by var_utils make_coco_scenes", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": _coco_categories(),
    }
    annotation_file = tree / DEFAULT_ANNOTATIONS
    annotation_file.parent.mkdir(parents=True)
    annotation_file.write_text(json.dumps(dataset), encoding="utf-8")


def _move_into_place(tree: Path, root: Path) -> None:
    """Rename the finished ``tree`` to ``root``, replacing an old (empty or checked) ``root``."""
    if not root.exists():
        tree.rename(root)
        return
    old = tree.with_name(tree.name + ".old")
    root.rename(old)
    tree.rename(root)
    shutil.rmtree(old)


def make_coco_scenes(
    root: PathLike,
    n_scenes: int,
    *,
    seed: int = 0,
    size: Sequence[int] = (480, 640),
    photos_per_scene: int | Sequence[int] = (2, 3),
    background: str = "mixed",
    overwrite: bool = False,
) -> Path:
    """Write a small COCO 2017 tree of scenes pasted from the offline photos.

    Each scene holds ``photos_per_scene`` distinct photos of :data:`PHOTO_OBJECTS`
    showing at least two different categories. Each photo is resized (aspect ratio
    kept) so that its longer side is 30-60 % of the scene's shorter side, and pasted
    at a random place that overlaps no other photo (a photo shrinks when no place is
    free). Its hand boxes, scaled and moved the same way, become the annotations:
    ``bbox`` ``[x, y, width, height]`` in pixels, ``area`` the box area, the box as
    ``segmentation`` polygon, ``iscrowd`` 0, ids counted from 1. The ``categories``
    are all 80 COCO categories. The tree is built in a temporary sibling folder and
    renamed to ``root`` when complete, so ``root`` never holds half a dataset.

    Parameters
    ----------
    root : str or Path
        Folder to create, laid out as ``root/annotations/instances_val2017.json`` and
        ``root/val2017/000000000001.jpg`` ...; it must not exist, be empty, or (with
        ``overwrite``) hold only a tree this function wrote.
    n_scenes : int
        Number of scenes (>= 1); image ids run from 1 to ``n_scenes``.
    seed : int, default 0
        Seed of the :class:`numpy.random.Generator` that makes every choice: the same
        seed writes the same JSON and the same JPEG bytes.
    size : (int, int), default (480, 640)
        Scene (height, width) in pixels, each at least :data:`MIN_SCENE_SIDE`.
    photos_per_scene : int or (int, int), default (2, 3)
        Number of photos per scene, drawn uniformly from the inclusive range
        ``(low, high)`` with ``2 <= low <= high <= len(PHOTO_OBJECTS)``.
    background : {"mixed", "grey", "blurred"}
        ``"grey"``: uniform grey; ``"blurred"``: a heavily blurred crop of an offline
        photo that is not pasted in the scene; ``"mixed"``: grey and blurred in turn.
    overwrite : bool, default False
        Replace a tree previously written to ``root``.

    Returns
    -------
    Path
        ``root``.

    Raises
    ------
    TypeError
        An argument of the wrong type.
    ValueError
        ``n_scenes`` < 1, a ``size`` side below :data:`MIN_SCENE_SIDE`, ``photos_per_scene``
        out of range, or an unknown ``background``.
    FileExistsError
        ``root`` is a file, holds other files, or holds a COCO tree and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> from var_utils.datasets.coco import coco_layout, read_coco
    >>> root = make_coco_scenes(Path(folder.name) / "scenes", n_scenes=2, size=(120, 160))
    >>> data = read_coco(*coco_layout(root))
    >>> [len({o.category_id for o in image.objects}) >= 2 for image in data.images]
    [True, True]
    >>> folder.cleanup()
    """
    n_scenes = check_positive_int(n_scenes, "n_scenes")
    seed = check_positive_int(seed, "seed", minimum=0)
    size = _check_size(size)
    photos_per_scene = _check_photos_per_scene(photos_per_scene)
    check_choice(background, "background", SCENE_BACKGROUNDS)
    if not isinstance(overwrite, bool):
        raise TypeError(f"`overwrite` must be a bool, got {type(overwrite).__name__}.")
    root = _check_root(root, overwrite)
    root.parent.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        _write_scenes(tree, n_scenes, seed, size, photos_per_scene, background)
        _move_into_place(tree, root)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return root
