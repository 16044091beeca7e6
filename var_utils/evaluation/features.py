"""Actionable features: remove the region VAR selects for a class and see whether the prediction changes.

*Discriminative* evidence of a class is its VAR map: where it wins the local
competition against related classes; the evidence they share is
:func:`var_utils.shared_map`. :func:`actionable_removal` removes the VAR region
and, as a control, an equal-area region chosen by the base map
(``docs/method.md``, section 8).
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .._validation import channel_summed_maps, check_images, check_logits, check_targets
from .perturbation import pixel_ranks, remove_region


def top_pixels_mask(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mask of the ``counts[n]`` highest-scoring pixels of each score map (ties: row-major).

    Parameters
    ----------
    scores : torch.Tensor
        (N, H, W) pixel scores.
    counts : torch.Tensor
        (N,) number of pixels to keep per image.

    Returns
    -------
    torch.Tensor
        (N, H, W) bool mask.

    Examples
    --------
    >>> top_pixels_mask(torch.tensor([[[0.1, 0.9], [0.5, 0.9]]]), torch.tensor([2]))
    tensor([[[False,  True],
             [False,  True]]])
    """
    return (pixel_ranks(scores) < counts.view(-1, 1)).view_as(scores)


def _prediction(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        probabilities = check_logits(model(images), images.shape[0]).softmax(dim=1)
    return probabilities.gather(1, targets.view(-1, 1)).squeeze(1), probabilities.argmax(dim=1)


def actionable_removal(
    model: nn.Module,
    inputs: torch.Tensor,
    var_maps: torch.Tensor,
    base_maps: torch.Tensor,
    targets: torch.Tensor,
    *,
    how: str = "blur",
) -> pd.DataFrame:
    """Remove the region VAR selects for the target, and an equal-area region chosen by the base map.

    The VAR region is every pixel whose channel-summed VAR map is positive
    (evidence the target wins); the base region holds the same number of
    pixels with the highest channel-summed base map. Each region is removed
    with :func:`var_utils.evaluation.perturbation.remove_region`.

    Parameters
    ----------
    model : nn.Module
        Classifier (eval mode is the caller's responsibility).
    inputs : torch.Tensor
        Images (N, C, H, W).
    var_maps, base_maps : torch.Tensor
        The target's VAR and base maps, (N, C', H, W) or (N, H, W).
    targets : torch.Tensor
        (N,) target classes.
    how : {"blur", "grey", "zeros"}
        What the removed region becomes.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``area`` (fraction of pixels removed), the target's
        probability before and after each removal, the top class before and
        after, and whether the top class changed.
    """
    inputs = check_images(inputs)
    targets = check_targets(targets, inputs.shape[0])
    var_region = channel_summed_maps(var_maps, inputs, "var_maps") > 0
    base_scores = channel_summed_maps(base_maps, inputs, "base_maps")
    base_region = top_pixels_mask(base_scores, var_region.flatten(1).sum(dim=1))
    p_before, top_before = _prediction(model, inputs, targets)
    p_var, top_var = _prediction(model, remove_region(inputs, var_region, how=how), targets)
    p_base, top_base = _prediction(model, remove_region(inputs, base_region, how=how), targets)
    return pd.DataFrame(
        {
            "target": targets.tolist(),
            "area": var_region.flatten(1).float().mean(dim=1).tolist(),
            "p_before": p_before.tolist(),
            "p_after_var": p_var.tolist(),
            "p_after_base": p_base.tolist(),
            "top_before": top_before.tolist(),
            "top_after_var": top_var.tolist(),
            "top_after_base": top_base.tolist(),
            "changed_var": (top_var != top_before).tolist(),
            "changed_base": (top_base != top_before).tolist(),
        }
    )
