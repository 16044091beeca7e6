"""The grid pointing game's overlap scores under several binarisations, maps computed once.

Precision, recall, F1 and IoU depend on how a map is binarised
(:func:`var_utils.evaluation.metrics.binarize`); region attribution and
pointing do not. :func:`binarization_comparison` computes every method's base
maps once per batch (the batch loop of
:func:`~var_utils.evaluation.gpg.runner.base_map_batches`), derives the maps of
each mode from them and scores those under every binarisation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..._validation import check_positive_int
from ...engine import check_modes, derive_maps
from ...refine import check_refine_settings
from ..metrics import BINARIZATIONS, check_metric_settings
from .runner import base_map_batches, build_methods, scorer_for, summarize
from .scoring import GridScorer, check_result_table

#: Column that names the binarisation of a :func:`binarization_comparison` row.
BINARIZATION_COLUMN = "binarization"


def _check_binarizations(binarizations: object) -> tuple[str, ...]:
    if (
        isinstance(binarizations, str)
        or not isinstance(binarizations, Sequence)
        or not binarizations
        or not all(isinstance(binarization, str) for binarization in binarizations)
    ):
        raise TypeError(
            f"`binarizations` must be a non-empty sequence from {list(BINARIZATIONS)}, got {binarizations!r}."
        )
    if len(set(binarizations)) != len(binarizations):
        raise ValueError(f"`binarizations` must not repeat a binarisation, got {list(binarizations)}.")
    for binarization in binarizations:
        check_metric_settings({"binarization": binarization}, "binarizations")
    return tuple(binarizations)


def binarization_comparison(
    model: nn.Module,
    grids: torch.utils.data.Dataset | Iterable,
    methods: Mapping[str, Mapping | None],
    binarizations: Sequence[str] = BINARIZATIONS,
    *,
    modes: Sequence[str] = ("base", "var"),
    refine_settings: Mapping | None = None,
    batch_size: int = 16,
    progress: bool = True,
    grid: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """The grid pointing game scored under every binarisation of ``binarizations``.

    The rows of one binarisation equal those of
    :func:`~var_utils.evaluation.gpg.runner.evaluate_grid_pointing_game` run
    with ``metric_settings={"binarization": ...}``, at the cost of one run.

    Parameters
    ----------
    model : nn.Module
        The classifier; grids are moved to its device.
    grids : Dataset of GridSample or iterable of batches
        As in :func:`~var_utils.evaluation.gpg.runner.evaluate_grid_pointing_game`.
    methods : dict of str to dict
        Method name -> its settings.
    binarizations : sequence of str, default all of :data:`~var_utils.evaluation.metrics.BINARIZATIONS`
        The binarisations to compare (``top_fraction`` and ``max_fraction`` at
        their defaults).
    modes : sequence of str, default ("base", "var")
        Which maps to score, from :data:`var_utils.engine.MODES`.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    batch_size : int
        Grids per attribution call (datasets only).
    progress : bool
        Show a tqdm progress bar.
    grid : tuple of int, optional
        ``(rows, cols)``; default ``grids.grid`` if present, else (2, 2).

    Returns
    -------
    pandas.DataFrame
        Column ``binarization`` followed by the columns of
        :data:`~var_utils.evaluation.gpg.scoring.GPG_COLUMNS`; grouped by
        binarisation (in the given order), then as the batches came.

    Examples
    --------
    >>> from var_utils import load_model
    >>> from var_utils.evaluation.gpg import fashion_mnist_grids, summarize
    >>> grids = fashion_mnist_grids(n_grids=4)
    >>> table = binarization_comparison(load_model("fashion_mnist_cnn"), grids, {"gradcam": {}}, ["positive", "mean"],
    ...                                 progress=False)
    >>> table.groupby("binarization", sort=False).size().to_dict()
    {'positive': 32, 'mean': 32}
    """
    first = scorer_for(model, grids, None, grid)
    binarizations = _check_binarizations(binarizations)
    scorers = [GridScorer(model, check_metric_settings({"binarization": b}), first.grid) for b in binarizations]
    attribution_methods = build_methods(methods)
    modes = check_modes(modes)
    refine_settings = check_refine_settings(refine_settings)
    batch_size = check_positive_int(batch_size, "batch_size")
    frames: list[list[pd.DataFrame]] = [[] for _ in binarizations]
    for batch in base_map_batches(
        first, grids, attribution_methods, batch_size=batch_size, progress=progress, description="binarisations"
    ):
        for mode in modes:
            maps = derive_maps(batch.base, mode, refine_settings, n_classes=batch.n_classes)
            for scorer, rows in zip(scorers, frames):
                rows.append(scorer.rows(batch, mode, maps))
    if not frames[0]:
        raise ValueError("`grids` yielded no grid: there is nothing to evaluate.")
    blocks = [
        pd.concat(rows, ignore_index=True).assign(**{BINARIZATION_COLUMN: binarization})
        for binarization, rows in zip(binarizations, frames)
    ]
    table = pd.concat(blocks, ignore_index=True)
    return table[[BINARIZATION_COLUMN, *table.columns.drop(BINARIZATION_COLUMN)]]


def summarize_binarizations(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error of every metric per binarisation, method and mode.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`binarization_comparison`.

    Returns
    -------
    pandas.DataFrame
        Column ``binarization`` followed by those of
        :func:`~var_utils.evaluation.gpg.runner.summarize`, binarisations in
        order of appearance.

    Raises
    ------
    TypeError, ValueError
        ``table`` is not a DataFrame, lacks a column, or is empty.
    """
    check_result_table(table, [BINARIZATION_COLUMN], "binarization_comparison")
    parts = [
        summarize(rows).assign(**{BINARIZATION_COLUMN: binarization})
        for binarization, rows in table.groupby(BINARIZATION_COLUMN, sort=False)
    ]
    summary = pd.concat(parts, ignore_index=True)
    return summary[[BINARIZATION_COLUMN, *summary.columns.drop(BINARIZATION_COLUMN)]]
