"""The VAR refinement: keep a class's map only where it wins the local class competition.

Given the base maps ``A_1 … A_K`` of the K classes of a set, VAR computes at every
element (channel and pixel) a softmax over the classes,

    M_k = softmax_k( s(A_k) / t ),    s = |·| if ``use_abs`` else identity,

and returns for the target class j

    V_j = A_j ⊙ M_j ⊙ 1[ M_j − 1/K > τ ].

The output keeps the sign of ``A_j``; ``|·|`` is used inside the softmax only.
:func:`shared_map` reads the same distribution the other way round: the evidence
every class has where none of them wins. The formula, its defaults and the choice
of ``normalize`` are explained in ``docs/method.md`` (sections 1 and 8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ._validation import check_choice, check_finite, check_positive

DEFAULT_TAU = 0.01
DEFAULT_TEMPERATURE = 0.1
NORMALIZE_CHOICES = (None, "joint")
#: The refine settings and their defaults (the original's t = 0.1 and τ = 0.01, no scaling).
REFINE_DEFAULTS = {"tau": DEFAULT_TAU, "temperature": DEFAULT_TEMPERATURE, "use_abs": True, "normalize": None}

Maps = torch.Tensor | Sequence[torch.Tensor]


def stack_maps(maps: Maps) -> torch.Tensor:
    """K maps as one tensor: a tensor as it is, a list of equally shaped tensors stacked on dim 0."""
    if isinstance(maps, torch.Tensor):
        return maps
    if isinstance(maps, (list, tuple)) and all(isinstance(m, torch.Tensor) for m in maps):
        shapes = {tuple(m.shape) for m in maps}
        if len(shapes) != 1:
            raise ValueError(f"`maps` must all have the same shape, got shapes {sorted(shapes)}.")
        return torch.stack(list(maps))
    raise TypeError(f"`maps` must be a tensor or a list of tensors, got {type(maps).__name__}.")


def check_class_maps(maps: torch.Tensor, class_dim: int) -> int:
    """Check finite floating-point maps with at least two classes on ``class_dim``; return it non-negative."""
    if not maps.is_floating_point():
        raise TypeError(f"`maps` must be a floating-point tensor, got dtype {maps.dtype}.")
    if not -maps.dim() <= class_dim < maps.dim():
        raise ValueError(f"`class_dim` = {class_dim} is out of range for `maps` of shape {tuple(maps.shape)}.")
    class_dim %= maps.dim()
    if maps.shape[class_dim] < 2:
        raise ValueError(f"`maps` must hold at least two classes on dim {class_dim}, got shape {tuple(maps.shape)}.")
    check_finite(maps, "maps")
    return class_dim


def _check_tau(tau: object) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"`tau` must be a real number, got {type(tau).__name__}.")
    if tau != tau:
        raise ValueError("`tau` must be a real number, got NaN.")
    return float(tau)


def _check_use_abs(use_abs: object) -> bool:
    if not isinstance(use_abs, bool):
        raise TypeError(f"`use_abs` must be True or False, got {use_abs!r}.")
    return use_abs


def check_refine_settings(given: Mapping | None = None, name: str = "refine_settings") -> dict:
    """Complete refine settings with their defaults and check them, before any attribution runs.

    Parameters
    ----------
    given : dict, optional
        Some of ``tau``, ``temperature``, ``use_abs`` and ``normalize``.
    name : str, default "refine_settings"
        Argument name used in error messages.

    Returns
    -------
    dict
        All four settings: ``given`` on top of :data:`REFINE_DEFAULTS`.

    Raises
    ------
    TypeError, ValueError
        ``given`` is not a dict, has unknown keys, or a value is invalid.

    Examples
    --------
    >>> check_refine_settings({"tau": 0.0})
    {'tau': 0.0, 'temperature': 0.1, 'use_abs': True, 'normalize': None}
    """
    if given is not None and not isinstance(given, Mapping):
        raise TypeError(f"`{name}` must be a dict or None, got {type(given).__name__}.")
    unknown = sorted(set(given or {}) - set(REFINE_DEFAULTS))
    if unknown:
        raise ValueError(f"`{name}` has unknown key(s) {unknown}; expected some of {sorted(REFINE_DEFAULTS)}.")
    settings = {**REFINE_DEFAULTS, **(given or {})}
    settings["tau"] = _check_tau(settings["tau"])
    settings["temperature"] = check_positive(settings["temperature"], "temperature")
    settings["use_abs"] = _check_use_abs(settings["use_abs"])
    check_choice(settings["normalize"], "normalize", NORMALIZE_CHOICES)
    return settings


def class_distribution(
    maps: Maps,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    use_abs: bool = True,
    normalize: str | None = None,
    class_dim: int = 0,
) -> torch.Tensor:
    """Local class distribution ``M``: an element-wise softmax over the classes.

    Parameters
    ----------
    maps : torch.Tensor or sequence of torch.Tensor
        The base maps of the K classes stacked on ``class_dim`` (a list of
        equally shaped tensors is stacked on dim 0).
    temperature : float, default 0.1
        Softmax temperature ``t`` (the original code's ``softmax(10·|A|)``).
    use_abs : bool, default True
        Compare ``|A|`` across classes (else the signed maps).
    normalize : {None, "joint"}, default None
        ``"joint"`` divides ``s(A)`` by the largest ``|A|`` over all K maps of
        a sample before the softmax: one scale shared by the K maps, so the
        comparison between classes is intact and ``temperature`` means the
        same for every attribution method. ``None`` applies no scaling, as the
        original does.
    class_dim : int, default 0
        The dimension that indexes the classes; dimensions before it are
        batch dimensions (each sample normalised on its own).

    Returns
    -------
    torch.Tensor
        ``M`` with the shape of ``maps``; it sums to one over ``class_dim``.

    Examples
    --------
    >>> class_distribution(torch.tensor([[0.0], [0.1]]))
    tensor([[0.2689],
            [0.7311]])
    """
    maps = stack_maps(maps)
    class_dim = check_class_maps(maps, class_dim)
    temperature = check_positive(temperature, "temperature")
    _check_use_abs(use_abs)
    check_choice(normalize, "normalize", NORMALIZE_CHOICES)
    scores = maps.abs() if use_abs else maps
    if normalize == "joint":
        sample_dims = tuple(range(class_dim, maps.dim()))
        scale = maps.abs().amax(dim=sample_dims, keepdim=True)
        # An all-zero sample has no evidence for any class: keep it at zero (uniform M).
        scores = scores / torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.softmax(scores / temperature, dim=class_dim)


def refine_all(
    maps: Maps,
    *,
    tau: float = DEFAULT_TAU,
    temperature: float = DEFAULT_TEMPERATURE,
    use_abs: bool = True,
    normalize: str | None = None,
    class_dim: int = 0,
) -> torch.Tensor:
    """VAR maps of every class of the set at once.

    Parameters
    ----------
    maps, temperature, use_abs, normalize, class_dim
        As in :func:`class_distribution`.
    tau : float, default 0.01
        Threshold ``τ``: an element is kept only where ``M_k − 1/K > τ``.

    Returns
    -------
    torch.Tensor
        The VAR maps, shape of ``maps``: ``A_k ⊙ M_k ⊙ 1[M_k − 1/K > τ]``.

    Examples
    --------
    >>> maps = torch.tensor([[1.0, -0.2], [0.1, 0.9]])
    >>> refine_all(maps)
    tensor([[0.9999, 0.0000],
            [0.0000, 0.8992]])
    """
    maps = stack_maps(maps)
    tau = _check_tau(tau)
    distribution = class_distribution(
        maps, temperature=temperature, use_abs=use_abs, normalize=normalize, class_dim=class_dim
    )
    num_classes = maps.shape[class_dim % maps.dim()]
    keep = distribution - 1.0 / num_classes > tau
    return torch.where(keep, maps * distribution, torch.zeros_like(maps))


def refine(
    maps: Maps,
    target_index: int,
    *,
    tau: float = DEFAULT_TAU,
    temperature: float = DEFAULT_TEMPERATURE,
    use_abs: bool = True,
    normalize: str | None = None,
    class_dim: int = 0,
) -> torch.Tensor:
    """VAR map of one class of the set (``docs/method.md``, section 1).

    Parameters
    ----------
    maps : torch.Tensor or sequence of torch.Tensor
        Base maps of the K competing classes, stacked on ``class_dim``, e.g.
        (K, C, H, W) for one image or (N, K, C, H, W) with ``class_dim=1``.
    target_index : int
        Position of the target class in the set (not its class index).
    tau, temperature, use_abs, normalize, class_dim
        As in :func:`refine_all`.

    Returns
    -------
    torch.Tensor
        The target's VAR map: ``maps`` without ``class_dim``.

    Examples
    --------
    >>> refine(torch.tensor([[1.0, -0.2], [0.1, 0.9]]), 0)
    tensor([0.9999, 0.0000])
    """
    maps = stack_maps(maps)
    num_classes = maps.shape[class_dim % maps.dim()] if maps.dim() else 0
    if isinstance(target_index, bool) or not isinstance(target_index, int):
        raise TypeError(f"`target_index` must be an int, got {type(target_index).__name__}.")
    if not 0 <= target_index < num_classes:
        raise ValueError(
            f"`target_index` must be in 0..{num_classes - 1} (the class set's positions), got {target_index}."
        )
    refined = refine_all(
        maps, tau=tau, temperature=temperature, use_abs=use_abs, normalize=normalize, class_dim=class_dim
    )
    return refined.select(class_dim, target_index)


def shared_map(
    maps: Maps,
    *,
    tau: float = DEFAULT_TAU,
    temperature: float = DEFAULT_TEMPERATURE,
    use_abs: bool = True,
    normalize: str | None = None,
    class_dim: int = 0,
) -> torch.Tensor:
    """Evidence all classes of the set share: the positive part common to every map, where no class wins.

    ``shared = min_k max(A_k, 0) ⊙ 1[ max_k M_k − 1/K ≤ τ ]``. It is zero
    wherever some class wins (there the evidence is discriminative: the VAR
    map), never exceeds any class's positive base map, and does not depend on
    the order of the classes.

    Parameters
    ----------
    maps, tau, temperature, use_abs, normalize, class_dim
        As in :func:`refine_all` (base maps of K related classes).

    Returns
    -------
    torch.Tensor
        The shared map, shape of ``maps`` without ``class_dim``; non-negative.

    Examples
    --------
    >>> shared_map(torch.tensor([[1.0, 0.9], [1.0, 0.1]]))
    tensor([1., 0.])
    """
    maps = stack_maps(maps)
    tau = _check_tau(tau)
    distribution = class_distribution(
        maps, temperature=temperature, use_abs=use_abs, normalize=normalize, class_dim=class_dim
    )
    class_dim %= maps.dim()
    no_winner = distribution.amax(dim=class_dim) - 1.0 / maps.shape[class_dim] <= tau
    common = maps.clamp(min=0).amin(dim=class_dim)
    return torch.where(no_winner, common, torch.zeros_like(common))
