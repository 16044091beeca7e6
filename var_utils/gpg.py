"""The grid pointing game: how well base and VAR maps put each class on its own cell.

A grid shows ``rows × cols`` images ("cells", row-major: top-left, top-right,
bottom-left, bottom-right for 2×2). Its class set is the labels of its cells,
and the map of each label is scored on that label's cell (method.md §4) with
:func:`var_utils.metrics.localisation_table`. The result is a tidy table: one
row per grid × cell × method × mode ("base" or "var").

Grid sources: :func:`fashion_mnist_grids` (2,500 grids of the 10,000 test
images), :func:`photo_grids` (Quad-Photos: the offline photos) and
:func:`imagenet_grids` (Quad-ImageNet).

Repeated labels
---------------
Under the ``"paper"`` protocol a grid may show one class in several cells. The
base maps are computed once per *distinct* label, and every cell is scored
with its label's map (two cells of one class share a map, each scored on its
own cell, so neither can reach a region attribution much above 1/2). VAR lets
the distinct classes compete: K is the number of distinct labels (column
``n_classes``), and the threshold ``M − 1/K > τ`` uses that K. Passing the
four labels verbatim would let a class compete against its own copy, halving
its share everywhere so that it fails the threshold for larger τ.

A grid with a single distinct class has no competitor and VAR is undefined
(read literally, ``M = 1 = 1/K`` fails the threshold and the map vanishes).
Its VAR rows repeat its base scores, so base and VAR are always compared on
the same rows; select ``n_classes > 1`` to leave such grids out.

Sensitivity to the refine settings
----------------------------------
:func:`refine_sensitivity` plays the game under several refine settings at the
cost of one run: the base maps of a batch are computed once per method, then
refined and scored under every setting. :func:`summarize_sensitivity`
averages its rows per setting and method.

Resuming
--------
With ``out``, every finished (batch, method) is appended to the CSV by writing
a temporary copy and renaming it over the file, so a killed run never leaves a
half-written CSV. Running again with the same ``out`` skips the (grid, method)
pairs the CSV already holds. A settings file next to it (``<out>.settings.json``)
records modes, VAR and metric settings and each method's settings; a run with
other settings refuses to resume. The grid source and the model are not
recorded: one ``out`` belongs to one model and one list of grids.
"""
from __future__ import annotations

import inspect
import itertools
import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_choice, check_positive_int
from .demo import top_class
from .engine import attribute_classes
from ._io import atomic_output_path
from .fashion_mnist import load_fashion_mnist
from .grids import (
    GRID_PROTOCOLS,
    GridDataset,
    all_distinct_combinations,
    collate_grids,
    grid_indices,
    imagenet_val_files,
    load_cell_image,
)
from .images import PHOTOS, center_square, load_image, load_photo, unit_tensor
from .methods import AttributionMethod, attribution_mode, get_method
from .metrics import localisation_table
from .refine import refine_all

GPG_MODES = ("base", "var")
GPG_METRICS = ("region_attribution", "precision", "recall", "f1", "iou", "pointing")
GPG_COLUMNS = ("grid", "cell", "label", "n_classes", "method", "mode", *GPG_METRICS)
GRID_SOURCES = ("fashion_mnist", "photos", "imagenet")
DEFAULT_MODELS = {
    "fashion_mnist": "fashion_mnist_cnn",
    "photos": "efficientnet_lite0",
    "imagenet": "efficientnet_lite0",
}
#: Every offline photo but ``astronaut``, which shows no clear ImageNet class.
QUAD_PHOTOS = tuple(name for name in PHOTOS if name != "astronaut")

_INTEGER_COLUMNS = ("grid", "cell", "label", "n_classes")
_SOURCE_GRID = (2, 2)


# --------------------------------------------------------------------------- grid sources


def _check_n_grids(n_grids: int | None) -> int | None:
    return None if n_grids is None else check_positive_int(n_grids, "n_grids")


def _check_loaded_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    if getattr(model, "preprocess", None) is None or not isinstance(getattr(model, "input_size", None), int):
        raise TypeError(
            "`model` needs `.preprocess` (with `.normalize`) and `.input_size` attributes, as the models of "
            "var_utils.load_model have."
        )
    return model


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


@torch.no_grad()
def _top1(model: nn.Module, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """The model's top-1 class of every image of ``batches``, shape (N,), on the CPU."""
    device = _model_device(model)
    with attribution_mode(model):
        return torch.cat([model(batch.to(device)).argmax(dim=1).cpu() for batch in batches])


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
        See :func:`var_utils.grids.grid_indices`. ``"strict"`` keeps correctly
        classified images of four distinct classes and needs ``model``.
    seed : int
        Seed of the shuffle; the paper uses 42.
    model : nn.Module, optional
        Classifier of normalised 28×28 images whose top-1 on every single
        test image decides "correct" (``"strict"`` only; unused by ``"paper"``).
    root : str or Path, optional
        Data folder of :func:`var_utils.fashion_mnist.load_fashion_mnist`.

    Returns
    -------
    GridDataset
        Grids of normalised images, shape (1, 56, 56) each.

    Examples
    --------
    >>> grids = fashion_mnist_grids(n_grids=3)
    >>> len(grids), tuple(grids[0].image.shape)
    (3, (1, 56, 56))
    """
    n_grids = _check_n_grids(n_grids)
    check_choice(protocol, "protocol", GRID_PROTOCOLS)
    if protocol == "strict" and not isinstance(model, nn.Module):
        raise ValueError("protocol='strict' needs `model`: the classifier whose correct predictions are kept.")
    images, labels = load_fashion_mnist(root)
    correct = (_top1(model, images.split(1000)) == labels).numpy() if protocol == "strict" else None
    groups = grid_indices(labels, grid=_SOURCE_GRID, protocol=protocol, seed=seed, correct=correct, max_grids=n_grids)
    return GridDataset(images, labels, groups, _SOURCE_GRID)


def photo_grids(model: nn.Module, photos: Sequence[str] = QUAD_PHOTOS, n_grids: int | None = None) -> GridDataset:
    """Quad-Photos: every 2×2 grid of offline photos with four distinct predicted classes.

    Each photo is labelled by the model's top-1 class on the photo alone (there
    is no ground truth), then cropped to its centred square and resized to half
    the model's input size, so a grid has the model's input size (224 for
    EfficientNet-Lite0). Grids are :func:`~var_utils.grids.all_distinct_combinations`
    of the photos, in lexicographic order; they have distinct, "correct" labels by
    construction, so the ``"paper"`` and ``"strict"`` protocols coincide here.

    Parameters
    ----------
    model : nn.Module
        A model of :func:`var_utils.load_model` (needs ``.preprocess`` and ``.input_size``).
    photos : sequence of str
        Names from :data:`var_utils.images.PHOTOS`; default all but ``astronaut``.
    n_grids : int, optional
        Keep the first ``n_grids`` grids.

    Returns
    -------
    GridDataset
        Normalised grids of shape (3, input_size, input_size); ``labels`` holds the photos' labels.

    Examples
    --------
    >>> from var_utils import load_model
    >>> grids = photo_grids(load_model("efficientnet_lite0"))  # doctest: +SKIP
    >>> len(grids)  # eight photos of distinct classes  # doctest: +SKIP
    70
    """
    model = _check_loaded_model(model)
    n_grids = _check_n_grids(n_grids)
    images = [load_photo(name) for name in photos]
    labels = [top_class(model, image) for image in images]
    cell_size = model.input_size // _SOURCE_GRID[0]
    cells = torch.stack([unit_tensor(center_square(image, cell_size)) for image in images])
    groups = all_distinct_combinations(labels, _SOURCE_GRID[0] * _SOURCE_GRID[1], max_grids=n_grids)
    return GridDataset(model.preprocess.normalize(cells), labels, groups, _SOURCE_GRID)


def _imagenet_cell(files: Sequence[Path], cell_size: int, normalise: Callable, index: int) -> torch.Tensor:
    return load_cell_image(files[index], cell_size, normalise)


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
        The validation set, see :func:`var_utils.grids.imagenet_val_files`.
    model : nn.Module
        A model of :func:`var_utils.load_model` (needs ``.preprocess`` and ``.input_size``).
    n_grids : int, optional
        Keep the first ``n_grids`` grids; all by default (12,500 for ``"paper"``).
    protocol : {"paper", "strict"}
        See :func:`var_utils.grids.grid_indices`.
    seed : int
        Seed of the shuffle; the paper uses 42.
    layout, synset_mapping
        As in :func:`var_utils.grids.imagenet_val_files`.
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
    model = _check_loaded_model(model)
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
    groups = grid_indices(labels, grid=_SOURCE_GRID, protocol=protocol, seed=seed, correct=correct, max_grids=n_grids)
    cells = partial(_imagenet_cell, files, model.input_size // _SOURCE_GRID[0], model.preprocess.normalize)
    return GridDataset(cells, labels, groups, _SOURCE_GRID)


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
    """
    check_choice(source, "source", GRID_SOURCES)
    if source == "fashion_mnist":
        return fashion_mnist_grids(n_grids, protocol, seed, model=model, root=root)
    if source == "photos":
        return photo_grids(model, n_grids=n_grids)
    if root is None:
        raise ValueError("source='imagenet' needs `root`: the folder of the ImageNet validation set.")
    return imagenet_grids(root, model, n_grids, protocol, seed)


# --------------------------------------------------------------------------- class sets of grids


def grid_class_sets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distinct class sets of a batch of grids, padded to one width for the engine.

    Parameters
    ----------
    labels : torch.Tensor
        Cell labels, shape (N, n_cells), integer.

    Returns
    -------
    classes : torch.Tensor
        (N, K) distinct classes per grid: first its distinct labels in order of
        appearance, then filler classes (the smallest indices not among them).
        K is the largest number of distinct labels in the batch, at least 2.
        Fillers only pad the rows; their maps are never used.
    positions : torch.Tensor
        (N, n_cells): column of ``classes`` that holds each cell's label.
    n_classes : torch.Tensor
        (N,): number of distinct labels per grid.

    Examples
    --------
    >>> classes, positions, n_classes = grid_class_sets(torch.tensor([[3, 3, 5, 7], [1, 1, 1, 1]]))
    >>> classes
    tensor([[3, 5, 7],
            [1, 0, 2]])
    >>> positions
    tensor([[0, 0, 1, 2],
            [0, 0, 0, 0]])
    >>> n_classes
    tensor([3, 1])
    """
    rows = labels.tolist()
    distinct = [list(dict.fromkeys(row)) for row in rows]
    width = max([2, *(len(row) for row in distinct)])
    padded = [
        row + list(itertools.islice((c for c in itertools.count() if c not in row), width - len(row)))
        for row in distinct
    ]
    positions = [[row.index(label) for label in cells] for cells, row in zip(rows, distinct)]
    return (
        torch.tensor(padded, dtype=torch.long),
        torch.tensor(positions, dtype=torch.long),
        torch.tensor([len(row) for row in distinct], dtype=torch.long),
    )


def _var_maps(base: torch.Tensor, n_classes: torch.Tensor, refine_settings: Mapping) -> torch.Tensor:
    """VAR over each grid's own distinct classes (the first ``n_classes`` columns of ``base``)."""
    refined = base.clone()  # single-class grids keep their base maps
    for count in set(n_classes.tolist()) - {1}:
        rows = (n_classes == count).to(base.device)
        refined[rows, :count] = refine_all(base[rows, :count], class_dim=1, **refine_settings)
    return refined


def _cell_maps(maps: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(N * n_cells, C', H, W): each cell's label's map, from (N, K, C', H, W) maps."""
    rows = torch.arange(maps.shape[0], device=maps.device)[:, None]
    return maps[rows, positions.to(maps.device)].flatten(0, 1)


# --------------------------------------------------------------------------- scoring


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """The table's columns in order, with one dtype per column whatever the table came from."""
    types = {
        **dict.fromkeys(_INTEGER_COLUMNS, "int64"),
        "method": str,
        "mode": str,
        **dict.fromkeys(GPG_METRICS, "float64"),
    }
    return table[list(GPG_COLUMNS)].astype(types)


@dataclass(frozen=True)
class _Scorer:
    model: nn.Module
    metric_settings: dict
    grid: tuple[int, int]

    def base_maps(
        self, method: AttributionMethod, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Base maps (N, K, C', H, W) of each grid's distinct labels, with the ``positions`` and
        ``n_classes`` of :func:`grid_class_sets`."""
        n_cells = self.grid[0] * self.grid[1]
        if labels.dim() != 2 or labels.shape[1] != n_cells:
            raise ValueError(
                f"grid labels must have shape (N, {n_cells}) for grid {self.grid}, got {tuple(labels.shape)}."
            )
        classes, positions, n_classes = grid_class_sets(labels)
        device = _model_device(self.model)
        return attribute_classes(self.model, images.to(device), classes.to(device), method), positions, n_classes

    def rows(
        self,
        name: str,
        mode: str,
        grid_ids: list[int],
        labels: torch.Tensor,
        maps: torch.Tensor,
        positions: torch.Tensor,
        n_classes: torch.Tensor,
    ) -> pd.DataFrame:
        """Scores of one kind of maps (base or VAR, (N, K, C', H, W)) of a batch, one row per cell."""
        n_cells = self.grid[0] * self.grid[1]
        cells = torch.arange(n_cells).repeat(len(grid_ids))
        scores = localisation_table(_cell_maps(maps, positions), cells, self.grid, **self.metric_settings)
        columns = {
            "grid": np.repeat(grid_ids, n_cells),
            "cell": cells.numpy(),
            "label": labels.flatten().numpy(),
            "n_classes": np.repeat(n_classes.numpy(), n_cells),
            "method": name,
            "mode": mode,
        }
        columns.update({metric: scores[metric].double().cpu().numpy() for metric in GPG_METRICS})
        return pd.DataFrame(columns)

    def score(
        self,
        name: str,
        method: AttributionMethod,
        grid_ids: list[int],
        images: torch.Tensor,
        labels: torch.Tensor,
        modes: Sequence[str],
        refine_settings: Mapping,
    ) -> pd.DataFrame:
        """Rows of one method for a batch of grids: base maps once, VAR from them."""
        base, positions, n_classes = self.base_maps(method, images, labels)
        frames = [
            self.rows(
                name,
                mode,
                grid_ids,
                labels,
                base if mode == "base" else _var_maps(base, n_classes, refine_settings),
                positions,
                n_classes,
            )
            for mode in modes
        ]
        return _typed(pd.concat(frames, ignore_index=True))


# --------------------------------------------------------------------------- results on disk


def read_gpg_table(path: str | Path) -> pd.DataFrame:
    """Read a grid pointing game CSV written by :func:`evaluate_grid_pointing_game`.

    Floats are parsed round-trip exact, so the table equals the one computed.

    Parameters
    ----------
    path : str or Path
        The CSV.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`GPG_COLUMNS`, in file order.
    """
    table = pd.read_csv(path, float_precision="round_trip")
    if tuple(table.columns) != GPG_COLUMNS:
        raise ValueError(
            f"{path} is not a grid pointing game table: expected columns {list(GPG_COLUMNS)}, "
            f"got {list(table.columns)}."
        )
    return _typed(table)


def _settings_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.settings.json")


def _claim_settings(path: Path, settings: dict) -> None:
    """Refuse to resume ``path`` under other settings; record the (merged) settings next to it."""
    settings = json.loads(json.dumps(settings))
    sidecar = _settings_path(path)
    if path.exists():
        if not sidecar.is_file():
            raise ValueError(
                f"`out` = {path} exists but its settings file {sidecar} does not, so resuming could mix "
                "settings; delete the CSV or pass another `out`."
            )
        previous = json.loads(sidecar.read_text(encoding="utf-8"))
        shared = ("modes", "refine_settings", "metric_settings")
        conflicts = [key for key in shared if previous.get(key) != settings[key]]
        previous_methods = previous.get("methods", {})
        conflicts += [
            f"methods[{name!r}]"
            for name, method in settings["methods"].items()
            if name in previous_methods and previous_methods[name] != method
        ]
        if conflicts:
            raise ValueError(
                f"`out` = {path} holds results computed with other {', '.join(conflicts)} (see {sidecar}); "
                "pass another `out`, or delete both files to start over."
            )
        settings["methods"] = {**previous_methods, **settings["methods"]}
    with atomic_output_path(sidecar) as temporary:
        temporary.write_text(json.dumps(settings, indent=2), encoding="utf-8")


def _append_csv(path: Path, rows: pd.DataFrame) -> None:
    """Append ``rows`` by writing a complete copy next to ``path`` and renaming it over it."""
    existed = path.exists()
    with atomic_output_path(path) as temporary:
        if existed:
            shutil.copyfile(path, temporary)
        rows.to_csv(temporary, mode="a", header=not existed, index=False)


class _Results:
    """Rows of a run: in memory, or in the CSV ``out`` (read back to resume)."""

    def __init__(self, out: str | Path | None, settings: dict) -> None:
        self.path = None if out is None else Path(out)
        self.frames: list[pd.DataFrame] = []
        if self.path is not None:
            _claim_settings(self.path, settings)

    def completed(self) -> set[tuple[int, str]]:
        if self.path is None or not self.path.exists():
            return set()
        table = read_gpg_table(self.path)
        return set(zip(table["grid"].tolist(), table["method"].tolist()))

    def add(self, rows: pd.DataFrame) -> None:
        if self.path is None:
            self.frames.append(rows)
        else:
            _append_csv(self.path, rows)

    def table(self) -> pd.DataFrame:
        if self.path is not None and self.path.exists():
            return read_gpg_table(self.path)
        return _typed(pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame(columns=GPG_COLUMNS))


# --------------------------------------------------------------------------- arguments


def _build_methods(methods: object) -> dict[str, AttributionMethod]:
    if not isinstance(methods, Mapping) or not methods:
        raise TypeError(
            "`methods` must be a non-empty dict of name -> settings, e.g. "
            "{'gradcam': {}, 'integrated_gradients': {'n_steps': 16}}; got "
            f"{methods!r}."
        )
    built = {}
    for name, settings in methods.items():
        if not isinstance(name, str) or (settings is not None and not isinstance(settings, Mapping)):
            raise TypeError(f"`methods` must map str names to dicts of settings, got {name!r}: {settings!r}.")
        # A "method" entry runs one method under several names,
        # e.g. {"ig128": {"method": "integrated_gradients", "n_steps": 128}}.
        settings = dict(settings or {})
        built[name] = get_method(settings.pop("method", name), **settings)
    return built


def _check_modes(modes: object) -> tuple[str, ...]:
    if isinstance(modes, str) or not isinstance(modes, Sequence) or not modes:
        raise TypeError(f"`modes` must be a non-empty sequence from {list(GPG_MODES)}, got {modes!r}.")
    for mode in modes:
        check_choice(mode, "modes", GPG_MODES)
    if len(set(modes)) != len(modes):
        raise ValueError(f"`modes` must not repeat a mode, got {list(modes)}.")
    return tuple(modes)


def _complete_settings(function: Callable, given: Mapping | None, name: str, exclude: Sequence[str]) -> dict:
    """``given`` on top of ``function``'s keyword-only defaults; unknown keys raise."""
    defaults = {
        parameter.name: parameter.default
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind is parameter.KEYWORD_ONLY and parameter.name not in exclude
    }
    if given is not None and not isinstance(given, Mapping):
        raise TypeError(f"`{name}` must be a dict or None, got {type(given).__name__}.")
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise ValueError(f"`{name}` has unknown key(s) {unknown}; expected some of {sorted(defaults)}.")
    return {**defaults, **(given or {})}


def _checked_refine_settings(given: Mapping | None, name: str) -> dict:
    """``given`` completed with :func:`refine_all`'s defaults; bad keys or values raise before any attribution runs."""
    settings = _complete_settings(refine_all, given, name, exclude=("class_dim",))
    refine_all(torch.zeros(2, 1), **settings)
    return settings


def _checked_metric_settings(given: Mapping | None) -> dict:
    """``given`` completed with :func:`localisation_table`'s defaults, checked on a dummy map."""
    settings = _complete_settings(localisation_table, given, "metric_settings", exclude=())
    localisation_table(torch.ones(1, 1, 1, 1), [0], (1, 1), **settings)
    return settings


def _check_grids(grids: object) -> None:
    if isinstance(grids, torch.utils.data.Dataset):
        if len(grids) == 0:
            raise ValueError("`grids` is empty: there is no grid to evaluate.")
    elif isinstance(grids, (str, bytes)) or not isinstance(grids, Iterable):
        raise TypeError(
            "`grids` must be a Dataset of GridSample or an iterable of (images, labels) batches, "
            f"got {type(grids).__name__}."
        )


def _batches(
    grids: object, batch_size: int, pending: Callable[[int], bool], run_ids: list[int]
) -> tuple[Iterator[tuple[list[int], torch.Tensor, torch.Tensor]], int | None]:
    """(grid ids, images, labels) batches and their number of grids (None if unknown).

    A dataset is indexed directly and only grids with work left are loaded;
    an iterable of (images, labels, ...) batches is read whole, its grids
    numbered in order. ``run_ids`` collects the ids of the run's grids.
    """
    if isinstance(grids, torch.utils.data.Dataset):
        run_ids.extend(range(len(grids)))
        todo = [index for index in run_ids if pending(index)]

        def from_dataset():
            for ids in _chunks(todo, batch_size):
                images, labels, _ = collate_grids([grids[index] for index in ids])
                yield list(ids), images, labels

        return from_dataset(), len(todo)

    def from_iterable():
        for batch in grids:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise TypeError(
                    "each batch of `grids` must be a tuple (images, labels, ...), as collate_grids returns."
                )
            images, labels = batch[0], torch.as_tensor(batch[1])
            ids = list(range(len(run_ids), len(run_ids) + len(images)))
            run_ids.extend(ids)
            yield ids, images, labels

    return from_iterable(), None


def _ordered(table: pd.DataFrame, method_names: Sequence[str], modes: Sequence[str]) -> pd.DataFrame:
    ranks = {"method": {n: i for i, n in enumerate(method_names)}, "mode": {m: i for i, m in enumerate(modes)}}

    def rank(column: pd.Series) -> pd.Series:
        return column.map(ranks[column.name]) if column.name in ranks else column

    return table.sort_values(["grid", "method", "mode", "cell"], key=rank, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- public API


def evaluate_grid_pointing_game(
    model: nn.Module,
    grids: torch.utils.data.Dataset | Iterable,
    methods: Mapping[str, Mapping | None],
    *,
    modes: Sequence[str] = GPG_MODES,
    refine_settings: Mapping | None = None,
    metric_settings: Mapping | None = None,
    batch_size: int = 16,
    out: str | Path | None = None,
    progress: bool = True,
    grid: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Play the grid pointing game: localisation of base and VAR maps, cell by cell.

    For every batch of grids and every method, the base maps of each grid's
    distinct labels come from one :func:`var_utils.attribute_classes` call; VAR
    (:func:`var_utils.refine_all`) reuses them. Each cell is scored with its
    label's map (see the module notes on repeated labels and single-class
    grids).

    Parameters
    ----------
    model : nn.Module
        The classifier; grids are moved to its device.
    grids : Dataset of GridSample or iterable of batches
        A :class:`~var_utils.grids.GridDataset` (grid ids are its indices;
        with ``out``, finished grids are not even loaded), or an iterable of
        ``(images (B, C, H, W), labels (B, n_cells), ...)`` batches such as a
        ``DataLoader`` with ``collate_fn=collate_grids`` (grid ids count up from 0).
    methods : dict of str to dict
        Method name -> its settings, e.g. ``{"gradcam": {}, "integrated_gradients":
        {"n_steps": 16}}``. A ``"method"`` entry runs a method under another
        name: ``{"ig128": {"method": "integrated_gradients", "n_steps": 128}}``.
    modes : sequence of {"base", "var"}
        Which maps to score.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    metric_settings : dict, optional
        ``binarization``, ``top_fraction``, ``max_fraction`` of
        :func:`var_utils.metrics.localisation_table`.
    batch_size : int
        Grids per attribution call (datasets only; batches of an iterable are used as they come).
    out : str or Path, optional
        CSV written as the run goes and read back to resume (module notes).
    progress : bool
        Show a tqdm progress bar.
    grid : tuple of int, optional
        ``(rows, cols)``; default ``grids.grid`` if present, else (2, 2).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`GPG_COLUMNS`: one row per grid × cell × method × mode of
        this run (rows read back from ``out`` included), sorted by grid, method
        (in ``methods`` order), mode and cell.

    Examples
    --------
    >>> from var_utils import load_model
    >>> grids = fashion_mnist_grids(n_grids=8)  # doctest: +SKIP
    >>> table = evaluate_grid_pointing_game(load_model("fashion_mnist_cnn"), grids, {"gradcam": {}})  # doctest: +SKIP
    >>> summarize(table)[["method", "mode", "region_attribution_mean"]]  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    attribution_methods = _build_methods(methods)
    modes = _check_modes(modes)
    refine_settings = _checked_refine_settings(refine_settings, "refine_settings")
    metric_settings = _checked_metric_settings(metric_settings)
    batch_size = check_positive_int(batch_size, "batch_size")
    _check_grids(grids)
    scorer = _Scorer(model, metric_settings, tuple(grid or getattr(grids, "grid", (2, 2))))
    settings = {
        "modes": list(modes),
        "refine_settings": refine_settings,
        "metric_settings": metric_settings,
        "methods": {name: repr(method) for name, method in attribution_methods.items()},
    }
    results = _Results(out, settings)
    done = results.completed()
    run_ids: list[int] = []
    batches, total = _batches(
        grids, batch_size, lambda index: any((index, name) not in done for name in attribution_methods), run_ids
    )
    with tqdm(total=total, unit="grid", desc="grid pointing game", disable=not progress) as bar:
        for ids, images, labels in batches:
            for name, method in attribution_methods.items():
                todo = [position for position, index in enumerate(ids) if (index, name) not in done]
                if todo:
                    grid_ids = [ids[p] for p in todo]
                    rows = scorer.score(name, method, grid_ids, images[todo], labels[todo], modes, refine_settings)
                    results.add(rows)
            bar.update(len(ids))
    table = results.table()
    selected = table["grid"].isin(run_ids) & table["method"].isin(list(attribution_methods)) & table["mode"].isin(modes)
    return _ordered(table[selected], list(attribution_methods), modes)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error of every metric per method and mode.

    The standard error is ``std(ddof=1) / sqrt(n)`` over the rows (cells) of a
    group; cells of one grid are not independent, so it is a rough guide.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`evaluate_grid_pointing_game`.

    Returns
    -------
    pandas.DataFrame
        One row per (method, mode) in order of appearance; columns ``method``,
        ``mode``, ``n`` and ``<metric>_mean``, ``<metric>_se`` for every metric
        of :data:`GPG_METRICS`.

    Examples
    --------
    >>> table = pd.DataFrame({"method": ["m"] * 2, "mode": ["base"] * 2, **{k: [0.0, 1.0] for k in GPG_METRICS}})
    >>> summarize(table)[["method", "mode", "n", "pointing_mean", "pointing_se"]]
      method  mode  n  pointing_mean  pointing_se
    0      m  base  2            0.5          0.5
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`table` must be a pandas DataFrame, got {type(table).__name__}.")
    missing = sorted({"method", "mode", *GPG_METRICS} - set(table.columns))
    if missing:
        raise ValueError(f"`table` lacks the column(s) {missing}; expected a table of evaluate_grid_pointing_game.")
    if table.empty:
        raise ValueError("`table` is empty: there is nothing to summarise.")
    grouped = table.groupby(["method", "mode"], sort=False)[list(GPG_METRICS)]
    means, errors = grouped.mean(), grouped.sem()
    summary = pd.DataFrame({"n": grouped.size()})
    for metric in GPG_METRICS:
        summary[f"{metric}_mean"] = means[metric]
        summary[f"{metric}_se"] = errors[metric]
    return summary.reset_index()


# --------------------------------------------------------------------------- sensitivity to the refine settings

#: Columns that name and describe a refine setting in a :func:`refine_sensitivity` table.
SENSITIVITY_SETTING_COLUMNS = ("setting", "tau", "temperature", "use_abs", "normalize")
SENSITIVITY_COLUMNS = (*SENSITIVITY_SETTING_COLUMNS, *GPG_COLUMNS)


def _setting_label(setting: Mapping) -> str:
    """Short unique name of a completed refine setting, e.g. ``"tau=0.01, t=0.1, abs, normalize=none"``."""
    sign = "abs" if setting["use_abs"] else "signed"
    return (
        f"tau={float(setting['tau'])!r}, t={float(setting['temperature'])!r}, {sign}, "
        f"normalize={setting['normalize'] or 'none'}"
    )


def _checked_setting_list(settings: object) -> list[dict]:
    """Every setting completed with :func:`refine_all`'s defaults and checked; no setting twice."""
    if isinstance(settings, (str, bytes, Mapping)) or not isinstance(settings, Sequence):
        raise TypeError(
            "`settings` must be a list of dicts of refine settings, e.g. [{'tau': 0.0}, {'normalize': 'joint'}]; "
            f"got {type(settings).__name__}."
        )
    if not settings:
        raise ValueError("`settings` is empty: give at least one dict of refine settings.")
    completed = [_checked_refine_settings(given, f"settings[{position}]") for position, given in enumerate(settings)]
    # Equal labels mean equal refinements (and would merge in summarize_sensitivity).
    labels = [_setting_label(setting) for setting in completed]
    for position, label in enumerate(labels):
        if label in labels[:position]:
            raise ValueError(f"`settings[{position}]` repeats `settings[{labels.index(label)}]` ({label}).")
    return completed


def _with_setting(rows: pd.DataFrame, label: str, setting: Mapping | None) -> pd.DataFrame:
    """``rows`` (GPG columns) with the setting columns in front; ``setting`` None marks base rows."""
    values = {key: None if setting is None else setting[key] for key in SENSITIVITY_SETTING_COLUMNS[1:]}
    front = pd.DataFrame({"setting": label, **values}, index=rows.index)
    front = front.astype({"tau": "float64", "temperature": "float64", "use_abs": object, "normalize": object})
    return pd.concat([front, _typed(rows)], axis=1)


def refine_sensitivity(
    model: nn.Module,
    grids: torch.utils.data.Dataset | Iterable,
    methods: Mapping[str, Mapping | None],
    settings: Sequence[Mapping],
    *,
    batch_size: int = 16,
    metric_settings: Mapping | None = None,
    progress: bool = True,
    grid: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """The grid pointing game of VAR under several refine settings, base maps computed once.

    For every batch of grids and every method the base maps come from one
    :func:`var_utils.attribute_classes` call, as in
    :func:`evaluate_grid_pointing_game`; each setting then refines and scores
    those same maps. The rows of one setting equal the ``"var"`` rows of
    :func:`evaluate_grid_pointing_game` run with ``refine_settings=setting``
    (and the ``"base"`` rows its base rows), at the cost of one run.

    Parameters
    ----------
    model : nn.Module
        The classifier; grids are moved to its device.
    grids : Dataset of GridSample or iterable of batches
        As in :func:`evaluate_grid_pointing_game`.
    methods : dict of str to dict
        Method name -> its settings, as in :func:`evaluate_grid_pointing_game`.
    settings : sequence of dict
        Refine settings to compare: each a dict of some of ``tau``,
        ``temperature``, ``use_abs`` and ``normalize`` of
        :func:`var_utils.refine_all`, the others at their defaults. No two may
        be equal once completed.
    batch_size : int
        Grids per attribution call (datasets only).
    metric_settings : dict, optional
        ``binarization``, ``top_fraction``, ``max_fraction`` of
        :func:`var_utils.metrics.localisation_table`.
    progress : bool
        Show a tqdm progress bar.
    grid : tuple of int, optional
        ``(rows, cols)``; default ``grids.grid`` if present, else (2, 2).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SENSITIVITY_COLUMNS`: the setting's label (``"base"``
        for base maps), its ``tau``, ``temperature``, ``use_abs`` and
        ``normalize`` (empty for base rows), then :data:`GPG_COLUMNS`. Per
        method (in ``methods`` order): the base rows, then the rows of every
        setting in ``settings`` order, each sorted by grid and cell.

    Raises
    ------
    TypeError, ValueError
        Bad ``settings`` (not a list of dicts, empty, unknown keys, bad
        values, a repeated setting) or other bad arguments, before any
        attribution runs.

    Examples
    --------
    >>> from var_utils import load_model
    >>> grids = fashion_mnist_grids(n_grids=8)  # doctest: +SKIP
    >>> settings = [{"tau": 0.0}, {"tau": 0.01}, {"normalize": "joint"}]
    >>> sweep = refine_sensitivity(load_model("fashion_mnist_cnn"), grids, {"gradcam": {}}, settings)  # doctest: +SKIP
    >>> summarize_sensitivity(sweep)[["setting", "method", "region_attribution_mean"]]  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    attribution_methods = _build_methods(methods)
    refine_settings = _checked_setting_list(settings)
    labels = [_setting_label(setting) for setting in refine_settings]
    scorer = _Scorer(model, _checked_metric_settings(metric_settings), tuple(grid or getattr(grids, "grid", (2, 2))))
    batch_size = check_positive_int(batch_size, "batch_size")
    _check_grids(grids)
    batches, total = _batches(grids, batch_size, lambda index: True, [])
    # frames[name][0] holds the base rows, frames[name][1 + s] those of setting s; batches come in grid order.
    frames = {name: [[] for _ in range(1 + len(refine_settings))] for name in attribution_methods}
    with tqdm(total=total, unit="grid", desc="refine sensitivity", disable=not progress) as bar:
        for ids, images, grid_labels in batches:
            for name, method in attribution_methods.items():
                base, positions, n_classes = scorer.base_maps(method, images, grid_labels)
                frames[name][0].append(scorer.rows(name, "base", ids, grid_labels, base, positions, n_classes))
                for position, setting in enumerate(refine_settings, start=1):
                    refined = _var_maps(base, n_classes, setting)
                    frames[name][position].append(
                        scorer.rows(name, "var", ids, grid_labels, refined, positions, n_classes)
                    )
            bar.update(len(ids))
    if not frames[next(iter(frames))][0]:
        raise ValueError("`grids` yielded no grid: there is nothing to evaluate.")
    blocks = [
        _with_setting(pd.concat(per_setting, ignore_index=True), label, setting)
        for per_method in frames.values()
        for per_setting, label, setting in zip(per_method, ["base", *labels], [None, *refine_settings])
    ]
    return pd.concat(blocks, ignore_index=True)


def summarize_sensitivity(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error of every metric per refine setting and method.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`refine_sensitivity`.

    Returns
    -------
    pandas.DataFrame
        One row per (setting, method) in order of appearance of the settings
        (``"base"`` first), then of the methods; columns
        :data:`SENSITIVITY_SETTING_COLUMNS` and those of :func:`summarize`.

    Examples
    --------
    >>> rows = {"method": ["m"] * 3, "mode": ["base", "var", "var"], **{k: [0.0, 1.0, 0.5] for k in GPG_METRICS}}
    >>> table = pd.DataFrame({"setting": ["base", "a", "b"], "tau": [None, 0.0, 0.1], "temperature": [None, 0.1, 0.1],
    ...                       "use_abs": [None, True, True], "normalize": [None] * 3, **rows})
    >>> summarize_sensitivity(table)[["setting", "tau", "mode", "n", "pointing_mean"]]
      setting  tau  mode  n  pointing_mean
    0    base  NaN  base  1            0.0
    1       a  0.0   var  1            1.0
    2       b  0.1   var  1            0.5
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`table` must be a pandas DataFrame, got {type(table).__name__}.")
    missing = sorted(set(SENSITIVITY_SETTING_COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"`table` lacks the column(s) {missing}; expected a table of refine_sensitivity.")
    if table.empty:
        raise ValueError("`table` is empty: there is nothing to summarise.")
    parts = []
    for label, rows in table.groupby("setting", sort=False):
        summary = summarize(rows)
        parameters = rows.iloc[0][list(SENSITIVITY_SETTING_COLUMNS[1:])]
        for position, column in enumerate(SENSITIVITY_SETTING_COLUMNS):
            summary.insert(position, column, label if column == "setting" else parameters[column])
        parts.append(summary)
    return pd.concat(parts, ignore_index=True)
