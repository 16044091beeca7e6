"""Reading weight files safely: safetensors, or a state dict through ``torch.load(weights_only=True)``."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

#: Folder of the weights this project ships (package data).
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "data"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file or a file saved with ``torch.save``.

    Parameters
    ----------
    path : str or Path
        The weights file. Files not ending in ``.safetensors`` are read with
        ``torch.load(weights_only=True)``, which refuses pickled code.

    Returns
    -------
    dict of str to torch.Tensor
        The state dict (a ``{"state_dict": ...}`` or ``{"model": ...}`` checkpoint is unwrapped).

    Raises
    ------
    TypeError
        ``path`` is not a str or Path.
    FileNotFoundError
        The file does not exist.
    ValueError
        The file holds no state dict, or holds objects other than tensors
        (which ``weights_only=True`` refuses to unpickle).
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"`weights` must be a path to a weights file, got {type(path).__name__}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as error:
            raise ValueError(f"{str(path)!r} is not a readable safetensors file: {error}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"{str(path)!r} could not be read safely as a state dict (torch.load with weights_only=True): {error}"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{str(path)!r} holds no state dict (a mapping of parameter names to tensors).")
    return state


def load_weights(model: nn.Module, path: str | Path, how_to_create: str = "") -> nn.Module:
    """Load a weights file into ``model`` (strictly) and return it in eval mode.

    Parameters
    ----------
    model : nn.Module
        The freshly built architecture.
    path : str or Path
        The weights file (see :func:`read_state_dict`).
    how_to_create : str, optional
        Appended to the error when the file is missing: how to obtain it.

    Returns
    -------
    nn.Module
        ``model`` with the weights, in eval mode.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The weights do not fit the architecture (missing, unexpected or mis-shaped parameters).
    """
    try:
        state = read_state_dict(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} {how_to_create}".strip()) from None
    return load_state(model, state, path)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    """Load ``state`` (read from ``path``) into ``model`` strictly and return it in eval mode.

    Raises
    ------
    ValueError
        The weights do not fit the architecture (missing, unexpected or mis-shaped parameters).
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"The weights in {str(path)!r} do not fit {type(model).__name__}: {error}") from None
    return model.eval()


def load_trained(model: nn.Module, weights_path: str | Path | None, shipped: Path, arch: str) -> nn.Module:
    """Load one of this project's Fashion-MNIST models: the shipped weights or a file of the user's.

    Parameters
    ----------
    model : nn.Module
        The freshly built architecture.
    weights_path : str, Path or None
        A weights file; ``None`` uses ``shipped``.
    shipped : Path
        The shipped weights file.
    arch : str
        The ``--arch`` of ``python -m var_utils.apps.train_fashion_mnist`` that creates the file.

    Returns
    -------
    nn.Module
        The model with its weights, in eval mode.
    """
    if weights_path is not None and not isinstance(weights_path, (str, Path)):
        raise TypeError(f"`weights_path` must be a str, Path or None, got {type(weights_path).__name__}.")
    path = shipped if weights_path is None else Path(weights_path)
    return load_weights(
        model, path, f"Create it with `python -m var_utils.apps.train_fashion_mnist --arch {arch} --out {path}`."
    )
