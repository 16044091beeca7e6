"""Atomic file writes: a result appears under its final name only when complete."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only once the block succeeds.

    The temporary file (not yet created) sits in the same folder, so
    ``os.replace`` is atomic; if the block raises, it is deleted and ``path``
    is left untouched, so an interrupted write never leaves a half-written
    file under the final name.

    Parameters
    ----------
    path : str or Path
        The final file name.

    Yields
    ------
    Path
        Where to write the content.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_output_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name that the writer creates itself, so the file gets the usual umask permissions.
    tmp_path = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.part"
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
