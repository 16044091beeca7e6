"""Results of a run on disk (grid pointing game, COCO objects): append-only CSV shards, their settings, and locks.

For ``out = results/gpg.csv`` a run writes:

- ``results/gpg.csv``: the table. A one-process run appends to it directly
  (it is that run's only shard); after a distributed run, rank 0 writes the
  merged table here.
- ``results/gpg.csv.shards/rank-R-of-W.csv``: the shard of rank R of a
  W-process run (``torchrun``). Rank 0 merges every shard into ``out`` once
  all ranks are done, then deletes them.
- ``<file>.settings.json`` beside ``out`` and each shard: the run's
  fingerprint (JSON values of the model's name, the source's description,
  the modes, the refine and metric settings, the scorer's own settings (the
  COCO class rule), and every method's name and declared settings,
  :meth:`var_utils.AttributionMethod.fingerprint`).
  A run resumes only where every fingerprint agrees; methods may be added.
- ``<file>.lock``: held by the process writing ``<file>`` (:mod:`var_utils._lock`);
  a second run on the same output is refused with a message naming the holder.

Rows are only ever appended: each (batch, method) goes to its shard in one
``write`` call of complete CSV lines, so what is written is never rewritten
and the cost of a batch does not grow with the run. A process killed in the
middle of a ``write`` leaves a torn tail (a partial line, or the first rows of
a (unit, method) group, the unit being a grid or an image); readers ignore it and the next writer of that shard
truncates it, so a shard is always valid up to its last completed batch.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..._io import atomic_output_path
from ..._lock import exclusive_lock
from .scoring import GPG_SCHEMA, ResultSchema

#: Version of the settings file; older files (without it) cannot be compared and are refused.
FINGERPRINT_FORMAT = 1
_SHARD_NAME = re.compile(r"rank-(\d+)-of-(\d+)\.csv")


def read_gpg_table(path: str | Path) -> pd.DataFrame:
    """Read a grid pointing game CSV written by :func:`var_utils.evaluate_grid_pointing_game`.

    Floats are parsed round-trip exact, so the table equals the one computed.

    Parameters
    ----------
    path : str or Path
        The CSV.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`~var_utils.evaluation.gpg.scoring.GPG_COLUMNS`, in file order.

    Raises
    ------
    ValueError
        The file's columns are not those of a grid pointing game table.
    """
    return read_results(path, GPG_SCHEMA)


def read_results(path: str | Path, schema: ResultSchema) -> pd.DataFrame:
    """Read a results CSV of ``schema`` as written by a run (floats round-trip exact).

    Parameters
    ----------
    path : str or Path
        The CSV.
    schema : ResultSchema
        Its columns, e.g. :data:`~var_utils.evaluation.gpg.scoring.GPG_SCHEMA`.

    Returns
    -------
    pandas.DataFrame
        The schema's columns, in file order.

    Raises
    ------
    ValueError
        The file's columns are not the schema's.
    """
    return _parse(Path(path).read_bytes(), path, schema)


def _parse(data: bytes, path: str | Path, schema: ResultSchema) -> pd.DataFrame:
    if not data:
        return schema.typed(pd.DataFrame(columns=schema.columns))
    # Method and mode names stay strings ("NA" or "01" would otherwise become NaN or 1).
    table = pd.read_csv(
        io.BytesIO(data),
        float_precision="round_trip",
        dtype={"method": str, "mode": str},
        keep_default_na=False,
        na_values={metric: ["", "NaN", "nan"] for metric in schema.metrics},
    )
    if tuple(table.columns) != schema.columns:
        raise ValueError(
            f"{path} is not a {schema.title} table: expected columns {list(schema.columns)}, got {list(table.columns)}."
        )
    return schema.typed(table)


def settings_path(path: str | Path) -> Path:
    """Where the fingerprint of the results CSV ``path`` is kept.

    Parameters
    ----------
    path : str or Path
        The results CSV (or one of its shards).

    Returns
    -------
    Path
        ``<path>.settings.json``, in the same folder.

    Examples
    --------
    >>> settings_path("results/gpg.csv").as_posix()
    'results/gpg.csv.settings.json'
    """
    path = Path(path)
    return path.with_name(f"{path.name}.settings.json")


def shard_path(out: str | Path, rank: int, world_size: int) -> Path:
    """The file rank ``rank`` of a ``world_size``-process run appends to.

    Parameters
    ----------
    out : str or Path
        The results CSV.
    rank, world_size : int
        The process's rank and the number of processes.

    Returns
    -------
    Path
        ``out`` itself for a one-process run, else ``<out>.shards/rank-R-of-W.csv``.

    Examples
    --------
    >>> shard_path("results/gpg.csv", 1, 4).as_posix()
    'results/gpg.csv.shards/rank-1-of-4.csv'
    >>> shard_path("results/gpg.csv", 0, 1).as_posix()
    'results/gpg.csv'
    """
    out = Path(out)
    if world_size == 1:
        return out
    return out.with_name(f"{out.name}.shards") / f"rank-{rank}-of-{world_size}.csv"


def shard_files(out: str | Path) -> list[Path]:
    """Every shard of ``out`` on disk, of any number of processes, in (world size, rank) order.

    Parameters
    ----------
    out : str or Path
        The results CSV.

    Returns
    -------
    list of Path
        The shard CSVs (none when no distributed run left any).
    """
    folder = shard_path(out, 0, 2).parent
    matches = [(_SHARD_NAME.fullmatch(path.name), path) for path in folder.glob("rank-*-of-*.csv")]
    numbered = [((int(match[2]), int(match[1])), path) for match, path in matches if match]
    return [path for _, path in sorted(numbered)]


def _group_sizes(table: pd.DataFrame, rows_per_group: int, schema: ResultSchema) -> list[int]:
    """Rows each row's group must have: ``rows_per_group``, times the unit's items when their number varies."""
    if schema.items_column is None:
        return [rows_per_group] * len(table)
    return (table[schema.items_column] * rows_per_group).tolist()


def _valid_length(data: bytes, rows_per_group: int, path: Path, schema: ResultSchema) -> int:
    """Bytes of ``data`` up to its longest prefix of complete (unit, method) groups: what a torn write leaves out.

    The prefix does not depend on the order of rows within it (files of earlier
    versions interleave a batch's groups). What follows it can only be the
    start of one torn write, so it must not hold a complete group; a group
    with too many rows, rows that disagree on its size, or a repeated key, is corruption.
    """
    end = data.rfind(b"\n") + 1
    if end == 0:
        return 0
    table = _parse(data[:end], path, schema)
    groups = list(zip(table[schema.unit].tolist(), table["method"].tolist()))
    counts: dict[tuple, int] = {}
    sizes: dict[tuple, int] = {}
    open_groups = complete_rows = 0
    consistent = True
    for row, (group, size) in enumerate(zip(groups, _group_sizes(table, rows_per_group, schema))):
        consistent &= sizes.setdefault(group, size) == size
        count = counts[group] = counts.get(group, 0) + 1
        open_groups += (count == 1) - (count == size)
        if open_groups == 0:
            complete_rows = row + 1
    if (
        not consistent
        or any(count > sizes[group] for group, count in counts.items())
        or any(counts[group] == sizes[group] for group in set(groups[complete_rows:]))
        or table[schema.key][:complete_rows].duplicated().any()
    ):
        raise ValueError(
            f"{path} is corrupt: its ({schema.unit}, method) groups do not each hold their number of distinct rows "
            "(it was not written by one run at a time); delete it and its settings file to start over."
        )
    line_ends = np.cumsum([len(line) + 1 for line in data[:end].split(b"\n")[:-1]])
    return int(line_ends[complete_rows])


def _read_valid(path: Path, rows_per_group: int, schema: ResultSchema) -> pd.DataFrame:
    """The rows of ``path`` up to its last complete group (empty if the file does not exist)."""
    if not path.exists():
        return schema.typed(pd.DataFrame(columns=schema.columns))
    data = path.read_bytes()
    return _parse(data[: _valid_length(data, rows_per_group, path, schema)], path, schema)


def _conflicts(previous: dict, fingerprint: dict) -> list[str]:
    if previous.get("format") != FINGERPRINT_FORMAT:
        return ["format (the settings file comes from an older version of var_utils)"]
    # Every setting but the methods must agree (methods may be added to a run).
    shared = sorted((set(previous) | set(fingerprint)) - {"format", "methods"})
    conflicts = [key for key in shared if previous.get(key) != fingerprint.get(key)]
    previous_methods = previous.get("methods", {})
    conflicts += [
        f"methods[{name!r}]"
        for name, method in fingerprint["methods"].items()
        if name in previous_methods and previous_methods[name] != method
    ]
    return conflicts


def _recorded_settings(path: Path, fingerprint: dict) -> dict:
    """The fingerprint recorded beside the existing results file ``path``, checked against ``fingerprint``."""
    sidecar = settings_path(path)
    if not sidecar.is_file():
        raise ValueError(
            f"{path} exists but its settings file {sidecar} does not, so resuming could mix settings; "
            "delete it or pass another `out`."
        )
    previous = json.loads(sidecar.read_text(encoding="utf-8"))
    conflicts = _conflicts(previous, fingerprint)
    if conflicts:
        raise ValueError(
            f"{path} holds results computed with other {', '.join(conflicts)} (see {sidecar}); "
            "pass another `out`, or delete it and its settings file to start over."
        )
    return previous


def _write_settings(path: Path, fingerprint: dict, others: Iterable[dict]) -> None:
    """Record ``fingerprint`` beside ``path``, its methods merged with those of ``others``."""
    methods = {}
    for previous in others:
        methods.update(previous["methods"])
    settings = {**fingerprint, "methods": {**methods, **fingerprint["methods"]}}
    with atomic_output_path(settings_path(path)) as temporary:
        temporary.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


class _AppendOnlyCSV:
    """A shard opened for appending: its torn tail cut, then one ``write`` of whole lines per call."""

    def __init__(self, path: Path, rows_per_group: int, schema: ResultSchema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        data = path.read_bytes()
        valid = _valid_length(data, rows_per_group, path, schema)
        if valid < len(data):
            os.ftruncate(self.descriptor, valid)
        self.needs_header = valid == 0
        os.lseek(self.descriptor, 0, os.SEEK_END)

    def append(self, rows: pd.DataFrame) -> None:
        text = rows.to_csv(header=self.needs_header, index=False, lineterminator="\n")
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(self.descriptor, data) :]
        self.needs_header = False

    def close(self) -> None:
        os.close(self.descriptor)


class ResultStore:
    """Rows of a run: in memory, or appended to this process's shard of ``out`` (read back to resume).

    Use it as a context manager: entering locks the files this process writes
    (its shard, and ``out`` for rank 0), checks every recorded fingerprint and
    opens the shard; leaving closes it and releases the locks.

    Parameters
    ----------
    out : str, Path or None
        The results CSV; None keeps the rows in memory.
    fingerprint : dict or None
        The run's settings as JSON values (needed with ``out``): ``model``,
        ``source``, ``modes``, ``refine_settings``, ``metric_settings`` and
        ``methods`` (name -> method fingerprint).
    rows_per_group : int
        Rows of one (unit, method): cells × modes for grids; modes for COCO
        images, whose groups have that many rows per object (the schema's
        ``items_column``). A group with fewer rows at the end of a shard is a
        torn write.
    rank, world_size : int
        This process's rank and the number of processes of the run.
    schema : ResultSchema, default GPG_SCHEMA
        The table's columns.

    Raises
    ------
    ValueError
        (On entering) ``out`` or a shard exists with other settings or
        without a settings file, or is corrupt.
    var_utils._lock.OutputLockedError
        (On entering) another process is writing the same files.
    """

    def __init__(
        self,
        out: str | Path | None,
        fingerprint: dict | None,
        rows_per_group: int,
        rank: int = 0,
        world_size: int = 1,
        schema: ResultSchema = GPG_SCHEMA,
    ) -> None:
        self.out = None if out is None else Path(out)
        # Compared as the JSON it is recorded as (tuples become lists, keys strings).
        self.fingerprint = (
            None if fingerprint is None else json.loads(json.dumps({"format": FINGERPRINT_FORMAT, **fingerprint}))
        )
        self.rows_per_group, self.schema = rows_per_group, schema
        self.rank, self.world_size = rank, world_size
        self.frames: list[pd.DataFrame] = []
        self._writer: _AppendOnlyCSV | None = None
        self._out_lock = contextlib.ExitStack()
        self._shard_lock = contextlib.ExitStack()

    @property
    def shard(self) -> Path | None:
        """The file this process appends to (None in memory)."""
        return None if self.out is None else shard_path(self.out, self.rank, self.world_size)

    def __enter__(self) -> ResultStore:
        if self.out is None:
            return self
        with contextlib.ExitStack() as out_lock, contextlib.ExitStack() as shard_lock:
            if self.rank == 0:
                out_lock.enter_context(exclusive_lock(self.out))
            if self.shard != self.out:
                shard_lock.enter_context(exclusive_lock(self.shard))
            recorded = [_recorded_settings(path, self.fingerprint) for path in self._existing_files()]
            _write_settings(self.shard, self.fingerprint, recorded)
            self._writer = _AppendOnlyCSV(self.shard, self.rows_per_group, self.schema)
            self._out_lock, self._shard_lock = out_lock.pop_all(), shard_lock.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_shard()
        self._out_lock.close()

    def close_shard(self) -> None:
        """Stop appending and release the shard's lock (rank 0 keeps the lock on ``out`` until the block ends)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_lock.close()

    def _existing_files(self) -> list[Path]:
        return [path for path in [self.out, *shard_files(self.out)] if path.exists()]

    def completed(self) -> set[tuple[int, str]]:
        """The (unit, method) pairs already on disk for this process: in ``out``, its shard, and earlier runs' shards.

        Shards of the other ranks of the current run are not read: they hold
        none of this process's units and are being written.

        Returns
        -------
        set of tuple of (int, str)
            Empty in memory or before any file exists.
        """
        if self.out is None:
            return set()
        current = {shard_path(self.out, rank, self.world_size) for rank in range(self.world_size)} - {self.shard}
        readable = [path for path in self._existing_files() if path not in current]
        table = pd.concat([self._read(path) for path in readable], ignore_index=True)
        return set(zip(table[self.schema.unit].tolist(), table["method"].tolist()))

    def _read(self, path: Path) -> pd.DataFrame:
        return _read_valid(path, self.rows_per_group, self.schema)

    def add(self, rows: pd.DataFrame) -> None:
        """Keep ``rows``: append them to this process's shard, or to the in-memory table.

        Parameters
        ----------
        rows : pandas.DataFrame
            Whole (unit, method) groups with the schema's columns.
        """
        if self._writer is None:
            self.frames.append(rows)
        else:
            # Each group's rows written together: a torn write can then only cut the last group.
            self._writer.append(rows.sort_values(self.schema.group, kind="stable"))

    def merge(self) -> None:
        """Fold every shard into ``out`` (rank 0, once all ranks have closed theirs) and delete the shards.

        ``out`` is replaced atomically before any shard is deleted; rows found
        twice (a merge interrupted after that replacement) are kept once.

        Raises
        ------
        ValueError
            Two files hold different results for one row key (unit, method, mode, item).
        var_utils._lock.OutputLockedError
            Another process still writes a shard (nothing is changed then).
        """
        self.close_shard()
        shards = shard_files(self.out) if self.out is not None else []
        if not shards:
            return
        with contextlib.ExitStack() as locks:
            # Every shard locked before it is read: none can be written between reading and deleting it.
            for shard in shards:
                locks.enter_context(exclusive_lock(shard))
            files = self._existing_files()
            table = pd.concat([self._read(path) for path in files], ignore_index=True)
            table = table.drop_duplicates(ignore_index=True)
            if table[self.schema.key].duplicated().any():
                raise ValueError(
                    f"the shards of {self.out} hold different results for the same {', '.join(self.schema.key)}; "
                    f"inspect {shards[0].parent} before deleting anything."
                )
            recorded = [json.loads(settings_path(path).read_text(encoding="utf-8")) for path in files]
            # Settings first: `out` never exists without them.
            _write_settings(self.out, self.fingerprint, recorded)
            with atomic_output_path(self.out) as temporary:
                table.sort_values(self.schema.unit, kind="stable").to_csv(temporary, index=False, lineterminator="\n")
            for shard in shards:
                shard.unlink()
                settings_path(shard).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            shards[0].parent.rmdir()

    def table(self) -> pd.DataFrame:
        """Every row of the run: ``out`` and any shards on disk, or the in-memory rows.

        Returns
        -------
        pandas.DataFrame
            The schema's columns.
        """
        frames = [self._read(path) for path in self._existing_files()] if self.out is not None else self.frames
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=self.schema.columns)
        return self.schema.typed(rows)
