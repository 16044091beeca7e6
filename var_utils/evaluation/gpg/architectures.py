"""The grid pointing game on the three Fashion-MNIST architectures: CNN, ViT and B-cos network.

Each model is scored with the methods that apply to it (:data:`ARCHITECTURE_METHODS`),
base maps against VAR in the paper's setting and with ``normalize="joint"``,
both refinements of the same base maps (:func:`.sensitivity.refine_sensitivity`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..._io import atomic_output_path
from ..._validation import check_choice
from ...datasets.grids import GRID_PROTOCOLS
from ...models import load_model
from ...refine import check_refine_settings
from ..metrics import METRIC_DEFAULTS
from .runner import build_methods
from .sensitivity import refine_sensitivity, summarize_sensitivity
from .sources import fashion_mnist_grids
from .store import settings_path

_GRADIENTS = {"saliency": {}, "input_x_gradient": {}, "integrated_gradients": {"n_steps": 16}}

#: The methods scored per architecture: the gradient family everywhere, then each architecture's own.
ARCHITECTURE_METHODS: dict[str, dict[str, dict]] = {
    "fashion_mnist_cnn": {**_GRADIENTS, "guided_backprop": {}, "gradcam": {}, "lrp": {}},
    "fashion_mnist_vit": {
        **_GRADIENTS,
        "guided_backprop": {},
        "gradcam": {},
        "attention_gradcam": {},
        "attention_rollout": {},
        "gradient_rollout": {},
        "attnlrp": {},
    },
    "fashion_mnist_bcos": {**_GRADIENTS, "gradcam": {}, "bcos": {}},
}

#: The refinements compared, by label: the paper's setting and the joint scaling of the K maps.
ARCHITECTURE_SETTINGS = {"paper": {}, "joint": {"normalize": "joint"}}


def compare_architectures(
    models: Sequence[str] = tuple(ARCHITECTURE_METHODS),
    protocol: str = "paper",
    n_grids: int | None = None,
    methods: Mapping[str, Mapping[str, Mapping]] | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """Summaries of the grid pointing game per architecture, method and refinement.

    Parameters
    ----------
    models : sequence of str
        Keys of :data:`ARCHITECTURE_METHODS` (or of ``methods``).
    protocol : {"paper", "strict"}
        Grid protocol; ``"strict"`` keeps the images each model classifies correctly, so its grids differ per model.
    n_grids : int, optional
        Grids per model (all by default: 2,500 for ``"paper"``).
    methods : dict, optional
        Model name -> {method name -> settings}; default :data:`ARCHITECTURE_METHODS`.
    batch_size : int
        Grids per attribution call.
    progress : bool
        Show progress bars.

    Returns
    -------
    pandas.DataFrame
        The :func:`.sensitivity.summarize_sensitivity` rows of every model, with
        ``model`` and ``protocol`` columns first; ``setting`` is ``"base"``,
        ``"paper"`` or ``"joint"``.

    Examples
    --------
    >>> table = compare_architectures(["fashion_mnist_bcos"], n_grids=2, methods={"fashion_mnist_bcos": {"bcos": {}}},
    ...                               progress=False)
    >>> table["setting"].tolist(), table["n"].tolist()
    (['base', 'paper', 'joint'], [8, 8, 8])
    """
    if isinstance(models, str) or not isinstance(models, Sequence):
        raise TypeError(f"`models` must be a list of model names, got {type(models).__name__}.")
    check_choice(protocol, "protocol", GRID_PROTOCOLS)
    methods = ARCHITECTURE_METHODS if methods is None else methods
    unknown = [name for name in models if name not in methods]
    if unknown:
        raise ValueError(f"No methods are given for model(s) {unknown}; expected names from {sorted(methods)}.")
    summaries = []
    for name in models:
        model = load_model(name)
        grids = fashion_mnist_grids(n_grids, protocol=protocol, model=model)
        settings = list(ARCHITECTURE_SETTINGS.values())
        table = refine_sensitivity(model, grids, methods[name], settings, batch_size=batch_size, progress=progress)
        summary = summarize_sensitivity(table)
        # refine_sensitivity labels settings by their values, in the order given: name them by ours.
        labels = dict(zip(dict.fromkeys(table["setting"]), ["base", *ARCHITECTURE_SETTINGS]))
        summary["setting"] = summary["setting"].map(labels)
        summary.insert(0, "protocol", protocol)
        summary.insert(0, "model", name)
        summaries.append(summary)
    return pd.concat(summaries, ignore_index=True)


def comparison_fingerprint(
    models: Sequence[str],
    protocol: str,
    n_grids: int | None,
    methods: Mapping[str, Mapping[str, Mapping]] | None = None,
) -> dict:
    """What a :func:`compare_architectures` run measured, as plain JSON values.

    Parameters
    ----------
    models, protocol, n_grids, methods
        As given to :func:`compare_architectures`.

    Returns
    -------
    dict
        The models, the grid source (Fashion-MNIST, protocol, seed 42, number of
        grids), the refine settings (completed with their defaults), the
        binarisation settings, and each model's methods with their declared settings.
    """
    methods = ARCHITECTURE_METHODS if methods is None else methods
    return {
        "models": list(models),
        "source": {
            **fashion_mnist_grids(1, protocol="paper").description,
            "protocol": protocol,
            "grids": n_grids or "all",
        },
        "refine_settings": {label: check_refine_settings(setting) for label, setting in ARCHITECTURE_SETTINGS.items()},
        "metric_settings": dict(METRIC_DEFAULTS),
        "methods": {
            name: {label: method.fingerprint() for label, method in build_methods(methods[name]).items()}
            for name in models
        },
    }


def save_summary(table: pd.DataFrame, out: str | Path, fingerprint: Mapping | None = None) -> Path:
    """Write a summary table as CSV and its fingerprint as ``<out>.settings.json``, each atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        The table to write.
    out : str or Path
        The CSV path; its folder is created.
    fingerprint : dict, optional
        E.g. :func:`comparison_fingerprint`; written beside the CSV when given.

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output_path(out) as tmp_path:
        table.to_csv(tmp_path, index=False)
    if fingerprint is not None:
        with atomic_output_path(settings_path(out)) as tmp_path:
            tmp_path.write_text(json.dumps(fingerprint, indent=2) + "\n")
    return out


def setting_table(summary: pd.DataFrame, metric: str = "region_attribution") -> pd.DataFrame:
    """One metric's means side by side: a row per (protocol,) model and method, a column per setting.

    Parameters
    ----------
    summary : pandas.DataFrame
        Rows of :func:`compare_architectures` (one or several protocols).
    metric : str
        The metric whose ``_mean`` column is shown.

    Returns
    -------
    pandas.DataFrame
        Columns ``base``, ``paper``, ``joint``; rows in the order of ``summary``.
    """
    index = [column for column in ("protocol", "model", "method") if column in summary.columns]
    table = summary.pivot_table(index=index, columns="setting", values=f"{metric}_mean", sort=False)
    return table[[setting for setting in ("base", "paper", "joint") if setting in table.columns]]
