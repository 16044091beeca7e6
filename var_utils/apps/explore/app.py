"""The interactive explorer: an ipywidgets application for JupyterLab.

Pick an image (an offline photo, a file path or an upload), a model, a base method
with its main setting and the competing classes (automatic or chosen by name),
then move τ and the temperature and watch the base and VAR maps, the winner map
and the share of attribution VAR keeps. Base maps are cached
(:class:`~var_utils.apps.explore.session.ExplorerSession`), so the refinement
controls only re-run VAR and the drawing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ...datasets.photos import PHOTOS, decode_image, half_and_half, load_image, load_photo
from ...explainers import automatic_class_set
from ...methods import METHODS
from ...models import MODELS
from ...refine import DEFAULT_TAU, DEFAULT_TEMPERATURE, check_refine_settings
from ..explanation import resolve_class
from .render import class_colours, encode_png, hex_colour, map_panel, map_scales, winner_panel
from .session import ExplorerSession, PreparedImage, VarView, refine_view

#: The half-and-half image (cat left, espresso right) offered beside the photos.
HALF_AND_HALF = "half_and_half (chelsea | coffee)"
TAU_RANGE = (1e-4, 0.5)
TOP_K_MAX = 9
TEMPERATURE_RANGE = (1e-3, 10.0)
PANEL_WIDTH = "176px"


@dataclass(frozen=True)
class MethodSetting:
    """The one setting of a method the explorer exposes: its keyword, label, default and slider range.

    With ``input_fraction`` set (a window size), the range ends at the model's input size and the default is
    that fraction of it, so the setting fits 28-pixel and 224-pixel models alike.
    """

    keyword: str
    label: str
    default: int
    minimum: int
    maximum: int
    step: int
    input_fraction: float | None = None

    def range_for(self, input_size: int) -> tuple[int, int, int]:
        """``(minimum, maximum, default)`` for a model with square inputs of ``input_size`` pixels."""
        if self.input_fraction is None:
            return self.minimum, self.maximum, self.default
        default = max(self.minimum, round(input_size * self.input_fraction / self.step) * self.step)
        return self.minimum, input_size, default


#: Main setting per method; methods not listed run with their defaults.
METHOD_SETTINGS = {
    "integrated_gradients": MethodSetting("n_steps", "IG steps", 32, 4, 128, 4),
    "smoothgrad": MethodSetting("n_samples", "samples", 10, 1, 50, 1),
    # A quarter of the input: 56 px on 224-px models (7 x 7 positions per class at half-window strides).
    "occlusion": MethodSetting("window", "window px", 56, 2, 112, 2, input_fraction=0.25),
}


class ExplorerError(ValueError):
    """Bad input in the explorer's controls: shown in the app, never raised into the notebook."""


def _log_slider(description: str, value: float, bounds: tuple[float, float]) -> widgets.FloatLogSlider:
    return widgets.FloatLogSlider(
        value=float(value),
        base=10,
        min=np.log10(bounds[0]),
        max=np.log10(bounds[1]),
        step=0.05,
        description=description,
        readout_format=".4f",
        continuous_update=False,
    )


class Explorer(widgets.VBox):
    """The explorer application (an ``ipywidgets.VBox``; display it as the last expression of a cell).

    Parameters
    ----------
    model : str, default "efficientnet_lite0"
        A name of :data:`var_utils.MODELS`.
    image : str or numpy.ndarray, default "chelsea"
        A name of :data:`var_utils.PHOTOS`, a file path, or an RGB ``uint8`` array.
    method : str, default "gradcam"
        A name of :data:`var_utils.METHODS`.
    classes : sequence of int or str, optional
        The class set by indices or names; default automatic (``top_k``
        predictions plus the least probable class).
    top_k : int, default 3
        Size of the automatic set minus one.
    tau, temperature : float
        VAR's τ (0.01) and softmax temperature (0.1); the sliders span
        [1e-4, 0.5] and [1e-3, 10]; values outside are refused (ValueError).
    normalize : {None, "joint"}, default None
        VAR's scaling before the softmax.
    use_abs : bool, default True
        Compare ``|A|`` across classes.
    session : ExplorerSession, optional
        Models and caches to share between explorers.

    Attributes
    ----------
    prepared : PreparedImage
        The current image as the current model sees it (input, display, probabilities).
    classes : list of int
        The current class set.
    base : torch.Tensor
        (K, C', H, W) base maps of the current class set.
    last_error : str or None
        The message of the last rejected input, None after a success.
    """

    def __init__(
        self,
        model: str = "efficientnet_lite0",
        image: str | np.ndarray = "chelsea",
        method: str = "gradcam",
        classes: list[int | str] | None = None,
        top_k: int = 3,
        tau: float = DEFAULT_TAU,
        temperature: float = DEFAULT_TEMPERATURE,
        normalize: str | None = None,
        use_abs: bool = True,
        session: ExplorerSession | None = None,
    ) -> None:
        super().__init__()
        self.add_class("var-explore")
        self.session = session or ExplorerSession()
        self.last_error: str | None = None
        self._custom_images: dict[str, np.ndarray] = {}
        self._busy = False
        self._view: VarView | None = None
        self._build_controls(model, method, top_k, tau, temperature, normalize, use_abs)
        self._build_display()
        self.children = [self.status, widgets.HBox([self._controls_box(), self.display_box])]
        self._apply_start(image, classes)
        self._connect()

    # ----- construction -------------------------------------------------------------------------------------

    def _build_controls(self, model, method, top_k, tau, temperature, normalize, use_abs) -> None:
        self._check_start(model, method, top_k, tau, temperature, normalize, use_abs)
        self.image_picker = widgets.Dropdown(options=[*PHOTOS, HALF_AND_HALF], description="image")
        self.path_text = widgets.Text(placeholder="path/to/image.jpg", description="file")
        self.path_button = widgets.Button(description="Load file", layout=widgets.Layout(width="90px"))
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.model_picker = widgets.Dropdown(options=list(MODELS), value=model, description="model")
        self.progress = widgets.IntProgress(min=0, max=3, layout=widgets.Layout(display="none", width="380px"))
        self.method_picker = widgets.Dropdown(options=sorted(METHODS), value=method, description="method")
        self.setting_slider = widgets.IntSlider(description="setting", continuous_update=False)
        self.class_mode = widgets.ToggleButtons(options=["automatic", "chosen"], description="classes")
        self.top_k_slider = widgets.IntSlider(
            value=top_k, min=1, max=TOP_K_MAX, description="top-k", continuous_update=False
        )
        self.class_search = widgets.Combobox(placeholder="type a class name or index", description="search")
        self.add_button = widgets.Button(description="Add class", layout=widgets.Layout(width="90px"))
        self.chosen_list = widgets.SelectMultiple(description="chosen", rows=5)
        self.remove_button = widgets.Button(description="Remove", layout=widgets.Layout(width="90px"))
        self.tau_slider = _log_slider("τ", tau, TAU_RANGE)
        self.temperature_slider = _log_slider("temperature", temperature, TEMPERATURE_RANGE)
        self.normalize_picker = widgets.Dropdown(
            options=[("none (paper)", "none"), ("joint", "joint")], value=normalize or "none", description="normalize"
        )
        self.use_abs_box = widgets.Checkbox(value=use_abs, description="compare |A| (use_abs)")
        self.per_class_box = widgets.Checkbox(value=False, description="per-class colour scale")
        self.overlay_box = widgets.Checkbox(value=True, description="overlay on image")
        # CSS classes name the controls for the real-browser test (and for users' own styling).
        for name in ("tau_slider", "temperature_slider", "top_k_slider", "class_search", "add_button", "remove_button"):
            getattr(self, name).add_class(f"var-explore-{name.replace('_', '-')}")

    def __repr__(self) -> str:
        return (
            f"Explorer(model={self.model_picker.value!r}, image={self.image_picker.value!r}, "
            f"method={self.method_picker.value!r}, classes={getattr(self, 'classes', [])})"
        )

    @staticmethod
    def _check_start(model, method, top_k, tau, temperature, normalize, use_abs) -> None:
        """Refuse starting values the controls cannot show (sliders would silently clip them)."""
        if model not in MODELS:
            raise ValueError(f"Unknown `model` {model!r}; expected one of {list(MODELS)}.")
        if method not in METHODS:
            raise ValueError(f"Unknown `method` {method!r}; expected one of {sorted(METHODS)}.")
        check_refine_settings({"tau": tau, "temperature": temperature, "use_abs": use_abs, "normalize": normalize})
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= TOP_K_MAX:
            raise ValueError(f"`top_k` must be an int in 1..{TOP_K_MAX}, got {top_k!r}.")
        for name, value, (low, high) in (("tau", tau, TAU_RANGE), ("temperature", temperature, TEMPERATURE_RANGE)):
            if not low <= value <= high:
                raise ValueError(f"`{name}` must lie in [{low:g}, {high:g}] (the slider's range), got {value!r}.")

    def _controls_box(self) -> widgets.VBox:
        heading = widgets.HTML
        return widgets.VBox(
            [
                heading("<b>Image</b>"),
                self.image_picker,
                widgets.HBox([self.path_text, self.path_button]),
                self.upload,
                heading("<b>Model and method</b>"),
                self.model_picker,
                self.progress,
                self.method_picker,
                self.setting_slider,
                heading("<b>Competing classes</b>"),
                self.class_mode,
                self.top_k_slider,
                widgets.HBox([self.class_search, self.add_button]),
                widgets.HBox([self.chosen_list, self.remove_button]),
                heading("<b>VAR</b>"),
                self.tau_slider,
                self.temperature_slider,
                self.normalize_picker,
                self.use_abs_box,
                heading("<b>Display</b>"),
                self.per_class_box,
                self.overlay_box,
            ],
            layout=widgets.Layout(width="400px"),
        )

    def _build_display(self) -> None:
        self.status = widgets.HTML()
        self.status.add_class("var-explore-status")
        image_layout = widgets.Layout(width=PANEL_WIDTH)
        self.picture_panel = widgets.Image(format="png", layout=image_layout)
        self.winner_image = widgets.Image(format="png", layout=image_layout)
        self.winner_image.add_class("var-explore-winner")
        self.legend = widgets.HTML()
        self.rows_box = widgets.VBox()
        self.display_box = widgets.VBox(
            [widgets.HBox([self.picture_panel, self.winner_image, self.legend]), self.rows_box]
        )
        self._labels: list[widgets.HTML] = []
        self._base_images: list[widgets.Image] = []
        self._var_images: list[widgets.Image] = []

    def _apply_start(self, image: str | np.ndarray, classes: list[int | str] | None) -> None:
        if isinstance(image, np.ndarray):
            self._add_custom_image("array", image)
        elif image in (*PHOTOS, HALF_AND_HALF, "half_and_half"):
            self.image_picker.value = HALF_AND_HALF if image == "half_and_half" else image
        else:
            self._add_custom_image(f"file: {image}", load_image(image))
        model = self.session.model(self.model_picker.value)
        self._chosen = [resolve_class(item, model.class_names) for item in classes or []]
        if classes is not None:
            if len(set(self._chosen)) < 2:
                raise ValueError(f"`classes` needs at least two distinct classes, got {classes!r}.")
            self.class_mode.value = "chosen"
        self._show_setting(force=True)
        self._recompute()
        self.status.value, self.progress.layout.display = "", "none"
        self._remember()

    def _connect(self) -> None:
        recompute = ("image_picker", "model_picker", "method_picker", "setting_slider", "class_mode", "top_k_slider")
        for name in recompute:
            getattr(self, name).observe(self._handler(self._on_recompute_control, name), names="value")
        for name in ("tau_slider", "temperature_slider", "normalize_picker", "use_abs_box"):
            getattr(self, name).observe(self._handler(self._redraw_var, name), names="value")
        for name in ("per_class_box", "overlay_box"):
            getattr(self, name).observe(self._handler(self._redraw_all, name), names="value")
        self.upload.observe(self._handler(self._on_upload, "upload"), names="value")
        self.path_button.on_click(self._handler(self._on_path, "path"))
        self.add_button.on_click(self._handler(self._on_add_class, "add"))
        self.remove_button.on_click(self._handler(self._on_remove_classes, "remove"))

    # ----- error handling -----------------------------------------------------------------------------------

    _REMEMBERED_CONTROLS = (
        "image_picker",
        "model_picker",
        "method_picker",
        "class_mode",
        "top_k_slider",
        "tau_slider",
        "temperature_slider",
        "normalize_picker",
        "use_abs_box",
        "per_class_box",
        "overlay_box",
    )
    # The setting slider changes its range with the method and the model's input size: all of it is kept.
    _SLIDER_TRAITS = ("description", "min", "max", "step", "value")
    _REMEMBERED_STATE = ("prepared", "classes", "base", "_view", "_labels", "_base_images", "_var_images")

    def _remember(self) -> None:
        """Keep the state after a successful change: what a later failure returns to."""
        self._good = {name: getattr(self, name).value for name in self._REMEMBERED_CONTROLS}
        self._good_slider = {trait: getattr(self.setting_slider, trait) for trait in self._SLIDER_TRAITS}
        self._good_slider_display = self.setting_slider.layout.display
        self._good_state = {name: getattr(self, name) for name in self._REMEMBERED_STATE}
        self._good_state.update(chosen=list(self._chosen), rows=self.rows_box.children)
        self._good_state.update(search_options=self.class_search.options, chosen_options=self.chosen_list.options)

    def _restore(self) -> None:
        """Put back the controls, the computed maps and the panels of the last good state (observers are muted)."""
        for name, value in self._good.items():
            getattr(self, name).value = value
        with self.setting_slider.hold_trait_notifications():
            for trait in self._SLIDER_TRAITS:
                setattr(self.setting_slider, trait, self._good_slider[trait])
        self.setting_slider.layout.display = self._good_slider_display
        state = dict(self._good_state)
        self._chosen = state.pop("chosen")
        self.rows_box.children = state.pop("rows")
        self.class_search.options = state.pop("search_options")
        self.chosen_list.options = state.pop("chosen_options")
        for name, value in state.items():
            setattr(self, name, value)
        self._redraw_all()

    def _handler(self, action: Callable[[], None], source: str) -> Callable[..., None]:
        def handle(*_: object) -> None:
            # Changes the app makes to its own controls during an action (or a restore) are not new actions.
            if self._busy:
                return
            self._busy = True
            self.status.value = '<span class="var-explore-busy">working…</span>'
            try:
                action()
                self._remember()
                self.last_error = None
                self.status.value = ""
                self.progress.layout.display = "none"
            # The app is the boundary to the user: any failure (bad file, a method the model cannot run, a failed
            # download) becomes a message in the app, and the last good state is restored.
            except Exception as error:  # noqa: BLE001
                self._fail(source, error)
            finally:
                self._busy = False

        return handle

    def _fail(self, source: str, error: Exception) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        self.progress.layout.display = "none"
        message = html.escape(self.last_error)
        try:
            self._restore()
        except Exception as restore_error:  # noqa: BLE001
            message += html.escape(f" (and restoring the previous state failed: {restore_error})")
        self.status.value = (
            f'<div class="var-explore-error" style="color:#b00020">Could not apply the change ({source}): {message} '
            "<br>The previous state is kept.</div>"
        )

    # ----- actions ------------------------------------------------------------------------------------------

    def _add_custom_image(self, label: str, image: np.ndarray) -> None:
        self._custom_images[label] = image
        self.image_picker.options = [*PHOTOS, HALF_AND_HALF, *self._custom_images]
        self.image_picker.value = label

    def _current_image(self) -> np.ndarray:
        name = self.image_picker.value
        if name in self._custom_images:
            return self._custom_images[name]
        return half_and_half() if name == HALF_AND_HALF else load_photo(name)

    def _on_path(self) -> None:
        text = self.path_text.value.strip()
        if not text:
            raise ExplorerError("Type the path of an image file first.")
        path = Path(text).expanduser()
        self._add_custom_image(f"file: {path.name}", load_image(path))
        self._recompute()

    def _on_upload(self) -> None:
        if not self.upload.value:
            return
        upload = self.upload.value[0]
        self._add_custom_image(
            f"upload: {upload['name']}", decode_image(bytes(upload["content"]), f"The upload {upload['name']!r}")
        )
        self._recompute()

    def _on_recompute_control(self) -> None:
        if self.model_picker.value != self._good["model_picker"]:
            self._chosen = []
        self._show_setting()
        self._recompute()

    def _current_set(self) -> list[int]:
        """The set to edit: the chosen classes, or the automatic set (editing it starts a chosen set)."""
        return list(self._chosen) if self.class_mode.value == "chosen" else list(self.classes)

    def _on_add_class(self) -> None:
        text = self.class_search.value.strip()
        if not text:
            raise ExplorerError("Type a class name (or index) in the search box first.")
        index = resolve_class(text, self.class_names)
        current = self._current_set()
        if index in current:
            raise ExplorerError(f"{self.class_names[index]!r} is already in the class set.")
        self._chosen = [*current, index]
        self.class_mode.value = "chosen"
        self._recompute()
        self.class_search.value = ""

    def _on_remove_classes(self) -> None:
        removed = set(self.chosen_list.value)
        if not removed:
            raise ExplorerError("Select the classes to remove in the list first.")
        remaining = [index for index in self._current_set() if index not in removed]
        if len(remaining) < 2:
            raise ExplorerError(f"A class set needs at least two classes; removing these would leave {len(remaining)}.")
        self._chosen = remaining
        self.class_mode.value = "chosen"
        self._recompute()

    def _show_setting(self, force: bool = False) -> None:
        """Show the method's main setting, its range fitted to the model's input (reset when the method changes)."""
        method = self.method_picker.value
        setting = METHOD_SETTINGS.get(method)
        self.setting_slider.layout.display = "flex" if setting else "none"
        if setting is None:
            return
        size = self.session.model(self.model_picker.value).input_size
        minimum, maximum, default = setting.range_for(size)
        if force or (self.setting_slider.description, self.setting_slider.max) != (setting.label, maximum):
            # Held, so the value is checked against the new range only once all traits are set.
            with self.setting_slider.hold_trait_notifications():
                self.setting_slider.min, self.setting_slider.max, self.setting_slider.value = minimum, maximum, default
                self.setting_slider.step, self.setting_slider.description = setting.step, setting.label

    def _method_settings(self) -> dict:
        setting = METHOD_SETTINGS.get(self.method_picker.value)
        return {setting.keyword: self.setting_slider.value} if setting else {}

    def _refine_settings(self) -> dict:
        normalize = self.normalize_picker.value
        return {
            "tau": self.tau_slider.value,
            "temperature": self.temperature_slider.value,
            "use_abs": self.use_abs_box.value,
            "normalize": None if normalize == "none" else normalize,
        }

    @property
    def class_names(self) -> list[str]:
        """The class names of the current model."""
        return self.session.model(self.model_picker.value).class_names

    def _recompute(self) -> None:
        model_name, method = self.model_picker.value, self.method_picker.value
        loading = not self.session.is_loaded(model_name)
        self._progress(1, f"loading {model_name}" if loading else "preparing the image")
        self.session.model(model_name)
        prepared = self.session.prepare(model_name, self._current_image())
        if self.class_mode.value == "chosen":
            if len(self._chosen) < 2:
                self._chosen = self._automatic(prepared)
            classes = list(self._chosen)
        else:
            classes = self._automatic(prepared)
        self._progress(2, f"{method}: {len(classes)} maps")
        base = self.session.base_maps(model_name, prepared, method, self._method_settings(), classes)
        self._progress(3, "drawing")
        self.prepared, self.classes, self.base = prepared, classes, base
        self.class_search.options = self.class_names
        self.chosen_list.options = [(f"{self.class_names[index]} ({index})", index) for index in classes]
        self._build_rows()
        self._redraw_all()

    def _automatic(self, prepared: PreparedImage) -> list[int]:
        return automatic_class_set(prepared.probabilities, self.top_k_slider.value)

    def _progress(self, step: int, text: str) -> None:
        """Show step ``step`` of 3 (model and image, base maps, drawing) in the progress bar and the status line."""
        self.progress.layout.display = "flex"
        self.progress.value, self.progress.description = step, f"{step}/3"
        self.status.value = f'<span class="var-explore-busy">{html.escape(text)}…</span>'

    # ----- drawing ------------------------------------------------------------------------------------------

    def _build_rows(self) -> None:
        image_layout = widgets.Layout(width=PANEL_WIDTH)
        count = len(self.classes)
        self._labels = [widgets.HTML(layout=widgets.Layout(width="220px")) for _ in range(count)]
        self._base_images = [widgets.Image(format="png", layout=image_layout) for _ in range(count)]
        self._var_images = [widgets.Image(format="png", layout=image_layout) for _ in range(count)]
        for image in self._var_images:
            image.add_class("var-explore-var-map")
        method = html.escape(self.method_picker.value)
        header = widgets.HTML(
            f"<div style='display:flex;gap:8px'><span style='width:220px'><b>class</b></span>"
            f"<span style='width:{PANEL_WIDTH}'><b>{method}</b> (base)</span>"
            f"<span style='width:{PANEL_WIDTH}'><b>VAR</b></span></div>"
        )
        rows = [widgets.HBox(parts) for parts in zip(self._labels, self._base_images, self._var_images)]
        self.rows_box.children = [header, *rows]

    def _redraw_all(self) -> None:
        self.picture_panel.value = encode_png(self.prepared.picture)
        scales = map_scales(self.base, self.per_class_box.value)
        for image, class_map, scale in zip(self._base_images, self.base, scales):
            image.value = map_panel(self.prepared.picture, class_map, scale, self.overlay_box.value)
        self._redraw_var()

    def _redraw_var(self) -> None:
        settings = self._refine_settings()
        self._view = refine_view(self.base, settings)
        scales = map_scales(self.base, self.per_class_box.value)
        for image, class_map, scale in zip(self._var_images, self._view.var, scales):
            image.value = map_panel(self.prepared.picture, class_map, scale, self.overlay_box.value)
        self.winner_image.value = winner_panel(self._view.distribution, self._view.kept_where)
        self._write_labels()

    def _write_labels(self) -> None:
        colours = class_colours(len(self.classes))
        names = self.class_names
        for label, index, kept, kept_pixels, colour in zip(
            self._labels, self.classes, self._view.kept.tolist(), self._view.kept_pixels.tolist(), colours
        ):
            probability = float(self.prepared.probabilities[index])
            kept_text = "–" if math.isnan(kept) else f"{100 * kept:.0f} %"
            label.value = (
                f"<span style='display:inline-block;width:12px;height:12px;background:{hex_colour(colour)}'></span> "
                f"<b>{html.escape(names[index])}</b> ({index})<br>p = {probability:.3f}<br>"
                f"VAR keeps {kept_text} of its positive attribution,<br>on {100 * kept_pixels:.0f} % of the pixels"
            )
        self.legend.value = (
            "<div style='max-width:260px'><b>Winner map</b>: each pixel in the colour of the class with the largest "
            "share of the local softmax, paler as its lead over 1/K shrinks; dark grey where no class leads by more "
            f"than τ = {self.tau_slider.value:.4g} (VAR keeps nothing there).</div>"
        )

    # ----- numbers ------------------------------------------------------------------------------------------

    def summary(self) -> pd.DataFrame:
        """Per class of the set: index, name, probability, share of attribution and of pixels VAR keeps.

        Returns
        -------
        pandas.DataFrame
            One row per class, in the order of the set.
        """
        return pd.DataFrame(
            {
                "class_id": self.classes,
                "class_name": [self.class_names[index] for index in self.classes],
                "probability": [float(self.prepared.probabilities[index]) for index in self.classes],
                "kept_share": self._view.kept.tolist(),
                "kept_pixels": self._view.kept_pixels.tolist(),
            }
        )


def explore(
    model: str = "efficientnet_lite0",
    image: str | np.ndarray = "chelsea",
    method: str = "gradcam",
    classes: list[int | str] | None = None,
    **settings,
) -> Explorer:
    """Open the interactive explorer (display the returned application in JupyterLab).

    Parameters
    ----------
    model : str, default "efficientnet_lite0"
        A name of :data:`var_utils.MODELS`.
    image : str or numpy.ndarray, default "chelsea"
        A photo name of :data:`var_utils.PHOTOS`, a file path or an RGB ``uint8`` array.
    method : str, default "gradcam"
        A name of :data:`var_utils.METHODS`.
    classes : list of int or str, optional
        The class set (indices or names); default automatic.
    **settings
        ``top_k``, ``tau``, ``temperature``, ``normalize``, ``use_abs``,
        ``session`` of :class:`Explorer`.

    Returns
    -------
    Explorer
        The application.

    Examples
    --------
    >>> app = explore(model="fashion_mnist_cnn", method="saliency", top_k=2)
    >>> app.tau_slider.value = 0.1  # re-runs VAR only, from the cached base maps
    >>> list(app.summary().columns)
    ['class_id', 'class_name', 'probability', 'kept_share', 'kept_pixels']
    """
    return Explorer(model=model, image=image, method=method, classes=classes, **settings)
