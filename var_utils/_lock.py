"""Exclusive locks on output files, held by a running process and released by the kernel when it dies."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path


class OutputLockedError(RuntimeError):
    """Another process holds the lock on an output; the message names it."""


def lock_path(path: str | Path) -> Path:
    """The lock file of the output ``path``: ``<path>.lock`` in the same folder.

    Parameters
    ----------
    path : str or Path
        The output file.

    Returns
    -------
    Path
        Its lock file.

    Examples
    --------
    >>> lock_path("results/gpg.csv").name
    'gpg.csv.lock'
    """
    path = Path(path)
    return path.with_name(f"{path.name}.lock")


def lock_holder(path: str | Path) -> dict:
    """What the last process that locked ``path`` wrote of itself (pid, host, start, command); {} if nothing.

    Parameters
    ----------
    path : str or Path
        The output file (not its lock file).

    Returns
    -------
    dict
        ``pid``, ``host``, ``started`` (ISO time) and ``command``, or {} when
        the lock file is missing, empty or unreadable.
    """
    try:
        return json.loads(lock_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (it has not written its details yet)"
    return (
        f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')} "
        f"with `{holder.get('command')}`"
    )


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the output ``path`` for the block; refuse at once if another process holds it.

    The lock is ``flock`` on ``<path>.lock``, so the kernel releases it when
    its process ends in any way (``kill -9`` included): a dead run never
    blocks the next (its lock file stays behind, naming it, until the next
    holder takes it over). On a normal exit the holder deletes the lock file
    while still holding it; a process that locked a file deleted meanwhile
    notices and locks the new one, so two processes never both hold the lock.

    Parameters
    ----------
    path : str or Path
        The output file to protect (it need not exist).

    Yields
    ------
    None

    Raises
    ------
    OutputLockedError
        Another process holds the lock; the message names it.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "table.csv"
    >>> with exclusive_lock(out):
    ...     lock_holder(out)["pid"] == os.getpid()
    True
    >>> lock_path(out).exists()
    False
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = _locked_descriptor(path)
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        yield
    finally:
        # Unlink before closing: closing releases the lock.
        lock_path(path).unlink(missing_ok=True)
        os.close(descriptor)


def _locked_descriptor(path: Path) -> int:
    """A descriptor of ``<path>.lock`` holding its flock; retried if the file was deleted while we waited for it."""
    while True:
        descriptor = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise OutputLockedError(
                f"{path} is being written by {_describe(lock_holder(path))}; wait for it to finish, stop it, "
                "or write to another output."
            ) from None
        try:
            if os.stat(lock_path(path)).st_ino == os.fstat(descriptor).st_ino:
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)
