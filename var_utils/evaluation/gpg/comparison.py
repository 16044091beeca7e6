"""Paired comparison of grid pointing game rows against a reference (e.g. VAR), grid by grid.

The four cells of a grid share an image and a class set, so they are not
independent samples. The unit of every comparison here is therefore the grid:
each metric is averaged over a grid's cells, and two (method, mode) rows are
paired by grid. For each pair the table gives the mean difference, a bootstrap
percentile interval of it (grids resampled with replacement) and the two-sided
p-value of the Wilcoxon signed-rank test of the per-grid differences.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..._validation import check_choice, check_positive_int
from ...engine import MODES
from .scoring import GPG_METRICS, check_result_table

#: Columns of a :func:`paired_comparison` table.
COMPARISON_COLUMNS = (
    "method",
    "mode",
    "reference_method",
    "reference_mode",
    "metric",
    "n_grids",
    "mean",
    "reference_mean",
    "difference",
    "ci_low",
    "ci_high",
    "wilcoxon_p",
)


def _check_metrics(metrics: object) -> tuple[str, ...]:
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics:
        raise TypeError(f"`metrics` must be a non-empty sequence from {list(GPG_METRICS)}, got {metrics!r}.")
    unknown = [metric for metric in metrics if metric not in GPG_METRICS]
    if unknown:
        raise ValueError(f"`metrics` has unknown metric(s) {unknown}; expected some of {list(GPG_METRICS)}.")
    return tuple(metrics)


def _check_confidence(confidence: object) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be a number in (0, 1), e.g. 0.95; got {confidence!r}.")
    return float(confidence)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test that the differences are centred on 0.

    Zero differences are dropped (Wilcoxon's convention); when every
    difference is zero there is no evidence of a difference and the p-value is
    1.0. scipy chooses how to compute it (``method="auto"``): exactly for
    small samples, from the normal approximation for large ones or when there
    are zeros or ties.

    Parameters
    ----------
    differences : numpy.ndarray
        Paired differences, shape (n,).

    Returns
    -------
    float
        The p-value in [0, 1].

    Examples
    --------
    >>> round(wilcoxon_p(np.array([1.0, 2.0, 3.0, 4.0, 5.0])), 4)
    0.0625
    """
    differences = np.asarray(differences, dtype=np.float64)
    if not np.any(differences):
        return 1.0
    return float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)


def bootstrap_interval(
    differences: np.ndarray, rng: np.random.Generator, n_resamples: int, confidence: float
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (resampled with replacement).

    Parameters
    ----------
    differences : numpy.ndarray
        Paired differences, shape (n,).
    rng : numpy.random.Generator
        Source of the resamples.
    n_resamples : int
        Number of bootstrap resamples.
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    tuple of float
        ``(low, high)``.

    Examples
    --------
    >>> bootstrap_interval(np.full(5, 0.5), np.random.default_rng(0), 100, 0.95)
    (0.5, 0.5)
    """
    draws = rng.integers(0, len(differences), size=(n_resamples, len(differences)))
    means = differences[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def check_comparison_settings(
    references: object, reference_mode: object, n_resamples: object, confidence: object, seed: object
) -> dict:
    """The settings of :func:`paired_comparison`, checked, so a long run can check them before it starts.

    Parameters
    ----------
    references, reference_mode, n_resamples, confidence, seed
        As in :func:`paired_comparison`.

    Returns
    -------
    dict
        ``references`` (a dict), ``reference_mode``, ``n_resamples``, ``confidence`` and ``seed``.

    Raises
    ------
    TypeError, ValueError
        A setting of the wrong type or out of range, naming it.
    """
    if references is not None and not isinstance(references, Mapping):
        raise TypeError(f"`references` must be a dict of method -> reference method, got {type(references).__name__}.")
    references = dict(references or {})
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in references.items()):
        raise TypeError(f"`references` must map method names to method names, got {references!r}.")
    check_choice(reference_mode, "reference_mode", MODES)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"`seed` must be a non-negative int, got {seed!r}.")
    return {
        "references": references,
        "reference_mode": reference_mode,
        "n_resamples": check_positive_int(n_resamples, "n_resamples"),
        "confidence": _check_confidence(confidence),
        "seed": int(seed),
    }


def _per_grid(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Each metric averaged over the cells of each grid: index (method, mode), columns grid × metric."""
    means = table.groupby(["method", "mode", "grid"], sort=False)[list(metrics)].mean()
    return means.unstack("grid")


def paired_comparison(
    table: pd.DataFrame,
    references: Mapping[str, str] | None = None,
    *,
    reference_mode: str = "var",
    metrics: Sequence[str] = GPG_METRICS,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Every (method, mode) of a grid pointing game table against its reference row, paired by grid.

    Row (method, mode) is compared with (``references.get(method, method)``,
    ``reference_mode``): by default each method's other modes against its own
    VAR maps; ``references`` pairs a method with another one's VAR maps (e.g.
    ``{"softmax_gradient": "input_x_gradient"}``). The reference row itself is
    left out. Only grids present in both rows are paired.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`~var_utils.evaluation.gpg.runner.evaluate_grid_pointing_game`
        (columns ``grid``, ``method``, ``mode`` and the metrics).
    references : dict of str to str, optional
        Method -> the method whose ``reference_mode`` rows it is compared with.
    reference_mode : str, default "var"
        The mode of the reference rows.
    metrics : sequence of str, default all of :data:`~var_utils.evaluation.gpg.scoring.GPG_METRICS`
        The metrics to compare.
    n_resamples : int, default 2000
        Bootstrap resamples of the grids.
    confidence : float, default 0.95
        Coverage of the bootstrap interval.
    seed : int, default 0
        Seed of the bootstrap.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COMPARISON_COLUMNS`, one row per compared (method, mode)
        and metric, in order of appearance: the per-grid means of the row and
        of its reference, ``difference`` = row − reference, its bootstrap
        interval ``ci_low`` … ``ci_high`` and ``wilcoxon_p``.

    Raises
    ------
    TypeError, ValueError
        ``table`` is not a non-empty table of the grid pointing game or holds
        several rows per (method, mode, grid, cell), bad ``metrics`` or other
        settings, ``references`` naming a method the table lacks, or a
        reference row that the table lacks or that shares no grid with the row.

    Examples
    --------
    >>> rows = pd.DataFrame({"grid": [0, 1, 2] * 2, "cell": 0, "method": "m", "mode": ["base"] * 3 + ["var"] * 3,
    ...                      "pointing": [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]})
    >>> paired_comparison(rows, metrics=["pointing"])[["mode", "mean", "reference_mean", "difference"]]
       mode      mean  reference_mean  difference
    0  base  0.333333             1.0   -0.666667
    """
    metrics = _check_metrics(metrics)
    check_result_table(table, ["grid", "cell", "method", "mode", *metrics], "evaluate_grid_pointing_game", "compare")
    settings = check_comparison_settings(references, reference_mode, n_resamples, confidence, seed)
    references = settings["references"]
    repeated = table.duplicated(["method", "mode", "grid", "cell"])
    if repeated.any():
        first = table[repeated].iloc[0]
        raise ValueError(
            f"`table` holds several rows for method {first['method']!r}, mode {first['mode']!r}, grid {first['grid']}, "
            f"cell {first['cell']} (e.g. several binarisations or refine settings, or two runs): select one first."
        )
    unknown = sorted(set(references) - set(table["method"]))
    if unknown:
        raise ValueError(f"`references` names method(s) {unknown} that `table` does not have.")
    per_grid = _per_grid(table, metrics)
    rows = []
    for method, mode in per_grid.index:
        reference = (references.get(method, method), reference_mode)
        if (method, mode) == reference:
            continue
        if reference not in per_grid.index:
            raise ValueError(
                f"`table` has no rows of method {reference[0]!r} in mode {reference[1]!r} to compare "
                f"{method!r} ({mode}) with; give `references` or add those rows."
            )
        for metric in metrics:
            pair = pd.DataFrame({"row": per_grid.loc[(method, mode), metric], "ref": per_grid.loc[reference, metric]})
            pair = pair.dropna()
            if pair.empty:
                raise ValueError(f"{method!r} ({mode}) and its reference {reference} share no grid.")
            differences = (pair["row"] - pair["ref"]).to_numpy()
            # One stream per comparison, so its interval does not depend on the other rows of the table.
            stream = zlib.crc32("\0".join([method, mode, *reference, metric]).encode())
            rng = np.random.default_rng([settings["seed"], stream])
            low, high = bootstrap_interval(differences, rng, settings["n_resamples"], settings["confidence"])
            rows.append(
                (
                    method,
                    mode,
                    *reference,
                    metric,
                    len(pair),
                    pair["row"].mean(),
                    pair["ref"].mean(),
                    differences.mean(),
                    low,
                    high,
                    wilcoxon_p(differences),
                )
            )
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
