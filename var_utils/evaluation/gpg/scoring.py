"""Scoring of the grid pointing game: each cell's label's map against that cell.

A grid's class set is its distinct cell labels (:func:`grid_class_sets`). The
base maps are computed once per distinct label and every cell is scored with
its label's map: two cells of one class share a map, each scored on its own
cell. VAR lets the distinct classes compete, so K is the number of distinct
labels (column ``n_classes``); a grid with one distinct class has no
competitor and its VAR rows repeat its base scores (``docs/method.md``,
sections 2 and 5).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..._model_state import model_device
from ...datasets.grids import GridSample, collate_grids
from ...engine import attribute_classes
from ...methods import AttributionMethod
from ..metrics import localisation_table

GPG_METRICS = ("region_attribution", "precision", "recall", "f1", "iou", "pointing")
GPG_COLUMNS = ("grid", "cell", "label", "n_classes", "method", "mode", *GPG_METRICS)
_INTEGER_COLUMNS = ("grid", "cell", "label", "n_classes")


def pad_class_sets(sets: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Class sets of a batch padded to one width for the engine.

    Parameters
    ----------
    sets : sequence of sequence of int
        Each unit's distinct classes (a grid's labels, an image's object classes).

    Returns
    -------
    classes : torch.Tensor
        (N, K): each set, then filler classes (the smallest indices not in
        it). K is the largest set size of the batch, at least 2. Fillers only
        pad the rows; their maps are never used.
    n_classes : torch.Tensor
        (N,): the size of each set.

    Examples
    --------
    >>> pad_class_sets([[3, 5, 7], [1]])
    (tensor([[3, 5, 7],
            [1, 0, 2]]), tensor([3, 1]))
    """
    width = max([2, *(len(row) for row in sets)])
    padded = [
        list(row) + list(itertools.islice((c for c in itertools.count() if c not in row), width - len(row)))
        for row in sets
    ]
    return torch.tensor(padded, dtype=torch.long), torch.tensor([len(row) for row in sets], dtype=torch.long)


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
        appearance, then filler classes (see :func:`pad_class_sets`).
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
    classes, n_classes = pad_class_sets(distinct)
    positions = [[row.index(label) for label in cells] for cells, row in zip(rows, distinct)]
    return classes, torch.tensor(positions, dtype=torch.long), n_classes


def attribute_class_sets(
    model: nn.Module,
    method: AttributionMethod,
    images: torch.Tensor,
    classes: torch.Tensor,
    n_classes: torch.Tensor,
    *,
    group_by_size: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Base maps of each unit's class set, from :func:`var_utils.attribute_classes` calls.

    By default the whole batch is attributed in one call, each set padded with
    filler classes to the batch's widest set. A method that compares the
    classes of its set (``method.compares_classes``: the softmax gradient,
    contrastive Grad-CAM, CLRP, SGLRP) must not see the fillers, so its units
    are attributed in groups of equal set size, and units with a single class
    (nothing to contrast with) are left out. ``group_by_size`` groups any
    method's units that way, which saves the fillers' maps when set sizes
    differ widely (COCO images with every mapped class).

    Parameters
    ----------
    model : nn.Module
        The classifier.
    method : AttributionMethod
        The base method.
    images : torch.Tensor
        (N, C, H, W) images; moved to the model's device.
    classes, n_classes : torch.Tensor
        Padded class sets and their sizes (:func:`pad_class_sets`).
    group_by_size : bool, default False
        Attribute units of equal set size together, without fillers.

    Returns
    -------
    tuple of torch.Tensor or None
        ``(base, kept)``: (N', K, C', H, W) maps of the kept units (columns
        beyond a set's size hold fillers' maps, or zeros when grouped) and the
        (N',) indices of the kept units; None when no unit can be attributed
        with ``method``.
    """
    device = model_device(model)
    compares = getattr(method, "compares_classes", False)
    if not compares and not group_by_size:
        base = attribute_classes(model, images.to(device), classes.to(device), method)
        return base, torch.arange(len(classes))
    kept = (n_classes > 1).nonzero().flatten() if compares else torch.arange(len(classes))
    if not len(kept):
        return None
    classes, n_classes, images = classes[kept], n_classes[kept], images[kept]
    # A single class still needs a filler to form a set for the engine (its maps are never used).
    widths = n_classes if compares else n_classes.clamp(min=2)
    groups = {width: (widths == width).nonzero().flatten() for width in sorted(set(widths.tolist()))}
    maps = {
        width: attribute_classes(model, images[rows].to(device), classes[rows, :width].to(device), method)
        for width, rows in groups.items()
    }
    some = next(iter(maps.values()))
    # Columns beyond a unit's set size stay zero: they are never scored or refined (n_classes).
    base = some.new_zeros((len(kept), classes.shape[1], *some.shape[2:]))
    for width, rows in groups.items():
        base[rows.to(base.device), :width] = maps[width]
    return base, kept


def _cell_maps(maps: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(N * n_cells, C', H, W): each cell's label's map, from (N, K, C', H, W) maps."""
    rows = torch.arange(maps.shape[0], device=maps.device)[:, None]
    return maps[rows, positions.to(maps.device)].flatten(0, 1)


def check_result_table(table: object, columns: Iterable[str], producer: str, purpose: str = "summarise") -> None:
    """Raise unless ``table`` is a non-empty DataFrame with ``columns``.

    Parameters
    ----------
    table : object
        The table to check.
    columns : iterable of str
        Columns it must have.
    producer : str
        The function whose tables are expected, for the message.
    purpose : str, default "summarise"
        What the caller does with it, for the message.

    Raises
    ------
    TypeError
        ``table`` is not a DataFrame.
    ValueError
        A column is missing, or ``table`` is empty.
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"`table` must be a pandas DataFrame, got {type(table).__name__}.")
    missing = sorted(set(columns) - set(table.columns))
    if missing:
        raise ValueError(f"`table` lacks the column(s) {missing}; expected a table of {producer}.")
    if table.empty:
        raise ValueError(f"`table` is empty: there is nothing to {purpose}.")


@dataclass(frozen=True)
class ResultSchema:
    """The columns of a results table, their types, and how its rows group.

    A run writes its rows in groups of one evaluated unit (a grid, an image)
    and one method; the store uses the schema to type what it reads back and to
    tell complete groups from a torn write.

    Attributes
    ----------
    title : str
        What produced the table, for messages ("grid pointing game").
    unit : str
        Column of the evaluated unit's id (``"grid"``).
    item : str
        Column of the scored item within a unit (``"cell"``).
    columns : tuple of str
        Every column, in file order.
    integer_columns : tuple of str
        Integer columns; ``method`` and ``mode`` are text, the ``metrics`` float.
    metrics : tuple of str
        The float score columns.
    items_column : str or None
        A column that holds a unit's number of items when it varies (COCO
        objects); None when every unit has the same number.
    """

    title: str
    unit: str
    item: str
    columns: tuple[str, ...]
    integer_columns: tuple[str, ...]
    metrics: tuple[str, ...]
    items_column: str | None = None

    @property
    def group(self) -> list[str]:
        """Columns of a group: the unit and the method."""
        return [self.unit, "method"]

    @property
    def key(self) -> list[str]:
        """Columns that identify a row."""
        return [self.unit, "method", "mode", self.item]

    def typed(self, table: pd.DataFrame) -> pd.DataFrame:
        """The table's columns in order, with one dtype per column whatever the table came from.

        Parameters
        ----------
        table : pandas.DataFrame
            A table with (at least) the schema's columns.

        Returns
        -------
        pandas.DataFrame
            Integer id columns, string ``method`` and ``mode``, float64 metrics.
        """
        types = {
            **dict.fromkeys(self.integer_columns, "int64"),
            "method": str,
            "mode": str,
            **dict.fromkeys(self.metrics, "float64"),
        }
        return table[list(self.columns)].astype(types)


#: The grid pointing game's table: one row per grid × cell × method × mode.
GPG_SCHEMA = ResultSchema("grid pointing game", "grid", "cell", GPG_COLUMNS, _INTEGER_COLUMNS, GPG_METRICS)


def typed_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table's :data:`GPG_COLUMNS` in order, with one dtype per column whatever the table came from.

    Parameters
    ----------
    table : pandas.DataFrame
        A table with (at least) the columns :data:`GPG_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        Integer ``grid``, ``cell``, ``label`` and ``n_classes``, string
        ``method`` and ``mode``, float64 metrics.
    """
    return GPG_SCHEMA.typed(table)


class BaseMaps(Protocol):
    """One method's base maps of a batch of units, as every scorer's ``base_maps`` returns them."""

    method: str
    base: torch.Tensor
    n_classes: torch.Tensor


class Scorer(Protocol):
    """What the run loop needs of a scorer (:class:`GridScorer`, :class:`~var_utils.evaluation.coco.CocoScorer`)."""

    model: nn.Module
    metric_settings: dict
    schema: ClassVar[ResultSchema]

    def collate(self, samples: Sequence) -> tuple[torch.Tensor, object]: ...  # noqa: D102

    def prepare(self, images: torch.Tensor, targets: object) -> object: ...  # noqa: D102

    def rows_per_group(self, n_modes: int) -> int: ...  # noqa: D102

    def recorded_settings(self) -> dict: ...  # noqa: D102

    def base_maps(  # noqa: D102
        self, name: str, method: AttributionMethod, ids: list[int], images: torch.Tensor, targets: object
    ) -> BaseMaps | None: ...

    def rows(self, batch: BaseMaps, mode: str, maps: torch.Tensor) -> pd.DataFrame: ...  # noqa: D102


@dataclass(frozen=True)
class GridBaseMaps:
    """The base maps of one method for a batch of grids, with what scoring them needs.

    Attributes
    ----------
    method : str
        The method's name in the run.
    grid_ids : list of int
        Id of each grid of the batch.
    labels : torch.Tensor
        (N, n_cells) cell labels.
    base : torch.Tensor
        (N, K, C', H, W) base maps of each grid's distinct labels (then fillers).
    positions : torch.Tensor
        (N, n_cells) column of ``base`` that holds each cell's label.
    n_classes : torch.Tensor
        (N,) distinct labels per grid.
    """

    method: str
    grid_ids: list[int]
    labels: torch.Tensor
    base: torch.Tensor
    positions: torch.Tensor
    n_classes: torch.Tensor


@dataclass(frozen=True)
class GridScorer:
    """Computes the base maps of a batch of grids and scores maps cell by cell.

    Attributes
    ----------
    model : nn.Module
        The classifier; grids are moved to its device.
    metric_settings : dict
        Binarisation settings of :func:`var_utils.evaluation.metrics.localisation_table`.
    grid : tuple of int
        ``(rows, cols)`` of every grid.
    """

    model: nn.Module
    metric_settings: dict
    grid: tuple[int, int]

    schema: ClassVar[ResultSchema] = GPG_SCHEMA

    @staticmethod
    def collate(samples: Sequence[GridSample]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and cell labels of a batch of grid samples."""
        images, labels, _ = collate_grids(samples)
        return images, labels

    def prepare(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """A grid's targets are its cell labels as they come."""
        return labels

    def rows_per_group(self, n_modes: int) -> int:
        """Rows of one (grid, method): cells × modes."""
        return self.grid[0] * self.grid[1] * n_modes

    def recorded_settings(self) -> dict:
        """The scoring settings recorded with results: the binarisation."""
        return {"metric_settings": self.metric_settings}

    def base_maps(
        self, name: str, method: AttributionMethod, grid_ids: list[int], images: torch.Tensor, labels: torch.Tensor
    ) -> GridBaseMaps | None:
        """Base maps of each grid's distinct labels, from one :func:`var_utils.attribute_classes` call.

        A method that compares the classes of its set
        (``method.compares_classes``: the softmax gradient, contrastive
        Grad-CAM, CLRP, SGLRP) must not see the filler classes that pad the
        sets to one width, so its grids are attributed in groups of equal set
        size, and grids with a single distinct class (nothing to contrast
        with) are left out of its rows.

        Parameters
        ----------
        name : str
            The method's name in the run.
        method : AttributionMethod
            The base method.
        grid_ids : list of int
            Id of each grid of the batch.
        images : torch.Tensor
            (N, C, H, W) grid images; moved to the model's device.
        labels : torch.Tensor
            (N, n_cells) cell labels.

        Returns
        -------
        GridBaseMaps or None
            The maps and what scoring them needs; None when no grid of the
            batch can be scored with ``method``.

        Raises
        ------
        ValueError
            ``labels`` does not have one column per cell of the grid.
        """
        n_cells = self.grid[0] * self.grid[1]
        if labels.dim() != 2 or labels.shape[1] != n_cells:
            raise ValueError(
                f"grid labels must have shape (N, {n_cells}) for grid {self.grid}, got {tuple(labels.shape)}."
            )
        classes, positions, n_classes = grid_class_sets(labels)
        attributed = attribute_class_sets(self.model, method, images, classes, n_classes)
        if attributed is None:
            return None
        base, kept = attributed
        ids = [grid_ids[position] for position in kept.tolist()]
        return GridBaseMaps(name, ids, labels[kept], base, positions[kept], n_classes[kept])

    def rows(self, batch: GridBaseMaps, mode: str, maps: torch.Tensor) -> pd.DataFrame:
        """Scores of one kind of maps, one row per cell.

        Parameters
        ----------
        batch : GridBaseMaps
            The batch the maps belong to.
        mode : str
            A mode of :data:`var_utils.engine.MODES`, written to the ``mode`` column.
        maps : torch.Tensor
            Maps shaped like ``batch.base`` (N, K, C', H, W): the base maps or
            maps derived from them (:func:`var_utils.engine.derive_maps`).

        Returns
        -------
        pandas.DataFrame
            Columns :data:`GPG_COLUMNS`, one row per grid × cell.
        """
        n_cells = self.grid[0] * self.grid[1]
        cells = torch.arange(n_cells).repeat(len(batch.grid_ids))
        scores = localisation_table(_cell_maps(maps, batch.positions), cells, self.grid, **self.metric_settings)
        columns = {
            "grid": np.repeat(batch.grid_ids, n_cells),
            "cell": cells.numpy(),
            "label": batch.labels.flatten().numpy(),
            "n_classes": np.repeat(batch.n_classes.numpy(), n_cells),
            "method": batch.method,
            "mode": mode,
        }
        columns.update({metric: scores[metric].double().cpu().numpy() for metric in GPG_METRICS})
        return typed_table(pd.DataFrame(columns))
