"""Base-vs-VAR tables for the paper's other experiments: sanity checks and insertion/deletion.

Each function runs several base methods, scores the target's base map and its
VAR map (or any maps of :data:`var_utils.engine.MODES`, e.g. CGI's) the same
way, and returns a tidy ``pandas.DataFrame`` with ``method`` and ``mode``
columns, ready for ``groupby``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..engine import MAP_MODES, base_and_var_maps, check_modes
from ..explainers import VarExplainer
from .perturbation import PERTURBATION_CURVES, insertion_deletion
from .sanity import randomization_similarity


def grid_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every cell of every grid as a target, with its grid's labels as class set.

    Target ``g * n + c`` is cell ``c`` of grid ``g``; its class set is the
    grid's labels rolled so that label ``c`` comes first.

    Parameters
    ----------
    labels : torch.Tensor
        (G, n) cell labels, distinct within each grid (the ``strict`` protocol).

    Returns
    -------
    grid_index : torch.Tensor
        (G * n,) grid of each target.
    class_sets : torch.Tensor
        (G * n, n) class sets, each target's label first.

    Examples
    --------
    >>> grid_targets(torch.tensor([[3, 1, 4, 0]]))[1]
    tensor([[3, 1, 4, 0],
            [1, 4, 0, 3],
            [4, 0, 3, 1],
            [0, 3, 1, 4]])
    """
    num_grids, num_cells = labels.shape
    positions = (torch.arange(num_cells).view(-1, 1) + torch.arange(num_cells).view(1, -1)) % num_cells
    class_sets = labels[:, positions].flatten(0, 1)
    return torch.arange(num_grids).repeat_interleave(num_cells), class_sets


def target_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    class_sets: torch.Tensor,
    method: str,
    refine_settings: Mapping | None = None,
    *,
    modes: Sequence[str] = MAP_MODES,
    **method_kwargs,
) -> dict[str, torch.Tensor]:
    """Base and VAR maps (or those of ``modes``) of each image's first class (its target), from one engine call.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    inputs : torch.Tensor
        Images (N, C, H, W).
    class_sets : torch.Tensor
        (N, K) class sets, each image's target first.
    method : str
        A method name of :data:`var_utils.METHODS`; ``method_kwargs`` configure it.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    modes : sequence of str, default ("base", "var")
        Which maps, from :data:`var_utils.engine.MODES`.
    **method_kwargs
        Settings of the method.

    Returns
    -------
    dict of str to torch.Tensor
        ``{mode: maps}`` for every mode of ``modes``, each (N, C', H, W).
    """
    maps = base_and_var_maps(model, inputs, class_sets, method, refine_settings, modes=modes, **method_kwargs)
    return {mode: class_maps[:, 0] for mode, class_maps in maps.items()}


def sanity_check_table(
    model: nn.Module,
    inputs: torch.Tensor,
    class_sets: torch.Tensor,
    methods: Mapping[str, Mapping],
    *,
    layer_names: Sequence[str] | None = None,
    seed: int = 0,
    refine_settings: Mapping | None = None,
    modes: Sequence[str] = MAP_MODES,
) -> pd.DataFrame:
    """Cascading randomisation similarity for every method, base vs VAR (or every mode of ``modes``).

    Parameters
    ----------
    model : nn.Module
        The trained model; never modified.
    inputs : torch.Tensor
        Images (N, C, H, W).
    class_sets : torch.Tensor
        (N, K) class sets, each image's target first (see
        :func:`var_utils.competing_classes`); they stay fixed while the model
        is randomised.
    methods : mapping of str to mapping
        Method name -> its settings.
    layer_names, seed
        As in :func:`var_utils.evaluation.sanity.cascading_randomization`.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    modes : sequence of str, default ("base", "var")
        Which maps, from :data:`var_utils.engine.MODES`.

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`var_utils.evaluation.sanity.randomization_similarity`
        for every method and mode, with ``method`` and ``mode`` columns added.
    """
    targets = class_sets[:, 0]
    modes = check_modes(modes)
    tables = [
        randomization_similarity(
            model,
            VarExplainer(method, class_sets, mode=mode, refine_settings=refine_settings, **kwargs),
            inputs,
            targets,
            layer_names=layer_names,
            seed=seed,
        ).assign(method=method, mode=mode)
        for method, kwargs in methods.items()
        for mode in modes
    ]
    return pd.concat(tables, ignore_index=True)


def perturbation_table(
    model: nn.Module,
    inputs: torch.Tensor,
    class_sets: torch.Tensor,
    methods: Mapping[str, Mapping],
    *,
    step: int | None = None,
    batch_size: int = 256,
    refine_settings: Mapping | None = None,
    modes: Sequence[str] = MAP_MODES,
) -> pd.DataFrame:
    """Insertion and deletion AUC of each image's target for every method, base vs VAR (or every mode of ``modes``).

    Parameters
    ----------
    model : nn.Module
        The classifier; put it in eval mode yourself (the insertion and
        deletion passes run it as it is).
    inputs : torch.Tensor
        Images (N, C, H, W).
    class_sets : torch.Tensor
        (N, K) class sets, each image's target first.
    methods : mapping of str to mapping
        Method name -> its settings.
    step, batch_size
        As in :func:`var_utils.evaluation.perturbation.insertion_deletion`.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    modes : sequence of str, default ("base", "var")
        Which maps, from :data:`var_utils.engine.MODES`.

    Returns
    -------
    pandas.DataFrame
        One row per (method, mode, curve, sample) with columns ``method``,
        ``mode``, ``curve``, ``sample`` and ``auc`` (deletion: lower is better;
        insertion: higher is better).
    """
    targets = class_sets[:, 0]
    rows = []
    for method, kwargs in methods.items():
        for mode, maps in target_maps(
            model, inputs, class_sets, method, refine_settings, modes=modes, **kwargs
        ).items():
            for curve in PERTURBATION_CURVES:
                result = insertion_deletion(model, inputs, maps, targets, curve=curve, step=step, batch_size=batch_size)
                rows += [
                    {"method": method, "mode": mode, "curve": curve, "sample": i, "auc": float(a)}
                    for i, a in enumerate(result.auc)
                ]
    return pd.DataFrame(rows)
