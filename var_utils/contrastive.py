"""Class-discriminative maps from the K base maps of a set: the alternatives to VAR's refinement.

Like :func:`var_utils.refine_all`, each function takes the base maps ``A_1 … A_K``
of a class set stacked on ``class_dim`` and returns one map per class:

* :func:`competition_for_pixels` (CGI, Gupta & Arora 2019): a class keeps its
  positive value where it is the largest of the set and its negative value where
  it is the smallest; zero elsewhere. It is VAR with a hard arg-max of the signed
  maps instead of the softmax, and no τ (``docs/method.md``, section 13).
* :func:`contrast_to_mean`: ``A_t − mean_{j≠t} A_j``, the simplest baseline.
"""

from __future__ import annotations

import torch

from .refine import Maps, check_class_maps, stack_maps


def competition_for_pixels(maps: Maps, *, class_dim: int = 0) -> torch.Tensor:
    """CGI's competition for pixels: each element goes to the class with the largest (or most negative) value.

    Class t keeps ``A_t`` where ``A_t > 0`` and ``A_t = max_j A_j``, or where
    ``A_t < 0`` and ``A_t = min_j A_j``; everything else is zero. Both extrema
    include ``A_t`` itself and ties keep every tied class (comparing strictly
    against a maximum that includes the target would zero every map).

    Parameters
    ----------
    maps : torch.Tensor or sequence of torch.Tensor
        Base maps of the K classes stacked on ``class_dim`` (a list of equally
        shaped tensors is stacked on dim 0).
    class_dim : int, default 0
        The dimension that indexes the classes.

    Returns
    -------
    torch.Tensor
        The maps of all K classes, shape of ``maps``.

    Examples
    --------
    >>> competition_for_pixels(torch.tensor([[2.0, -1.0, 0.5], [1.0, -3.0, 0.5]]))
    tensor([[ 2.0000,  0.0000,  0.5000],
            [ 0.0000, -3.0000,  0.5000]])
    """
    maps = stack_maps(maps)
    class_dim = check_class_maps(maps, class_dim)
    largest = maps.amax(dim=class_dim, keepdim=True)
    smallest = maps.amin(dim=class_dim, keepdim=True)
    wins = ((maps > 0) & (maps >= largest)) | ((maps < 0) & (maps <= smallest))
    return torch.where(wins, maps, torch.zeros_like(maps))


def contrast_to_mean(maps: Maps, *, class_dim: int = 0) -> torch.Tensor:
    """Each class's map minus the mean map of the other classes of the set.

    Parameters
    ----------
    maps : torch.Tensor or sequence of torch.Tensor
        Base maps of the K classes stacked on ``class_dim``.
    class_dim : int, default 0
        The dimension that indexes the classes.

    Returns
    -------
    torch.Tensor
        ``A_t − mean_{j≠t} A_j`` for every class t, shape of ``maps``.

    Examples
    --------
    >>> contrast_to_mean(torch.tensor([[3.0], [1.0], [2.0]]))
    tensor([[ 1.5000],
            [-1.5000],
            [ 0.0000]])
    """
    maps = stack_maps(maps)
    class_dim = check_class_maps(maps, class_dim)
    count = maps.shape[class_dim]
    others_mean = (maps.sum(dim=class_dim, keepdim=True) - maps) / (count - 1)
    return maps - others_mean
