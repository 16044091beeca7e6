"""The grid pointing game under several refine settings, at the cost of one run.

The base maps of a batch are computed once per method (the batch loop of
:func:`~var_utils.evaluation.gpg.runner.base_map_batches`), then refined and
scored under every setting. :func:`summarize_sensitivity` averages the rows per
setting and method.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..._validation import check_positive_int
from ...engine import var_from_base
from ...refine import check_refine_settings
from .runner import base_map_batches, build_methods, scorer_for, summarize
from .scoring import GPG_COLUMNS, check_result_table, typed_table

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
    completed = [check_refine_settings(given, f"settings[{position}]") for position, given in enumerate(settings)]
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
    return pd.concat([front, typed_table(rows)], axis=1)


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
    :func:`~var_utils.evaluation.gpg.runner.evaluate_grid_pointing_game`; each setting then refines and scores
    those same maps. The rows of one setting equal the ``"var"`` rows of
    :func:`~var_utils.evaluate_grid_pointing_game` run with ``refine_settings=setting``
    (and the ``"base"`` rows its base rows), at the cost of one run.

    Parameters
    ----------
    model : nn.Module
        The classifier; grids are moved to its device.
    grids : Dataset of GridSample or iterable of batches
        As in :func:`~var_utils.evaluate_grid_pointing_game`.
    methods : dict of str to dict
        Method name -> its settings, as in :func:`~var_utils.evaluate_grid_pointing_game`.
    settings : sequence of dict
        Refine settings to compare: each a dict of some of ``tau``,
        ``temperature``, ``use_abs`` and ``normalize`` of
        :func:`var_utils.refine_all`, the others at their defaults. No two may
        be equal once completed.
    batch_size : int
        Grids per attribution call (datasets only).
    metric_settings : dict, optional
        ``binarization``, ``top_fraction``, ``max_fraction`` of
        :func:`var_utils.evaluation.metrics.localisation_table`.
    progress : bool
        Show a tqdm progress bar.
    grid : tuple of int, optional
        ``(rows, cols)``; default ``grids.grid`` if present, else (2, 2).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SENSITIVITY_COLUMNS`: the setting's label (``"base"``
        for base maps), its ``tau``, ``temperature``, ``use_abs`` and
        ``normalize`` (empty for base rows), then :data:`~var_utils.evaluation.gpg.scoring.GPG_COLUMNS`. Per
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
    >>> from var_utils.evaluation.gpg import fashion_mnist_grids
    >>> grids = fashion_mnist_grids(n_grids=8)
    >>> settings = [{"tau": 0.0}, {"normalize": "joint"}]
    >>> model = load_model("fashion_mnist_cnn")
    >>> sweep = refine_sensitivity(model, grids, {"gradcam": {}}, settings, progress=False)
    >>> summarize_sensitivity(sweep)["setting"].tolist()
    ['base', 'tau=0.0, t=0.1, abs, normalize=none', 'tau=0.01, t=0.1, abs, normalize=joint']
    """
    scorer = scorer_for(model, grids, metric_settings, grid)
    attribution_methods = build_methods(methods)
    refine_settings = _checked_setting_list(settings)
    labels = [_setting_label(setting) for setting in refine_settings]
    batch_size = check_positive_int(batch_size, "batch_size")
    # frames[name][0] holds the base rows, frames[name][1 + s] those of setting s; batches come in grid order.
    frames = {name: [[] for _ in range(1 + len(refine_settings))] for name in attribution_methods}
    for batch in base_map_batches(
        scorer, grids, attribution_methods, batch_size=batch_size, progress=progress, description="refine sensitivity"
    ):
        frames[batch.method][0].append(scorer.rows(batch, "base", batch.base))
        for position, setting in enumerate(refine_settings, start=1):
            refined = var_from_base(batch.base, setting, n_classes=batch.n_classes)
            frames[batch.method][position].append(scorer.rows(batch, "var", refined))
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
    >>> from var_utils.evaluation.gpg.scoring import GPG_METRICS
    >>> rows = {"method": ["m"] * 3, "mode": ["base", "var", "var"], **{k: [0.0, 1.0, 0.5] for k in GPG_METRICS}}
    >>> table = pd.DataFrame({"setting": ["base", "a", "b"], "tau": [None, 0.0, 0.1], "temperature": [None, 0.1, 0.1],
    ...                       "use_abs": [None, True, True], "normalize": [None] * 3, **rows})
    >>> summarize_sensitivity(table)[["setting", "tau", "mode", "n", "pointing_mean"]]
      setting  tau  mode  n  pointing_mean
    0    base  NaN  base  1            0.0
    1       a  0.0   var  1            1.0
    2       b  0.1   var  1            0.5
    """
    check_result_table(table, SENSITIVITY_SETTING_COLUMNS, "refine_sensitivity")
    parts = []
    for label, rows in table.groupby("setting", sort=False):
        summary = summarize(rows)
        parameters = rows.iloc[0][list(SENSITIVITY_SETTING_COLUMNS[1:])]
        for position, column in enumerate(SENSITIVITY_SETTING_COLUMNS):
            summary.insert(position, column, label if column == "setting" else parameters[column])
        parts.append(summary)
    return pd.concat(parts, ignore_index=True)
