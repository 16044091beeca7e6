"""Display normalisation, heat-map overlays and figures: an image beside one map per class, rows of base vs VAR.

OpenCV does the image work (Gaussian blur of a display map, grey conversion and
alpha blending of overlays); matplotlib colours the maps and lays out figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch


def _positive_channel_mean(attribution: torch.Tensor) -> np.ndarray:
    if not isinstance(attribution, torch.Tensor):
        raise TypeError(f"`attribution` must be a torch.Tensor, got {type(attribution).__name__}.")
    if attribution.dim() == 2:
        attribution = attribution.unsqueeze(0)
    if attribution.dim() != 3:
        raise ValueError(f"`attribution` must have shape (C, H, W) or (H, W), got {tuple(attribution.shape)}.")
    return attribution.detach().clamp(min=0).mean(dim=0).cpu().double().numpy()


def display_scale(maps: Sequence[torch.Tensor] | torch.Tensor, percentile: float = 99.0) -> float:
    """The value mapped to full colour: ``percentile`` of the positive channel-mean maps, taken jointly.

    Sparse maps (VAR zeroes most pixels) can have a zero percentile; the
    maximum is used then, and 1.0 for all-zero maps so they display as zero.

    Parameters
    ----------
    maps : sequence of torch.Tensor or torch.Tensor
        Maps (C, H, W) or (H, W), or a stacked (K, C, H, W) tensor.
    percentile : float, default 99.0
        Percentile in (0, 100] of the pooled positive channel means.

    Returns
    -------
    float
        The scale, > 0.

    Raises
    ------
    ValueError
        ``percentile`` is outside (0, 100].

    Examples
    --------
    >>> display_scale([torch.tensor([[0.0, 2.0], [-1.0, 4.0]])], percentile=100)
    4.0
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"`percentile` must be in (0, 100], got {percentile}.")
    values = np.concatenate([_positive_channel_mean(m).ravel() for m in maps])
    scale = float(np.percentile(values, percentile))
    if scale <= 0:
        scale = float(values.max())
    return scale if scale > 0 else 1.0


def display_map(
    attribution: torch.Tensor, *, percentile: float = 99.0, blur_sigma: float | None = None, scale: float | None = None
) -> np.ndarray:
    """Normalise a map for display as in the original project: (H, W) values in [0, 1].

    Positive part, mean over channels, division by ``scale`` (default: the
    map's own ``percentile``; pass :func:`display_scale` of several maps for a
    common colour scale), clipping at 1, then an optional Gaussian blur
    (``blur_sigma`` pixels; kernel radius ``round(4 σ)``, mirrored borders).

    Parameters
    ----------
    attribution : torch.Tensor
        Map (C, H, W) or (H, W).
    percentile : float, default 99.0
        Percentile of the positive channel mean mapped to 1 when ``scale`` is None.
    blur_sigma : float, optional
        Standard deviation of the Gaussian blur in pixels; no blur when None or 0.
    scale : float, optional
        The value mapped to 1; see :func:`display_scale`.

    Returns
    -------
    numpy.ndarray
        (H, W) float64 values in [0, 1].

    Examples
    --------
    >>> display_map(torch.tensor([[0.0, 2.0], [-1.0, 4.0]]), scale=2.0)
    array([[0., 1.],
           [0., 1.]])
    """
    image = _positive_channel_mean(attribution)
    scale = display_scale([attribution], percentile) if scale is None else scale
    if not scale > 0:
        raise ValueError(f"`scale` must be > 0, got {scale}.")
    image = np.clip(image / scale, 0.0, 1.0)
    if blur_sigma:
        radius = int(4.0 * blur_sigma + 0.5)
        size = (2 * radius + 1, 2 * radius + 1)
        image = cv2.GaussianBlur(image, size, sigmaX=blur_sigma, sigmaY=blur_sigma, borderType=cv2.BORDER_REFLECT)
    return image


def overlay_map(image: np.ndarray, shown: np.ndarray, *, cmap: str = "jet", alpha: float = 0.6) -> np.ndarray:
    """Blend a coloured display map over a grey version of the image.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, 3) RGB image, ``uint8`` or floats in [0, 1].
    shown : numpy.ndarray
        (H, W) display map in [0, 1], e.g. of :func:`display_map`.
    cmap : str, default "jet"
        A matplotlib colour map.
    alpha : float, default 0.6
        Weight of the coloured map; the grey image gets ``1 - alpha``.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) float32 RGB in [0, 1]: ``alpha * cmap(shown) + (1 - alpha) * grey``.

    Examples
    --------
    >>> overlay_map(np.zeros((2, 2, 3)), np.ones((2, 2)), cmap="gray", alpha=0.5)[0, 0]
    array([0.5, 0.5, 0.5], dtype=float32)
    """
    import matplotlib

    rgb = _unit_rgb(image).astype(np.float32)
    if shown.shape != rgb.shape[:2]:
        raise ValueError(f"`shown` must have the image's shape {rgb.shape[:2]}, got {shown.shape}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must lie in [0, 1], got {alpha}.")
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    colours = matplotlib.colormaps[cmap](np.asarray(shown, dtype=np.float64))[..., :3].astype(np.float32)
    return cv2.addWeighted(colours, alpha, grey, 1.0 - alpha, 0.0)


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[str] | None = None,
    *,
    colour: tuple[float, float, float] = (1.0, 1.0, 0.0),
    thickness: int = 1,
) -> np.ndarray:
    """The image with boxes (and their labels) drawn on it in 8-bit colour, e.g. COCO objects over a map.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, 3) RGB image, ``uint8`` or floats in [0, 1].
    boxes : sequence of sequence of float
        ``(x0, y0, x1, y1)`` in pixels of the image.
    labels : sequence of str, optional
        One text per box, written at its top-left corner.
    colour : tuple of float, default yellow
        RGB in [0, 1].
    thickness : int, default 1
        Line width in pixels.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) float32 RGB in [0, 1], a copy.

    Examples
    --------
    >>> drawn = draw_boxes(np.zeros((8, 8, 3)), [(2, 2, 6, 6)], colour=(1.0, 0.0, 0.0))
    >>> drawn[2, :, 0].tolist()  # the top edge covers the box's columns 2..5
    [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"`labels` must hold one text per box ({len(boxes)}), got {len(labels)}.")
    # Drawn in 8 bits: OpenCV writes text on uint8 images only.
    drawn = np.ascontiguousarray(np.round(_unit_rgb(image) * 255).astype(np.uint8))
    rgb = tuple(int(round(255 * value)) for value in colour)
    for index, box in enumerate(boxes):
        x0, y0, x1, y1 = (int(round(value)) for value in box)
        # A box's right and bottom edges are exclusive; cv2 draws to its corner pixel inclusive.
        cv2.rectangle(drawn, (x0, y0), (x1 - 1, y1 - 1), rgb, thickness)
        if labels is not None:
            cv2.putText(drawn, labels[index], (x0 + 2, y0 + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.35, rgb, 1)
    return drawn.astype(np.float32) / 255


def _unit_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) image as floats in [0, 1] (``uint8`` is divided by 255)."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"`image` must have shape (H, W, 3), got {array.shape}.")
    return array.astype(np.float64) / (255.0 if array.dtype == np.uint8 else 1.0)


def plot_class_maps(
    image: np.ndarray,
    rows: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    *,
    common_scale: bool = False,
    percentile: float = 99.0,
    blur_sigma: float | None = None,
    cmap: str = "jet",
    overlay: bool = True,
):
    """A figure: the image, then one map per class for each row (e.g. "Grad-CAM" and "Grad-CAM + VAR").

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, 3) image with values in [0, 1] (or uint8).
    rows : mapping of str to torch.Tensor
        Row title → (K, C', H, W) maps of the K classes.
    class_names : sequence of str
        Column titles, one per class.
    common_scale : bool
        One colour scale across the classes of a row (keeps their comparison
        visible); otherwise every map is scaled on its own.
    percentile, blur_sigma
        See :func:`display_map`.
    cmap : str
        Matplotlib colour map of the maps.
    overlay : bool
        Blend the maps over a grey version of the image (:func:`overlay_map`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    for title, maps in rows.items():
        if not isinstance(maps, torch.Tensor) or maps.dim() != 4 or maps.shape[0] != len(class_names):
            raise ValueError(
                f"`rows[{title!r}]` must be a (K, C, H, W) tensor with K = len(class_names) = {len(class_names)}, "
                f"got {tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}."
            )
    image = _unit_rgb(image)
    figure, axes = plt.subplots(
        len(rows), len(class_names) + 1, figsize=(2.4 * (len(class_names) + 1), 2.4 * len(rows)), squeeze=False
    )
    for row, (title, maps) in enumerate(rows.items()):
        scale = display_scale(maps, percentile) if common_scale else None
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(title)
        for column, (name, attribution) in enumerate(zip(class_names, maps), start=1):
            shown = display_map(attribution, percentile=percentile, blur_sigma=blur_sigma, scale=scale)
            if overlay:
                axes[row, column].imshow(overlay_map(image, shown, cmap=cmap))
            else:
                axes[row, column].imshow(shown, cmap=cmap, vmin=0, vmax=1)
            if row == 0:
                axes[row, column].set_title(name, fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


def plot_setting_bars(summary, metric: str = "region_attribution", *, group: str = "model"):
    """Grouped bars of a summary's metric: one panel per ``group`` value, one bar per method and setting.

    Parameters
    ----------
    summary : pandas.DataFrame
        Rows with columns ``group``, ``method``, ``setting`` and ``{metric}_mean``
        / ``{metric}_se`` (e.g. :func:`var_utils.evaluation.gpg.architectures.compare_architectures`).
    metric : str
        The metric to draw; error bars are its standard errors.
    group : str
        The column that splits the panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    needed = {group, "method", "setting", f"{metric}_mean", f"{metric}_se"}
    missing = sorted(needed - set(summary.columns))
    if missing:
        raise ValueError(f"`summary` lacks the column(s) {missing} needed to plot {metric!r}.")
    if summary.empty or summary.duplicated([group, "method", "setting"]).any():
        raise ValueError(
            f"`summary` must hold one row per ({group}, method, setting) and at least one row; filter it first "
            "(e.g. to one protocol)."
        )
    groups = list(dict.fromkeys(summary[group]))
    settings = list(dict.fromkeys(summary["setting"]))
    width = 0.8 / len(settings)
    figure, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False, sharey=True)
    for axis, name in zip(axes[0], groups):
        rows = summary[summary[group] == name]
        methods = list(dict.fromkeys(rows["method"]))
        for offset, setting in enumerate(settings):
            chosen = rows[rows["setting"] == setting].set_index("method").reindex(methods)
            positions = np.arange(len(methods)) + (offset - (len(settings) - 1) / 2) * width
            axis.bar(positions, chosen[f"{metric}_mean"], width, yerr=chosen[f"{metric}_se"], label=setting)
        axis.set_xticks(np.arange(len(methods)), methods, rotation=60, ha="right", fontsize=8)
        axis.set_title(name, fontsize=10)
    axes[0, 0].set_ylabel(metric.replace("_", " "))
    axes[0, -1].legend(fontsize=8)
    figure.tight_layout()
    return figure
