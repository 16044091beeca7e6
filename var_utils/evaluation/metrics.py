"""Localisation metrics for the grid pointing game.

A grid image is split into ``rows × cols`` equal cells, numbered in row-major
order: for a 2×2 grid 0 is top-left, 1 top-right, 2 bottom-left and 3
bottom-right. Each attribution map is scored against its target cell.

Conventions shared by every function here
-----------------------------------------
* **Channels are summed first.** A map of shape (C, H, W) is reduced to the
  per-pixel sum over C before anything else; the positive part, the maximum
  and the binarisation are taken of that sum. A pixel whose red channel says
  +1 and whose green channel says -1 thus carries no evidence, which keeps the
  completeness of IG / Input×Gradient per pixel and matches the B-cos grid
  metric. ``quantus.Focus`` (0.6.0) instead clips every channel at 0 and then
  sums, so on multi-channel maps with mixed signs per pixel the two differ;
  they agree on one-channel maps and whenever the channels of a pixel share a
  sign.
* **No positive evidence scores 0.** A map without any positive value (e.g. an
  all-zero VAR map) gets region attribution 0, pointing 0 and an empty
  binarised map. ``quantus.PointingGame`` instead counts a constant map as a
  hit, because every pixel is then a maximum.
* Inputs may be ``torch.Tensor`` or ``numpy.ndarray`` of a floating dtype and
  must be finite. Results of the batched functions stay on the input's device.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._model_state import predict_logits
from .._validation import (
    check_choice,
    check_finite,
    check_grid,
    check_model,
    check_positive,
    check_positive_int,
    check_tensor,
)

BINARIZATIONS = ("positive", "mean", "top", "max")
DEFAULT_TOP_FRACTION = 0.25
DEFAULT_MAX_FRACTION = 0.5
#: The binarisation settings of :func:`localisation_table` and their defaults.
METRIC_DEFAULTS = {
    "binarization": "positive",
    "top_fraction": DEFAULT_TOP_FRACTION,
    "max_fraction": DEFAULT_MAX_FRACTION,
}
Grid = tuple[int, int]


# ---------------------------------------------------------------- argument checks
def _as_float_tensor(value: object, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.as_tensor(np.ascontiguousarray(value))
    tensor = check_tensor(value, name)
    if not tensor.is_floating_point():
        raise TypeError(f"`{name}` must hold floating-point values, got dtype {tensor.dtype}.")
    # Sums over ~50k pixels lose too much precision in half precision.
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _check_divides(height: int, width: int, grid: Grid) -> None:
    if height % grid[0] or width % grid[1]:
        raise ValueError(f"`grid` = {grid} must divide the map size (H, W) = ({height}, {width}) into equal cells.")


def _check_cell(cell: object, num_cells: int) -> int:
    if isinstance(cell, bool):
        raise TypeError("`cell` must be an int, got bool.")
    try:
        index = operator.index(cell)
    except TypeError:
        raise TypeError(f"`cell` must be an int, got {type(cell).__name__}.") from None
    if not 0 <= index < num_cells:
        raise ValueError(f"`cell` must lie in 0..{num_cells - 1} for this grid, got {index}.")
    return index


def _check_cells(cells: object, count: int, num_cells: int, device: torch.device) -> torch.Tensor:
    if isinstance(cells, (np.ndarray, list, tuple)):
        # An empty list would otherwise become a float array.
        cells = torch.as_tensor(np.asarray(cells) if len(cells) else np.zeros(0, dtype=np.int64))
    cells = check_tensor(cells, "cells")
    if cells.dtype == torch.bool or cells.is_floating_point() or cells.is_complex():
        raise TypeError(f"`cells` must hold integer cell indices, got dtype {cells.dtype}.")
    if cells.shape != (count,):
        raise ValueError(f"`cells` must have shape (N,) = ({count},), got shape {tuple(cells.shape)}.")
    if count and not (0 <= int(cells.min()) and int(cells.max()) < num_cells):
        raise ValueError(
            f"`cells` must lie in 0..{num_cells - 1} for this grid, got values {int(cells.min())}..{int(cells.max())}."
        )
    return cells.to(device=device, dtype=torch.long)


def _check_fraction(value: float, name: str) -> float:
    value = check_positive(value, name)
    if value > 1:
        raise ValueError(f"`{name}` must lie in (0, 1], got {value}.")
    return value


def _channel_sum(attribution: object, name: str, batched: bool) -> torch.Tensor:
    """Channel-summed maps of shape (N, H, W) from (H, W), (C, H, W) or, when ``batched``, (N, C, H, W)."""
    tensor = _as_float_tensor(attribution, name)
    if batched and tensor.dim() == 4:
        maps = tensor.sum(dim=1)
    elif not batched and tensor.dim() in (2, 3):
        maps = tensor.reshape(-1, *tensor.shape[-2:]).sum(dim=0, keepdim=True)
    else:
        expected = "(N, C, H, W)" if batched else "(H, W) or (C, H, W)"
        raise ValueError(f"`{name}` must have shape {expected}, got shape {tuple(tensor.shape)}.")
    # A finite total proves every value finite and costs one reduction instead of
    # an element-wise pass over all channels; the exact checks run only if it fails.
    if not torch.isfinite(maps.sum()):
        check_finite(tensor, name)
        if not torch.isfinite(maps).all():
            raise ValueError(f"`{name}` overflows {maps.dtype} when its channels are summed.")
    return maps


def _single_or_batch(attribution: object) -> tuple[torch.Tensor, bool]:
    """Channel-summed (N, H, W) maps; a 4-D input is a batch, lower ranks a single map."""
    is_batch = isinstance(attribution, (torch.Tensor, np.ndarray)) and attribution.ndim == 4
    return _channel_sum(attribution, "attribution", batched=is_batch), is_batch


# ---------------------------------------------------------------- batched kernels
def _cell_sums(values: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Sum of (N, H, W) ``values`` over each cell, shape (N, rows·cols), row-major."""
    rows, cols = grid
    count, height, width = values.shape
    _check_divides(height, width, grid)
    blocks = values.reshape(count, rows, height // rows, cols, width // cols)
    return blocks.sum(dim=(2, 4)).reshape(count, rows * cols)


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` with 0 where the denominator is 0."""
    return torch.where(denominator > 0, numerator / denominator, 0.0)


def _positive_shares(maps: torch.Tensor, grid: Grid) -> torch.Tensor:
    sums = _cell_sums(maps.clamp(min=0), grid)
    return _safe_ratio(sums, sums.sum(dim=1, keepdim=True))


#: ``region_sums(values)`` -> (sum of each (N, H, W) map inside its target region, sum over the whole map), each (N,).
RegionSums = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _cell_region_sums(cells: torch.Tensor, grid: Grid) -> RegionSums:
    def region_sums(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sums = _cell_sums(values, grid)
        return sums.gather(1, cells[:, None]).squeeze(1), sums.sum(dim=1)

    return region_sums


def _mask_region_sums(masks: torch.Tensor) -> RegionSums:
    def region_sums(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (values * masks).sum(dim=(1, 2)), values.sum(dim=(1, 2))

    return region_sums


def _pointing(maps: torch.Tensor, region_sums: RegionSums) -> torch.Tensor:
    peak = maps.amax(dim=(1, 2), keepdim=True)
    # Ties are split evenly: the score is the share of maximal pixels inside the
    # region, i.e. the expected hit rate of a random tie-break, so a plateau that
    # spans several regions is not a sure hit for each of them.
    inside, total = region_sums((maps == peak).to(maps.dtype))
    return torch.where(peak.flatten() > 0, inside / total, 0.0)


def _binarize(maps: torch.Tensor, method: str, top_fraction: float, max_fraction: float) -> torch.Tensor:
    top_fraction = _check_fraction(top_fraction, "top_fraction")
    max_fraction = _check_fraction(max_fraction, "max_fraction")
    flat = maps.flatten(1)
    peak = flat.amax(dim=1)
    positive = flat > 0
    if method == "positive":
        return positive.reshape(maps.shape)
    if method == "mean":
        positive_mean = flat.clamp(min=0).sum(dim=1) / positive.sum(dim=1).clamp(min=1)
        # Rounding can push the mean of equal values above their maximum; the
        # cap keeps the maximum pixel in the map.
        threshold = torch.minimum(positive_mean, peak)
    elif method == "top":
        keep = max(1, round(top_fraction * flat.shape[1]))
        threshold = flat.topk(keep, dim=1).values[:, -1]
    else:
        threshold = max_fraction * peak
    return (positive & (flat >= threshold[:, None])).reshape(maps.shape)


def _overlap_scores(binary: torch.Tensor, region_sums: RegionSums, dtype: torch.dtype) -> dict:
    true_positive, predicted = region_sums(binary.to(dtype))
    area, _ = region_sums(torch.ones_like(binary, dtype=dtype))
    # Regions are never empty, so only precision can be 0/0 (empty binarised map): define it as 0.
    return {
        "precision": _safe_ratio(true_positive, predicted),
        "recall": true_positive / area,
        "f1": 2 * true_positive / (predicted + area),
        "iou": true_positive / (predicted + area - true_positive),
    }


def _scores(
    maps: torch.Tensor, region_sums: RegionSums, binarization: str, top_fraction: float, max_fraction: float
) -> dict[str, torch.Tensor]:
    """Every localisation score of (N, H, W) channel-summed maps against their target regions."""
    check_choice(binarization, "binarization", BINARIZATIONS)
    binary = _binarize(maps, binarization, top_fraction, max_fraction)
    scores = _overlap_scores(binary, region_sums, maps.dtype)
    inside, total = region_sums(maps.clamp(min=0))
    scores["region_attribution"] = _safe_ratio(inside, total)
    scores["pointing"] = _pointing(maps, region_sums)
    return scores


# ---------------------------------------------------------------- public API
def cell_mask(shape_hw: tuple[int, int], cell: int, grid: Grid = (2, 2)) -> torch.Tensor:
    """Boolean mask of one grid cell.

    Parameters
    ----------
    shape_hw : tuple of int
        Map size ``(H, W)``.
    cell : int
        Cell index in row-major order (2×2: 0 top-left, 1 top-right,
        2 bottom-left, 3 bottom-right).
    grid : tuple of int, default (2, 2)
        ``(rows, cols)``; must divide ``H`` and ``W``.

    Returns
    -------
    torch.Tensor
        Bool tensor of shape (H, W), True inside the cell.

    Examples
    --------
    >>> cell_mask((4, 4), 1).int()
    tensor([[0, 0, 1, 1],
            [0, 0, 1, 1],
            [0, 0, 0, 0],
            [0, 0, 0, 0]], dtype=torch.int32)
    """
    if not isinstance(shape_hw, (tuple, list)) or len(shape_hw) != 2:
        raise TypeError(f"`shape_hw` must be a pair (H, W) of ints, got {shape_hw!r}.")
    height, width = (check_positive_int(size, "shape_hw") for size in shape_hw)
    grid = check_grid(grid)
    _check_divides(height, width, grid)
    row, col = divmod(_check_cell(cell, grid[0] * grid[1]), grid[1])
    cell_h, cell_w = height // grid[0], width // grid[1]
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = True
    return mask


def region_attribution(attribution: torch.Tensor | np.ndarray, cell: int, grid: Grid = (2, 2)) -> float:
    """Share of the positive attribution that lies in the target cell.

    ``RA = Σ_cell max(a, 0) / Σ_all max(a, 0)`` with ``a`` the channel-summed
    map (channels are summed before the positive part is taken; see the module
    notes for how this differs from ``quantus.Focus`` on multi-channel maps).

    Parameters
    ----------
    attribution : torch.Tensor or numpy.ndarray
        Map of shape (H, W) or (C, H, W).
    cell : int
        Target cell, row-major.
    grid : tuple of int, default (2, 2)
        ``(rows, cols)``; must divide ``H`` and ``W``.

    Returns
    -------
    float
        In [0, 1]; 0.0 for a map without positive values.

    Examples
    --------
    >>> region_attribution(torch.tensor([[3.0, 1.0], [-2.0, 0.0]]), cell=0)
    0.75
    """
    grid = check_grid(grid)
    maps = _channel_sum(attribution, "attribution", batched=False)
    cell = _check_cell(cell, grid[0] * grid[1])
    return float(_positive_shares(maps, grid)[0, cell])


def pointing_accuracy(attribution: torch.Tensor | np.ndarray, cell: int, grid: Grid = (2, 2)) -> float:
    """Whether the maximum of the channel-summed map lies in the target cell.

    Ties are split: the score is the fraction of the maximal pixels that lie
    in the cell (1.0 or 0.0 for a unique maximum). A map whose maximum is not
    positive points at nothing and scores 0.0 (``quantus.PointingGame`` would
    count an all-zero map as a hit).

    Parameters
    ----------
    attribution : torch.Tensor or numpy.ndarray
        Map of shape (H, W) or (C, H, W).
    cell : int
        Target cell, row-major.
    grid : tuple of int, default (2, 2)
        ``(rows, cols)``; must divide ``H`` and ``W``.

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> pointing_accuracy(torch.tensor([[0.0, 5.0], [5.0, 1.0]]), cell=1)
    0.5
    """
    grid = check_grid(grid)
    maps = _channel_sum(attribution, "attribution", batched=False)
    cells = torch.tensor([_check_cell(cell, grid[0] * grid[1])], device=maps.device)
    return float(_pointing(maps, _cell_region_sums(cells, grid))[0])


def binarize(
    attribution: torch.Tensor | np.ndarray,
    method: str = "positive",
    *,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> torch.Tensor:
    """Binarise a map: its channel sum's positive pixels that pass a threshold.

    The paper does not publish its binarisation. Every method here keeps only
    pixels with a positive channel sum and is invariant to positive rescaling
    of the map, so maps of different attribution methods are comparable:

    * ``"positive"`` (default): every pixel with a positive channel sum, the
      support of the map's evidence for the class. It is the one rule that
      reproduces the paper's published pattern for Grad-CAM (F1 and IoU rise
      with VAR, to about 0.8 and 0.7): VAR's job is to zero the pixels another
      class wins, and this rule scores exactly that support. The thresholds
      below score a sharper, smaller part of a map instead, so VAR's zeros
      lower their recall (``docs/method.md``, section 5). A map positive
      everywhere (e.g. saliency's absolute gradient) scores F1 0.4 on a 2×2
      grid however its mass is distributed.
    * ``"mean"``: pixels at or above the mean of the positive values.
      Parameter-free and not set by a single extreme pixel, but it keeps only
      the strongest part of the evidence.
    * ``"top"``: the ``top_fraction`` share of all pixels with the largest
      values (pixels tied with the last one are kept too); it presupposes the
      size of the object and ties precision to recall.
    * ``"max"``: pixels at or above ``max_fraction`` times the maximum; set by
      a single pixel, which suits smooth maps (Grad-CAM) but not heavy-tailed
      gradient maps.

    Parameters
    ----------
    attribution : torch.Tensor or numpy.ndarray
        Map (H, W) or (C, H, W), or a batch (N, C, H, W).
    method : {"positive", "mean", "top", "max"}, default "positive"
        Threshold rule, see above.
    top_fraction : float, default 0.25
        Share of pixels kept by ``"top"``, in (0, 1]; 0.25 is one cell of a
        2×2 grid (use 1/9 for 3×3).
    max_fraction : float, default 0.5
        Threshold of ``"max"`` relative to the maximum, in (0, 1].

    Returns
    -------
    torch.Tensor
        Bool tensor (H, W), or (N, H, W) for a batch. Empty when the map has
        no positive value.

    Examples
    --------
    >>> binarize(torch.tensor([[4.0, 2.0], [1.0, -3.0]])).int()
    tensor([[1, 1],
            [1, 0]], dtype=torch.int32)
    >>> binarize(torch.tensor([[4.0, 2.0], [1.0, -3.0]]), "mean").int()
    tensor([[1, 0],
            [0, 0]], dtype=torch.int32)
    """
    check_choice(method, "method", BINARIZATIONS)
    maps, is_batch = _single_or_batch(attribution)
    binary = _binarize(maps, method, top_fraction, max_fraction)
    return binary if is_batch else binary[0]


def grid_cell_shares(
    attribution: torch.Tensor | np.ndarray, grid: Grid = (2, 2), smoothing_kernel: int | None = None
) -> torch.Tensor:
    """Each cell's share of the positive attribution (the B-cos grid localisation score).

    Channel sum → optional average pooling (odd ``smoothing_kernel``, stride 1,
    zero padding that keeps the size and counts towards the average, as
    ``torch.nn.functional.avg_pool2d`` does by default) → clamp at 0 → each
    cell's sum divided by the total. The B-cos score of a map is the entry of
    its own cell. Cells are row-major here; the B-cos code fills its grid
    column-major, so its index ``i`` is our ``(i % rows) * cols + i // rows``.
    Without smoothing, entry ``cell`` equals :func:`region_attribution`.

    Parameters
    ----------
    attribution : torch.Tensor or numpy.ndarray
        Map (H, W) or (C, H, W), or a batch (N, C, H, W).
    grid : tuple of int, default (2, 2)
        ``(rows, cols)``; must divide ``H`` and ``W``.
    smoothing_kernel : int or None, default None
        Odd side length of the averaging window (B-cos uses 15); None skips it.

    Returns
    -------
    torch.Tensor
        Shares of shape (rows·cols,), or (N, rows·cols) for a batch; they sum
        to 1, or are all 0 for a map without positive values.

    Examples
    --------
    >>> grid_cell_shares(torch.tensor([[3.0, 1.0], [-2.0, 0.0]]))
    tensor([0.7500, 0.2500, 0.0000, 0.0000])
    """
    grid = check_grid(grid)
    maps, is_batch = _single_or_batch(attribution)
    if smoothing_kernel is not None:
        kernel = check_positive_int(smoothing_kernel, "smoothing_kernel")
        if kernel % 2 == 0:
            raise ValueError(f"`smoothing_kernel` must be odd so the map keeps its size, got {kernel}.")
        maps = F.avg_pool2d(maps[:, None], kernel, stride=1, padding=kernel // 2)[:, 0]
    shares = _positive_shares(maps, grid)
    return shares if is_batch else shares[0]


def check_metric_settings(given: Mapping | None = None, name: str = "metric_settings") -> dict:
    """Complete binarisation settings with their defaults and check them.

    Parameters
    ----------
    given : dict, optional
        Some of ``binarization``, ``top_fraction`` and ``max_fraction``.
    name : str, default "metric_settings"
        Argument name used in error messages.

    Returns
    -------
    dict
        All three settings: ``given`` on top of :data:`METRIC_DEFAULTS`.

    Examples
    --------
    >>> check_metric_settings({"binarization": "top"})
    {'binarization': 'top', 'top_fraction': 0.25, 'max_fraction': 0.5}
    """
    if given is not None and not isinstance(given, Mapping):
        raise TypeError(f"`{name}` must be a dict or None, got {type(given).__name__}.")
    unknown = sorted(set(given or {}) - set(METRIC_DEFAULTS))
    if unknown:
        raise ValueError(f"`{name}` has unknown key(s) {unknown}; expected some of {sorted(METRIC_DEFAULTS)}.")
    settings = {**METRIC_DEFAULTS, **(given or {})}
    check_choice(settings["binarization"], "binarization", BINARIZATIONS)
    settings["top_fraction"] = _check_fraction(settings["top_fraction"], "top_fraction")
    settings["max_fraction"] = _check_fraction(settings["max_fraction"], "max_fraction")
    return settings


def localisation_scores(
    attribution: torch.Tensor | np.ndarray,
    cell: int,
    grid: Grid = (2, 2),
    *,
    binarization: str = "positive",
    top_fraction: float = DEFAULT_TOP_FRACTION,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> dict[str, float]:
    """All localisation scores of one map against its target cell.

    Precision, recall, F1 and IoU compare the binarised map (see
    :func:`binarize`) with the cell mask. The cell is never empty, so recall,
    F1 and IoU are always defined; precision of an empty binarised map (0/0)
    is defined as 0.0, as ``sklearn.metrics.precision_score(zero_division=0)``.

    Parameters
    ----------
    attribution : torch.Tensor or numpy.ndarray
        Map of shape (H, W) or (C, H, W).
    cell : int
        Target cell, row-major.
    grid : tuple of int, default (2, 2)
        ``(rows, cols)``; must divide ``H`` and ``W``.
    binarization : {"positive", "mean", "top", "max"}, default "positive"
        Binarisation method of :func:`binarize`.
    top_fraction, max_fraction : float
        Parameters of :func:`binarize`.

    Returns
    -------
    dict of str to float
        ``precision``, ``recall``, ``f1``, ``iou``, ``region_attribution`` and
        ``pointing`` (see :func:`region_attribution`, :func:`pointing_accuracy`).

    Examples
    --------
    >>> scores = localisation_scores(torch.tensor([[4.0, 2.0], [0.0, -3.0]]), cell=0)
    >>> scores["precision"], scores["iou"], scores["pointing"]
    (0.5, 0.5, 1.0)
    """
    grid = check_grid(grid)
    maps = _channel_sum(attribution, "attribution", batched=False)
    cells = torch.tensor([_check_cell(cell, grid[0] * grid[1])], device=maps.device)
    scores = _scores(maps, _cell_region_sums(cells, grid), binarization, top_fraction, max_fraction)
    return {name: float(value[0]) for name, value in scores.items()}


def localisation_table(
    attributions: torch.Tensor | np.ndarray,
    cells: torch.Tensor | np.ndarray | Sequence[int],
    grid: Grid = (2, 2),
    *,
    binarization: str = "positive",
    top_fraction: float = DEFAULT_TOP_FRACTION,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> dict[str, torch.Tensor]:
    """Localisation scores of a batch of maps, vectorised over the batch.

    Same definitions as :func:`localisation_scores`. Memory is a few copies of
    the (N, H, W) channel sum, so very large N should be fed in chunks.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray
        Maps of shape (N, C, H, W) (C may be 1).
    cells : torch.Tensor, numpy.ndarray or sequence of int
        Target cell of every map, shape (N,), row-major.
    grid : tuple of int, default (2, 2)
        ``(rows, cols)``; must divide ``H`` and ``W``.
    binarization : {"positive", "mean", "top", "max"}, default "positive"
        Binarisation method of :func:`binarize`.
    top_fraction, max_fraction : float
        Parameters of :func:`binarize`.

    Returns
    -------
    dict of str to torch.Tensor
        ``precision``, ``recall``, ``f1``, ``iou``, ``region_attribution`` and
        ``pointing``, each of shape (N,), on the device of ``attributions``.

    Examples
    --------
    >>> maps = torch.zeros(2, 1, 4, 4)
    >>> maps[0, 0, 0, 0] = 1.0   # top-left pixel
    >>> maps[1, 0, 3, 3] = 1.0   # bottom-right pixel
    >>> localisation_table(maps, [0, 1])["pointing"]
    tensor([1., 0.])
    """
    grid = check_grid(grid)
    maps = _channel_sum(attributions, "attributions", batched=True)
    cells = _check_cells(cells, maps.shape[0], grid[0] * grid[1], maps.device)
    return _scores(maps, _cell_region_sums(cells, grid), binarization, top_fraction, max_fraction)


def _check_boxes(boxes: object, count: int | None, height: int, width: int, device: torch.device) -> torch.Tensor:
    """Boxes as a float64 (N, 4) tensor on ``device``; ``count`` is the N expected (None: any)."""
    if isinstance(boxes, (np.ndarray, list, tuple)):
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float64) if len(boxes) else np.zeros((0, 4)))
    boxes = check_tensor(boxes, "boxes")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"`boxes` must hold pixel coordinates, got dtype {boxes.dtype}.")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or count not in (None, boxes.shape[0]):
        expected = "(N, 4)" if count is None else f"({count}, 4)"
        raise ValueError(f"`boxes` must have shape {expected} as (x0, y0, x1, y1), got {tuple(boxes.shape)}.")
    boxes = boxes.to(device=device, dtype=torch.float64)
    check_finite(boxes, "boxes")
    x0, y0, x1, y1 = boxes.unbind(1)
    empty = (x1 <= x0) | (y1 <= y0) | (x1 <= 0) | (y1 <= 0) | (x0 >= width) | (y0 >= height)
    if empty.any():
        index = int(empty.nonzero()[0])
        raise ValueError(
            f"`boxes[{index}]` = {boxes[index].tolist()} must have x0 < x1 and y0 < y1 and overlap the "
            f"{height}×{width} map."
        )
    return boxes


def _axis_mask(start: torch.Tensor, stop: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size): pixels whose centre lies in [start, stop); a box thinner than a pixel keeps its middle pixel."""
    centres = torch.arange(size, device=start.device, dtype=start.dtype) + 0.5
    inside = (centres >= start[:, None]) & (centres < stop[:, None])
    middle = ((start + stop) / 2).floor().clamp(0, size - 1).long()
    inside[torch.arange(len(start), device=start.device), middle] |= ~inside.any(dim=1)
    return inside


def _masks_of(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(1)
    return _axis_mask(y0, y1, height)[:, :, None] & _axis_mask(x0, x1, width)[:, None, :]


def box_masks(boxes: torch.Tensor | np.ndarray | Sequence, shape_hw: tuple[int, int]) -> torch.Tensor:
    """Boolean masks of boxes given in pixel coordinates.

    A pixel belongs to a box when its centre lies inside it (``x0 <= x + 0.5 < x1``,
    likewise for y), so a box on pixel edges covers exactly its pixels and a
    box with fractional corners covers the pixels it mostly covers. A box
    thinner than one pixel keeps the pixel at its middle: no mask is empty.

    Parameters
    ----------
    boxes : torch.Tensor, numpy.ndarray or sequence
        Shape (N, 4): ``(x0, y0, x1, y1)`` in pixels of the map, x to the right
        and y down; parts outside the map are clipped.
    shape_hw : tuple of int
        Map size ``(H, W)``.

    Returns
    -------
    torch.Tensor
        Bool tensor of shape (N, H, W).

    Raises
    ------
    TypeError, ValueError
        Boxes of another shape, not finite, with ``x1 <= x0`` or ``y1 <= y0``,
        or outside the map.

    Examples
    --------
    >>> box_masks([[1.0, 0.0, 3.0, 1.0]], (2, 4)).int()
    tensor([[[0, 1, 1, 0],
             [0, 0, 0, 0]]], dtype=torch.int32)
    """
    if not isinstance(shape_hw, (tuple, list)) or len(shape_hw) != 2:
        raise TypeError(f"`shape_hw` must be a pair (H, W) of ints, got {shape_hw!r}.")
    height, width = (check_positive_int(size, "shape_hw") for size in shape_hw)
    device = boxes.device if isinstance(boxes, torch.Tensor) else torch.device("cpu")
    return _masks_of(_check_boxes(boxes, None, height, width, device), height, width)


def box_localisation_table(
    attributions: torch.Tensor | np.ndarray,
    boxes: torch.Tensor | np.ndarray | Sequence,
    *,
    binarization: str = "positive",
    top_fraction: float = DEFAULT_TOP_FRACTION,
    max_fraction: float = DEFAULT_MAX_FRACTION,
) -> dict[str, torch.Tensor]:
    """Localisation scores of a batch of maps against one box each (objects in natural images).

    The definitions of :func:`localisation_table` with the box (see
    :func:`box_masks`) in place of the grid cell: ``region_attribution`` is
    the share of the map's positive attribution inside the box ("energy in
    box"), ``pointing`` the share of the map's maximal pixels inside it, and
    precision, recall, F1 and IoU compare the binarised map with the box.

    Parameters
    ----------
    attributions : torch.Tensor or numpy.ndarray
        Maps of shape (N, C, H, W) (C may be 1).
    boxes : torch.Tensor, numpy.ndarray or sequence
        Shape (N, 4): each map's box ``(x0, y0, x1, y1)`` in pixels of the map.
    binarization : {"positive", "mean", "top", "max"}, default "positive"
        Binarisation method of :func:`binarize`.
    top_fraction, max_fraction : float
        Parameters of :func:`binarize`.

    Returns
    -------
    dict of str to torch.Tensor
        ``precision``, ``recall``, ``f1``, ``iou``, ``region_attribution`` and
        ``pointing``, each of shape (N,), on the device of ``attributions``.

    Raises
    ------
    TypeError, ValueError
        Maps or boxes of the wrong type, shape or values.

    Examples
    --------
    >>> maps = torch.zeros(1, 1, 4, 4)
    >>> maps[0, 0, 1, 1], maps[0, 0, 3, 3] = 3.0, 1.0
    >>> scores = box_localisation_table(maps, [[0, 0, 2, 2]])
    >>> scores["region_attribution"], scores["pointing"], scores["iou"]
    (tensor([0.7500]), tensor([1.]), tensor([0.2000]))
    """
    maps = _channel_sum(attributions, "attributions", batched=True)
    masks = _masks_of(_check_boxes(boxes, maps.shape[0], *maps.shape[1:], maps.device), *maps.shape[1:])
    return _scores(maps, _mask_region_sums(masks.to(maps.dtype)), binarization, top_fraction, max_fraction)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """The fraction of ``images`` the model classifies as ``labels`` (top-1), in eval mode.

    Parameters
    ----------
    model : nn.Module
        The classifier; its training flags are restored afterwards.
    images : torch.Tensor
        (N, C, H, W) inputs, already normalised for the model.
    labels : torch.Tensor
        (N,) class indices.
    batch_size : int, default 1000
        Images per forward pass.

    Returns
    -------
    float
        Top-1 accuracy in [0, 1].

    Examples
    --------
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> 0.0 <= accuracy(model, torch.rand(5, 1, 2, 2), torch.zeros(5, dtype=torch.long)) <= 1.0
    True
    """
    check_model(model)
    images, labels = check_tensor(images, "images"), check_tensor(labels, "labels")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"`labels` must have shape ({images.shape[0]},), one per image, got {tuple(labels.shape)}.")
    batch_size = check_positive_int(batch_size, "batch_size")
    correct = sum(
        int((predict_logits(model, chunk).argmax(dim=1).cpu() == chunk_labels.cpu()).sum())
        for chunk, chunk_labels in zip(images.split(batch_size), labels.split(batch_size))
    )
    return correct / len(labels)
