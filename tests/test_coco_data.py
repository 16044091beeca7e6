"""COCO 2017 loader (var_utils.datasets.coco) and the offline scene generator (var_utils.datasets.coco_scenes)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.resources
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from var_utils import load_photo
from var_utils.datasets.coco import (
    DEFAULT_ANNOTATIONS,
    DEFAULT_IMAGES,
    coco_layout,
    load_coco_image,
    read_coco,
)
from var_utils.datasets.coco_scenes import PHOTO_OBJECTS, make_coco_scenes

SCENE_SIZE = (240, 320)  # (height, width)
N_SCENES = 12
# A JPEG at quality 95 of a resized photo, against the same resize of the original: a few grey levels apart.
JPEG_TOLERANCE = 15


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_coco_scenes(tmp_path_factory.mktemp("coco") / "scenes", N_SCENES, seed=3, size=SCENE_SIZE)


@pytest.fixture(scope="module")
def dataset(scenes) -> dict:
    return json.loads((scenes / DEFAULT_ANNOTATIONS).read_text(encoding="utf-8"))


def _annotations_of(dataset: dict, image_id: int) -> list[dict]:
    return [annotation for annotation in dataset["annotations"] if annotation["image_id"] == image_id]


def _corners(box: list[float]) -> tuple[float, float, float, float]:
    x, y, width, height = box
    return x, y, x + width, y + height


def _inside(inner: list[float], outer: list[float], tolerance: float = 1e-6) -> bool:
    (x0, y0, x1, y1), (left, top, right, bottom) = _corners(inner), _corners(outer)
    return x0 >= left - tolerance and y0 >= top - tolerance and x1 <= right + tolerance and y1 <= bottom + tolerance


def _overlap(first: list[float], second: list[float]) -> bool:
    (a0, b0, a1, b1), (c0, d0, c1, d1) = _corners(first), _corners(second)
    return a0 < c1 and c0 < a1 and b0 < d1 and d0 < b1


# --- the hand-annotated photos -------------------------------------------------------------------

PHOTO_SIZES = {  # width, height
    "chelsea": (451, 300),
    "coffee": (600, 400),
    "motorcycle": (741, 500),
    "camera": (512, 512),
    "astronaut": (512, 512),
    "grace_hopper": (512, 600),
}


@pytest.mark.parametrize("name", sorted(PHOTO_OBJECTS))
def test_photo_sizes_match_the_hand_boxes(name):
    photo = load_photo(name)
    width, height = PHOTO_SIZES[name]
    assert photo.shape == (height, width, 3)
    for _, (x0, y0, x1, y1) in PHOTO_OBJECTS[name]:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


# --- the generator --------------------------------------------------------------------------------


def test_json_loads_with_pycocotools(scenes):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(scenes / DEFAULT_ANNOTATIONS))
    assert sorted(coco.getImgIds()) == list(range(1, N_SCENES + 1))
    assert len(coco.getCatIds()) == 80
    for image_id in coco.getImgIds():
        image = coco.loadImgs(image_id)[0]
        assert image["file_name"] == f"{image_id:012d}.jpg"
        assert (image["height"], image["width"]) == SCENE_SIZE
        assert coco.getAnnIds(imgIds=image_id, iscrowd=False)


def test_read_coco_matches_the_json(scenes, dataset):
    data = read_coco(*coco_layout(scenes))
    table = importlib.resources.files("var_utils") / "data" / "coco_categories.csv"
    with table.open(encoding="utf-8", newline="") as handle:
        assert data.categories == {int(row["id"]): row["name"] for row in csv.DictReader(handle)}
    assert [image.image_id for image in data.images] == list(range(1, N_SCENES + 1))
    for image in data.images:
        expected = _annotations_of(dataset, image.image_id)
        assert [o.annotation_id for o in image.objects] == [a["id"] for a in expected]
        assert [o.box for o in image.objects] == [tuple(a["bbox"]) for a in expected]
        assert image.file == scenes / DEFAULT_IMAGES / f"{image.image_id:012d}.jpg"
    assert [a["id"] for a in dataset["annotations"]] == list(range(1, len(dataset["annotations"]) + 1))


def test_boxes_lie_inside_the_image_and_their_pasted_photo(dataset):
    height, width = SCENE_SIZE
    for image in dataset["images"]:
        pasted = {photo["name"]: photo["bbox"] for photo in image["pasted_photos"]}
        for annotation in _annotations_of(dataset, image["id"]):
            assert _inside(annotation["bbox"], [0, 0, width, height])
            assert _inside(annotation["bbox"], pasted[annotation["photo"]])
            assert annotation["area"] == pytest.approx(annotation["bbox"][2] * annotation["bbox"][3], abs=0.01)
            assert annotation["iscrowd"] == 0


def test_every_scene_shows_two_categories_from_distinct_photos(dataset):
    for image in dataset["images"]:
        names = [photo["name"] for photo in image["pasted_photos"]]
        assert 2 <= len(names) <= 3 and len(set(names)) == len(names)
        assert len({a["category_id"] for a in _annotations_of(dataset, image["id"])}) >= 2


def test_boxes_of_different_photos_do_not_overlap(dataset):
    for image in dataset["images"]:
        annotations = _annotations_of(dataset, image["id"])
        for first in annotations:
            for second in annotations:
                if first["photo"] != second["photo"]:
                    assert not _overlap(first["bbox"], second["bbox"])
        photos = [photo["bbox"] for photo in image["pasted_photos"]]
        assert not any(_overlap(a, b) for i, a in enumerate(photos) for b in photos[i + 1 :])


def test_hand_boxes_follow_the_paste(scenes, dataset):
    """Each box's numbers follow from its photo's paste, and its pixels are the photo's hand box, resized."""
    checked = 0
    for image in dataset["images"]:
        scene = cv2.imread(str(scenes / DEFAULT_IMAGES / image["file_name"]))[:, :, ::-1].astype(float)
        pasted = {photo["name"]: photo["bbox"] for photo in image["pasted_photos"]}
        for annotation in _annotations_of(dataset, image["id"]):
            photo = load_photo(annotation["photo"])
            x0, y0, x1, y1 = dict(PHOTO_OBJECTS[annotation["photo"]])[annotation["category_id"]]
            left, top, width, height = pasted[annotation["photo"]]
            scale_x, scale_y = width / photo.shape[1], height / photo.shape[0]
            expected = [left + x0 * scale_x, top + y0 * scale_y, (x1 - x0) * scale_x, (y1 - y0) * scale_y]
            assert annotation["bbox"] == pytest.approx(expected, abs=0.01)
            box_left, box_top, box_right, box_bottom = (round(v) for v in _corners(annotation["bbox"]))
            if min(box_right - box_left, box_bottom - box_top) < 20:
                continue  # a tie a dozen pixels wide: JPEG blocks dominate the comparison
            reference = cv2.resize(
                photo[y0:y1, x0:x1], (box_right - box_left, box_bottom - box_top), interpolation=cv2.INTER_AREA
            ).astype(float)
            difference = np.abs(scene[box_top:box_bottom, box_left:box_right] - reference).mean()
            # The same window a quarter box to the side (or back) must look clearly different.
            shift = round((box_right - box_left) / 4) * (1 if box_right + box_right // 4 <= SCENE_SIZE[1] else -1)
            shifted = scene[box_top:box_bottom, box_left + shift : box_right + shift]
            assert difference < JPEG_TOLERANCE
            assert np.abs(shifted - reference).mean() > 2 * difference + 10
            checked += 1
    assert checked >= N_SCENES


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    def tree(name: str, seed: int) -> tuple[str, list[bytes]]:
        root = make_coco_scenes(tmp_path / name, 3, seed=seed, size=(96, 128))
        images = [path.read_bytes() for path in sorted((root / DEFAULT_IMAGES).iterdir())]
        return (root / DEFAULT_ANNOTATIONS).read_text(encoding="utf-8"), images

    first, again, other = tree("first", 5), tree("again", 5), tree("other", 6)
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]


@pytest.mark.parametrize(
    ("background", "grey_scenes"),
    [("grey", [True, True]), ("blurred", [False, False]), ("mixed", [True, False])],
)
def test_backgrounds(tmp_path, background, grey_scenes):
    root = make_coco_scenes(tmp_path / "scenes", 2, size=(96, 128), background=background)
    data = json.loads((root / DEFAULT_ANNOTATIONS).read_text(encoding="utf-8"))
    for image, grey in zip(data["images"], grey_scenes):
        scene = cv2.imread(str(root / DEFAULT_IMAGES / image["file_name"])).astype(int)
        outside = np.ones(scene.shape[:2], dtype=bool)
        for left, top, width, height in (photo["bbox"] for photo in image["pasted_photos"]):
            # JPEG blocks (16 x 16 with chroma subsampling) bleed beyond each photo's edge.
            outside[max(top - 16, 0) : top + height + 16, max(left - 16, 0) : left + width + 16] = False
        near_grey = np.abs(scene[outside] - 128).max(axis=-1) <= 3
        assert (near_grey.mean() > 0.95) == grey


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"n_scenes": 0}, ValueError, "n_scenes"),
        ({"n_scenes": 1.5}, TypeError, "n_scenes"),
        ({"seed": -1}, ValueError, "seed"),
        ({"size": 480}, TypeError, "size"),
        ({"size": (32, 640)}, ValueError, "size"),
        ({"size": (480.0, 640)}, TypeError, r"size\[0\]"),
        ({"photos_per_scene": (1, 3)}, ValueError, "photos_per_scene"),
        ({"photos_per_scene": (2, 7)}, ValueError, "photos_per_scene"),
        ({"photos_per_scene": (3, 2)}, ValueError, "photos_per_scene"),
        ({"background": "white"}, ValueError, "background"),
        ({"overwrite": "yes"}, TypeError, "overwrite"),
        ({"root": 3}, TypeError, "root"),
    ],
)
def test_generator_rejects_bad_arguments(tmp_path, arguments, error, match):
    call = {"root": tmp_path / "scenes", "n_scenes": 1} | arguments
    with pytest.raises(error, match=match):
        make_coco_scenes(call.pop("root"), call.pop("n_scenes"), **call)
    assert not (tmp_path / "scenes").exists()


def test_generator_protects_existing_folders(tmp_path):
    root = make_coco_scenes(tmp_path / "scenes", 1, size=(96, 128))
    written = (root / DEFAULT_ANNOTATIONS).read_text(encoding="utf-8")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_coco_scenes(root, 1, seed=1, size=(96, 128))
    assert (root / DEFAULT_ANNOTATIONS).read_text(encoding="utf-8") == written
    make_coco_scenes(root, 2, seed=1, size=(96, 128), overwrite=True)
    assert len(list((root / DEFAULT_IMAGES).iterdir())) == 2
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        make_coco_scenes(tmp_path / "notes", 1, size=(96, 128), overwrite=True)
    # Nothing half-written left next to the trees.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes", "scenes"]


def test_generator_fills_an_empty_folder(tmp_path):
    assert make_coco_scenes(tmp_path, 1, size=(96, 128)) == tmp_path
    assert len(read_coco(*coco_layout(tmp_path)).images) == 1


# --- the loader -----------------------------------------------------------------------------------


def test_coco_layout_defaults_and_overrides(scenes, tmp_path):
    assert coco_layout(scenes) == (scenes / DEFAULT_ANNOTATIONS, scenes / DEFAULT_IMAGES)
    other_json = tmp_path / "mine.json"
    other_json.write_text("{}")
    assert coco_layout(scenes, annotations=other_json) == (other_json, scenes / DEFAULT_IMAGES)
    assert coco_layout(annotations=str(other_json), images=str(scenes / DEFAULT_IMAGES))[0] == other_json


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({}, ValueError, "pass `root`"),
        ({"annotations": "a.json"}, ValueError, "both `annotations` and `images`"),
        ({"root": 3}, TypeError, "root"),
        ({"root": "nowhere"}, FileNotFoundError, r"expected the COCO 2017 layout: ROOT/annotations/instances_val2017"),
    ],
)
def test_coco_layout_rejects(arguments, error, match):
    with pytest.raises(error, match=match):
        coco_layout(**arguments)


def _edit_json(root: Path, change) -> None:
    path = root / DEFAULT_ANNOTATIONS
    dataset = json.loads(path.read_text(encoding="utf-8"))
    change(dataset)
    path.write_text(json.dumps(dataset), encoding="utf-8")


def _first_bbox(dataset: dict, bbox: list) -> None:
    dataset["annotations"][0]["bbox"] = bbox


@pytest.mark.parametrize(
    ("breakage", "error", "match"),
    [
        (lambda root: (root / DEFAULT_ANNOTATIONS).unlink(), FileNotFoundError, r"instances_val2017.json \(a JSON"),
        (lambda root: shutil.rmtree(root / DEFAULT_IMAGES), FileNotFoundError, r"val2017 \(a folder of images\)"),
        (lambda root: (root / DEFAULT_ANNOTATIONS).write_text("{images: ["), ValueError, "is not a JSON file"),
        (lambda root: _edit_json(root, lambda d: d.pop("categories")), ValueError, r"key\(s\) \['categories'\]"),
        (lambda root: _edit_json(root, lambda d: _first_bbox(d, [1, 2, 3])), ValueError, "bbox must be 4 non-neg"),
        (lambda root: _edit_json(root, lambda d: _first_bbox(d, [1, -2, 3, 4])), ValueError, "bbox must be 4 non-neg"),
        (
            lambda root: _edit_json(root, lambda d: d["annotations"][0].update(category_id=999)),
            ValueError,
            "annotation id 1: unknown category_id 999",
        ),
        (
            lambda root: _edit_json(root, lambda d: d["annotations"][0].update(image_id=999)),
            ValueError,
            "annotation id 1: unknown image_id 999",
        ),
        (
            lambda root: _edit_json(root, lambda d: d["images"][0].pop("width")),
            ValueError,
            r"image #0 lacks key\(s\) \['width'\]",
        ),
        (
            lambda root: (root / DEFAULT_IMAGES / "000000000002.jpg").unlink(),
            ValueError,
            rf"1 of {N_SCENES} listed image file\(s\) are missing .*'000000000002.jpg'",
        ),
    ],
    ids=[
        "no-json",
        "no-image-folder",
        "invalid-json",
        "no-categories",
        "bbox-3-numbers",
        "negative-bbox",
        "unknown-category",
        "unknown-image",
        "image-without-width",
        "missing-image-file",
    ],
)
def test_read_coco_rejects_malformed_trees(scenes, tmp_path, breakage, error, match):
    root = shutil.copytree(scenes, tmp_path / "broken")
    breakage(root)
    with pytest.raises(error, match=match):
        read_coco(root / DEFAULT_ANNOTATIONS, root / DEFAULT_IMAGES)


def test_crowd_annotations_are_left_out(scenes, tmp_path):
    root = shutil.copytree(scenes, tmp_path / "crowd")
    crowd = {"id": 1000, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 1}
    _edit_json(root, lambda dataset: dataset["annotations"].append(crowd))
    first = read_coco(*coco_layout(root)).images[0]
    assert first.objects and 1000 not in [o.annotation_id for o in first.objects]


def test_images_without_annotations_are_kept(scenes, tmp_path):
    root = shutil.copytree(scenes, tmp_path / "empty")
    _edit_json(
        root, lambda dataset: dataset.update(annotations=[a for a in dataset["annotations"] if a["image_id"] != 2])
    )
    images = read_coco(*coco_layout(root)).images
    assert [image.image_id for image in images] == list(range(1, N_SCENES + 1))
    assert images[1].objects == ()


def test_load_coco_image(scenes):
    image = read_coco(*coco_layout(scenes)).images[0]
    pixels = load_coco_image(image)
    assert pixels.shape == (*SCENE_SIZE, 3) and pixels.dtype == np.uint8
    with pytest.raises(ValueError, match=r"is 320x240 pixels but its annotation .* says 321x240"):
        load_coco_image(dataclasses.replace(image, width=321))
