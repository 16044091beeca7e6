"""``python -m var_utils explain``: base and VAR maps of your own image files, one output folder per image.

:func:`plan_explanations` checks every setting and finds the images (folders are
searched recursively) before any image is processed; :func:`run_explanations`
explains them one at a time, and :func:`explain_images` does both. Every file is
written atomically and an image's ``record.json`` last, so a record means a
complete image: a rerun with the same settings skips it, and
``explanations.csv`` is built from the records alone.
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
from ..datasets.photos import load_image
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
#: Version of the record layout; part of the fingerprint, so a new layout recomputes.
RECORD_FORMAT = 1


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
            the formats.
        """
        automatic = self.classes == "auto"
        fingerprint = {
            "record_format": RECORD_FORMAT,
            "model": self.model_name,
            "methods": {name: method.fingerprint() for name, method in self.methods.items()},
            "classes": "auto" if automatic else list(self.classes),
            "top_k": self.top_k if automatic else None,
            "refine_settings": dict(self.refine_settings),
            "formats": list(self.formats),
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
        Images that could not be explained, and why.
    ignored : tuple of Path
        Files found in folders without an image suffix.
    table : Path or None
        ``explanations.csv``, when written.
    """

    out: Path
    explained: list[Path] = field(default_factory=list)
    already_done: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)
    ignored: tuple[Path, ...] = ()
    table: Path | None = None

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
        lines += [f"failed: {path}" for path in self.failed]
        lines.append(f"Outputs in {self.out}{os.sep} (one folder per image)")
        if self.table is not None:
            lines.append(f"Table: {self.table}")
        return "\n".join(lines)


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


def _distinct_folders(jobs: Sequence[ImageJob]) -> list[ImageJob]:
    """The jobs without repeats of one file; raise if two files would share an output folder."""
    by_folder: dict[Path, ImageJob] = {}
    for job in jobs:
        if job.folder == Path(TABLE_NAME):
            raise ValueError(f"{str(job.path)!r} would be explained in {TABLE_NAME}/, the name of the table.")
        other = by_folder.setdefault(job.folder, job)
        if other is not job and other.path.resolve() != job.path.resolve():
            raise ValueError(
                f"{str(other.path)!r} and {str(job.path)!r} would both be explained in the output folder "
                f"{str(job.folder)!r}; rename one or explain them in separate runs."
            )
    return list(by_folder.values())


def find_images(paths: Sequence[str | Path], out: str | Path | None = None) -> tuple[list[ImageJob], list[Path]]:
    """The images to explain, each with its output folder, and the non-image files found in folders.

    A folder is searched recursively for files with a suffix of
    :data:`IMAGE_SUFFIXES` (any case), in sorted order; ``photos/sub/cat.jpg``
    found in ``photos/`` is explained in ``photos/sub/cat.jpg/``. A file given
    itself is always taken, whatever its suffix (a missing one fails when it is
    read): ``x/y.png`` is explained in ``y.png/``.

    Parameters
    ----------
    paths : sequence of str or Path
        Files and folders.
    out : str or Path, optional
        The output directory: files below it are not searched.

    Returns
    -------
    tuple of list of ImageJob and list of Path
        The images (a file reached twice once) and the ignored files.

    Raises
    ------
    TypeError
        ``paths`` is not a sequence of paths.
    ValueError
        ``paths`` is empty, or two files would share an output folder (both are named).

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("photos/b.JPG", "photos/sub/a.png", "photos/notes.txt", "y.gif"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True)
    ...     (root / name).touch()
    >>> jobs, ignored = find_images([root / "photos", root / "y.gif"])
    >>> [job.folder.as_posix() for job in jobs], [path.name for path in ignored]
    (['photos/b.JPG', 'photos/sub/a.png', 'y.gif'], ['notes.txt'])
    """
    if isinstance(paths, (str, Path)) or not isinstance(paths, Sequence):
        raise TypeError(f"`paths` must be a sequence of files and folders, got {type(paths).__name__}.")
    if not paths:
        raise ValueError("`paths` must name at least one file or folder.")
    skip = None if out is None else Path(out).resolve()
    jobs, ignored = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found, other = _folder_images(path, skip)
            jobs += found
            ignored += other
        else:
            jobs.append(ImageJob(path, Path(path.name)))
    return _distinct_folders(jobs), ignored


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


def _check_classes(classes: str | Sequence[int | str], model: nn.Module, top_k: int) -> str | tuple[int, ...]:
    """``"auto"`` (with ``top_k`` below the model's class count) or the resolved class set."""
    class_names = getattr(model, "class_names", None)
    if not isinstance(class_names, Sequence):
        raise TypeError("`model` needs `class_names` (use var_utils.load_model).")
    check_positive_int(top_k, "top_k")
    if isinstance(classes, str) and classes.strip().lower() == "auto":
        if top_k >= len(class_names):
            raise ValueError(f"`top_k` must be < {len(class_names)}, the model's number of classes; got {top_k}.")
        return "auto"
    items = _names(classes, "classes") if isinstance(classes, str) else classes
    if not isinstance(items, Sequence):
        raise TypeError(f"`classes` must be 'auto' or a sequence of class indices and names, got {classes!r}.")
    try:
        return tuple(resolve_classes(items, class_names))
    except ValueError as error:
        raise ValueError(f"`classes` {classes!r}: {error}") from None


def _check_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """The chosen formats in the order of :data:`OUTPUT_FORMATS`."""
    chosen = _names(formats, "formats")
    unknown = sorted(set(chosen) - set(OUTPUT_FORMATS))
    if unknown:
        raise ValueError(f"`formats` has unknown format(s) {unknown}; expected some of {list(OUTPUT_FORMATS)}.")
    return tuple(name for name in OUTPUT_FORMATS if name in chosen)


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

    Parameters
    ----------
    paths : sequence of str or Path
        Image files and folders (see :func:`find_images`).
    out : str or Path
        Output directory.
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
        An invalid setting (e.g. an unknown or repeated class, named), or two
        images with one output folder.
    """
    model = load_model(model) if isinstance(model, str) else check_model(model)
    jobs, ignored = find_images(paths, out)
    return ExplainPlan(
        model=model,
        jobs=tuple(jobs),
        ignored=tuple(ignored),
        out=Path(out),
        methods=_build_methods(methods, n_steps),
        classes=_check_classes(classes, model, top_k),
        top_k=top_k,
        refine_settings=check_refine_settings(refine_settings),
        formats=_check_formats(formats),
    )


def _source_digest(path: Path) -> str | None:
    """SHA-256 of the file's bytes; None if it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _read_record(folder: Path) -> dict | None:
    """The folder's record, or None if there is none or it cannot be parsed."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_done(folder: Path, fingerprint: dict, digest: str | None) -> bool:
    """Whether the folder holds a complete record of the same image under the same settings."""
    record = _read_record(folder)
    if record is None or digest is None or not isinstance(record.get("outputs"), list):
        return False
    return (
        record.get("fingerprint") == fingerprint
        and record.get("source_sha256") == digest
        and all((folder / name).is_file() for name in record["outputs"])
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
            row = {"image": str(image), "method": method, "class_id": class_id}
            row["class_name"] = plan.model.class_names[class_id]
            row["probability"] = float(probabilities[class_id])
            row["rank"] = rank
            row["kept_share"] = _number(shares[rank])
            row["base_max"] = float(by_mode["base"][rank].max())
            row["var_max"] = float(by_mode["var"][rank].max())
            rows.append({**row, **settings})
    return rows


def explain_image(plan: ExplainPlan, job: ImageJob, fingerprint: dict | None = None) -> bool:
    """Explain one image of a plan into its output folder, unless it is already done.

    The outputs of the plan's formats are written first and ``record.json``
    (the fingerprint, the source file's SHA-256, the outputs and the table
    rows) last; an earlier record is removed before any output is replaced.

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
        the same settings was found (nothing written).

    Raises
    ------
    FileNotFoundError, ValueError
        The file is missing or not a readable image, or a method cannot run on
        the model.
    OSError
        An output cannot be written.
    """
    fingerprint = plan.fingerprint() if fingerprint is None else fingerprint
    folder = plan.out / job.folder
    digest = _source_digest(job.path)
    if _is_done(folder, fingerprint, digest):
        return False
    inputs = model_input(plan.model, load_image(job.path))
    probabilities = class_probabilities(plan.model, inputs)
    classes = automatic_class_set(probabilities, plan.top_k) if plan.classes == "auto" else list(plan.classes)
    maps = {name: image_maps(plan.model, inputs, classes, m, plan.refine_settings) for name, m in plan.methods.items()}
    (folder / RECORD_NAME).unlink(missing_ok=True)
    outputs = _write_outputs(plan, folder, inputs, classes, probabilities, maps)
    rows = _table_rows(plan, job.path, classes, probabilities, maps)
    record = {"fingerprint": fingerprint, "image": str(job.path), "source_sha256": digest, "outputs": outputs}
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
        writer.writerows({**row, "image": str(job.path)} for row in record.get("rows", []))
    content = text.getvalue().encode("utf-8")
    path = out / TABLE_NAME
    if not path.is_file() or path.read_bytes() != content:
        with atomic_output_path(path) as temporary:
            temporary.write_bytes(content)
    return path


def run_explanations(plan: ExplainPlan, *, progress: bool = True) -> ExplainSummary:
    """Explain the plan's images one by one; an image that fails is reported on stderr and skipped.

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
        ``explanations.csv`` (with the csv format), built from the records of
        the images explained or already done.
    """
    fingerprint = plan.fingerprint()
    summary = ExplainSummary(out=plan.out, ignored=plan.ignored)
    completed = []
    for job in tqdm(plan.jobs, desc="explain", unit="image", disable=not progress):
        try:
            done_now = explain_image(plan, job, fingerprint)
        except (OSError, ValueError) as error:
            summary.failed[job.path] = str(error)
            tqdm.write(f"{job.path}: {error}", file=sys.stderr)
            continue
        (summary.explained if done_now else summary.already_done).append(job.path)
        completed.append(job)
    if "csv" in plan.formats:
        summary.table = _write_table(plan.out, completed)
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
