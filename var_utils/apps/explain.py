r"""``python -m var_utils explain``: base and VAR maps of your own image files, one output folder per image.

:func:`plan_explanations` checks every setting and finds the images (folders are
searched recursively) before any image is processed; :func:`run_explanations`
explains them one at a time, and :func:`explain_images` does both. Every file is
written atomically and an image's ``record.json`` last, so a record means a
complete image: a rerun with the same settings skips it, and
``explanations.csv`` is built from the records alone. Recomputing an image first
removes its record, its files of formats not chosen this run and the table,
so no output is left describing other settings. Paths become text with
undecodable bytes escaped (``bad\xff.png``), in files and messages alike.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._io import atomic_output_path
from .._validation import check_model, check_positive_int
from ..datasets.photos import decode_image
from ..explainers import automatic_class_set
from ..methods import AttributionMethod, get_method
from ..models import load_model
from ..refine import check_refine_settings
from ..viz import plot_class_maps
from .demo import image_maps, save_figure
from .explanation import class_probabilities, display_image, kept_share, model_input, resolve_classes

#: Suffixes (compared in lower case) of the files taken from folders; other files there are ignored.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
#: What a run can write: the figure, the maps and the table.
OUTPUT_FORMATS = ("png", "npz", "csv")
#: The file of each per-image format, in the image's output folder.
FORMAT_FILES = {"png": "figure.png", "npz": "maps.npz"}
RECORD_NAME = "record.json"
TABLE_NAME = "explanations.csv"
TABLE_COLUMNS = (
    "image",
    "method",
    "class_id",
    "class_name",
    "probability",
    "rank",
    "kept_share",
    "base_max",
    "var_max",
    "model",
    "tau",
    "temperature",
    "normalize",
)
#: Version of the record layout and of how images are read; part of the fingerprint, so a change recomputes.
#: 2: images decoded by :func:`~var_utils.datasets.photos.decode_image` (EXIF orientation, 16-bit scaled).
RECORD_FORMAT = 2


@dataclass(frozen=True)
class ImageJob:
    """One image to explain.

    Attributes
    ----------
    path : Path
        The file, as given or as found in a given folder (its ``image`` in the table).
    folder : Path
        Its output folder, relative to the output directory.
    """

    path: Path
    folder: Path


@dataclass(frozen=True)
class ExplainPlan:
    """A checked run: the model, the images and the settings (see :func:`plan_explanations`).

    Attributes
    ----------
    model : nn.Module
        The classifier, with ``class_names`` (and ``name``, recorded).
    jobs : tuple of ImageJob
        The images, in processing order.
    ignored : tuple of Path
        Files found in folders without an image suffix.
    out : Path
        The output directory.
    methods : mapping of str to AttributionMethod
        Method name -> the configured method.
    classes : "auto" or tuple of int
        ``"auto"`` (the top-k predictions and the least probable class) or a fixed class set.
    top_k : int
        Top predictions in the automatic class set.
    refine_settings : mapping of str to object
        All four settings of :func:`var_utils.refine_all`.
    formats : tuple of str
        Outputs from :data:`OUTPUT_FORMATS`.
    """

    model: nn.Module
    jobs: tuple[ImageJob, ...]
    ignored: tuple[Path, ...]
    out: Path
    methods: Mapping[str, AttributionMethod]
    classes: str | tuple[int, ...]
    top_k: int
    refine_settings: Mapping[str, object]
    formats: tuple[str, ...]

    @property
    def model_name(self) -> str:
        """The model's ``name`` (set by :func:`var_utils.load_model`), else its class name."""
        return getattr(self.model, "name", None) or type(self.model).__qualname__

    def fingerprint(self) -> dict:
        """What identifies an image's outputs, as JSON values: a record with another fingerprint is recomputed.

        Returns
        -------
        dict
            The record format, the model's name, each method's fingerprint, the
            class option (``top_k`` only for ``"auto"``), the refine settings and
            the per-image formats (not ``"csv"``: the table changes no image's
            outputs, so adding or dropping it recomputes nothing).
        """
        automatic = self.classes == "auto"
        fingerprint = {
            "record_format": RECORD_FORMAT,
            "model": self.model_name,
            "methods": {name: method.fingerprint() for name, method in self.methods.items()},
            "classes": "auto" if automatic else list(self.classes),
            "top_k": self.top_k if automatic else None,
            "refine_settings": dict(self.refine_settings),
            "formats": [name for name in self.formats if name in FORMAT_FILES],
        }
        return json.loads(json.dumps(fingerprint))


@dataclass
class ExplainSummary:
    """What a run did, image by image.

    Attributes
    ----------
    out : Path
        The output directory.
    explained : list of Path
        Images explained by this run.
    already_done : list of Path
        Images skipped because a complete record with the same settings exists.
    failed : dict of Path to str
        Images that could not be explained, and why (``"TypeName: message"``).
    ignored : tuple of Path
        Files found in folders without an image suffix.
    table : Path or None
        ``explanations.csv``, when written.
    removed_table : Path or None
        ``explanations.csv``, when this run removed it as stale (an image was
        recomputed) without writing it again (csv was not among the formats).
    """

    out: Path
    explained: list[Path] = field(default_factory=list)
    already_done: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    ignored: tuple[Path, ...] = ()
    table: Path | None = None
    removed_table: Path | None = None

    @property
    def exit_status(self) -> int:
        """1 if an image failed, else 0."""
        return 1 if self.failed else 0

    def report(self) -> str:
        """A few lines for the terminal: the counts and where the outputs are.

        Returns
        -------
        str
            The report, without a final newline.
        """
        lines = [
            f"{len(self.explained)} explained, {len(self.already_done)} already done (skipped), "
            f"{len(self.failed)} failed, {len(self.ignored)} non-image file(s) ignored."
        ]
        # The first line of each reason (torch errors can run over many lines; stderr has them whole).
        lines += [f"failed: {_display(path)}: {reason.splitlines()[0]}" for path, reason in self.failed.items()]
        lines.append(f"Outputs in {_display(self.out)}{os.sep} (one folder per image)")
        if self.table is not None:
            lines.append(f"Table: {_display(self.table)}")
        if self.removed_table is not None:
            lines.append(
                f"Removed the stale table {_display(self.removed_table)} (add csv to the formats to rebuild it)"
            )
        return "\n".join(lines)


def _display(value: object) -> str:
    r"""``str(value)`` printable as UTF-8: the bytes of a file name that is not UTF-8 are shown escaped.

    On POSIX a file name's undecodable bytes become lone surrogates in Python
    strings, which cannot be written as UTF-8 (CSV, JSON, the terminal).

    Parameters
    ----------
    value : object
        A path, an error message, any object.

    Returns
    -------
    str
        The text, each undecodable byte as ``\xNN`` (and any other lone surrogate as ``\udNNN``).

    Examples
    --------
    >>> import os
    >>> print(_display(Path(os.fsdecode(b"photos/caf\xe9.png"))))
    photos/caf\xe9.png
    """
    string = str(value)
    try:
        return string.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte stands for
        return string.encode("utf-8", "backslashreplace").decode("utf-8")


def _quoted(*paths: str | Path) -> str:
    """Paths as quoted, printable text, comma-separated (for messages)."""
    return ", ".join(f"'{_display(path)}'" for path in paths)


def _is_inside(path: Path, folder: Path | None) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both resolved); False without a folder."""
    if folder is None:
        return False
    resolved = path.resolve()
    return resolved == folder or folder in resolved.parents


def _folder_images(folder: Path, skip: Path | None) -> tuple[list[ImageJob], list[Path]]:
    """The images below ``folder`` (sorted, their output folders under the folder's name) and the other files."""
    top = Path(Path(os.path.abspath(folder)).name or "root")
    jobs, ignored = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _is_inside(p, skip)):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            jobs.append(ImageJob(path, top / path.relative_to(folder)))
        else:
            ignored.append(path)
    return jobs, ignored


def _collect(paths: Sequence[Path], skip: Path | None) -> tuple[list[ImageJob], list[Path]]:
    """Every image reached from ``paths`` (a file reached twice once: the first visit, by resolved path)."""
    jobs, ignored = [], []
    for path in paths:
        found, other = _folder_images(path, skip) if path.is_dir() else ([ImageJob(path, Path(path.name))], [])
        jobs += found
        ignored += other
    unique: dict[Path, ImageJob] = {}
    for job in jobs:
        unique.setdefault(job.path.resolve(), job)
    return list(unique.values()), ignored


def _check_folders(jobs: Sequence[ImageJob]) -> None:
    """Raise if an output folder would be, or lie in, the table's name, or if two files would share one."""
    by_folder: dict[Path, ImageJob] = {}
    for job in jobs:
        if job.folder.parts[0] == TABLE_NAME:
            raise ValueError(
                f"{_quoted(job.path)} would be explained in the output folder {_quoted(job.folder)}, "
                f"which clashes with the table {TABLE_NAME}; rename the file or its folder."
            )
        other = by_folder.setdefault(job.folder, job)
        if other is not job:
            raise ValueError(
                f"{_quoted(other.path)} and {_quoted(job.path)} would both be explained in the output folder "
                f"{_quoted(job.folder)}; rename one or explain them in separate runs."
            )


def find_images(paths: Sequence[str | Path], out: str | Path | None = None) -> tuple[list[ImageJob], list[Path]]:
    """The images to explain, each with its output folder, and the non-image files found in folders.

    A folder is searched recursively for files with a suffix of
    :data:`IMAGE_SUFFIXES` (any case), in sorted order; ``photos/sub/cat.jpg``
    found in ``photos/`` is explained in ``photos/sub/cat.jpg/``. A file given
    itself is always taken, whatever its suffix (a missing one fails when it is
    read): ``x/y.png`` is explained in ``y.png/``. A file reached twice (by
    resolved path: repeated, through a folder and by name, or through a
    symbolic link) is explained once, where it is first reached.

    Parameters
    ----------
    paths : sequence of str or Path
        Files and folders.
    out : str or Path, optional
        The output directory: no path may lie in it, and files below it are not
        searched (it may lie in a searched folder).

    Returns
    -------
    tuple of list of ImageJob and list of Path
        The images (at least one) and the ignored files.

    Raises
    ------
    TypeError
        ``paths`` is not a sequence of paths.
    ValueError
        ``paths`` is empty; a path lies in ``out`` (named); no image is found
        (the paths named); an output folder would clash with ``explanations.csv``,
        or two files would share one (both are named).

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("photos/b.JPG", "photos/sub/a.png", "photos/notes.txt", "y.gif"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True)
    ...     (root / name).touch()
    >>> jobs, ignored = find_images([root / "photos", root / "y.gif", root / "photos" / "sub" / "a.png"])
    >>> [job.folder.as_posix() for job in jobs], [path.name for path in ignored]
    (['photos/b.JPG', 'photos/sub/a.png', 'y.gif'], ['notes.txt'])
    """
    if isinstance(paths, (str, Path)) or not isinstance(paths, Sequence):
        raise TypeError(f"`paths` must be a sequence of files and folders, got {type(paths).__name__}.")
    if not paths:
        raise ValueError("`paths` must name at least one file or folder.")
    paths = [Path(path) for path in paths]
    skip = None if out is None else Path(out).resolve()
    inside = [path for path in paths if _is_inside(path, skip)]
    if inside:
        raise ValueError(f"{_quoted(*inside)} lie(s) in the output folder {_quoted(out)}; choose another `out`.")
    jobs, ignored = _collect(paths, skip)
    if not jobs:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ValueError(f"No image found in {_quoted(*paths)} (folders are searched for {suffixes} files).")
    _check_folders(jobs)
    return jobs, ignored


def _names(value: str | Sequence[str], name: str) -> list[str]:
    """A comma-separated string or a sequence of strings as a list of names (at least one)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(item, str) for item in items):
        raise TypeError(f"`{name}` must be a comma-separated str or a sequence of str, got {value!r}.")
    names = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not names:
        raise ValueError(f"`{name}` must name at least one item, got {value!r}.")
    return names


def _build_methods(methods: str | Sequence[str], n_steps: int) -> dict[str, AttributionMethod]:
    """Method name -> configured method; integrated gradients get ``n_steps``."""
    check_positive_int(n_steps, "n_steps")
    return {
        name: get_method(name, **({"n_steps": n_steps} if name == "integrated_gradients" else {}))
        for name in _names(methods, "methods")
    }


def _class_option(classes: str | Sequence[int | str], top_k: int) -> str | list[int | str]:
    """``"auto"`` or the class items, as far as they can be checked without the model."""
    check_positive_int(top_k, "top_k")
    if isinstance(classes, str) and classes.strip().lower() == "auto":
        return "auto"
    items = _names(classes, "classes") if isinstance(classes, str) else classes
    if not isinstance(items, Sequence):
        raise TypeError(f"`classes` must be 'auto' or a sequence of class indices and names, got {classes!r}.")
    return list(items)


def _resolve_class_option(option: str | list[int | str], model: nn.Module, top_k: int) -> str | tuple[int, ...]:
    """``"auto"`` (with ``top_k`` below the model's class count) or the class set resolved on the model."""
    class_names = getattr(model, "class_names", None)
    if not isinstance(class_names, Sequence):
        raise TypeError("`model` needs `class_names` (use var_utils.load_model).")
    if option == "auto":
        if top_k >= len(class_names):
            raise ValueError(f"`top_k` must be < {len(class_names)}, the model's number of classes; got {top_k}.")
        return "auto"
    try:
        return tuple(resolve_classes(option, class_names))
    except ValueError as error:
        raise ValueError(f"`classes` {option!r}: {error}") from None


def _check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """The chosen formats in the order of :data:`OUTPUT_FORMATS`."""
    chosen = _names(formats, "formats")
    unknown = sorted(set(chosen) - set(OUTPUT_FORMATS))
    if unknown:
        raise ValueError(f"`formats` has unknown format(s) {unknown}; expected some of {list(OUTPUT_FORMATS)}.")
    return tuple(name for name in OUTPUT_FORMATS if name in chosen)


def _check_out(out: str | Path) -> Path:
    """``out`` as a Path, checked to be a folder or creatable as one (no file in the way)."""
    if not isinstance(out, (str, Path)):
        raise TypeError(f"`out` must be a str or Path, got {type(out).__name__}.")
    absolute = Path(os.path.abspath(out))
    blocking = next(path for path in (absolute, *absolute.parents) if path.exists())
    if not blocking.is_dir():
        raise ValueError(f"`out` {_quoted(out)} must be a folder, but {_quoted(blocking)} exists and is not one.")
    return Path(out)


def plan_explanations(
    paths: Sequence[str | Path],
    out: str | Path,
    model: str | nn.Module = "efficientnet_lite0",
    *,
    methods: str | Sequence[str] = "gradcam",
    classes: str | Sequence[int | str] = "auto",
    top_k: int = 3,
    refine_settings: Mapping | None = None,
    n_steps: int = 32,
    formats: str | Sequence[str] = OUTPUT_FORMATS,
) -> ExplainPlan:
    """Check the settings and find the images, before any image is processed.

    The settings that need no model (formats, methods, refine settings, the
    class option's form, ``out``) and the images are checked before the model
    is loaded; the classes and ``top_k`` are then checked against the model.

    Parameters
    ----------
    paths : sequence of str or Path
        Image files and folders (see :func:`find_images`).
    out : str or Path
        Output directory: an existing folder or a path where one can be made.
    model : str or nn.Module, default "efficientnet_lite0"
        A name of :data:`var_utils.MODELS`, or a model of :func:`var_utils.load_model`.
    methods : str or sequence of str, default "gradcam"
        Names of :data:`var_utils.METHODS` (a str may list several, comma-separated).
    classes : str or sequence of int or str, default "auto"
        ``"auto"``: each image's ``top_k`` predictions and its least probable
        class (:func:`var_utils.automatic_class_set`); otherwise one class set
        for all images, by indices and names (a str: comma-separated).
    top_k : int, default 3
        Top predictions in the automatic class set.
    refine_settings : dict, optional
        ``tau``, ``temperature``, ``use_abs``, ``normalize`` of :func:`var_utils.refine_all`.
    n_steps : int, default 32
        Steps of integrated gradients.
    formats : str or sequence of str, default ("png", "npz", "csv")
        Outputs from :data:`OUTPUT_FORMATS`; ``record.json`` is always written.

    Returns
    -------
    ExplainPlan
        The checked run.

    Raises
    ------
    TypeError, ValueError
        An invalid setting (e.g. an unknown or repeated class, named); ``out``
        is not a folder; or an error of :func:`find_images` (a path in ``out``,
        no image, clashing output folders).
    RuntimeError
        The model's weights could not be downloaded (see :func:`var_utils.load_model`).
    """
    formats = _check_formats(formats)
    configured = _build_methods(methods, n_steps)
    refine_settings = check_refine_settings(refine_settings)
    class_option = _class_option(classes, top_k)
    out = _check_out(out)
    jobs, ignored = find_images(paths, out)
    model = load_model(model) if isinstance(model, str) else check_model(model)
    return ExplainPlan(
        model=model,
        jobs=tuple(jobs),
        ignored=tuple(ignored),
        out=out,
        methods=configured,
        classes=_resolve_class_option(class_option, model, top_k),
        top_k=top_k,
        refine_settings=refine_settings,
        formats=formats,
    )


def _read_source(path: Path) -> bytes:
    """The file's bytes, read once: the same bytes are hashed and decoded."""
    if not path.is_file():
        raise FileNotFoundError(f"{_quoted(path)} does not exist or is not a file.")
    return path.read_bytes()


def _read_record(folder: Path) -> dict | None:
    """The folder's record, or None if there is none or it cannot be parsed."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_done(folder: Path, fingerprint: dict, digest: str) -> bool:
    """Whether the folder holds a complete record of the same image under the same settings."""
    record = _read_record(folder)
    outputs = None if record is None else record.get("outputs")
    if not isinstance(outputs, list) or not all(isinstance(name, str) for name in outputs):
        return False
    return (
        record.get("fingerprint") == fingerprint
        and record.get("source_sha256") == digest
        and all((folder / name).is_file() for name in outputs)
    )


def _write_json(path: Path, content: dict) -> None:
    with atomic_output_path(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _save_figure(plan: ExplainPlan, path: Path, inputs: torch.Tensor, maps: dict, titles: list[str]) -> None:
    """The image beside each method's base and VAR maps of the classes, one colour scale per row."""
    label = {"base": "base", "var": "VAR"}
    rows = {f"{method} {label[mode]}": m for method, by_mode in maps.items() for mode, m in by_mode.items()}
    save_figure(plot_class_maps(display_image(plan.model, inputs), rows, titles, common_scale=True), path)


def _save_maps(path: Path, classes: list[int], names: list[str], probabilities: torch.Tensor, maps: dict) -> None:
    """``maps.npz``: the class set, its probabilities and every ``<method>_<mode>`` (K, C', H, W) float32 array."""
    arrays = {
        "class_ids": np.asarray(classes, dtype=np.int64),
        "class_names": np.asarray(names, dtype=str),
        "probabilities": probabilities[classes].numpy(),
    }
    for method, by_mode in maps.items():
        arrays.update({f"{method}_{mode}": m.detach().float().cpu().numpy() for mode, m in by_mode.items()})
    # An open file, so numpy does not append ".npz" to the temporary name.
    with atomic_output_path(path) as temporary, temporary.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def _write_outputs(
    plan: ExplainPlan, folder: Path, inputs: torch.Tensor, classes: list[int], probabilities: torch.Tensor, maps: dict
) -> list[str]:
    """Write the image's figure and maps (those of the plan's formats); their file names."""
    names = [plan.model.class_names[c] for c in classes]
    if "png" in plan.formats:
        titles = [f"{name}\np = {float(probabilities[c]):.3g}" for name, c in zip(names, classes)]
        _save_figure(plan, folder / FORMAT_FILES["png"], inputs, maps, titles)
    if "npz" in plan.formats:
        _save_maps(folder / FORMAT_FILES["npz"], classes, names, probabilities, maps)
    return [FORMAT_FILES[name] for name in plan.formats if name in FORMAT_FILES]


def _number(value: torch.Tensor) -> float | None:
    """A float for JSON and CSV; None (an empty cell) for NaN."""
    number = float(value)
    return None if math.isnan(number) else number


def _table_rows(
    plan: ExplainPlan, image: Path, classes: list[int], probabilities: torch.Tensor, maps: dict
) -> list[dict]:
    """One row per method and class, in the columns of :data:`TABLE_COLUMNS`."""
    settings = {key: plan.refine_settings[key] for key in ("tau", "temperature", "normalize")}
    settings["model"] = plan.model_name
    rows = []
    for method, by_mode in maps.items():
        shares = kept_share(by_mode["base"], by_mode["var"])
        for rank, class_id in enumerate(classes):
            row = {"image": _display(image), "method": method, "class_id": class_id}
            row["class_name"] = plan.model.class_names[class_id]
            row["probability"] = float(probabilities[class_id])
            row["rank"] = rank
            row["kept_share"] = _number(shares[rank])
            row["base_max"] = float(by_mode["base"][rank].max())
            row["var_max"] = float(by_mode["var"][rank].max())
            rows.append({**row, **settings})
    return rows


def _remove_replaced(plan: ExplainPlan, folder: Path) -> None:
    """Before an image's outputs are written: remove its record, its files of formats not chosen, and the table.

    The record goes first, so an interrupted recomputation leaves no record
    (the next run recomputes); a figure or maps of other settings must not
    stay beside the new outputs; and ``explanations.csv`` no longer matches the
    records (:func:`run_explanations` writes it again with the csv format).
    """
    (folder / RECORD_NAME).unlink(missing_ok=True)
    for name, file_name in FORMAT_FILES.items():
        if name not in plan.formats:
            (folder / file_name).unlink(missing_ok=True)
    (plan.out / TABLE_NAME).unlink(missing_ok=True)


def explain_image(plan: ExplainPlan, job: ImageJob, fingerprint: dict | None = None) -> bool:
    """Explain one image of a plan into its output folder, unless it is already done.

    The file is read once; its SHA-256 and the decoded image come from the
    same bytes. Before anything is written, the image's record, its files of
    the formats not chosen and the output directory's ``explanations.csv``
    (stale once a record changes) are removed; then the outputs of the plan's
    formats are written and ``record.json`` (the fingerprint, the source
    file's SHA-256, the outputs and the table rows) last.

    Parameters
    ----------
    plan : ExplainPlan
        The run, of :func:`plan_explanations`.
    job : ImageJob
        One of ``plan.jobs``.
    fingerprint : dict, optional
        ``plan.fingerprint()``, when already computed.

    Returns
    -------
    bool
        True if the image was explained, False if its complete record under
        the same settings and of the same file content was found (nothing
        written or removed).

    Raises
    ------
    FileNotFoundError, ValueError
        The file is missing or not a readable image (e.g. a decompression
        bomb), or a method cannot run on the model.
    OSError
        The file or an output cannot be read or written.
    """
    fingerprint = plan.fingerprint() if fingerprint is None else fingerprint
    folder = plan.out / job.folder
    data = _read_source(job.path)
    digest = hashlib.sha256(data).hexdigest()
    if _is_done(folder, fingerprint, digest):
        return False
    inputs = model_input(plan.model, decode_image(data, _quoted(job.path.name)))
    probabilities = class_probabilities(plan.model, inputs)
    classes = automatic_class_set(probabilities, plan.top_k) if plan.classes == "auto" else list(plan.classes)
    maps = {name: image_maps(plan.model, inputs, classes, m, plan.refine_settings) for name, m in plan.methods.items()}
    _remove_replaced(plan, folder)
    outputs = _write_outputs(plan, folder, inputs, classes, probabilities, maps)
    rows = _table_rows(plan, job.path, classes, probabilities, maps)
    record = {"fingerprint": fingerprint, "image": _display(job.path), "source_sha256": digest, "outputs": outputs}
    _write_json(folder / RECORD_NAME, {**record, "rows": rows})
    return True


def _write_table(out: Path, jobs: Sequence[ImageJob]) -> Path:
    """``explanations.csv`` from the records of the completed jobs, in their order (left alone when unchanged)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for job in jobs:
        record = _read_record(out / job.folder) or {}
        # The path as given in this run (a record may come from a run started elsewhere).
        writer.writerows({**row, "image": _display(job.path)} for row in record.get("rows", []))
    content = text.getvalue().encode("utf-8")
    path = out / TABLE_NAME
    if not path.is_file() or path.read_bytes() != content:
        with atomic_output_path(path) as temporary:
            temporary.write_bytes(content)
    return path


def _attempt(plan: ExplainPlan, job: ImageJob, fingerprint: dict, summary: ExplainSummary) -> bool:
    """Explain one image into the summary; False (reported on stderr) if it failed."""
    # The per-image boundary: whatever goes wrong with one image (an unreadable file, a decompression
    # bomb, a torch error, a full disk) is reported and the run goes on; KeyboardInterrupt still stops it.
    try:
        done_now = explain_image(plan, job, fingerprint)
    except Exception as error:
        summary.failed[job.path] = ": ".join(filter(None, (type(error).__name__, _display(error))))
        tqdm.write(f"{_display(job.path)}: {summary.failed[job.path]}", file=sys.stderr)
        return False
    (summary.explained if done_now else summary.already_done).append(job.path)
    return True


def run_explanations(plan: ExplainPlan, *, progress: bool = True) -> ExplainSummary:
    """Explain the plan's images one by one; an image that fails is reported on stderr and skipped.

    Any exception of one image (not ``KeyboardInterrupt``) is caught, reported
    as ``PATH: TypeName: message`` on stderr and kept in the summary; the
    other images are still explained.

    ``explanations.csv`` describes the records of the run that wrote it. It is
    removed as soon as an image is recomputed (its rows would be stale) and,
    with the csv format, written again at the end from the records of the
    images explained or already done. A run without csv that recomputes an
    image therefore leaves no table (the summary says so), rather than a table
    whose settings contradict the records; one that recomputes nothing leaves
    it as it is, still matching the records.

    Parameters
    ----------
    plan : ExplainPlan
        The run, of :func:`plan_explanations`.
    progress : bool, default True
        Show a progress bar over the images (on stderr).

    Returns
    -------
    ExplainSummary
        Explained, already done, failed and ignored files; ``table`` is
        ``explanations.csv`` when written, ``removed_table`` when removed and
        not written again.
    """
    fingerprint = plan.fingerprint()
    summary = ExplainSummary(out=plan.out, ignored=plan.ignored)
    table = plan.out / TABLE_NAME
    had_table = table.is_file()
    jobs = tqdm(plan.jobs, desc="explain", unit="image", disable=not progress)
    completed = [job for job in jobs if _attempt(plan, job, fingerprint, summary)]
    if "csv" in plan.formats:
        summary.table = _write_table(plan.out, completed)
    elif had_table and not table.exists():
        summary.removed_table = table
    return summary


def explain_images(
    paths: Sequence[str | Path],
    out: str | Path,
    model: str | nn.Module = "efficientnet_lite0",
    *,
    progress: bool = True,
    **settings,
) -> ExplainSummary:
    """Explain image files and folders: :func:`plan_explanations`, then :func:`run_explanations`.

    Parameters
    ----------
    paths, out, model
        See :func:`plan_explanations`.
    progress : bool, default True
        Show a progress bar over the images.
    **settings
        ``methods``, ``classes``, ``top_k``, ``refine_settings``, ``n_steps``
        and ``formats`` of :func:`plan_explanations`.

    Returns
    -------
    ExplainSummary
        What was explained, skipped as already done, failed and ignored.

    Raises
    ------
    TypeError, ValueError
        An invalid setting, before any image is processed.
    """
    return run_explanations(plan_explanations(paths, out, model, **settings), progress=progress)
