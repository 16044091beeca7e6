"""VAR against the class-discriminative methods it competes with, on the grid pointing game.

One run of :func:`~var_utils.evaluation.gpg.runner.evaluate_grid_pointing_game`
scores every method of :data:`CONTRASTIVE_METHODS` in every mode of
:data:`var_utils.engine.MODES`: the base maps, VAR (the paper's setting and
``normalize="joint"``), CGI's competition for pixels and the contrast to the
mean, all derived from the same base maps. The contrastive methods (softmax
gradient, contrastive Grad-CAM, CLRP, SGLRP) are methods of their own; in
``"var"`` mode they are composed with VAR. :func:`contrastive_evaluation`
summarises the table and compares every row, grid by grid, with VAR on the
base method it is an alternative to (:data:`CONTRASTIVE_REFERENCES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ...engine import MODES
from ...refine import check_refine_settings
from ..metrics import check_metric_settings
from .architectures import save_summary
from .comparison import check_comparison_settings, paired_comparison
from .runner import build_methods, evaluate_grid_pointing_game, run_settings, summarize

#: The methods of the comparison: VAR's base methods, then the class-discriminative ones.
CONTRASTIVE_METHODS: dict[str, dict] = {
    "saliency": {},
    "input_x_gradient": {},
    "gradcam": {},
    "lrp": {},
    "softmax_gradient": {},
    "softmax_saliency": {"method": "softmax_gradient", "multiply_by_inputs": False},
    "contrastive_gradcam": {},
    "clrp": {},
    "sglrp": {},
}

#: Coverage of the bootstrap intervals of the comparison.
CONFIDENCE = 0.95

#: Each class-discriminative method is compared with VAR on the base method it refines:
#: the softmax gradient (× input) with input × gradient, contrastive Grad-CAM with
#: Grad-CAM, CLRP and SGLRP with LRP. Every other row is compared with its own method's VAR.
CONTRASTIVE_REFERENCES = {
    "softmax_gradient": "input_x_gradient",
    "softmax_saliency": "saliency",
    "contrastive_gradcam": "gradcam",
    "clrp": "lrp",
    "sglrp": "lrp",
}


@dataclass(frozen=True)
class ContrastiveResults:
    """The cells, summary and paired comparison of a :func:`contrastive_evaluation` run.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per grid × cell × method × mode (:func:`~var_utils.evaluation.gpg.runner.evaluate_grid_pointing_game`).
    summary : pandas.DataFrame
        Mean and standard error per method and mode (:func:`~var_utils.evaluation.gpg.runner.summarize`).
    comparison : pandas.DataFrame
        Every row against its reference VAR rows (paper setting and joint scaling), paired by grid
        (:func:`~var_utils.evaluation.gpg.comparison.paired_comparison`).
    settings : dict
        What was run: model, grid source, modes, refine and metric settings,
        method fingerprints and the references.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    comparison: pd.DataFrame
    settings: dict

    def save(self, prefix: str | Path) -> tuple[Path, Path]:
        """Write ``<prefix>_summary.csv`` and ``<prefix>_comparison.csv`` (each with its settings), atomically.

        Parameters
        ----------
        prefix : str or Path
            Path prefix, e.g. ``results/contrastive_fashion_mnist_paper``.

        Returns
        -------
        tuple of Path
            The summary and comparison paths.
        """
        prefix = Path(prefix)
        return tuple(
            save_summary(frame, prefix.with_name(f"{prefix.name}_{kind}.csv"), self.settings)
            for kind, frame in (("summary", self.summary), ("comparison", self.comparison))
        )


def contrastive_evaluation(
    model: nn.Module,
    grids: torch.utils.data.Dataset | Iterable,
    methods: Mapping[str, Mapping | None] | None = None,
    *,
    references: Mapping[str, str] | None = None,
    refine_settings: Mapping | None = None,
    metric_settings: Mapping | None = None,
    batch_size: int = 16,
    out: str | Path | None = None,
    progress: bool = True,
    reference_modes: Sequence[str] = ("var", "var_joint"),
    n_resamples: int = 2000,
    seed: int = 0,
) -> ContrastiveResults:
    """The grid pointing game of base, VAR, CGI, contrast-to-mean and contrastive methods, compared with VAR.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    grids : Dataset of GridSample or iterable of batches
        As in :func:`~var_utils.evaluation.gpg.runner.evaluate_grid_pointing_game`.
    methods : dict of str to dict, optional
        Method name -> settings; default :data:`CONTRASTIVE_METHODS`.
    references : dict of str to str, optional
        Method -> the method whose VAR rows it is compared with; default
        :data:`CONTRASTIVE_REFERENCES` (restricted to the methods run).
    refine_settings : dict, optional
        VAR's settings (``"var"`` mode; ``"var_joint"`` adds ``normalize="joint"``).
    metric_settings : dict, optional
        Binarisation settings of precision, recall, F1 and IoU.
    batch_size : int
        Grids per attribution call.
    out : str or Path, optional
        Per-cell CSV written as the run goes and read back to resume.
    progress : bool
        Show a progress bar.
    reference_modes : sequence of str, default ("var", "var_joint")
        Every row is compared with the reference method's rows in each of
        these modes: VAR in the paper's setting, and VAR with joint scaling
        (which rescues methods of small scale such as LRP).
    n_resamples, seed : int
        Bootstrap resamples and seed of the paired comparison.

    Returns
    -------
    ContrastiveResults
        The per-cell table, its summary, the paired comparison and the settings.

    Examples
    --------
    >>> from var_utils import load_model
    >>> from var_utils.evaluation.gpg import fashion_mnist_grids
    >>> results = contrastive_evaluation(load_model("fashion_mnist_cnn"), fashion_mnist_grids(n_grids=4),
    ...                                  {"gradcam": {}, "contrastive_gradcam": {}}, progress=False, n_resamples=50)
    >>> results.summary["mode"].tolist()[:5]
    ['base', 'var', 'var_joint', 'cgi', 'contrast_mean']
    >>> sorted(set(results.comparison["reference_method"]))
    ['gradcam']
    """
    methods = CONTRASTIVE_METHODS if methods is None else methods
    if references is None and isinstance(methods, Mapping):
        references = {name: ref for name, ref in CONTRASTIVE_REFERENCES.items() if name in methods and ref in methods}
    if isinstance(reference_modes, str) or not isinstance(reference_modes, Sequence) or not reference_modes:
        raise TypeError(f"`reference_modes` must be a non-empty sequence of modes, got {reference_modes!r}.")
    # Checked before the run, which may take hours.
    comparison_settings = [
        check_comparison_settings(references, mode, n_resamples, CONFIDENCE, seed) for mode in reference_modes
    ]
    table = evaluate_grid_pointing_game(
        model,
        grids,
        methods,
        modes=MODES,
        refine_settings=refine_settings,
        metric_settings=metric_settings,
        batch_size=batch_size,
        out=out,
        progress=progress,
    )
    settings = run_settings(
        model,
        grids,
        build_methods(methods),
        MODES,
        refine_settings=check_refine_settings(refine_settings),
        metric_settings=check_metric_settings(metric_settings),
    )
    comparison = pd.concat([paired_comparison(table, **checked) for checked in comparison_settings], ignore_index=True)
    settings["grids"] = int(table["grid"].nunique())
    settings["comparison"] = {
        "references": dict(references),
        "reference_modes": list(reference_modes),
        "n_resamples": n_resamples,
        "confidence": CONFIDENCE,
        "seed": seed,
    }
    return ContrastiveResults(table, summarize(table), comparison, settings)
