"""Shared vs discriminative features, and actionable features (removing what VAR selects).

*Discriminative* evidence of a class is its VAR map: where it wins the local
competition against the related classes. *Shared* evidence is what every
class of the set has where none of them wins:

    shared = min_k max(A_k, 0) ⊙ 1[ max_k M_k − 1/K ≤ τ ]

with ``M`` the local class distribution of :func:`var_utils.refine.class_distribution`.
It is zero wherever some class wins (there the evidence is discriminative), it
never exceeds any class's positive base map, and it does not depend on the
order of the classes.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ._checks import check_images, check_logits
from .perturbation import attribution_maps_2d, check_targets, remove_region
from .refine import class_distribution


def shared_map(
    maps: torch.Tensor | Sequence[torch.Tensor],
    *,
    tau: float = 0.01,
    temperature: float = 0.1,
    use_abs: bool = True,
    normalize: str | None = None,
    class_dim: int = 0,
) -> torch.Tensor:
    """Evidence that all classes of the set share: the positive part common to every map, where no class wins.

    Parameters
    ----------
    maps, tau, temperature, use_abs, normalize, class_dim
        As in :func:`var_utils.refine_all` (base maps of K related classes).

    Returns
    -------
    torch.Tensor
        The shared map, shape of ``maps`` without ``class_dim``; non-negative.

    Examples
    --------
    >>> shared_map(torch.tensor([[1.0, 0.9], [1.0, 0.1]]))
    tensor([1., 0.])
    """
    maps = maps if isinstance(maps, torch.Tensor) else torch.stack(list(maps))
    distribution = class_distribution(
        maps, temperature=temperature, use_abs=use_abs, normalize=normalize, class_dim=class_dim
    )
    num_classes = maps.shape[class_dim]
    no_winner = distribution.amax(dim=class_dim) - 1.0 / num_classes <= tau
    common = maps.clamp(min=0).amin(dim=class_dim)
    return torch.where(no_winner, common, torch.zeros_like(common))


def top_pixels_mask(scores: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(N, H, W) mask of the ``counts[n]`` highest-scoring pixels of each (N, H, W) score map (ties: row-major)."""
    order = scores.flatten(1).argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (ranks < counts.view(-1, 1)).view_as(scores)


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
    with :func:`var_utils.perturbation.remove_region`.

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
    var_region = attribution_maps_2d(var_maps, inputs, "var_maps") > 0
    base_scores = attribution_maps_2d(base_maps, inputs, "base_maps")
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
