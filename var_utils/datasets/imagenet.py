"""The ImageNet validation set on disk (Kaggle LOC and ImageFolder layouts) and its images as grid cells.

:func:`imagenet_val_files` lists the validation images with their class indices,
sorted by file name so the grids of :func:`var_utils.datasets.grids.grid_indices`
are the same on every machine; :func:`load_cell_image` loads one image as a cell.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.functional import pil_to_tensor

from .._validation import check_choice, check_positive_int, renamed_keywords

IMAGENET_LAYOUTS = ("auto", "loc", "imagefolder")

LOC_SYNSET_MAPPING = "LOC_synset_mapping.txt"
LOC_VAL_SOLUTION = "LOC_val_solution.csv"
LOC_VAL_IMAGES = Path("ILSVRC", "Data", "CLS-LOC", "val")
LOC_CSV_HEADER = ["ImageId", "PredictionString"]
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")

_SYNSET_PATTERN = re.compile(r"n\d{8}")
_EXPECTED_LAYOUTS = (
    f"either the Kaggle LOC layout (ROOT/{LOC_SYNSET_MAPPING}, ROOT/{LOC_VAL_SOLUTION} with header "
    f"'ImageId,PredictionString', images at ROOT/{LOC_VAL_IMAGES.as_posix()}/<ImageId>.JPEG) "
    "or the ImageFolder layout (ROOT/<synset>/*.JPEG)"
)

PathLike = str | Path


def read_synset_mapping(path: PathLike) -> list[str]:
    """Synset ids of ``LOC_synset_mapping.txt``; the class index is the line order.

    Parameters
    ----------
    path : str or Path
        File with lines like ``n01440764 tench, Tinca tinca``; blank lines are skipped.

    Returns
    -------
    list of str
        Synset ids, class 0 first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"synset mapping {path} not found; expected a text file with lines like 'n01440764 tench, Tinca tinca'."
        )
    synsets: list[str] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        synset = line.split()[0]
        if not _SYNSET_PATTERN.fullmatch(synset):
            raise ValueError(
                f"{path}, line {line_number}: expected 'n<8 digits> <class name>' "
                f"(e.g. 'n01440764 tench, Tinca tinca'), got {line!r}."
            )
        synsets.append(synset)
    if not synsets:
        raise ValueError(f"synset mapping {path} is empty; expected one 'n<8 digits> <class name>' line per class.")
    duplicates = sorted({synset for synset in synsets if synsets.count(synset) > 1})
    if duplicates:
        raise ValueError(f"synset mapping {path} repeats synset(s) {duplicates}.")
    return synsets


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _class_folders(root: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .git) are never classes.
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _detect_layout(root: Path) -> str:
    if (root / LOC_VAL_SOLUTION).is_file():
        return "loc"
    if any(_is_image(file) for folder in _class_folders(root) for file in folder.iterdir()):
        return "imagefolder"
    raise FileNotFoundError(f"no ImageNet validation set found in {root}; expected {_EXPECTED_LAYOUTS}.")


def _loc_files(root: Path, mapping: Path) -> list[tuple[Path, int]]:
    class_of = {synset: index for index, synset in enumerate(read_synset_mapping(mapping))}
    solution, image_dir = root / LOC_VAL_SOLUTION, root / LOC_VAL_IMAGES
    for required in (solution, image_dir):
        if not required.exists():
            raise FileNotFoundError(f"{required} not found; expected {_EXPECTED_LAYOUTS}.")
    # utf-8-sig: tolerate a byte-order mark written by spreadsheet tools.
    with solution.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if not rows or [cell.strip() for cell in rows[0]] != LOC_CSV_HEADER:
        raise ValueError(f"{solution}: expected the header 'ImageId,PredictionString', got {rows[:1]}.")
    items: dict[str, tuple[Path, int]] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        tokens = row[1].split() if len(row) == 2 else []
        if not row[0] or not tokens or tokens[0] not in class_of:
            raise ValueError(
                f"{solution}, line {line_number}: expected 'ImageId,<synset of {mapping.name}> ...', got {row}."
            )
        if row[0] in items:
            raise ValueError(f"{solution}, line {line_number}: ImageId {row[0]!r} appears twice.")
        items[row[0]] = (image_dir / f"{row[0]}.JPEG", class_of[tokens[0]])
    missing = [str(path) for path, _ in items.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) listed in {solution} are missing, e.g. {missing[:3]}.")
    return list(items.values())


def _imagefolder_files(root: Path, mapping: Path | None) -> list[tuple[Path, int]]:
    folders = _class_folders(root)
    synsets = read_synset_mapping(mapping) if mapping is not None else [folder.name for folder in folders]
    class_of = {synset: index for index, synset in enumerate(synsets)}
    unknown = [folder.name for folder in folders if folder.name not in class_of]
    if unknown:
        raise ValueError(f"folder(s) {unknown} in {root} are not synsets of {mapping}.")
    return [(file, class_of[folder.name]) for folder in folders for file in folder.iterdir() if _is_image(file)]


def imagenet_val_files(
    root: PathLike, layout: str = "auto", *, synset_mapping: PathLike | None = None
) -> tuple[list[Path], list[int]]:
    """The ImageNet validation images and their class indices, sorted by file name.

    Sorting by file name (``ILSVRC2012_val_00000001.JPEG`` ...) makes the order, and with it the
    grids of :func:`grid_indices`, the same on every machine and for both layouts.

    Parameters
    ----------
    root : str or Path
        Dataset folder in one of two layouts:

        * ``"loc"`` (Kaggle): ``root/LOC_synset_mapping.txt`` (class index = line order),
          ``root/LOC_val_solution.csv`` (header ``ImageId,PredictionString``; the prediction
          string starts with the synset id), images at
          ``root/ILSVRC/Data/CLS-LOC/val/<ImageId>.JPEG``.
        * ``"imagefolder"``: ``root/<synset>/*.JPEG`` (also ``.jpg``/``.png``); class index =
          line order of the synset mapping if there is one, else sorted folder order.
    layout : {"auto", "loc", "imagefolder"}
        ``"auto"`` picks ``"loc"`` when ``root/LOC_val_solution.csv`` exists, else
        ``"imagefolder"`` when a sub-folder holds images.
    synset_mapping : str or Path, optional
        A ``LOC_synset_mapping.txt`` to use instead of ``root/LOC_synset_mapping.txt``.

    Returns
    -------
    files : list of Path
        Image paths sorted by file name.
    labels : list of int
        Class index of each file.

    Raises
    ------
    FileNotFoundError
        ``root``, the mapping, the CSV, the image folder or a listed image is missing.
    ValueError
        A malformed mapping or CSV, an unknown synset, or no images.
    """
    root = Path(root)
    check_choice(layout, "layout", IMAGENET_LAYOUTS)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet root {root} is not a directory; expected {_EXPECTED_LAYOUTS}.")
    if layout == "auto":
        layout = _detect_layout(root)
    default_mapping = root / LOC_SYNSET_MAPPING
    if synset_mapping is not None:
        mapping = Path(synset_mapping)
    elif layout == "loc" or default_mapping.is_file():
        mapping = default_mapping
    else:
        mapping = None
    items = _loc_files(root, mapping) if layout == "loc" else _imagefolder_files(root, mapping)
    if not items:
        raise ValueError(f"no validation images found in {root} (layout {layout!r}); expected {_EXPECTED_LAYOUTS}.")
    items.sort(key=lambda item: (item[0].name, str(item[0])))
    return [path for path, _ in items], [label for _, label in items]


@renamed_keywords(normalise="normalize")
def load_cell_image(
    path: PathLike, cell_size: int, normalize: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """Load one image as a grid cell: RGB, resized to ``cell_size`` x ``cell_size``, normalised.

    The whole image is resized (bilinear, no crop), as in the paper: 112 x 112 cells make a
    224 x 224 grid for a model whose input is 224 x 224.

    Parameters
    ----------
    path : str or Path
        Image file.
    cell_size : int
        Side of the square cell, usually half the model's input size.
    normalize : callable, optional
        Maps a (3, cell_size, cell_size) tensor in [0, 1] to the model's input range, e.g.
        ``torchvision.transforms.Normalize(mean=[0.5] * 3, std=[0.5] * 3)`` for EfficientNet-Lite0.
        None keeps [0, 1]. Formerly ``normalise``.

    Returns
    -------
    torch.Tensor
        Shape (3, cell_size, cell_size), float32.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not a readable image.
    """
    path = Path(path)
    check_positive_int(cell_size, "cell_size")
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found.")
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((cell_size, cell_size), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    cell = pil_to_tensor(rgb).float() / 255.0
    if normalize is None:
        return cell
    normalized = normalize(cell)
    if not isinstance(normalized, torch.Tensor) or normalized.shape != cell.shape:
        raise ValueError(
            f"`normalize` must return a tensor of shape {tuple(cell.shape)}, got "
            f"{getattr(normalized, 'shape', type(normalized).__name__)}."
        )
    return normalized
