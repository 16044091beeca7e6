"""Results of the grid pointing game on disk: a CSV written atomically, and the settings it was computed with.

Every finished (batch, method) is appended to the CSV by writing a complete copy
next to it and renaming it over the file, so a killed run never leaves a
half-written CSV. Next to it, ``<out>.settings.json`` holds the run's
fingerprint: JSON values of the model's name, the grid source's description,
the modes, the refine and metric settings, and for every method its name and
declared settings (:meth:`var_utils.AttributionMethod.fingerprint`). A run
resumes a CSV only when the fingerprints agree; methods may be added.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from ..._io import atomic_output_path
from .scoring import GPG_COLUMNS, typed_table

#: Version of the settings file; older files (without it) cannot be compared and are refused.
FINGERPRINT_FORMAT = 1
_SHARED_KEYS = ("model", "source", "modes", "refine_settings", "metric_settings")


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
    table = pd.read_csv(path, float_precision="round_trip")
    if tuple(table.columns) != GPG_COLUMNS:
        raise ValueError(
            f"{path} is not a grid pointing game table: expected columns {list(GPG_COLUMNS)}, "
            f"got {list(table.columns)}."
        )
    return typed_table(table)


def settings_path(path: str | Path) -> Path:
    """Where the fingerprint of the results CSV ``path`` is kept.

    Parameters
    ----------
    path : str or Path
        The results CSV.

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


def _conflicts(previous: dict, fingerprint: dict) -> list[str]:
    if previous.get("format") != FINGERPRINT_FORMAT:
        return ["format (the settings file comes from an older version of var_utils)"]
    conflicts = [key for key in _SHARED_KEYS if previous.get(key) != fingerprint[key]]
    previous_methods = previous.get("methods", {})
    conflicts += [
        f"methods[{name!r}]"
        for name, method in fingerprint["methods"].items()
        if name in previous_methods and previous_methods[name] != method
    ]
    return conflicts


def _append_csv(path: Path, rows: pd.DataFrame) -> None:
    """Append ``rows`` by writing a complete copy next to ``path`` and renaming it over it."""
    existed = path.exists()
    with atomic_output_path(path) as temporary:
        if existed:
            shutil.copyfile(path, temporary)
        rows.to_csv(temporary, mode="a", header=not existed, index=False)


class ResultStore:
    """Rows of a run: in memory, or in the CSV ``out`` (read back to resume).

    Parameters
    ----------
    out : str, Path or None
        The CSV; None keeps the rows in memory.
    fingerprint : dict or None
        The run's settings as JSON values (needed with ``out``): ``model``,
        ``source``, ``modes``, ``refine_settings``, ``metric_settings`` and
        ``methods`` (name -> method fingerprint).

    Raises
    ------
    ValueError
        ``out`` exists with other settings, or without a settings file.
    """

    def __init__(self, out: str | Path | None, fingerprint: dict | None) -> None:
        self.path = None if out is None else Path(out)
        self.frames: list[pd.DataFrame] = []
        if self.path is not None:
            self._claim({"format": FINGERPRINT_FORMAT, **json.loads(json.dumps(fingerprint))})

    def _claim(self, fingerprint: dict) -> None:
        """Refuse to resume under other settings; record the (merged) fingerprint next to the CSV."""
        sidecar = settings_path(self.path)
        if self.path.exists():
            if not sidecar.is_file():
                raise ValueError(
                    f"`out` = {self.path} exists but its settings file {sidecar} does not, so resuming could mix "
                    "settings; delete the CSV or pass another `out`."
                )
            previous = json.loads(sidecar.read_text(encoding="utf-8"))
            conflicts = _conflicts(previous, fingerprint)
            if conflicts:
                raise ValueError(
                    f"`out` = {self.path} holds results computed with other {', '.join(conflicts)} (see {sidecar}); "
                    "pass another `out`, or delete both files to start over."
                )
            fingerprint["methods"] = {**previous["methods"], **fingerprint["methods"]}
        with atomic_output_path(sidecar) as temporary:
            temporary.write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")

    def completed(self) -> set[tuple[int, str]]:
        """The (grid, method) pairs the CSV already holds.

        Returns
        -------
        set of tuple of (int, str)
            Empty without a CSV or before it exists.
        """
        if self.path is None or not self.path.exists():
            return set()
        table = read_gpg_table(self.path)
        return set(zip(table["grid"].tolist(), table["method"].tolist()))

    def add(self, rows: pd.DataFrame) -> None:
        """Keep ``rows``: append them to the CSV, or to the in-memory table.

        Parameters
        ----------
        rows : pandas.DataFrame
            Rows with the columns :data:`~var_utils.evaluation.gpg.scoring.GPG_COLUMNS`.
        """
        if self.path is None:
            self.frames.append(rows)
        else:
            _append_csv(self.path, rows)

    def table(self) -> pd.DataFrame:
        """Every row of the run (from the CSV when there is one).

        Returns
        -------
        pandas.DataFrame
            Columns :data:`~var_utils.evaluation.gpg.scoring.GPG_COLUMNS`.
        """
        if self.path is not None and self.path.exists():
            return read_gpg_table(self.path)
        rows = pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame(columns=GPG_COLUMNS)
        return typed_table(rows)
