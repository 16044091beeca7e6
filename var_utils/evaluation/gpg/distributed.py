"""Distributed runs of the grid pointing game: which grids a process owns, and where processes wait for each other.

A run launched by ``torchrun`` is a process group of ``world_size`` ranks.
Grid ``g`` belongs to rank ``g % world_size`` (round robin: grids cost about
the same, so shares stay balanced, and the assignment depends on nothing but
the grid's id). Without a process group, a run is the one-rank case:
``(rank, world_size) = (0, 1)``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist

#: How long a rank that has finished its share waits for the others at a barrier.
BARRIER_TIMEOUT = datetime.timedelta(hours=12)
DEVICES = ("cpu", "cuda")


class OtherRankFailedError(RuntimeError):
    """Another rank of the run failed; this one stopped with it (that rank's error says why)."""


def process_group() -> tuple[int, int]:
    """Rank of the current process and the number of processes of the run.

    Returns
    -------
    tuple of int
        ``(rank, world_size)`` of the initialised default process group, or
        ``(0, 1)`` without one.

    Examples
    --------
    >>> process_group()
    (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def owns(grid_id: int, rank: int, world_size: int) -> bool:
    """Whether grid ``grid_id`` is computed by rank ``rank`` of a ``world_size``-process run.

    Parameters
    ----------
    grid_id : int
        The grid's index in its dataset.
    rank, world_size : int
        The process and the number of processes.

    Returns
    -------
    bool
        ``grid_id % world_size == rank``.

    Examples
    --------
    >>> [grid for grid in range(7) if owns(grid, 1, 3)]
    [1, 4]
    """
    return grid_id % world_size == rank


def all_succeeded(succeeded: bool) -> bool:
    """Wait until every rank of the run gets here; whether all of them succeeded at what they did before.

    A barrier that also carries each rank's outcome, so that a rank that
    failed makes the others stop instead of waiting for it at the next barrier.

    Parameters
    ----------
    succeeded : bool
        This rank's outcome.

    Returns
    -------
    bool
        True when every rank succeeded (``succeeded`` itself in a one-process run).

    Examples
    --------
    >>> all_succeeded(True)
    True
    """
    if process_group()[1] == 1:
        return succeeded
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    flag = torch.tensor([int(succeeded)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def run_together(step: Callable[[], object]) -> object:
    """Run ``step`` on every rank; if it fails on any rank, raise on all of them.

    Parameters
    ----------
    step : callable
        What this rank does; its exception, if any, is re-raised here once the
        other ranks know.

    Returns
    -------
    object
        What ``step`` returned.

    Raises
    ------
    Exception
        ``step``'s own exception on the rank where it failed; on the other ranks
        :class:`OtherRankFailedError`.

    Examples
    --------
    >>> run_together(lambda: 2 + 2)
    4
    """
    try:
        result, failure = step(), None
    except Exception as error:  # re-raised below, once every rank knows
        result, failure = None, error
    if not all_succeeded(failure is None):
        if failure is not None:
            raise failure
        raise OtherRankFailedError("another rank of the run failed (its error says why); this rank stopped with it.")
    return result


def _device_of_rank(device: str) -> torch.device:
    if device not in DEVICES:
        raise ValueError(f"`device` must be one of {DEVICES}, got {device!r}.")
    if device == "cpu":
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"`device` = 'cuda' needs a GPU for local rank {local_rank}, but CUDA sees "
            f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}; run with --device cpu or fewer "
            "processes per node."
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def launched_process_group(device: str = "cpu") -> Iterator[torch.device]:
    """Join the process group ``torchrun`` describes in the environment, for the block; yield this rank's device.

    ``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``
    and ``MASTER_PORT``. With more than one process the group uses NCCL on
    CUDA and gloo on the CPU; with one (a plain ``python`` run) no group is
    made.

    Parameters
    ----------
    device : {"cpu", "cuda"}
        ``"cuda"`` maps the local rank to its GPU (``cuda:LOCAL_RANK``).

    Yields
    ------
    torch.device
        Where this rank computes.

    Raises
    ------
    ValueError
        An unknown ``device``, or ``"cuda"`` without a GPU for this local rank.
    """
    target = _device_of_rank(device)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        yield target
        return
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield target
    finally:
        dist.destroy_process_group()
