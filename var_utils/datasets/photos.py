"""Images: the offline photos shipped inside installed wheels, user files, and the half-and-half image.

All functions return RGB ``uint8`` arrays of shape (H, W, 3); a model's
``preprocess`` turns them into normalised tensors.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        return image[0] if name == "stereo_motorcycle" else image

    return load


def _matplotlib_sample(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(file_name) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))

    return load


def _sklearn_sample(file_name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(file_name)

    return load


PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "camera": _skimage("camera"),
    "astronaut": _skimage("astronaut"),
    "grace_hopper": _matplotlib_sample("grace_hopper.jpg"),
    "china": _sklearn_sample("china.jpg"),
    "flower": _sklearn_sample("flower.jpg"),
}
"""Offline photos by name (scikit-image, matplotlib and scikit-learn sample data; CC0 / public domain / CC-BY)."""


def to_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return ``image`` as an (H, W, 3) ``uint8`` array (grey images are repeated over three channels).

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` array of shape (H, W), (H, W, 3) or (H, W, 4); an alpha
        channel is dropped.
    name : str, default "image"
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray
        Contiguous (H, W, 3) ``uint8`` array.

    Raises
    ------
    TypeError
        ``image`` is not a numpy array, or not ``uint8``.
    ValueError
        ``image`` has another shape.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy array, got {type(image).__name__}.")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"`{name}` must have shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}.")
    if image.dtype != np.uint8:
        raise TypeError(f"`{name}` must be uint8 (0..255), got dtype {image.dtype}.")
    return np.ascontiguousarray(image[:, :, :3])


def unit_tensor(image: np.ndarray) -> torch.Tensor:
    """An RGB ``uint8`` array as a float tensor with values in [0, 1].

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``uint8`` array (H, W, 3), or any array :func:`to_rgb` accepts.

    Returns
    -------
    torch.Tensor
        (3, H, W) float32 tensor, the pixels divided by 255.
    """
    return torch.from_numpy(np.array(to_rgb(image), copy=True)).permute(2, 0, 1).float().div(255)


def load_photo(name: str) -> np.ndarray:
    """Load an offline photo by name as an RGB ``uint8`` array.

    Parameters
    ----------
    name : str
        A key of :data:`PHOTOS`.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) ``uint8`` RGB image.

    Raises
    ------
    ValueError
        An unknown ``name``.

    Examples
    --------
    >>> load_photo("chelsea").shape
    (300, 451, 3)
    """
    if name not in PHOTOS:
        raise ValueError(f"Unknown photo `name` {name!r}; expected one of {sorted(PHOTOS)}.")
    return to_rgb(PHOTOS[name](), name)


#: PIL modes holding more than 8 bits per pixel (16-bit PNG and TIFF, 32-bit integer and float images).
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _eight_bit_rgb(image: Image.Image) -> np.ndarray:
    """A decoded PIL image upright (EXIF orientation) as RGB ``uint8``; wide grey modes are scaled, not clipped."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_MODES:
        values = np.asarray(image, dtype=np.float64)
        # 16-bit files span 0..65535; float and 32-bit ones are scaled by their own maximum.
        top = 65535.0 if image.mode.startswith("I;16") or values.max() <= 65535 else values.max()
        grey = np.clip(np.round(values / max(top, 1e-12) * 255), 0, 255).astype(np.uint8)
        return to_rgb(grey)
    return np.asarray(image.convert("RGB"))


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode the bytes of an image file into an RGB ``uint8`` array.

    Grey, palette, RGBA and CMYK images become RGB; 16-bit images are scaled to
    8 bits; EXIF orientation is applied, so phone photos come out upright.

    Parameters
    ----------
    data : bytes
        The file's content.
    name : str, default "image"
        How to name the image in error messages (e.g. its path).

    Returns
    -------
    numpy.ndarray
        (H, W, 3) ``uint8`` RGB image.

    Raises
    ------
    ValueError
        The bytes are not a readable image, or it is too large to decode safely.

    Examples
    --------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> Image.new("I;16", (2, 1), 65535).save(buffer, format="PNG")
    >>> decode_image(buffer.getvalue())[0, 0]
    array([255, 255, 255], dtype=uint8)
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _eight_bit_rgb(image)
    except UnidentifiedImageError:
        raise ValueError(f"{name} is not a readable image file (no image format recognised).") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{name} is not a readable image file ({error}).") from None


def load_image(path: str | Path) -> np.ndarray:
    """Load an image file as an RGB ``uint8`` array (see :func:`decode_image` for the conversions).

    Parameters
    ----------
    path : str or Path
        Any image file PIL can read.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) ``uint8`` RGB image.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist or is not a file.
    ValueError
        The file is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path` {str(path)!r} does not exist or is not a file.")
    return decode_image(path.read_bytes(), f"`path` {str(path)!r}")


def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """Crop the largest centred square of ``image`` and resize it to ``size`` × ``size`` (bilinear).

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` image, as :func:`to_rgb` accepts.
    size : int
        Side of the result in pixels.

    Returns
    -------
    numpy.ndarray
        (size, size, 3) ``uint8`` RGB image.
    """
    image = to_rgb(image)
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(square.resize((size, size), Image.BILINEAR))


def half_and_half(
    left: str | np.ndarray = "chelsea", right: str | np.ndarray = "coffee", size: int = 224
) -> np.ndarray:
    """An image whose left half comes from ``left`` and right half from ``right``.

    Each image is cropped to its centred square and resized to ``size``. With
    the defaults the left half shows the cat of ``chelsea`` and the right half
    the cup of ``coffee``: a clean test of class-specific maps.

    Parameters
    ----------
    left, right : str or numpy.ndarray, default "chelsea" and "coffee"
        A photo name of :data:`PHOTOS` or a ``uint8`` image array.
    size : int, default 224
        Side of the result in pixels (>= 2); the left half is ``size // 2``
        pixels wide.

    Returns
    -------
    numpy.ndarray
        (size, size, 3) ``uint8`` RGB image.

    Raises
    ------
    ValueError
        ``size`` < 2, or an unknown photo name.

    Examples
    --------
    >>> half_and_half(size=8).shape
    (8, 8, 3)
    """
    if size < 2:
        raise ValueError(f"`size` must be >= 2, got {size}.")
    halves = [center_square(load_photo(p) if isinstance(p, str) else p, size) for p in (left, right)]
    middle = size // 2
    return np.concatenate([halves[0][:, :middle], halves[1][:, middle:]], axis=1)
