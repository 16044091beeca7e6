"""COCO objects: box scores against Quantus and numpy, the object filter, class sets, and the run end to end.

References: quantus 0.6.0 (``RelevanceMassAccuracy`` for energy in box, ``PointingGame``), masks and scores
written out in numpy, and a per-image path through :func:`var_utils.attribute_classes` and
:func:`var_utils.refine_all` for the batched run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import quantus
import torch

import var_utils
from var_utils import get_method
from var_utils.apps.cli import main
from var_utils.datasets.coco import CocoData, CocoImage, CocoObject, load_coco_image, read_coco
from var_utils.datasets.coco_objects import (
    CocoObjectImages,
    ObjectTarget,
    area_fraction,
    coco_object_images,
    has_competing_objects,
    select_objects,
)
from var_utils.datasets.coco_scenes import make_coco_scenes
from var_utils.evaluation.coco import (
    COCO_COLUMNS,
    COCO_METRICS,
    COCO_SCHEMA,
    evaluate_coco_objects,
    image_targets,
    mode_differences,
    object_maps,
    summarize_objects,
)
from var_utils.evaluation.gpg.scoring import attribute_class_sets, pad_class_sets
from var_utils.evaluation.gpg.store import read_results
from var_utils.evaluation.metrics import box_localisation_table, box_masks, localisation_table

CAT, PERSON, MOTORCYCLE, CUP = 17, 1, 4, 47
CLASSES_OF = {CAT: (281, 282, 285), PERSON: (981, 982, 983), MOTORCYCLE: (665, 670), CUP: ()}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_coco_scenes(tmp_path_factory.mktemp("coco") / "tree", n_scenes=8, seed=3)


@pytest.fixture(scope="module")
def objects(lite0, scenes) -> CocoObjectImages:
    return coco_object_images(lite0, scenes)


# ---------------------------------------------------------------- boxes
def numpy_box_mask(height: int, width: int, box) -> np.ndarray:
    """Pixels whose centre lies in [x0, x1) × [y0, y1), written out pixel by pixel."""
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), dtype=bool)
    for row in range(height):
        for col in range(width):
            mask[row, col] = x0 <= col + 0.5 < x1 and y0 <= row + 0.5 < y1
    return mask


MASK_CASES = [
    # (box, (H, W), expected mask)
    ((1.0, 0.0, 3.0, 1.0), (2, 4), [[0, 1, 1, 0], [0, 0, 0, 0]]),
    ((0.4, 0.0, 2.6, 2.0), (2, 4), [[1, 1, 1, 0], [1, 1, 1, 0]]),  # centres 0.5, 1.5, 2.5 inside
    ((0.6, 0.0, 1.4, 2.0), (2, 4), [[0, 1, 0, 0], [0, 1, 0, 0]]),  # thinner than a pixel: its middle pixel
    ((-5.0, -5.0, 1.0, 1.0), (2, 4), [[1, 0, 0, 0], [0, 0, 0, 0]]),  # clipped to the map
    ((2.0, 1.0, 9.0, 9.0), (2, 4), [[0, 0, 0, 0], [0, 0, 1, 1]]),
]


@pytest.mark.parametrize("box, shape, expected", MASK_CASES)
def test_box_masks_hand_cases(box, shape, expected):
    assert box_masks([box], shape)[0].int().tolist() == expected


def test_box_masks_agree_with_the_pixel_centre_rule_on_random_boxes():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 12, size=(40, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1) + 1.2], axis=1)[:, [0, 1, 2, 3]]
    masks = box_masks(boxes, (12, 12)).numpy()
    for box, mask in zip(boxes, masks):  # boxes at least 1.2 pixels wide and high: never thinner than a pixel
        np.testing.assert_array_equal(mask, numpy_box_mask(12, 12, box))


@pytest.mark.parametrize(
    "boxes, error, match",
    [
        ([[3.0, 0.0, 1.0, 2.0]], ValueError, "x0 < x1"),
        ([[0.0, 2.0, 1.0, 2.0]], ValueError, "y0 < y1"),
        ([[5.0, 0.0, 9.0, 1.0]], ValueError, "overlap the 2×4 map"),
        ([[0.0, 0.0, 1.0]], ValueError, r"shape \(N, 4\)"),
        ([[0.0, 0.0, float("nan"), 1.0]], ValueError, "finite"),
        (torch.ones(1, 4, dtype=torch.bool), TypeError, "pixel coordinates"),
        ("box", TypeError, "boxes"),
    ],
)
def test_box_masks_reject_bad_boxes(boxes, error, match):
    with pytest.raises(error, match=match):
        box_masks(boxes, (2, 4))


def test_box_scores_need_one_box_per_map():
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        box_localisation_table(torch.rand(2, 1, 4, 4), [[0, 0, 2, 2]])


@pytest.fixture(scope="module")
def dummy_model() -> torch.nn.Module:
    """Quantus needs a model even when the attributions are given; it is never used to explain."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))


def random_maps_and_boxes(seed: int, count: int = 8, size: int = 20):
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(count, 1, size, size)).astype(np.float32)
    x0, y0 = rng.integers(0, size - 4, size=(2, count))
    x1, y1 = x0 + rng.integers(2, 6, size=count), y0 + rng.integers(2, 6, size=count)
    boxes = np.stack([x0, y0, np.minimum(x1, size), np.minimum(y1, size)], axis=1)
    masks = np.zeros((count, size, size), dtype=bool)
    for mask, (a, b, c, d) in zip(masks, boxes):
        mask[b:d, a:c] = True  # integer boxes: exactly these pixels
    return maps, boxes.astype(np.float64), masks


def quantus_metric(metric, model, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    scores = metric(
        model=model,
        x_batch=np.zeros_like(maps),  # never read: a_batch is given
        y_batch=np.zeros(len(maps), dtype=int),
        a_batch=maps,
        s_batch=masks[:, None].astype(np.float32),
        channel_first=True,
    )
    return np.asarray(scores, dtype=np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_energy_in_box_matches_quantus_relevance_mass_accuracy(seed, dummy_model):
    maps, boxes, masks = random_maps_and_boxes(seed)
    positive = np.clip(maps, 0, None)  # energy in box counts positive attribution only
    metric = quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True)
    expected = quantus_metric(metric, dummy_model, positive, masks)
    ours = box_localisation_table(maps, boxes)["region_attribution"].numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pointing_in_box_matches_quantus_pointing_game(seed, dummy_model):
    maps, boxes, masks = random_maps_and_boxes(seed, count=30)
    for single, (x0, y0, _, _) in list(zip(maps, boxes.astype(int)))[::2]:
        single[0, y0, x0] = 10.0  # every other map peaks inside its box
    metric = quantus.PointingGame(normalise=False, abs=False, disable_warnings=True)
    expected = quantus_metric(metric, dummy_model, maps, masks)
    np.testing.assert_array_equal(box_localisation_table(maps, boxes)["pointing"].numpy(), expected)
    assert 0 < expected.sum() < len(expected)  # both outcomes occur


@pytest.mark.parametrize("binarization", ["positive", "top", "max"])
def test_overlap_scores_in_box_match_numpy(binarization):
    maps, boxes, masks = random_maps_and_boxes(4)
    scores = box_localisation_table(maps, boxes, binarization=binarization)
    for index, (single, mask) in enumerate(zip(maps[:, 0], masks)):
        if binarization == "positive":
            binary = single > 0
        elif binarization == "top":
            binary = single >= np.sort(single.ravel())[-100]  # 25 % of 400 pixels
        else:
            binary = (single > 0) & (single >= 0.5 * single.max())
        hits = (binary & mask).sum()
        assert scores["precision"][index] == pytest.approx(hits / binary.sum())
        assert scores["recall"][index] == pytest.approx(hits / mask.sum())
        assert scores["f1"][index] == pytest.approx(2 * hits / (binary.sum() + mask.sum()))
        assert scores["iou"][index] == pytest.approx(hits / (binary | mask).sum())


def test_a_cell_as_a_box_scores_as_the_cell():
    maps = torch.randn(12, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    cells = torch.arange(12) % 4
    boxes = [((c % 2) * 4, (c // 2) * 4, (c % 2) * 4 + 4, (c // 2) * 4 + 4) for c in cells.tolist()]
    by_box, by_cell = box_localisation_table(maps, boxes), localisation_table(maps, cells)
    for metric, values in by_cell.items():
        torch.testing.assert_close(by_box[metric], values, msg=metric)


# ---------------------------------------------------------------- the object filter
def coco_image(*objects: CocoObject, width: int = 200, height: int = 240) -> CocoImage:
    return CocoImage(7, Path("7.jpg"), width, height, tuple(objects))


def an_object(annotation_id: int, category: int, area: float) -> CocoObject:
    return CocoObject(annotation_id, category, (0.0, 0.0, 10.0, 10.0), area)


@pytest.mark.parametrize(
    "area, min_area, kept",
    [
        (1200.0, 0.025, True),  # 1200 / (200 × 240) = 2.5 % exactly: kept
        (1199.9, 0.025, False),
        (4800.0, 0.1, True),
        (4799.0, 0.1, False),
    ],
)
def test_area_filter_at_the_threshold(area, min_area, kept):
    image = coco_image(an_object(1, CAT, area))
    assert area_fraction(image.objects[0], image) == pytest.approx(area / 48_000)
    assert (select_objects(image, CLASSES_OF, min_area) == image.objects) is kept


@pytest.mark.parametrize(
    "box",
    [(5.0, 5.0, 0.0, 30.0), (5.0, 5.0, 30.0, 0.0), (200.0, 5.0, 30.0, 30.0), (5.0, 240.0, 30.0, 30.0)],
)
def test_objects_without_a_box_in_the_image_are_left_out_and_counted(box):
    cat, person = an_object(1, CAT, 5000), an_object(3, PERSON, 5000)
    image = coco_image(cat, CocoObject(2, PERSON, box, 5000.0), person)
    assert select_objects(image, CLASSES_OF) == (cat, person)
    dataset = CocoObjectImages(CocoData((image,), {}), 32, lambda unit: unit, classes_of=CLASSES_OF)
    assert dataset.counts["objects_no_box"] == 1 and dataset.counts["objects_kept"] == 2


@pytest.mark.parametrize(
    "classes_of, error, match",
    [
        ({CAT: (281, 1000)}, ValueError, r"classes_of\[17\]"),
        ({17.9: (281,)}, TypeError, "keys must be COCO category ids"),
        ({"cat": (281,)}, TypeError, "keys must be COCO category ids"),
        ({CAT: (-1,)}, ValueError, "0..999"),
        ({CAT: "281"}, ValueError, "sequence of ImageNet class indices"),
        ([(CAT, (281,))], TypeError, "must map COCO category ids"),
    ],
)
def test_dataset_rejects_a_bad_category_table(classes_of, error, match):
    data = CocoData((coco_image(an_object(1, CAT, 5000), an_object(2, PERSON, 5000)),), {})
    with pytest.raises(error, match=match):
        CocoObjectImages(data, 32, lambda unit: unit, classes_of=classes_of)


def test_unmapped_categories_are_left_out_and_one_category_does_not_compete():
    image = coco_image(an_object(1, CAT, 5000), an_object(2, CUP, 5000), an_object(3, 999, 5000))
    assert [obj.annotation_id for obj in select_objects(image, CLASSES_OF)] == [1]
    assert not has_competing_objects(select_objects(image, CLASSES_OF))
    assert not has_competing_objects([an_object(1, CAT, 1), an_object(2, CAT, 1)])
    assert has_competing_objects([an_object(1, CAT, 1), an_object(2, PERSON, 1)])


def test_dataset_keeps_images_with_competing_objects_and_counts_what_it_left_out():
    images = (
        coco_image(an_object(1, CAT, 5000), an_object(2, PERSON, 5000), an_object(3, CUP, 5000)),
        coco_image(an_object(4, CAT, 5000), an_object(5, PERSON, 100)),  # the person is too small
    )
    data = CocoData(images, {CAT: "cat", PERSON: "person", CUP: "cup"})
    dataset = CocoObjectImages(data, 32, lambda unit: unit, classes_of=CLASSES_OF)
    assert len(dataset) == 1 and [obj.annotation_id for obj in dataset.images[0].objects] == [1, 2]
    assert dataset.counts == {
        "images": 2,
        "objects": 5,
        "objects_unmapped": 1,
        "objects_small": 1,
        "objects_no_box": 0,
        "images_kept": 1,
        "objects_kept": 2,
    }
    with pytest.raises(ValueError, match="no image of coco holds objects of two"):
        CocoObjectImages(CocoData(images[1:], data.categories), 32, lambda unit: unit, classes_of=CLASSES_OF)


@pytest.mark.parametrize("min_area, match", [(0.0, "min_area"), (1.5, r"\(0, 1\]"), ("big", "min_area")])
def test_dataset_rejects_bad_min_area(min_area, match):
    data = CocoData((coco_image(an_object(1, CAT, 5000), an_object(2, PERSON, 5000)),), {})
    with pytest.raises((TypeError, ValueError), match=match):
        CocoObjectImages(data, 32, lambda unit: unit, classes_of=CLASSES_OF, min_area=min_area)


def test_samples_are_resized_without_cropping_and_boxes_follow(lite0, scenes, objects):
    data = read_coco(scenes / "annotations" / "instances_val2017.json", scenes / "val2017")
    by_id = {image.image_id: image for image in data.images}
    for index, image in enumerate(objects.images):
        sample = objects[index]
        assert sample.image.shape == (3, 224, 224)
        shown = lite0.preprocess.to_unit(sample.image).permute(1, 2, 0).numpy()
        photo = load_coco_image(by_id[image.image_id]).astype(np.float32) / 255
        for target, obj in zip(sample.objects, image.objects):
            # The pixels inside the scaled box are the object's pixels of the full-size image, resized.
            x0, y0, x1, y1 = (int(round(value)) for value in target.box)
            x, y, w, h = (int(round(value)) for value in obj.box)
            expected = cv2.resize(photo[y : y + h, x : x + w], (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
            inside = np.abs(shown[y0:y1, x0:x1] - expected)
            assert inside.mean() < 0.05, (image.image_id, obj.annotation_id, inside.mean())
            shifted = np.abs(shown[y0:y1, x0:x1] - np.roll(shown, (y1 - y0) // 2, axis=0)[y0:y1, x0:x1])
            assert shifted.mean() > inside.mean()  # the comparison can tell a misplaced box
    assert objects.counts["images_kept"] == len(objects) > 0
    assert objects.unit_ids == [image.image_id for image in objects.images]


# ---------------------------------------------------------------- class sets
def test_image_targets_take_each_categorys_most_probable_class():
    logits = torch.zeros(1000)
    logits[[282, 983, 670]] = torch.tensor([2.0, 1.0, 0.5])
    found = [
        ObjectTarget(1, PERSON, (0, 0, 1, 1)),
        ObjectTarget(2, CAT, (0, 0, 1, 1)),
        ObjectTarget(3, PERSON, (1, 1, 2, 2)),
    ]
    top = image_targets(logits, found, CLASSES_OF)
    assert top.labels == (983, 282, 983) and top.classes == (983, 282)
    every = image_targets(logits, found, CLASSES_OF, "all")
    assert every.labels == top.labels and every.classes == (983, 282, 281, 285, 981, 982)
    with pytest.raises(ValueError, match="class_rule"):
        image_targets(logits, found, CLASSES_OF, "best")


@pytest.mark.parametrize(
    "classes_of, expected",
    [
        # Car and truck share the minivan (656); the truck, with fewer classes, chooses first.
        ({3: (436, 656, 817), 8: (656, 717)}, (817, 656)),
        # Hot dog's only class is also a sandwich: the hot dog keeps it, the sandwich takes its other class.
        ({54: (933, 934), 58: (934,)}, (933, 934)),
    ],
)
def test_two_categories_never_share_a_class(classes_of, expected):
    logits = torch.zeros(1000)
    logits[[656, 934, 817, 933]] = torch.tensor([5.0, 5.0, 1.0, 1.0])
    first, second = sorted(classes_of)
    found = [ObjectTarget(1, first, (0, 0, 1, 1)), ObjectTarget(2, second, (1, 1, 2, 2))]
    targets = image_targets(logits, found, classes_of)
    assert targets.labels == expected and targets.classes == expected


def test_an_earlier_category_yields_its_class_when_it_can_move():
    logits = torch.zeros(1000)
    logits[[1, 3]] = torch.tensor([3.0, 2.0])
    box = (0.0, 0.0, 1.0, 1.0)
    found = [ObjectTarget(1, 10, box), ObjectTarget(2, 11, box), ObjectTarget(3, 12, box)]
    # Greedily 10 -> 1 and 11 -> 3 would leave 12 (classes 1, 3) without a class; 10 moves to 2 instead.
    targets = image_targets(logits, found, {10: (1, 2), 11: (2, 3), 12: (1, 3)})
    assert targets.labels == (2, 3, 1) and len(targets.objects) == 3


def test_a_category_left_without_a_class_has_its_objects_left_out():
    box = (0.0, 0.0, 1.0, 1.0)
    found = [ObjectTarget(1, CAT, box), ObjectTarget(2, PERSON, box), ObjectTarget(3, MOTORCYCLE, box)]
    targets = image_targets(torch.zeros(1000), found, {CAT: (281,), PERSON: (281,), MOTORCYCLE: (665,)})
    assert [obj.annotation_id for obj in targets.objects] == [1, 3] and targets.labels == (281, 665)


# ---------------------------------------------------------------- the run
def numpy_scores(single_map: np.ndarray, box) -> tuple[float, float, float]:
    """Energy in box, pointing and IoU (positive binarisation) of one channel-summed map, in numpy."""
    mask = numpy_box_mask(*single_map.shape, box)
    positive = np.clip(single_map, 0, None)
    peak = single_map == single_map.max()
    binary = single_map > 0
    return (
        positive[mask].sum() / positive.sum(),
        peak[mask].sum() / peak.sum() if single_map.max() > 0 else 0.0,
        (binary & mask).sum() / (binary | mask).sum(),
    )


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_run_matches_a_per_image_path(lite0, objects, method):
    table = evaluate_coco_objects(lite0, objects, {method: {}}, modes=("base", "var"), batch_size=3, progress=False)
    assert tuple(table.columns) == COCO_COLUMNS
    assert len(table) == 2 * objects.counts["objects_kept"]
    for index, image in enumerate(objects.images):
        sample = objects[index]
        with torch.no_grad():
            logits = lite0(sample.image[None])[0]
        targets = image_targets(logits, sample.objects, objects.classes_of)
        base = var_utils.attribute_classes(lite0, sample.image[None], torch.tensor([targets.classes]), method)[0]
        maps = {"base": base, "var": var_utils.refine_all(base, class_dim=0)}
        for target, label in zip(targets.objects, targets.labels):
            column = targets.classes.index(label)
            for mode, kind in maps.items():
                row = table[(table["image"] == image.image_id) & (table["object"] == target.annotation_id)]
                row = row[row["mode"] == mode].iloc[0]
                expected = numpy_scores(kind[column].sum(dim=0).double().numpy(), target.box)
                assert (row["label"], row["category"], row["n_classes"]) == (
                    label,
                    target.category_id,
                    len(targets.classes),
                )
                assert row["n_objects"] == len(targets.objects)
                np.testing.assert_allclose(
                    [row["energy_in_box"], row["pointing"], row["iou"]], expected, rtol=1e-4, atol=1e-6
                )


def test_run_with_every_mapped_class(lite0, objects):
    top = evaluate_coco_objects(lite0, objects, {"gradcam": {}}, progress=False)
    every = evaluate_coco_objects(lite0, objects, {"gradcam": {}}, class_rule="all", progress=False)
    pd.testing.assert_frame_equal(
        top[["image", "object", "label", "mode"]], every[["image", "object", "label", "mode"]]
    )
    # The set under "all": the union of the image's categories' classes, counted from the table directly.
    for _, rows in every.groupby("image"):
        union = {c for category in rows["category"].unique() for c in objects.classes_of[category]}
        assert (rows["n_classes"] == len(union)).all()
    assert (every["n_classes"] > top["n_classes"]).any()


def test_results_resume_and_record_the_class_rule(lite0, objects, tmp_path):
    out = tmp_path / "coco.csv"
    first = evaluate_coco_objects(lite0, objects, {"gradcam": {}}, out=out, progress=False)
    data = out.read_bytes()
    last_group = data.rstrip(b"\n").rsplit(b"\n", 2)[0]  # a torn write: the last object's rows of an image cut
    out.write_bytes(last_group + b"\n")
    both = evaluate_coco_objects(lite0, objects, {"gradcam": {}, "saliency": {}}, out=out, progress=False)
    pd.testing.assert_frame_equal(both[both["method"] == "gradcam"].reset_index(drop=True), first)
    on_disk = read_results(out, COCO_SCHEMA).sort_values(["image", "method", "mode", "object"], ignore_index=True)
    pd.testing.assert_frame_equal(on_disk, both.sort_values(["image", "method", "mode", "object"], ignore_index=True))
    with pytest.raises(ValueError, match="class_rule"):
        evaluate_coco_objects(lite0, objects, {"gradcam": {}}, class_rule="all", out=out, progress=False)
    summary = summarize_objects(both)
    assert summary["n"].tolist() == [objects.counts["objects_kept"]] * 4


def test_a_group_whose_rows_disagree_on_its_size_is_corrupt(lite0, objects, tmp_path):
    out = tmp_path / "coco.csv"
    evaluate_coco_objects(lite0, objects, {"gradcam": {}}, out=out, progress=False)
    table = read_results(out, COCO_SCHEMA)
    table.loc[0, "n_objects"] += 1
    table.to_csv(out, index=False)
    with pytest.raises(ValueError, match="is corrupt"):
        evaluate_coco_objects(lite0, objects, {"gradcam": {}}, out=out, progress=False)


def test_methods_that_compare_classes_score_every_object(lite0, objects):
    table = evaluate_coco_objects(lite0, objects, {"softmax_gradient": {}}, batch_size=3, progress=False)
    assert len(table) == 2 * objects.counts["objects_kept"]
    for index, image in enumerate(objects.images[:3]):
        sample, targets, maps = object_maps(lite0, objects, index, "softmax_gradient")
        rows = table[(table["image"] == image.image_id) & (table["mode"] == "var")].sort_values("object")
        boxes = [obj.box for obj in targets.objects]
        chosen = maps["var"][[targets.classes.index(label) for label in targets.labels]]
        expected = box_localisation_table(chosen, boxes)["region_attribution"].double().numpy()
        np.testing.assert_allclose(rows["energy_in_box"].to_numpy(), expected, rtol=1e-4, atol=1e-7)


def test_mode_differences_by_hand():
    scores = {"base": [0.2, 0.6, 0.5], "var": [0.5, 0.4, 0.5]}
    rows = pd.DataFrame(
        [
            {"image": 1, "object": obj, "method": "m", "mode": mode, **dict.fromkeys(COCO_METRICS, value)}
            for mode, values in scores.items()
            for obj, value in zip((10, 11, 12), values)
        ]
    )
    energy = mode_differences(rows).set_index("metric").loc["energy_in_box"]
    assert energy["n"] == 3 and energy["mean_difference"] == pytest.approx((0.3 - 0.2 + 0.0) / 3)
    assert (energy["higher"], energy["lower"], energy["equal"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    with pytest.raises(ValueError, match="no object scored in both modes"):
        mode_differences(rows, mode="cgi")


def test_a_rerun_may_add_images(lite0, scenes, tmp_path):
    out = tmp_path / "coco.csv"
    first = evaluate_coco_objects(lite0, coco_object_images(lite0, scenes, n_images=1), {"gradcam": {}}, out=out)
    every = coco_object_images(lite0, scenes)
    more = evaluate_coco_objects(lite0, every, {"gradcam": {}}, out=out)
    assert first["image"].nunique() == 1 and more["image"].nunique() == len(every) > 1
    pd.testing.assert_frame_equal(more[more["image"].isin(first["image"])].reset_index(drop=True), first)


def test_a_model_without_imagenet_logits_is_refused(objects, plain_cnn):
    with pytest.raises(ValueError, match=r"1000 logits; it outputs shape \(\d+, 5\)"):
        evaluate_coco_objects(plain_cnn, objects, {"saliency": {}}, progress=False)
    plain_cnn.class_names = [str(index) for index in range(5)]  # known before any image is read
    with pytest.raises(ValueError, match="1000 logits; it has 5 classes"):
        evaluate_coco_objects(plain_cnn, objects, {"saliency": {}}, progress=False)


def test_run_rejects_bad_arguments(lite0, objects, scenes):
    with pytest.raises(TypeError, match="CocoObjectImages"):
        evaluate_coco_objects(lite0, scenes, {"gradcam": {}})
    with pytest.raises(ValueError, match="class_rule"):
        evaluate_coco_objects(lite0, objects, {"gradcam": {}}, class_rule="best")


# ---------------------------------------------------------------- command line
def test_cli_coco_writes_rows_and_prints_a_summary(scenes, tmp_path, capsys):
    out = tmp_path / "coco.csv"
    argv = ["coco", "--root", str(scenes), "--methods", "gradcam", "--n-images", "2", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    table = read_results(out, COCO_SCHEMA)
    assert table["image"].nunique() == 2 and set(table["mode"]) == {"base", "var"}
    printed = capsys.readouterr().out
    assert "energy_in_box" in printed and "±" in printed and str(out) in printed


@pytest.mark.parametrize(
    "argv, match",
    [
        (["coco"], "give --root DIR"),
        (["coco", "--annotations", "a.json"], "give --root DIR"),
        (["coco", "--root", "/nonexistent/coco"], "instances_val2017.json"),
        (["coco", "--root", "ROOT", "--min-area", "2"], "min_area"),
        (["coco", "--root", "ROOT", "--class-rule", "best"], "invalid choice"),
        (["coco", "--root", "ROOT", "--model", "fashion_mnist_cnn"], "needs `.preprocess`"),
    ],
)
def test_cli_coco_rejects_bad_arguments(argv, match, scenes, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        main(
            [str(scenes) if part == "ROOT" else part for part in argv]
            + ["--no-progress", "--out", str(tmp_path / "o.csv")]
        )
    assert error.value.code == 2
    assert match in capsys.readouterr().err


def test_torchrun_two_processes_give_the_single_process_table(lite0, scenes, objects, tmp_path):
    out = tmp_path / "coco.csv"
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2"]
    arguments = ["-m", "var_utils", "coco", "--root", str(scenes), "--methods", "gradcam,saliency", "--batch-size", "2"]
    done = subprocess.run(
        [*command, *arguments, "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not out.with_name(f"{out.name}.shards").exists()  # merged, shards deleted
    key = ["image", "method", "mode", "object"]
    distributed = read_results(out, COCO_SCHEMA).sort_values(key, ignore_index=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the processes under test
    try:
        reference = evaluate_coco_objects(lite0, objects, {"gradcam": {}, "saliency": {}}, batch_size=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    pd.testing.assert_frame_equal(
        distributed, reference.sort_values(key, ignore_index=True), check_exact=False, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("method", ["input_x_gradient", "softmax_gradient"])
def test_class_sets_attributed_by_size_are_each_sets_maps(plain_cnn, method):
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    sets = [[0, 1], [2, 3, 4], [1], [4, 0, 2]]
    classes, n_classes = pad_class_sets(sets)
    base, kept = attribute_class_sets(plain_cnn, get_method(method), images, classes, n_classes, group_by_size=True)
    compares = method == "softmax_gradient"
    assert kept.tolist() == ([0, 1, 3] if compares else [0, 1, 2, 3])  # one class: nothing to compare with
    for row, unit in enumerate(kept.tolist()):
        width = max(len(sets[unit]), 2)  # a single class is attributed beside a filler, as in a padded batch
        reference = var_utils.attribute_classes(
            plain_cnn, images[unit : unit + 1], classes[unit : unit + 1, :width], method
        )
        torch.testing.assert_close(base[row, :width], reference[0])
        assert (base[row, width:] == 0).all()


def test_the_source_is_named_by_the_annotations_not_their_place(lite0, scenes, tmp_path):
    moved = Path(shutil.copytree(scenes, tmp_path / "elsewhere"))
    assert coco_object_images(lite0, moved).description == coco_object_images(lite0, scenes).description
    annotations = moved / "annotations" / "instances_val2017.json"
    content = json.loads(annotations.read_text())
    content["annotations"][0]["area"] += 1.0
    annotations.write_text(json.dumps(content))
    assert coco_object_images(lite0, moved).description != coco_object_images(lite0, scenes).description


def test_object_maps_of_an_image_left_with_one_class(lite0, scenes):
    # A custom table on which cat and person share their only class: the image keeps one class.
    first = read_coco(scenes / "annotations" / "instances_val2017.json", scenes / "val2017").images[0]
    half = first.width / 2
    found = (
        CocoObject(1, CAT, (0.0, 0.0, half, first.height), half * first.height),
        CocoObject(2, PERSON, (half, 0.0, half, first.height), half * first.height),
    )
    image = CocoImage(first.image_id, first.file, first.width, first.height, found)
    table = {CAT: (281,), PERSON: (281,)}
    custom = CocoObjectImages(CocoData((image,), {}), 224, lite0.preprocess.normalize, classes_of=table)
    _, targets, maps = object_maps(lite0, custom, 0, "gradcam")
    assert targets.classes == (281,) and len(targets.objects) == 1 and maps["base"].shape[0] == 1
    torch.testing.assert_close(maps["var"], maps["base"])
