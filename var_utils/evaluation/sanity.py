"""Model parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

The layers of a trained model are re-initialised from the top (the output) down,
cascading: step 1 randomises the last layer, step 2 the last two, and so on. A map
that explains the model, not the input alone, must change as the model loses its
learnt parameters. The change is measured by SSIM and Spearman rank correlation
between the map of the original model and the map of each randomised model
(low similarity = the map passes the check).

Randomisation is reproducible and leaves the global RNG untouched: every layer is
re-initialised inside ``torch.random.fork_rng`` right after seeding with ``seed``.
A layer's new parameters therefore depend only on ``seed`` and the layer itself,
not on the other layers, and the model of a step is the same whichever steps are
requested. Quantus ``MPRT(seed=s)`` seeds every layer with ``s + 1`` in the same
way, so ``seed = s + 1`` here reproduces its randomised models.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from skimage.metrics import structural_similarity
from torch import nn

from .._model_state import eval_mode
from .._validation import channel_summed_maps, check_images, check_model, check_targets, check_tensor

# Standard deviation of the normal draw for modules without ``reset_parameters``.
FALLBACK_INIT_STD = 0.01
SSIM_WINDOW = 7
SIMILARITY_COLUMNS = ("step", "layer", "sample", "ssim", "spearman_abs", "spearman_signed")

Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _has_own_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _forward_order(model: nn.Module, names: Sequence[str], example_input: torch.Tensor) -> list[str]:
    modules = dict(model.named_modules())
    called: list[str] = []

    def recorder(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple) -> None:
            if name not in called:
                called.append(name)

        return record

    handles = [modules[name].register_forward_pre_hook(recorder(name)) for name in names]
    # eval + no_grad: the pass must not update batch-norm statistics or build a graph.
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return called


def randomizable_layers(model: nn.Module, example_input: torch.Tensor | None = None) -> list[str]:
    """Names of the modules that own parameters, bottom (input) to top (output).

    Parameters
    ----------
    model : nn.Module
        The model; it is not modified.
    example_input : torch.Tensor, optional
        An input batch. When given, layers are listed in the order the forward
        pass first calls them (hooks on one pass in eval mode, under
        ``torch.no_grad``), and modules the pass never calls are left out.
        Without it, the order is ``model.named_modules()`` (registration
        order), which differs from the forward order when a model registers
        modules out of order.

    Returns
    -------
    list of str
        Names (as in ``named_modules``) of modules with parameters of their own
        (``parameters(recurse=False)``): convolutions, linear and
        normalisation layers, and e.g. containers holding a class token.

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3))
    >>> randomizable_layers(model, torch.zeros(1, 1, 3, 3))
    ['0', '3']
    """
    check_model(model)
    names = [name for name, module in model.named_modules() if _has_own_parameters(module)]
    if example_input is None:
        return names
    return _forward_order(model, names, check_tensor(example_input, "example_input"))


@contextlib.contextmanager
def _seeded(seed: int, module: nn.Module) -> Iterator[None]:
    cuda_devices = sorted({p.device.index for p in module.parameters(recurse=False) if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda_devices):
        torch.default_generator.manual_seed(seed)
        for index in cuda_devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _reinitialise(module: nn.Module, seed: int) -> None:
    with _seeded(seed, module):
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
            return
        with torch.no_grad():
            for parameter in module.parameters(recurse=False):
                parameter.normal_(0.0, FALLBACK_INIT_STD)


def _check_layer_names(layer_names: Sequence[str] | None, order: list[str]) -> list[str]:
    if layer_names is None:
        return order
    if isinstance(layer_names, str):
        layer_names = [layer_names]
    unknown = [name for name in layer_names if name not in order]
    if unknown:
        raise ValueError(f"`layer_names` holds unknown layer(s) {unknown}; valid names (bottom to top): {order}.")
    if not layer_names:
        raise ValueError(f"`layer_names` must name at least one layer; valid names (bottom to top): {order}.")
    return [name for name in order if name in set(layer_names)]


def _cascade(model: nn.Module, order: list[str], steps: list[str], seed: int) -> Iterator[tuple[str, nn.Module]]:
    working = copy.deepcopy(model)
    modules = dict(working.named_modules())
    position = {name: index for index, name in enumerate(order)}
    lowest_randomized = len(order)
    for name in reversed(steps):
        for layer in reversed(order[position[name] : lowest_randomized]):
            _reinitialise(modules[layer], seed)
        lowest_randomized = position[name]
        yield name, copy.deepcopy(working)


def cascading_randomization(
    model: nn.Module,
    layer_names: Sequence[str] | None = None,
    *,
    seed: int = 0,
    example_input: torch.Tensor | None = None,
) -> Iterator[tuple[str, nn.Module]]:
    """Cascading top-down randomisation: one randomised copy of the model per step.

    Parameters
    ----------
    model : nn.Module
        The trained model; never modified.
    layer_names : sequence of str, optional
        The steps to yield, among :func:`randomizable_layers`. Default: every
        layer. Whatever the selection and its order, steps come top-down and
        the copy of step ``L`` has ``L`` and *every* randomisable layer above it
        re-initialised (a true cascade; the selection only picks the steps).
    seed : int, default 0
        Seed of every layer's re-initialisation (see the module docstring).
    example_input : torch.Tensor, optional
        Input used to put the layers in forward order (recommended); without it
        the registration order is used.

    Returns
    -------
    iterator of (str, nn.Module)
        ``(layer name, deep copy of the model)``, top layer first. Modules with
        ``reset_parameters`` use it (batch norm also resets its running
        statistics); others have each own parameter redrawn from
        N(0, ``FALLBACK_INIT_STD``²). The copies keep the model's
        train/eval mode and device.

    Raises
    ------
    ValueError
        If ``layer_names`` holds a name that is not a randomisable layer.

    Examples
    --------
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> [name for name, _ in cascading_randomization(model)]
    ['2', '0']
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}.")
    order = randomizable_layers(model, example_input)
    steps = _check_layer_names(layer_names, order)
    return _cascade(model, order, steps, seed)


def _as_array(value: object, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` must hold finite values only.")
    return array


def _map_pair(a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_array(a, "a"), _as_array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape, got {a.shape} and {b.shape}.")
    return a, b


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Structural similarity of two 2-D maps (scikit-image, raw values).

    The maps are not rescaled; ``data_range`` is the range of their union,
    ``max(a, b) - min(a, b)``, as in Quantus's ``ssim``. The window is 7x7
    (scikit-image's default), shrunk to the largest odd size that fits maps
    smaller than 7 pixels. Two constant maps have an empty range: they are
    identical, and the SSIM is defined as 1.

    Parameters
    ----------
    a, b : array-like
        Maps of the same shape (H, W), both sides at least 3.

    Returns
    -------
    float
        SSIM in [-1, 1]; 1 for identical maps.

    Examples
    --------
    >>> ssim(np.eye(5), np.eye(5))
    1.0
    """
    a, b = _map_pair(a, b)
    if a.ndim != 2 or min(a.shape) < 3:
        raise ValueError(f"`a` and `b` must be 2-D maps with both sides >= 3, got shape {a.shape}.")
    data_range = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    if data_range == 0.0:
        return 1.0
    window = min(SSIM_WINDOW, min(a.shape) - (1 - min(a.shape) % 2))
    return float(structural_similarity(a, b, data_range=data_range, win_size=window))


def spearman(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps, flattened.

    Ties get average ranks (as ``scipy.stats.spearmanr``). A constant map has
    no ranking, so the correlation is undefined: ``nan`` is returned (pandas
    skips it in means).

    Parameters
    ----------
    a, b : array-like
        Maps of the same shape.
    absolute : bool, default False
        Rank ``|a|`` and ``|b|`` (Adebayo et al.'s "absolute" variant) instead
        of the signed values.

    Returns
    -------
    float
        The correlation in [-1, 1], or ``nan`` if a map is constant.

    Examples
    --------
    >>> spearman([1.0, 2.0, 3.0], [30.0, 20.0, 10.0])
    -1.0
    """
    a, b = _map_pair(a, b)
    a, b = a.ravel(), b.ravel()
    if absolute:
        a, b = np.abs(a), np.abs(b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def _explained_maps(explain: Explainer, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    maps = channel_summed_maps(explain(model, inputs, targets), inputs, name="explain(model, inputs, targets)")
    return maps.detach().cpu().double().numpy()


def randomization_similarity(
    model: nn.Module,
    explain: Explainer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    layer_names: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Similarity of each sample's map before and after cascading randomisation.

    Parameters
    ----------
    model : nn.Module
        The trained model; never modified.
    explain : callable
        ``explain(model, inputs, targets) -> attributions`` of shape
        (N, C', H, W) (C' = C or 1) or (N, H, W); any attribution method.
    inputs : torch.Tensor
        Images (N, C, H, W); ``inputs[:1]`` also puts the layers in forward
        order.
    targets : torch.Tensor
        Class per image, integer tensor (N,).
    layer_names, seed
        As in :func:`cascading_randomization`.

    Returns
    -------
    pandas.DataFrame
        One row per (step, sample), top layer first, with columns ``step``
        (1 = last layer randomised), ``layer``, ``sample`` and the similarities
        ``ssim``, ``spearman_abs`` and ``spearman_signed`` (see :func:`ssim`,
        :func:`spearman`) between the original and the randomised model's
        maps, both summed over channels into 2-D maps.

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Flatten(), nn.Linear(64, 2))
    >>> def gradient(model, x, y):
    ...     x = x.clone().requires_grad_()
    ...     model(x).gather(1, y[:, None]).sum().backward()
    ...     return x.grad
    >>> table = randomization_similarity(model, gradient, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    >>> list(table["layer"].unique())
    ['2', '0']
    """
    inputs = check_images(inputs)
    targets = check_targets(targets, inputs.shape[0])
    if not callable(explain):
        raise TypeError(
            f"`explain` must be a callable (model, inputs, targets) -> attributions, got {type(explain).__name__}."
        )
    original = _explained_maps(explain, model, inputs, targets)
    randomized_models = cascading_randomization(model, layer_names, seed=seed, example_input=inputs[:1])
    rows = []
    for step, (layer, randomized) in enumerate(randomized_models, start=1):
        maps = _explained_maps(explain, randomized, inputs, targets)
        for sample, (before, after) in enumerate(zip(original, maps)):
            rows.append(
                (step, layer, sample, ssim(before, after), spearman(before, after, True), spearman(before, after))
            )
    return pd.DataFrame(rows, columns=list(SIMILARITY_COLUMNS))
