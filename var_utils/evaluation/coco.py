"""Objects in natural images: base vs VAR maps scored against COCO boxes.

Each selected image (:mod:`var_utils.datasets.coco_objects`) holds objects of
at least two ImageNet-mapped categories. Its class set is chosen per category
from the model's output on the whole image (``class_rule``):

- ``"top"`` (default): each category contributes the model's most probable
  ImageNet class among that category's classes (not taken by another category
  of the image, see :func:`image_targets`); the classes compete and each
  object is scored with its category's class.
- ``"all"``: every ImageNet class of every category present competes (e.g. all
  118 dog breeds); each object is still scored with its category's class of
  the ``"top"`` rule. Related classes of one category then compete with each
  other too, which is the harder and slower setting.

Per object and kind of map (``mode``: base, VAR, ...), the scores of
:func:`var_utils.evaluation.metrics.box_localisation_table` against the
object's box: ``energy_in_box`` (share of the map's positive attribution inside
the box), ``pointing`` (the map's maximum inside the box), and precision,
recall, F1 and IoU of the binarised map. Objects of one category share their
class's map. The run is the grid pointing game's
(:func:`var_utils.evaluation.gpg.runner.run_evaluation`): batched, stored,
resumable, locked, and shardable with ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._model_state import predict_logits
from .._validation import check_choice, check_model
from ..datasets.coco_objects import CocoObjectImages, CocoObjectSample, ObjectTarget, collate_objects
from ..engine import MAP_MODES, base_and_var_maps
from ..methods import AttributionMethod
from .gpg.runner import build_methods, run_evaluation, summarize_scores
from .gpg.scoring import ResultSchema, attribute_class_sets, check_result_table, pad_class_sets
from .metrics import box_localisation_table, check_metric_settings

COCO_METRICS = ("energy_in_box", "precision", "recall", "f1", "iou", "pointing")
_ID_COLUMNS = ("image", "object", "category", "label", "n_objects", "n_classes")
COCO_COLUMNS = (*_ID_COLUMNS, "method", "mode", *COCO_METRICS)
#: One row per image × object × method × mode; an image's group holds modes × ``n_objects`` rows.
COCO_SCHEMA = ResultSchema("COCO objects", "image", "object", COCO_COLUMNS, _ID_COLUMNS, COCO_METRICS, "n_objects")
#: How an image's class set is chosen (see the module docstring).
CLASS_RULES = ("top", "all")
_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ImageTargets:
    """An image's objects with the class each is scored with, and the image's class set.

    Attributes
    ----------
    objects : tuple of ObjectTarget
        The objects scored: the selected ones, less those of a category left
        without a class (see :func:`image_targets`).
    labels : tuple of int
        The ImageNet class of each object (its category's most probable class
        not taken by another category).
    classes : tuple of int
        The competing classes, the objects' labels first.
    """

    objects: tuple[ObjectTarget, ...]
    labels: tuple[int, ...]
    classes: tuple[int, ...]


@dataclass(frozen=True)
class ImageBaseMaps:
    """The base maps of one method for a batch of images.

    Attributes
    ----------
    method : str
        The method's name in the run.
    image_ids : list of int
        COCO id of each image.
    targets : list of ImageTargets
        Each image's objects and classes.
    base : torch.Tensor
        (N, K, C', H, W) maps of each image's class set (then fillers).
    n_classes : torch.Tensor
        (N,) size of each class set.
    """

    method: str
    image_ids: list[int]
    targets: list[ImageTargets]
    base: torch.Tensor
    n_classes: torch.Tensor


def image_targets(
    logits: torch.Tensor,
    objects: Sequence[ObjectTarget],
    classes_of: Mapping[int, Sequence[int]],
    class_rule: str = "top",
) -> ImageTargets:
    """An image's class set and each object's class, from the model's logits on the image.

    Parameters
    ----------
    logits : torch.Tensor
        (1000,) ImageNet logits of the image.
    objects : sequence of ObjectTarget
        Its selected objects (every category mapped).
    classes_of : mapping of int to sequence of int
        COCO category id -> ImageNet classes.
    class_rule : {"top", "all"}, default "top"
        ``"top"``: one class per category; ``"all"``: every class of every category.

    Returns
    -------
    ImageTargets
        Each object's label is its category's most probable class not taken
        by another category of the image: a class may belong to two categories
        (656 minivan: car and truck), and two categories on one class could
        not compete. Categories with fewer classes choose first (ties: in
        order of appearance), and an earlier category yields its class when it
        can move to another free one, so a category is left without a class
        only when no assignment could give every category its own (possible
        only with a custom table); its objects are then left out. The class
        set lists the labels in order of first appearance, then (``"all"``)
        the other classes of the categories that have a label, ascending.

    Examples
    --------
    >>> logits = torch.zeros(1000)
    >>> logits[282], logits[670] = 3.0, 1.0
    >>> cat = ObjectTarget(1, 17, (0.0, 0.0, 5.0, 5.0))
    >>> bike = ObjectTarget(2, 4, (5.0, 5.0, 9.0, 9.0))
    >>> image_targets(logits, [cat, bike], {17: (281, 282), 4: (665, 670)}).classes
    (282, 670)
    >>> image_targets(logits, [cat, bike], {17: (281, 282), 4: (665, 670)}, "all").classes
    (282, 670, 281, 665)
    >>> image_targets(logits, [cat, bike], {17: (281, 282), 4: (282,)}).labels  # 282 is the bike's only class
    (281, 282)
    """
    check_choice(class_rule, "class_rule", CLASS_RULES)
    categories = list(dict.fromkeys(obj.category_id for obj in objects))
    best = _distinct_classes(categories, classes_of, logits)
    scored = tuple(obj for obj in objects if obj.category_id in best)
    labels = tuple(best[obj.category_id] for obj in scored)
    classes = list(dict.fromkeys(labels))
    if class_rule == "all":
        mapped = sorted({c for category in best for c in classes_of[category]})
        classes += [c for c in mapped if c not in classes]
    return ImageTargets(scored, labels, tuple(classes))


def _distinct_classes(
    categories: Sequence[int], classes_of: Mapping[int, Sequence[int]], logits: torch.Tensor
) -> dict[int, int]:
    """Category -> ImageNet class, no class given twice, as many categories served as possible.

    Categories choose in order of their number of classes (fewest first, then
    in order of appearance), each its most probable free class. A category
    whose classes are all taken may take one from an earlier category that can
    move to another free class (an augmenting path, as in Kuhn's matching), so
    a category is left without a class only when no assignment could serve it.
    """
    preferences = {category: sorted(classes_of[category], key=lambda c: -float(logits[c])) for category in categories}
    owner: dict[int, int] = {}

    def claim(category: int, visited: set[int]) -> bool:
        free = [c for c in preferences[category] if c not in owner]
        if free:
            owner[free[0]] = category
            return True
        for candidate in preferences[category]:
            if candidate not in visited:
                visited.add(candidate)
                if claim(owner[candidate], visited):
                    owner[candidate] = category
                    return True
        return False

    for category in sorted(categories, key=lambda c: len(classes_of[c])):
        claim(category, set())
    return {category: c for c, category in owner.items()}


@dataclass(frozen=True)
class CocoScorer:
    """Computes the base maps of a batch of COCO images and scores maps object by object.

    Attributes
    ----------
    model : nn.Module
        An ImageNet-1k classifier.
    metric_settings : dict
        Binarisation settings of :func:`var_utils.evaluation.metrics.box_localisation_table`.
    class_rule : str
        One of :data:`CLASS_RULES`.
    classes_of : dict of int to tuple of int
        COCO category id -> ImageNet classes.
    """

    model: nn.Module
    metric_settings: dict
    class_rule: str
    classes_of: dict[int, tuple[int, ...]]

    schema: ClassVar[ResultSchema] = COCO_SCHEMA
    collate = staticmethod(collate_objects)

    def prepare(self, images: torch.Tensor, objects: list[tuple[ObjectTarget, ...]]) -> list[ImageTargets]:
        """Each image's class set from one forward pass over the batch.

        Raises
        ------
        ValueError
            The model does not output the 1000 ImageNet logits.
        """
        with torch.no_grad():
            logits = predict_logits(self.model, images)
        if logits.dim() != 2 or logits.shape[1] != _IMAGENET_CLASSES:
            raise ValueError(
                "COCO categories are mapped to ImageNet-1k classes, so `model` must output 1000 logits; "
                f"it outputs shape {tuple(logits.shape)}."
            )
        return [image_targets(row, found, self.classes_of, self.class_rule) for row, found in zip(logits, objects)]

    def rows_per_group(self, n_modes: int) -> int:
        """Rows of one (image, method) per object: one per mode."""
        return n_modes

    def recorded_settings(self) -> dict:
        """The scoring settings recorded with results: the binarisation and the class rule."""
        return {"metric_settings": self.metric_settings, "class_rule": self.class_rule}

    def base_maps(
        self,
        name: str,
        method: AttributionMethod,
        image_ids: list[int],
        images: torch.Tensor,
        targets: list[ImageTargets],
    ) -> ImageBaseMaps | None:
        """Base maps of each image's class set (see :func:`~var_utils.evaluation.gpg.scoring.attribute_class_sets`).

        Parameters
        ----------
        name : str
            The method's name in the run.
        method : AttributionMethod
            The base method.
        image_ids : list of int
            COCO id of each image.
        images : torch.Tensor
            (N, 3, S, S) images.
        targets : list of ImageTargets
            Their objects and class sets.

        Returns
        -------
        ImageBaseMaps or None
            None when no image can be attributed with ``method``.
        """
        classes, n_classes = pad_class_sets([target.classes for target in targets])
        # With every mapped class, set sizes range from 2 to over 100 (dog breeds): no fillers then.
        attributed = attribute_class_sets(
            self.model, method, images, classes, n_classes, group_by_size=self.class_rule == "all"
        )
        if attributed is None:
            return None
        base, kept = attributed
        kept = kept.tolist()
        return ImageBaseMaps(name, [image_ids[k] for k in kept], [targets[k] for k in kept], base, n_classes[kept])

    def rows(self, batch: ImageBaseMaps, mode: str, maps: torch.Tensor) -> pd.DataFrame:
        """Scores of one kind of maps, one row per image × object.

        Parameters
        ----------
        batch : ImageBaseMaps
            The batch the maps belong to.
        mode : str
            A mode of :data:`var_utils.engine.MODES`, written to the ``mode`` column.
        maps : torch.Tensor
            Maps shaped like ``batch.base``.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`COCO_COLUMNS`.
        """
        images = [i for i, target in enumerate(batch.targets) for _ in target.objects]
        columns = [target.classes.index(label) for target in batch.targets for label in target.labels]
        objects = [obj for target in batch.targets for obj in target.objects]
        scores = box_localisation_table(
            maps[torch.tensor(images), torch.tensor(columns)], [obj.box for obj in objects], **self.metric_settings
        )
        table = pd.DataFrame(
            {
                "image": [batch.image_ids[i] for i in images],
                "object": [obj.annotation_id for obj in objects],
                "category": [obj.category_id for obj in objects],
                "label": [label for target in batch.targets for label in target.labels],
                "n_objects": [len(batch.targets[i].objects) for i in images],
                "n_classes": np.asarray(batch.n_classes)[images],
                "method": batch.method,
                "mode": mode,
                "energy_in_box": scores["region_attribution"].double().cpu().numpy(),
                **{metric: scores[metric].double().cpu().numpy() for metric in COCO_METRICS[1:]},
            }
        )
        return COCO_SCHEMA.typed(table)


def evaluate_coco_objects(
    model: nn.Module,
    objects: CocoObjectImages,
    methods: Mapping[str, Mapping | None],
    *,
    modes: Sequence[str] = MAP_MODES,
    class_rule: str = "top",
    refine_settings: Mapping | None = None,
    metric_settings: Mapping | None = None,
    batch_size: int = 8,
    out: str | Path | None = None,
    progress: bool = True,
    workers: int = 0,
) -> pd.DataFrame:
    """Score base and VAR maps against the boxes of the objects in COCO images.

    Parameters
    ----------
    model : nn.Module
        An ImageNet-1k classifier (1000 logits); images are moved to its device.
    objects : CocoObjectImages
        The selected images (:func:`var_utils.datasets.coco_objects.coco_object_images`).
    methods : dict of str to dict
        Method name -> its settings, as in :func:`var_utils.evaluate_grid_pointing_game`.
    modes : sequence of str, default ("base", "var")
        Which maps to score, from :data:`var_utils.engine.MODES`.
    class_rule : {"top", "all"}, default "top"
        How each image's class set is chosen (module docstring).
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    metric_settings : dict, optional
        ``binarization``, ``top_fraction``, ``max_fraction`` of the binarised scores.
    batch_size : int, default 8
        Images per attribution call.
    out : str or Path, optional
        CSV appended to as the run goes and read back to resume, with its
        settings beside it and a lock while written (:mod:`var_utils.evaluation.gpg.store`).
        Required in a process group (``torchrun``).
    progress : bool, default True
        Show a tqdm progress bar.
    workers : int, default 0
        DataLoader worker processes that decode and resize images.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COCO_COLUMNS`: one row per image × object × method ×
        mode, sorted by image id, method (in ``methods`` order), mode and
        annotation id. ``label`` is the ImageNet class the object is scored
        with, ``n_classes`` the size of the image's class set.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, a model without 1000 logits, or ``out`` holding results of other settings.
    var_utils._lock.OutputLockedError
        Another process is writing ``out``.

    Examples
    --------
    >>> import tempfile, var_utils
    >>> from var_utils.datasets.coco_objects import coco_object_images
    >>> from var_utils.datasets.coco_scenes import make_coco_scenes
    >>> model = var_utils.load_model("efficientnet_lite0")
    >>> root = make_coco_scenes(tempfile.mkdtemp(), n_scenes=2, seed=1)
    >>> table = evaluate_coco_objects(model, coco_object_images(model, root), {"gradcam": {}}, progress=False)
    >>> sorted(table["mode"].unique())
    ['base', 'var']
    """
    check_model(model)
    if not isinstance(objects, CocoObjectImages):
        raise TypeError(
            "`objects` must be a CocoObjectImages (var_utils.datasets.coco_objects.coco_object_images), "
            f"got {type(objects).__name__}."
        )
    names = getattr(model, "class_names", None)
    if names is not None and len(names) != _IMAGENET_CLASSES:
        raise ValueError(
            "COCO categories are mapped to ImageNet-1k classes, so `model` must output 1000 logits; "
            f"it has {len(names)} classes."
        )
    check_choice(class_rule, "class_rule", CLASS_RULES)
    scorer = CocoScorer(model, check_metric_settings(metric_settings), class_rule, objects.classes_of)
    return run_evaluation(
        scorer,
        objects,
        build_methods(methods),
        modes=modes,
        refine_settings=refine_settings,
        batch_size=batch_size,
        out=out,
        progress=progress,
        workers=workers,
        description="COCO objects",
    )


def summarize_objects(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error of every score per method and mode, over objects.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`evaluate_coco_objects`.

    Returns
    -------
    pandas.DataFrame
        One row per (method, mode) in order of appearance; ``n`` (objects) and
        ``<metric>_mean``, ``<metric>_se`` for every metric of :data:`COCO_METRICS`.

    Raises
    ------
    TypeError, ValueError
        ``table`` is not a DataFrame, lacks a column, or is empty.
    """
    return summarize_scores(table, COCO_METRICS, "evaluate_coco_objects")


def object_maps(
    model: nn.Module,
    objects: CocoObjectImages,
    index: int,
    method: str | AttributionMethod,
    *,
    class_rule: str = "top",
    modes: Sequence[str] = MAP_MODES,
    refine_settings: Mapping | None = None,
) -> tuple[CocoObjectSample, ImageTargets, dict[str, torch.Tensor]]:
    """One selected image's objects, class set and maps, as a run scores them (for figures and inspection).

    Parameters
    ----------
    model : nn.Module
        An ImageNet-1k classifier.
    objects : CocoObjectImages
        The selected images.
    index : int
        Position of the image in ``objects``.
    method : str or AttributionMethod
        The base method (a name of :data:`var_utils.METHODS` or a built method).
    class_rule : {"top", "all"}, default "top"
        How the class set is chosen.
    modes : sequence of str, default ("base", "var")
        Which maps to return.
    refine_settings : dict, optional
        Settings of :func:`var_utils.refine_all`.

    Returns
    -------
    sample : CocoObjectSample
        The model-ready image and its selected objects (boxes in its pixels).
    targets : ImageTargets
        The objects scored, each object's class and the class set.
    maps : dict of str to torch.Tensor
        ``{mode: (K, C', H, W) maps}`` of the class set, in ``targets.classes`` order.
    """
    check_choice(class_rule, "class_rule", CLASS_RULES)
    sample = objects[index]
    with torch.no_grad():
        logits = predict_logits(model, sample.image[None])[0]
    targets = image_targets(logits, sample.objects, objects.classes_of, class_rule)
    # A set of one class (possible only with a custom table) is scored as the run scores it: VAR equals base.
    padded, n_classes = pad_class_sets([targets.classes])
    maps = base_and_var_maps(
        model, sample.image[None], padded, method, refine_settings, modes=modes, n_classes=n_classes
    )
    return sample, targets, {mode: value[0, : len(targets.classes)] for mode, value in maps.items()}


def mode_differences(table: pd.DataFrame, mode: str = "var", reference: str = "base") -> pd.DataFrame:
    """Object by object, how ``mode``'s scores differ from ``reference``'s of the same method.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`evaluate_coco_objects` holding both modes.
    mode, reference : str
        The compared modes (default VAR against the base maps).

    Returns
    -------
    pandas.DataFrame
        One row per method and metric of :data:`COCO_METRICS`: ``n`` objects,
        the ``mean_difference`` (mode − reference), and the shares of objects
        where ``mode`` scores ``higher``, ``lower`` or ``equal``.

    Raises
    ------
    ValueError
        ``table`` lacks a column or holds no object scored in both modes.

    Examples
    --------
    >>> rows = pd.DataFrame({"image": [1, 1], "object": [3, 3], "method": "m", "mode": ["base", "var"],
    ...                      **{metric: [0.25, 0.75] for metric in COCO_METRICS}})
    >>> mode_differences(rows)[["metric", "n", "mean_difference", "higher"]].head(2)
              metric  n  mean_difference  higher
    0  energy_in_box  1              0.5     1.0
    1      precision  1              0.5     1.0
    """
    check_result_table(table, ["image", "object", "method", "mode", *COCO_METRICS], "evaluate_coco_objects", "compare")
    key = ["method", "image", "object"]
    paired = table[table["mode"] == mode].merge(table[table["mode"] == reference], on=key, suffixes=("", "_reference"))
    if paired.empty:
        raise ValueError(f"`table` holds no object scored in both modes {mode!r} and {reference!r}.")
    rows = []
    for method, group in paired.groupby("method", sort=False):
        for metric in COCO_METRICS:
            difference = group[metric] - group[f"{metric}_reference"]
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "n": len(difference),
                    "mean_difference": difference.mean(),
                    "higher": (difference > 0).mean(),
                    "lower": (difference < 0).mean(),
                    "equal": (difference == 0).mean(),
                }
            )
    return pd.DataFrame(rows)
