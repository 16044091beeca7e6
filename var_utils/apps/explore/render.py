"""The explorer's pictures as PNG bytes: maps on one colour scale, and the class-competition winner map.

Drawing with OpenCV and colour look-up tables instead of matplotlib figures keeps
a redraw within a few milliseconds per panel, which is what makes the sliders live.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import matplotlib
import numpy as np
import torch

from ...viz import display_map, display_scale, overlay_map

#: Side in pixels of every displayed panel.
PANEL_SIZE = 176
#: Shade of the pixels where VAR keeps no class (no class leads by more than τ).
NO_WINNER_GREY = 0.3


def class_colours(count: int) -> np.ndarray:
    """(count, 3) RGB colours in [0, 1], one per class of the set (matplotlib's ``tab10``, repeated)."""
    palette = np.asarray(matplotlib.colormaps["tab10"].colors)
    return palette[np.arange(count) % len(palette)]


def hex_colour(rgb: Sequence[float]) -> str:
    """An RGB colour in [0, 1] as ``#rrggbb``.

    Examples
    --------
    >>> hex_colour((1.0, 0.5, 0.0))
    '#ff8000'
    """
    return "#" + "".join(f"{round(255 * value):02x}" for value in rgb)


def encode_png(image: np.ndarray) -> bytes:
    """An (H, W, 3) RGB image in [0, 1] resized to the panel size and encoded as PNG.

    Small inputs (Fashion-MNIST) are enlarged with nearest-neighbour sampling so
    their pixels stay visible; large ones are averaged down.
    """
    rgb = np.clip(np.round(np.asarray(image, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    smaller = rgb.shape[0] < PANEL_SIZE
    rgb = cv2.resize(rgb, (PANEL_SIZE, PANEL_SIZE), interpolation=cv2.INTER_NEAREST if smaller else cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode the panel as PNG.")
    return encoded.tobytes()


def map_scales(base: torch.Tensor, per_class: bool) -> list[float]:
    """The value shown at full colour for each class: one scale for all K classes, or one per class.

    The scale comes from the base maps (99th percentile of their positive
    channel means, :func:`var_utils.viz.display_scale`); the VAR maps use their
    class's scale, so a VAR map is never brighter than what it keeps.
    """
    if per_class:
        return [display_scale([class_map]) for class_map in base]
    return [display_scale(base)] * base.shape[0]


def map_panel(picture: np.ndarray, attribution: torch.Tensor, scale: float, overlay: bool) -> bytes:
    """One map as a PNG panel: its positive part on ``scale``, over the grey picture or alone."""
    shown = display_map(attribution, scale=scale)
    if overlay:
        return encode_png(overlay_map(picture, shown))
    return encode_png(matplotlib.colormaps["jet"](shown)[..., :3])


def winner_panel(distribution: torch.Tensor, kept_where: torch.Tensor) -> bytes:
    """Which class wins where, and by how much, as a PNG panel.

    Each pixel takes the colour of the class with the largest ``M_k``
    (:func:`class_colours`), faded towards white as its lead ``M_k − 1/K``
    shrinks; pixels where VAR keeps no class at all are dark grey.

    Parameters
    ----------
    distribution : torch.Tensor
        (K, H, W) class distribution (averaged over channels), summing to one over K.
    kept_where : torch.Tensor
        (K, H, W) bool, where VAR keeps something of each class.

    Returns
    -------
    bytes
        The PNG panel.
    """
    count = distribution.shape[0]
    lead, winner = distribution.max(dim=0)
    strength = ((lead - 1.0 / count) / (1.0 - 1.0 / count)).clamp(0, 1).numpy()[..., None]
    colours = class_colours(count)[winner.numpy()]
    image = strength * colours + (1.0 - strength) * 1.0
    image[~kept_where.any(dim=0).numpy()] = NO_WINNER_GREY
    return encode_png(image)
