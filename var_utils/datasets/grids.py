"""Grids of images for the grid pointing game (Quad-ImageNet and its smaller cousins).

A grid places ``n_rows * n_cols`` images ("cells") side by side in row-major order
(top-left, top-right, bottom-left, bottom-right for 2x2). The class set of a grid is
the labels of its cells, and each label's map is scored on its own cell.

The module is source-agnostic: any labelled collection (ImageNet validation files,
Fashion-MNIST tensors, a handful of photos) goes through the same three steps,

1. :func:`grid_indices` (or :func:`all_distinct_combinations`) picks which images
   share a grid,
2. :class:`GridDataset` loads the cells of a grid lazily and
3. :func:`compose_grid` places them.

Reproducibility: the groups depend only on ``seed`` and on the *order* of ``labels``.
Callers must therefore sort their file list before it becomes the ``labels`` order;
:func:`var_utils.datasets.imagenet.imagenet_val_files` returns the ImageNet files
sorted by file name for this reason. The protocols are specified in ``docs/method.md``
(section 4).

Examples
--------
>>> import torch
>>> images = torch.rand(10, 1, 28, 28)              # e.g. Fashion-MNIST cells
>>> labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
>>> groups = grid_indices(labels, protocol="paper", seed=42)
>>> len(groups)                                      # floor(10 / 4)
2
>>> sample = GridDataset(images, labels, groups)[0]
>>> tuple(sample.image.shape)
(1, 56, 56)
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_choice, check_grid, check_positive_int, check_tensor

GRID_PROTOCOLS = ("paper", "strict")

LabelsLike = Sequence[int] | np.ndarray | torch.Tensor
CellSource = Callable[[int], torch.Tensor] | torch.Tensor | Sequence[torch.Tensor]


# --------------------------------------------------------------------------- composing


def compose_grid(cells: torch.Tensor, grid: tuple[int, int] = (2, 2)) -> torch.Tensor:
    """Place equally sized cells side by side in row-major order.

    Parameters
    ----------
    cells : torch.Tensor
        Shape ``(n_rows * n_cols, C, h, w)`` for one grid, or ``(N, n_rows * n_cols, C, h, w)``
        for a batch of N grids. Cell ``p`` goes to grid row ``p // n_cols`` and grid column
        ``p % n_cols`` (for 2x2: top-left, top-right, bottom-left, bottom-right).
    grid : tuple of int
        ``(n_rows, n_cols)``.

    Returns
    -------
    torch.Tensor
        Shape ``(C, n_rows * h, n_cols * w)``, or ``(N, C, n_rows * h, n_cols * w)`` for a batch;
        same dtype and device as ``cells``.

    Examples
    --------
    >>> cells = torch.arange(4.0).view(4, 1, 1, 1)
    >>> compose_grid(cells)[0]
    tensor([[0., 1.],
            [2., 3.]])
    """
    cells = check_tensor(cells, "cells")
    n_rows, n_cols = check_grid(grid)
    if cells.dim() not in (4, 5):
        raise ValueError(
            "`cells` must have shape (n_rows*n_cols, C, h, w) or (N, n_rows*n_cols, C, h, w), "
            f"got shape {tuple(cells.shape)}."
        )
    *batch, n_cells, channels, height, width = cells.shape
    if n_cells != n_rows * n_cols:
        raise ValueError(
            f"`grid` = {tuple(grid)} needs {n_rows * n_cols} cells, but `cells` holds {n_cells} "
            f"(shape {tuple(cells.shape)})."
        )
    by_position = cells.reshape(*batch, n_rows, n_cols, channels, height, width)
    # (..., C, n_rows, h, n_cols, w): a pixel row of the grid then runs through one grid row of cells.
    return by_position.movedim(-3, -5).transpose(-3, -2).reshape(*batch, channels, n_rows * height, n_cols * width)


# --------------------------------------------------------------------------- choosing cells


def _as_array(values: object, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {array.shape}.")
    return array


def _as_labels(labels: LabelsLike) -> np.ndarray:
    array = _as_array(labels, "labels")
    if array.size == 0:
        raise ValueError("`labels` is empty: the image source holds no images to build grids from.")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`labels` must hold integer class indices, got dtype {array.dtype}.")
    return array


def _as_correct(correct: object, n_images: int) -> np.ndarray:
    if correct is None:
        raise ValueError(
            "protocol='strict' needs `correct`: a boolean array of length len(labels) saying which images "
            "the model classifies correctly."
        )
    array = _as_array(correct, "correct")
    if array.dtype != np.bool_:
        raise TypeError(f"`correct` must be a boolean array, got dtype {array.dtype}.")
    if array.size != n_images:
        raise ValueError(f"`correct` must have one entry per label ({n_images}), got {array.size}.")
    return array


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}.")
    if seed < 0:
        raise ValueError(f"`seed` must be >= 0 (numpy.random.default_rng), got {seed}.")
    return seed


def _paper_groups(order: np.ndarray, group_size: int) -> list[tuple[int, ...]]:
    n_groups = order.size // group_size
    groups = order[: n_groups * group_size].reshape(n_groups, group_size)
    return [tuple(int(index) for index in group) for group in groups]


def _strict_groups(
    order: np.ndarray, labels: np.ndarray, group_size: int, max_grids: int | None
) -> list[tuple[int, ...]]:
    # Per class, the positions (in `order`) of images still waiting for a grid, oldest first.
    waiting: dict[int, deque[int]] = {}
    groups: list[tuple[int, ...]] = []
    for position, index in enumerate(order):
        waiting.setdefault(int(labels[index]), deque()).append(position)
        if len(waiting) < group_size:
            continue
        # Exactly `group_size` classes wait now (one more would have formed a grid earlier).
        chosen = sorted(queue.popleft() for queue in waiting.values())
        waiting = {label: queue for label, queue in waiting.items() if queue}
        groups.append(tuple(int(order[p]) for p in chosen))
        if len(groups) == max_grids:
            break
    return groups


def grid_indices(
    labels: LabelsLike,
    *,
    grid: tuple[int, int] = (2, 2),
    protocol: str = "paper",
    seed: int = 42,
    correct: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
    max_grids: int | None = None,
) -> list[tuple[int, ...]]:
    """Choose which images share a grid.

    Both protocols draw the order of the images with
    ``numpy.random.default_rng(seed).permutation(len(labels))``.

    * ``"paper"`` (the VAR paper's Quad-ImageNet): consecutive groups of
      ``n_rows * n_cols`` images of that order; classes may repeat within a grid. The
      incomplete tail is dropped, so there are ``len(labels) // (n_rows * n_cols)`` groups
      (12,500 for the 50,000 ImageNet validation images) and each image is used at most once.
    * ``"strict"`` (B-cos's variant): only correctly classified images, and the classes of a
      grid are distinct. A greedy pass over the shuffled correct images: every image joins a
      first-in-first-out queue of its class; as soon as ``n_rows * n_cols`` classes have a
      waiting image, the oldest waiting image of each of them forms a grid, with the cells in
      the order the images were drawn. Images still waiting at the end are dropped. Each image
      is used at most once and the result depends only on ``seed`` and the label order.

    Parameters
    ----------
    labels : sequence of int, numpy.ndarray or torch.Tensor
        Class index of every image, shape (N,). The groups depend on this order: sort the file
        list (e.g. by file name) before building ``labels``, so every machine gets the same grids.
    grid : tuple of int
        ``(n_rows, n_cols)``; each group holds ``n_rows * n_cols`` indices.
    protocol : {"paper", "strict"}
        See above.
    seed : int
        Seed of ``numpy.random.default_rng``; the paper uses 42.
    correct : array of bool, optional
        Shape (N,): whether the model classifies image i correctly. Required by ``"strict"``,
        refused by ``"paper"`` (which uses every image).
    max_grids : int, optional
        Keep only the first ``max_grids`` groups.

    Returns
    -------
    list of tuple of int
        Indices into ``labels``, one tuple per grid, cells in row-major order.

    Raises
    ------
    ValueError
        Empty ``labels``, a bad argument, ``"strict"`` without ``correct``, or no complete grid.

    Examples
    --------
    >>> groups = grid_indices([0, 1, 2, 3, 0, 1, 2, 3, 0, 1], seed=42)
    >>> len(groups), sorted(groups[0] + groups[1]) == sorted(set(groups[0] + groups[1]))
    (2, True)
    """
    label_array = _as_labels(labels)
    n_rows, n_cols = check_grid(grid)
    check_choice(protocol, "protocol", GRID_PROTOCOLS)
    seed = _check_seed(seed)
    if max_grids is not None:
        check_positive_int(max_grids, "max_grids")
    group_size = n_rows * n_cols
    order = np.random.default_rng(seed).permutation(label_array.size)
    if protocol == "paper":
        if correct is not None:
            raise ValueError("`correct` is only used by protocol='strict'; protocol='paper' uses every image.")
        groups = _paper_groups(order, group_size)[:max_grids]
    else:
        correct_array = _as_correct(correct, label_array.size)
        groups = _strict_groups(order[correct_array[order]], label_array, group_size, max_grids)
    if not groups:
        raise ValueError(
            f"no complete grid of {group_size} cells: protocol={protocol!r} found too few "
            f"{'correctly classified images of distinct classes' if protocol == 'strict' else 'images'} "
            f"among {label_array.size} labels."
        )
    return groups


def all_distinct_combinations(labels: LabelsLike, k: int = 4, max_grids: int | None = None) -> list[tuple[int, ...]]:
    """Every combination of ``k`` images whose labels are all distinct.

    Meant for small sources (a handful of photos with their predicted labels): the
    combinations come from ``itertools.combinations(range(len(labels)), k)``, hence in
    lexicographic order of the indices.

    Parameters
    ----------
    labels : sequence of int, numpy.ndarray or torch.Tensor
        Class index of every image, shape (N,).
    k : int
        Images per combination (4 for a 2x2 grid).
    max_grids : int, optional
        Keep only the first ``max_grids`` combinations.

    Returns
    -------
    list of tuple of int
        Sorted index tuples.

    Examples
    --------
    >>> all_distinct_combinations([7, 7, 1, 2, 3])
    [(0, 2, 3, 4), (1, 2, 3, 4)]
    """
    label_array = _as_labels(labels)
    check_positive_int(k, "k")
    if max_grids is not None:
        check_positive_int(max_grids, "max_grids")
    n_distinct = np.unique(label_array).size
    if n_distinct < k:
        raise ValueError(f"`labels` hold {n_distinct} distinct class(es); a combination needs k = {k}.")
    distinct = (
        combination
        for combination in itertools.combinations(range(label_array.size), k)
        if len(set(label_array[list(combination)].tolist())) == k
    )
    return list(itertools.islice(distinct, max_grids))


# --------------------------------------------------------------------------- grids as a dataset


@dataclass(frozen=True, eq=False)
class GridSample:
    """One composed grid.

    Attributes
    ----------
    image : torch.Tensor
        Shape (C, H, W).
    labels : tuple of int
        Class of each cell, row-major.
    indices : tuple of int
        Source index of each cell, row-major.
    grid : tuple of int
        ``(n_rows, n_cols)``.
    """

    image: torch.Tensor
    labels: tuple[int, ...]
    indices: tuple[int, ...]
    grid: tuple[int, int]


class GridDataset(torch.utils.data.Dataset):
    """Grids composed on access, so thousands of grids never sit in memory at once.

    Parameters
    ----------
    cells : callable, torch.Tensor or sequence of torch.Tensor
        The cell images: ``cells(i)`` if callable (e.g. a function calling
        :func:`load_cell_image` on the i-th file), else ``cells[i]`` (e.g. an (N, C, h, w)
        tensor). Each cell has shape (C, h, w), the same for all.
    labels : sequence of int, numpy.ndarray or torch.Tensor
        Class index of every source image, shape (N,).
    groups : sequence of tuple of int
        Source indices of each grid, e.g. from :func:`grid_indices`.
    grid : tuple of int
        ``(n_rows, n_cols)``; every group must hold ``n_rows * n_cols`` indices.
    description : dict, optional
        JSON values that identify the grids (source, protocol, seed, ...); the
        grid pointing game records them with its results so a run resumes
        only on the same grids.

    Examples
    --------
    >>> images = torch.rand(8, 3, 16, 16)
    >>> dataset = GridDataset(images, [0, 1, 2, 3, 0, 1, 2, 3], [(0, 1, 2, 3)])
    >>> sample = dataset[0]
    >>> tuple(sample.image.shape), sample.labels
    ((3, 32, 32), (0, 1, 2, 3))
    """

    def __init__(
        self,
        cells: CellSource,
        labels: LabelsLike,
        groups: Sequence[Sequence[int]],
        grid: tuple[int, int] = (2, 2),
        description: Mapping | None = None,
    ) -> None:
        self.grid = check_grid(grid)
        if description is not None and not isinstance(description, Mapping):
            raise TypeError(f"`description` must be a dict or None, got {type(description).__name__}.")
        self.description = None if description is None else dict(description)
        self.labels = _as_labels(labels)
        self.groups = [self._check_group(group, position) for position, group in enumerate(groups)]
        if not callable(cells) and not hasattr(cells, "__getitem__"):
            raise TypeError(f"`cells` must be callable or indexable, got {type(cells).__name__}.")
        self._get_cell = cells if callable(cells) else cells.__getitem__

    def _check_group(self, group: Sequence[int], position: int) -> tuple[int, ...]:
        group = tuple(int(index) for index in group)
        n_cells = self.grid[0] * self.grid[1]
        if len(group) != n_cells:
            raise ValueError(
                f"`groups[{position}]` holds {len(group)} indices, but `grid` = {self.grid} needs {n_cells}."
            )
        if not all(0 <= index < self.labels.size for index in group):
            raise ValueError(
                f"`groups[{position}]` = {group} holds an index outside 0..{self.labels.size - 1} (len(labels))."
            )
        return group

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, item: int) -> GridSample:
        group = self.groups[item]
        cells = [self._get_cell(index) for index in group]
        if not all(isinstance(cell, torch.Tensor) for cell in cells):
            raise TypeError("`cells` must give a torch.Tensor of shape (C, h, w) for every index.")
        shapes = {tuple(cell.shape) for cell in cells}
        if len(shapes) != 1:
            raise ValueError(f"the cells of grid {item} (indices {group}) differ in shape: {sorted(shapes)}.")
        return GridSample(
            image=compose_grid(torch.stack(cells), self.grid),
            labels=tuple(int(self.labels[index]) for index in group),
            indices=group,
            grid=self.grid,
        )


def collate_grids(samples: Sequence[GridSample]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch grid samples; pass as ``collate_fn`` to a ``torch.utils.data.DataLoader``.

    Parameters
    ----------
    samples : sequence of GridSample
        Grids of one shape and one layout.

    Returns
    -------
    images : torch.Tensor
        Shape (B, C, H, W).
    labels : torch.Tensor
        Shape (B, n_cells), int64, cells in row-major order.
    indices : torch.Tensor
        Shape (B, n_cells), int64, source indices.
    """
    if len(samples) == 0:
        raise ValueError("`samples` is empty; expected at least one GridSample.")
    if not all(isinstance(sample, GridSample) for sample in samples):
        raise TypeError("`samples` must hold GridSample objects.")
    layouts = {sample.grid for sample in samples}
    if len(layouts) != 1:
        raise ValueError(f"`samples` mix grid layouts {sorted(layouts)}; batch one layout at a time.")
    shapes = {tuple(sample.image.shape) for sample in samples}
    if len(shapes) != 1:
        raise ValueError(f"`samples` mix image shapes {sorted(shapes)}; expected one shape.")
    return (
        torch.stack([sample.image for sample in samples]),
        torch.tensor([sample.labels for sample in samples], dtype=torch.int64),
        torch.tensor([sample.indices for sample in samples], dtype=torch.int64),
    )
