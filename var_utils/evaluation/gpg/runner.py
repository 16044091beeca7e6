"""The evaluation run: one batch loop over units (grids, images) and methods, scored, stored and summarised.

:func:`base_map_batches` is the one loop every run goes through: it batches
the units, skips the (unit, method) pairs that are done, and yields one
method's base maps for a batch at a time. :func:`run_evaluation` scores those
maps and the maps derived from them, stores and resumes them, in one process
or many; :func:`evaluate_grid_pointing_game` is that run on grids,
:func:`var_utils.evaluation.coco.evaluate_coco_objects` on COCO images, and
:func:`var_utils.evaluation.gpg.sensitivity.refine_sensitivity` scores the
maps under several refine settings.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..._model_state import model_device
from ..._validation import check_model, check_positive_int
from ...engine import MAP_MODES, check_modes, derive_maps
from ...methods import AttributionMethod, get_method
from ...refine import check_refine_settings
from ..metrics import check_metric_settings
from .distributed import owns, process_group, run_together
from .scoring import GPG_METRICS, BaseMaps, GridScorer, ResultSchema, Scorer, check_result_table
from .store import ResultStore

Pending = Callable[[int, str], bool]


def build_methods(methods: object) -> dict[str, AttributionMethod]:
    """Methods of a run from ``{name: settings}``; a ``"method"`` entry runs a method under another name.

    Parameters
    ----------
    methods : dict of str to dict
        E.g. ``{"gradcam": {}, "ig128": {"method": "integrated_gradients", "n_steps": 128}}``.

    Returns
    -------
    dict of str to AttributionMethod
        The built methods, in the given order.

    Raises
    ------
    TypeError
        ``methods`` is not a non-empty dict of str names to dicts (or None),
        or a method's settings are bad (see :func:`var_utils.get_method`).
    """
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
        if not name.strip() or "\n" in name or "\r" in name:
            raise ValueError(f"a method's name must be non-empty text on one line (it is a CSV field), got {name!r}.")
        settings = dict(settings or {})
        built[name] = get_method(settings.pop("method", name), **settings)
    return built


def _check_grids(grids: object) -> None:
    if isinstance(grids, torch.utils.data.Dataset):
        if len(grids) == 0:
            raise ValueError("`grids` is empty: there is no grid to evaluate.")
    elif isinstance(grids, (str, bytes)) or not isinstance(grids, Iterable):
        raise TypeError(
            "`grids` must be a Dataset of GridSample or an iterable of (images, labels) batches, "
            f"got {type(grids).__name__}."
        )


class _PendingUnits(torch.utils.data.Dataset):
    """The units at ``positions`` of ``units``, each with its id: what a DataLoader's workers load."""

    def __init__(self, units: torch.utils.data.Dataset, positions: Sequence[int], ids: Sequence[int]) -> None:
        self.units, self.positions, self.ids = units, positions, ids

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, position: int) -> tuple[int, object]:
        index = self.positions[position]
        return self.ids[index], self.units[index]


def _collate_with_ids(collate: Callable, items: Sequence[tuple[int, object]]) -> tuple[list[int], torch.Tensor, object]:
    images, targets = collate([sample for _, sample in items])
    return [index for index, _ in items], images, targets


def _take(targets: torch.Tensor | Sequence, positions: list[int]) -> torch.Tensor | list:
    """The targets of some units of a batch: rows of a tensor, or items of a list."""
    return targets[positions] if isinstance(targets, torch.Tensor) else [targets[p] for p in positions]


def _batches(
    grids: object,
    batch_size: int,
    pending: Callable[[int], bool],
    run_ids: list[int],
    workers: int,
    pin_memory: bool,
    collate: Callable,
) -> tuple[Iterable[tuple[list[int], torch.Tensor, object]], int | None]:
    """(unit ids, images, targets) batches and their number of units (None if unknown).

    A dataset is loaded by a DataLoader (``workers`` processes decode and
    compose units while attribution runs, ``collate`` batches them) and only
    units with work left are loaded; a unit's id is its index, or its entry of
    the dataset's ``unit_ids`` when it has them; an iterable of (images, labels, ...)
    batches of grids is read whole, its grids numbered in order. ``run_ids``
    collects the ids of the run's units.
    """
    if isinstance(grids, torch.utils.data.Dataset):
        # A unit's id is its index, unless the dataset names them (COCO image ids).
        ids = list(getattr(grids, "unit_ids", range(len(grids))))
        run_ids.extend(ids)
        todo = [index for index, unit in enumerate(ids) if pending(unit)]
        loader = torch.utils.data.DataLoader(
            _PendingUnits(grids, todo, ids),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=functools.partial(_collate_with_ids, collate),
            pin_memory=pin_memory,
        )
        return loader, len(todo)

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


def base_map_batches(
    scorer: Scorer,
    grids: torch.utils.data.Dataset | Iterable,
    methods: Mapping[str, AttributionMethod],
    *,
    batch_size: int,
    progress: bool,
    description: str,
    pending: Pending | None = None,
    run_ids: list[int] | None = None,
    workers: int = 0,
) -> Iterator[BaseMaps]:
    """The batch loop of every run: base maps per batch of units (grids, images) and method.

    Parameters
    ----------
    scorer : GridScorer or CocoScorer
        Batches the units (``collate``), completes their targets once per
        batch (``prepare``) and computes the base maps (``base_maps``).
    grids : Dataset or iterable of batches
        The units: a dataset of grids or COCO images, or (grids only) an
        iterable of batches as in :func:`evaluate_grid_pointing_game`.
    methods : dict of str to AttributionMethod
        The methods, by name.
    batch_size : int
        Grids per attribution call (datasets only).
    progress : bool
        Show a tqdm progress bar.
    description : str
        The progress bar's label.
    pending : callable, optional
        ``pending(grid_id, method_name)``: whether that pair still needs work
        (default: every pair). Grids of a dataset without pending work are not loaded.
    run_ids : list of int, optional
        Filled with the ids of the run's grids.
    workers : int
        DataLoader worker processes that load the grids of a dataset (0: load
        them in this process). With the model on CUDA, batches are pinned and
        copied without blocking.

    Yields
    ------
    GridBaseMaps or ImageBaseMaps
        One method's base maps of the pending units of a batch, batches in
        unit order and methods in ``methods`` order within a batch. Units a
        method cannot score (single-class units of a method that compares
        classes, see :func:`~var_utils.evaluation.gpg.scoring.attribute_class_sets`)
        are left out.
    """
    pending = pending or (lambda _index, _name: True)
    run_ids = [] if run_ids is None else run_ids
    device = model_device(scorer.model)
    batches, total = _batches(
        grids,
        batch_size,
        lambda index: any(pending(index, n) for n in methods),
        run_ids,
        workers,
        device.type == "cuda",
        scorer.collate,
    )
    with tqdm(total=total, unit=scorer.schema.unit, desc=description, disable=not progress) as bar:
        for ids, images, targets in batches:
            # Copied once per batch; from pinned memory the copy overlaps the loading of the next batch.
            images = images.to(device, non_blocking=True)
            targets = scorer.prepare(images, targets)
            for name, method in methods.items():
                todo = [position for position, index in enumerate(ids) if pending(index, name)]
                batch = (
                    scorer.base_maps(name, method, [ids[p] for p in todo], images[todo], _take(targets, todo))
                    if todo
                    else None
                )
                if batch is not None:
                    yield batch
            bar.update(len(ids))


def run_settings(
    model: nn.Module, grids: object, methods: Mapping[str, AttributionMethod], modes: Sequence[str], **settings: dict
) -> dict:
    """The fingerprint a run records with its results (see :mod:`var_utils.evaluation.gpg.store`).

    Parameters
    ----------
    model : nn.Module
        Recorded by its ``name`` (set by :func:`var_utils.load_model`), else
        its class name.
    grids : object
        Recorded by its ``description`` (None for an iterable of batches).
    methods : mapping of str to AttributionMethod
        Recorded by their :meth:`~var_utils.AttributionMethod.fingerprint`.
    modes : sequence of str
        The scored modes.
    **settings : dict
        Further checked settings to record (``refine_settings``, ``metric_settings``).

    Returns
    -------
    dict
        ``model``, ``source``, ``modes``, the ``settings`` and ``methods``
        (name -> fingerprint).

    Raises
    ------
    ValueError
        A method whose maps its settings cannot identify (a callable or
        Captum object without ``name=``).
    """
    fingerprints = {}
    for name, method in methods.items():
        try:
            fingerprints[name] = method.fingerprint()
        except ValueError as error:
            raise ValueError(f"method {name!r} cannot be recorded with the results in `out`: {error}") from None
    return {
        "model": getattr(model, "name", None) or type(model).__qualname__,
        "source": getattr(grids, "description", None),
        "modes": list(modes),
        **settings,
        "methods": fingerprints,
    }


def _ordered(table: pd.DataFrame, method_names: Sequence[str], modes: Sequence[str], schema: ResultSchema):
    ranks = {"method": {n: i for i, n in enumerate(method_names)}, "mode": {m: i for i, m in enumerate(modes)}}

    def rank(column: pd.Series) -> pd.Series:
        return column.map(ranks[column.name]) if column.name in ranks else column

    return table.sort_values(schema.key, key=rank, kind="stable").reset_index(drop=True)


def scorer_for(model: nn.Module, grids: object, metric_settings: Mapping | None, grid: tuple[int, int] | None):
    """A :class:`GridScorer` with checked settings.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    grids : Dataset of GridSample or iterable of batches
        As in :func:`evaluate_grid_pointing_game`; checked here.
    metric_settings : dict, optional
        Binarisation settings of :func:`var_utils.evaluation.metrics.check_metric_settings`.
    grid : tuple of int, optional
        ``(rows, cols)``; default ``grids.grid`` if present, else (2, 2).

    Returns
    -------
    GridScorer
        The scorer, with all metric settings filled in.

    Raises
    ------
    TypeError, ValueError
        ``model`` is not a module, ``grids`` is empty or neither a dataset nor
        an iterable, or bad ``metric_settings``.
    """
    check_model(model)
    _check_grids(grids)
    return GridScorer(model, check_metric_settings(metric_settings), tuple(grid or getattr(grids, "grid", (2, 2))))


def evaluate_grid_pointing_game(
    model: nn.Module,
    grids: torch.utils.data.Dataset | Iterable,
    methods: Mapping[str, Mapping | None],
    *,
    modes: Sequence[str] = MAP_MODES,
    refine_settings: Mapping | None = None,
    metric_settings: Mapping | None = None,
    batch_size: int = 16,
    out: str | Path | None = None,
    progress: bool = True,
    grid: tuple[int, int] | None = None,
    workers: int = 0,
) -> pd.DataFrame:
    """Play the grid pointing game: localisation of base and VAR maps, cell by cell.

    For every batch of grids and every method, the base maps of each grid's
    distinct labels come from one :func:`var_utils.attribute_classes` call; VAR
    (:func:`var_utils.engine.var_from_base`) reuses them. Each cell is scored
    with its label's map (see :mod:`var_utils.evaluation.gpg.scoring` on
    repeated labels and single-class grids).

    In a process group (``torchrun``, see
    :mod:`var_utils.evaluation.gpg.distributed`), each rank computes its share
    of the grids on its model's device and appends to its own shard of ``out``;
    rank 0 merges the shards once all ranks are done, and every rank returns
    the merged table. A run without a process group is the one-rank case.

    Parameters
    ----------
    model : nn.Module
        The classifier; grids are moved to its device.
    grids : Dataset of GridSample or iterable of batches
        A :class:`~var_utils.datasets.grids.GridDataset` (grid ids are its
        indices; with ``out``, finished grids are not even loaded), or an
        iterable of ``(images (B, C, H, W), labels (B, n_cells), ...)`` batches
        such as a ``DataLoader`` with ``collate_fn=collate_grids`` (grid ids
        count up from 0; one-process runs only).
    methods : dict of str to dict
        Method name -> its settings, e.g. ``{"gradcam": {}, "integrated_gradients":
        {"n_steps": 16}}``. A ``"method"`` entry runs a method under another
        name: ``{"ig128": {"method": "integrated_gradients", "n_steps": 128}}``;
        a callable or Captum object also needs ``"name"`` to be recorded in ``out``.
    modes : sequence of str, default ("base", "var")
        Which maps to score, from :data:`var_utils.engine.MODES`: ``"base"``,
        ``"var"``, ``"var_joint"`` (VAR with ``normalize="joint"``), ``"cgi"``
        and ``"contrast_mean"`` (see :func:`var_utils.engine.derive_maps`).
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    metric_settings : dict, optional
        ``binarization``, ``top_fraction``, ``max_fraction`` of
        :func:`var_utils.evaluation.metrics.localisation_table`.
    batch_size : int
        Grids per attribution call (datasets only; batches of an iterable are used as they come).
    out : str or Path, optional
        CSV appended to as the run goes and read back to resume; its settings
        are recorded next to it and it is locked while the run writes it
        (:mod:`var_utils.evaluation.gpg.store`). Required in a process group.
    progress : bool
        Show a tqdm progress bar (rank 0 only).
    grid : tuple of int, optional
        ``(rows, cols)``; default ``grids.grid`` if present, else (2, 2).
    workers : int, default 0
        DataLoader worker processes that load a dataset's grids while
        attribution runs (0: load them in this process).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`~var_utils.evaluation.gpg.scoring.GPG_COLUMNS`: one row
        per grid × cell × method × mode of this run (rows read back from
        ``out`` included), sorted by grid, method (in ``methods`` order), mode
        and cell. Methods that compare the classes of the set (e.g.
        ``softmax_gradient``) have no rows for single-class grids.

    Raises
    ------
    TypeError, ValueError
        Bad arguments; ``out`` holds results of other settings; a process
        group without ``out`` or with an iterable of batches.
    var_utils._lock.OutputLockedError
        Another process is writing ``out``.

    Examples
    --------
    >>> from var_utils import load_model
    >>> from var_utils.evaluation.gpg import fashion_mnist_grids, summarize
    >>> grids = fashion_mnist_grids(n_grids=4)
    >>> table = evaluate_grid_pointing_game(load_model("fashion_mnist_cnn"), grids, {"gradcam": {}}, progress=False)
    >>> summarize(table)[["method", "mode", "n"]]
        method  mode   n
    0  gradcam  base  16
    1  gradcam   var  16
    """
    scorer = scorer_for(model, grids, metric_settings, grid)
    return run_evaluation(
        scorer,
        grids,
        build_methods(methods),
        modes=modes,
        refine_settings=refine_settings,
        batch_size=batch_size,
        out=out,
        progress=progress,
        workers=workers,
        description="grid pointing game",
    )


def run_evaluation(
    scorer: Scorer,
    units: torch.utils.data.Dataset | Iterable,
    methods: Mapping[str, AttributionMethod],
    *,
    modes: Sequence[str],
    refine_settings: Mapping | None,
    batch_size: int,
    out: str | Path | None,
    progress: bool,
    workers: int,
    description: str,
) -> pd.DataFrame:
    """Score base maps and the maps derived from them, unit by unit; stored, resumable, in one process or many.

    The run behind :func:`evaluate_grid_pointing_game` and
    :func:`var_utils.evaluation.coco.evaluate_coco_objects`: what is scored
    and how is the scorer's (its ``schema`` names the table's columns).

    Parameters
    ----------
    scorer : GridScorer or CocoScorer
        Batches the units, computes their base maps and scores maps.
    units : Dataset or iterable of batches
        The grids or images (an iterable of batches: grids in one process only).
    methods : dict of str to AttributionMethod
        The built methods (:func:`build_methods`), by name.
    modes : sequence of str
        Which maps to score, from :data:`var_utils.engine.MODES`.
    refine_settings : dict, optional
        Settings of :func:`var_utils.refine_all`.
    batch_size : int
        Units per attribution call (datasets only).
    out : str or Path, optional
        The results CSV, appended to and resumed (:mod:`var_utils.evaluation.gpg.store`).
    progress : bool
        Show a tqdm progress bar (rank 0 only).
    workers : int
        DataLoader worker processes that load a dataset's units.
    description : str
        The progress bar's label.

    Returns
    -------
    pandas.DataFrame
        The scorer's columns, one row per scored item of this run (rows read
        back from ``out`` included), sorted by unit, method (in ``methods``
        order), mode and item.

    Raises
    ------
    TypeError, ValueError
        Bad arguments; ``out`` holds results of other settings; a process
        group without ``out`` or with an iterable of batches.
    var_utils._lock.OutputLockedError
        Another process is writing ``out``.
    """
    modes = check_modes(modes)
    refine_settings = check_refine_settings(refine_settings)
    batch_size = check_positive_int(batch_size, "batch_size")
    workers = check_positive_int(workers, "workers", minimum=0)
    rank, world_size = process_group()
    _check_distributed(world_size, out, units)
    fingerprint = None
    if out is not None:
        fingerprint = run_settings(
            scorer.model, units, methods, modes, refine_settings=refine_settings, **scorer.recorded_settings()
        )
    results = ResultStore(out, fingerprint, scorer.rows_per_group(len(modes)), rank, world_size, scorer.schema)
    run_ids: list[int] = []

    def compute() -> None:
        done = results.completed()
        for batch in base_map_batches(
            scorer,
            units,
            methods,
            batch_size=batch_size,
            progress=progress and rank == 0,
            description=description + (f" (rank 0 of {world_size})" if world_size > 1 else ""),
            pending=lambda index, name: owns(index, rank, world_size) and (index, name) not in done,
            run_ids=run_ids,
            workers=workers,
        ):
            maps = {mode: derive_maps(batch.base, mode, refine_settings, n_classes=batch.n_classes) for mode in modes}
            results.add(pd.concat([scorer.rows(batch, mode, maps[mode]) for mode in modes], ignore_index=True))
        results.close_shard()  # released before the barrier, so that rank 0 can merge and delete the shard

    # Each step ends at a barrier that also stops every rank when one failed.
    with contextlib.ExitStack() as stack:
        run_together(lambda: stack.enter_context(results))
        run_together(compute)
        run_together(results.merge if rank == 0 else lambda: None)
    table = results.table()
    unit = scorer.schema.unit
    selected = table[unit].isin(run_ids) & table["method"].isin(list(methods)) & table["mode"].isin(modes)
    return _ordered(table[selected], list(methods), modes, scorer.schema)


def _check_distributed(world_size: int, out: object, units: object) -> None:
    if world_size == 1:
        return
    if out is None:
        raise ValueError(f"a run of {world_size} processes needs `out`: each rank writes its shard of it.")
    if not isinstance(units, torch.utils.data.Dataset):
        raise TypeError(
            f"a run of {world_size} processes needs `grids` as a Dataset (each rank picks its grids by index), "
            f"got {type(units).__name__}."
        )


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
        of :data:`~var_utils.evaluation.gpg.scoring.GPG_METRICS`.

    Raises
    ------
    TypeError, ValueError
        ``table`` is not a DataFrame, lacks a column, or is empty.

    Examples
    --------
    >>> table = pd.DataFrame({"method": ["m"] * 2, "mode": ["base"] * 2, **{k: [0.0, 1.0] for k in GPG_METRICS}})
    >>> summarize(table)[["method", "mode", "n", "pointing_mean", "pointing_se"]]
      method  mode  n  pointing_mean  pointing_se
    0      m  base  2            0.5          0.5
    """
    return summarize_scores(table, GPG_METRICS, "evaluate_grid_pointing_game")


def summarize_scores(table: pd.DataFrame, metrics: Sequence[str], producer: str) -> pd.DataFrame:
    """Mean and standard error of ``metrics`` per method and mode (the rows of each group are its items).

    Parameters
    ----------
    table : pandas.DataFrame
        A results table with ``method``, ``mode`` and the ``metrics``.
    metrics : sequence of str
        The score columns.
    producer : str
        The function whose tables are expected, for messages.

    Returns
    -------
    pandas.DataFrame
        One row per (method, mode) in order of appearance; ``n`` and
        ``<metric>_mean``, ``<metric>_se`` (``std(ddof=1) / sqrt(n)``).

    Raises
    ------
    TypeError, ValueError
        ``table`` is not a DataFrame, lacks a column, or is empty.
    """
    check_result_table(table, ["method", "mode", *metrics], producer)
    grouped = table.groupby(["method", "mode"], sort=False)[list(metrics)]
    means, errors = grouped.mean(), grouped.sem()
    summary = pd.DataFrame({"n": grouped.size()})
    for metric in metrics:
        summary[f"{metric}_mean"] = means[metric]
        summary[f"{metric}_se"] = errors[metric]
    return summary.reset_index()
