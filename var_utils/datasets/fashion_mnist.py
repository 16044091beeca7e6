"""Fashion-MNIST data for the statistical benchmarks (the CNN trained on it is in :mod:`var_utils.models`).

Normalisation is baked into :func:`load_fashion_mnist`: it returns images
already normalised with :func:`normalize_fashion_mnist`. Images from elsewhere
(pixels in [0, 1]) must go through :func:`normalize_fashion_mnist` before they
reach the model.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import torch

from .._io import atomic_output_path
from .._validation import check_tensor

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

#: Where the Debian package ``dataset-fashion-mnist`` installs the gzipped IDX files.
DEBIAN_DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")

# The four uncompressed files torchvision's FashionMNIST reads from ROOT/FashionMNIST/raw/.
_RAW_FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def normalize_fashion_mnist(images: torch.Tensor) -> torch.Tensor:
    """Normalise images with pixels in [0, 1] by the Fashion-MNIST mean and std.

    Parameters
    ----------
    images : torch.Tensor
        Floating-point images, pixels in [0, 1], any shape.

    Returns
    -------
    torch.Tensor
        ``(images - 0.2860) / 0.3530``, same shape.

    Examples
    --------
    >>> normalize_fashion_mnist(torch.tensor([0.2860]))
    tensor([0.])
    """
    images = check_tensor(images, "images")
    if not images.is_floating_point():
        raise TypeError(f"`images` must be a floating-point tensor with pixels in [0, 1], got dtype {images.dtype}.")
    return (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize square images to ``size`` pixels (bilinear, half-pixel centres); same size: returned as they are.

    Parameters
    ----------
    images : torch.Tensor
        (N, C, H, W) images.
    size : int
        The side of the result.

    Returns
    -------
    torch.Tensor
        (N, C, size, size).

    Examples
    --------
    >>> resize_images(torch.zeros(2, 1, 28, 28), 56).shape
    torch.Size([2, 1, 56, 56])
    """
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)


def default_data_root() -> Path:
    """Return the data cache folder: ``$VAR_UTILS_DATA`` if set, else ``~/.cache/var_utils``."""
    env_root = os.environ.get("VAR_UTILS_DATA")
    return Path(env_root) if env_root else Path.home() / ".cache" / "var_utils"


def gunzip_atomic(source: str | Path, destination: str | Path) -> None:
    """Decompress the gzip file ``source`` into ``destination`` atomically.

    Parameters
    ----------
    source : str or Path
        A ``.gz`` file.
    destination : str or Path
        The uncompressed file to create; it appears only when complete.
    """
    with atomic_output_path(destination) as tmp_path:
        with gzip.open(source, "rb") as compressed, open(tmp_path, "wb") as plain:
            shutil.copyfileobj(compressed, plain)


def _has_raw_files(raw_dir: Path) -> bool:
    return all((raw_dir / name).is_file() for name in _RAW_FILE_NAMES)


def _copy_debian_files(raw_dir: Path) -> bool:
    """Gunzip the Debian package's files into ``raw_dir``; return False if the package is absent."""
    sources = [DEBIAN_DATASET_DIR / f"{name}.gz" for name in _RAW_FILE_NAMES]
    if not all(source.is_file() for source in sources):
        return False
    for name, source in zip(_RAW_FILE_NAMES, sources):
        if not (raw_dir / name).is_file():
            gunzip_atomic(source, raw_dir / name)
    return True


def _download(root: Path, train: bool, raw_dir: Path) -> None:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=train, download=True)
    except Exception as error:  # torchvision raises RuntimeError, URLError or OSError offline
        raise RuntimeError(
            f"Fashion-MNIST not found. Looked for {', '.join(_RAW_FILE_NAMES)} in {raw_dir}, "
            f"then for their .gz versions in {DEBIAN_DATASET_DIR}, then tried to download them "
            f"({type(error).__name__}: {error}). Fix: `apt-get install dataset-fashion-mnist`, "
            "or connect to the internet, or put the four files in that folder."
        ) from error


def load_fashion_mnist(root: str | Path | None = None, train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a Fashion-MNIST split as normalised image and label tensors.

    Sources, in order: the uncompressed IDX files already in
    ``root/FashionMNIST/raw/``; the Debian package's gzipped files in
    ``/usr/share/datasets/fashion-mnist/`` (gunzipped into that folder);
    a torchvision download.

    Parameters
    ----------
    root : str, Path or None
        Data folder; ``None`` uses :func:`default_data_root`.
    train : bool
        The 60,000 training images if True, else the 10,000 test images.

    Returns
    -------
    images : torch.Tensor
        float32, shape (N, 1, 28, 28), normalised with :func:`normalize_fashion_mnist`.
    labels : torch.Tensor
        int64, shape (N,), values 0..9 indexing :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    RuntimeError
        If no source has the data; the message says what was looked for and how to fix it.

    Examples
    --------
    >>> images, labels = load_fashion_mnist()
    >>> images.shape, labels.shape
    (torch.Size([10000, 1, 28, 28]), torch.Size([10000]))
    """
    from torchvision.datasets import FashionMNIST

    if root is not None and not isinstance(root, (str, Path)):
        raise TypeError(f"`root` must be a str, Path or None, got {type(root).__name__}.")
    if not isinstance(train, bool):
        raise TypeError(f"`train` must be a bool, got {type(train).__name__}.")
    root = Path(root) if root is not None else default_data_root()
    raw_dir = root / "FashionMNIST" / "raw"
    if not _has_raw_files(raw_dir) and not _copy_debian_files(raw_dir):
        _download(root, train, raw_dir)
    dataset = FashionMNIST(str(root), train=train, download=False)
    images = normalize_fashion_mnist(dataset.data.unsqueeze(1).float() / 255.0)
    return images, dataset.targets.long()
