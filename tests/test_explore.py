"""The explorer without a browser: its numbers against direct computations, its caches, and bad input in the app."""

from __future__ import annotations

import datetime
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import var_utils
from var_utils import load_photo, refine_all
from var_utils.apps.explanation import kept_share, model_input, resolve_class, resolve_classes
from var_utils.apps.explore import ExplorerSession, explore, refine_view
from var_utils.apps.explore.render import NO_WINNER_GREY, PANEL_SIZE, class_colours, winner_panel


@pytest.fixture(scope="module")
def session():
    return ExplorerSession()


@pytest.fixture
def app(session):
    return explore(model="efficientnet_lite0", image="chelsea", method="gradcam", session=session)


def _upload(name: str, content: bytes) -> tuple[dict]:
    modified = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        {
            "name": name,
            "type": "image/png",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": modified,
        },
    )


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _state(app) -> tuple:
    return (
        list(app.classes),
        app.base.clone(),
        [bytes(image.value) for image in app._var_images],
        app.image_picker.value,
    )


def _assert_same_state(app, state: tuple) -> None:
    classes, base, var_images, image = state
    assert app.classes == classes and app.image_picker.value == image
    assert torch.equal(app.base, base)
    assert [bytes(panel.value) for panel in app._var_images] == var_images


# ----- helpers shared with the command line --------------------------------------------------------------------


def test_resolve_class_by_index_and_name_and_hints():
    names = ["tabby", "tiger cat", "Egyptian cat"]
    assert resolve_class(2, names) == 2
    assert resolve_class(" 1 ", names) == 1
    assert resolve_class("EGYPTIAN CAT", names) == 2
    with pytest.raises(ValueError, match=r"out of range; the model has classes 0\.\.2"):
        resolve_class(3, names)
    with pytest.raises(ValueError, match=r"not a class name of this model\. Did you mean 'tabby'"):
        resolve_class("tabby kitten", names)
    with pytest.raises(ValueError, match="repeated"):
        resolve_classes(["tabby", 0], names)
    with pytest.raises(ValueError, match="at least two classes"):
        resolve_classes(["tabby"], names)


def test_automatic_class_set_is_top_k_then_least_probable():
    scores = torch.tensor([0.05, 0.4, 0.01, 0.3, 0.24])
    assert var_utils.automatic_class_set(scores, 2) == [1, 3, 2]
    with pytest.raises(ValueError, match="top_k"):
        var_utils.automatic_class_set(scores, 5)


def test_kept_share_against_numpy():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(3, 2, 5, 5, generator=generator)
    var = refine_all(base)
    expected = [np.clip(v.numpy(), 0, None).sum() / np.clip(b.numpy(), 0, None).sum() for b, v in zip(base, var)]
    assert np.allclose(kept_share(base, var).numpy(), expected, rtol=1e-6)


def test_fashion_models_get_a_grey_square_at_their_input_size():
    model = var_utils.load_model("fashion_mnist_vit")
    photo = load_photo("coffee")  # 400 x 600: the centred square is columns 100..500
    inputs = model_input(model, photo)
    assert inputs.shape == (1, 1, 56, 56)
    grey = cv2.cvtColor(cv2.resize(photo[:, 100:500], (56, 56), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    unit = inputs[0, 0].numpy() * 0.3530 + 0.2860
    assert np.abs(unit * 255 - grey).mean() < 3  # same picture, up to the resampling filter


# ----- the VAR view ---------------------------------------------------------------------------------------------


def test_refine_view_against_hand_computation():
    # Two classes, three pixels: class 0 leads, a tie, class 1 leads slightly.
    base = torch.tensor([[[[1.0, 0.5, 0.0]]], [[[0.0, 0.5, 0.02]]]])
    view = refine_view(base, {"tau": 0.01, "temperature": 0.1})
    m = np.exp(np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 0.02]]) / 0.1)
    m /= m.sum(axis=0)
    assert np.allclose(view.distribution.numpy()[:, 0], m, atol=1e-6)
    lead = m - 0.5 > 0.01  # the tie and class 1's 0.05 lead (m = 0.5498) decide the kept pixels
    expected_var = np.where(lead, np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 0.02]]) * m, 0.0)
    assert np.allclose(view.var.numpy()[:, 0, 0], expected_var, atol=1e-6)
    assert view.kept_pixels.tolist() == pytest.approx([1 / 3, 1 / 3])
    assert view.kept.tolist() == pytest.approx([m[0, 0] / 1.5, m[1, 2] * 0.02 / 0.52], rel=1e-5)


def test_kept_pixels_count_a_pixel_kept_in_any_channel_for_every_class_that_clears_tau():
    # K = 3, two channels, two pixels. Pixel 0: channel 0 favours class 0, channel 1 class 1 (both kept there);
    # pixel 1: classes 0 and 1 tie above 1/3 + τ in both channels (both kept), class 2 nowhere.
    base = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]], [[[0.0, 0.5]], [[1.0, 0.5]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])
    view = refine_view(base)
    assert view.kept_where.tolist() == [[[True, True]], [[True, True]], [[False, False]]]
    assert view.kept_pixels.tolist() == [1.0, 1.0, 0.0]
    assert torch.equal(view.kept_where, (refine_all(base) != 0).any(dim=1))


def test_winner_panel_colours_the_leader_and_greys_out_what_var_drops():
    distribution = torch.tensor([[[0.9, 0.5]], [[0.1, 0.5]]])  # (K=2, H=1, W=2): class 0 wins left, tie right
    kept_where = torch.tensor([[[True, False]], [[False, False]]])
    panel = winner_panel(distribution, kept_where)
    panel = cv2.cvtColor(cv2.imdecode(np.frombuffer(panel, np.uint8), 1), cv2.COLOR_BGR2RGB)
    assert panel.shape == (PANEL_SIZE, PANEL_SIZE, 3)
    strength = (0.9 - 0.5) / 0.5
    expected_left = np.round((strength * class_colours(2)[0] + (1 - strength)) * 255)
    assert np.abs(panel[PANEL_SIZE // 2, 10].astype(float) - expected_left).max() <= 1
    assert np.all(panel[PANEL_SIZE // 2, -10] == round(NO_WINNER_GREY * 255))


# ----- the application -------------------------------------------------------------------------------------------


def test_starts_with_the_automatic_set_of_the_model(app, session):
    model = session.model("efficientnet_lite0")
    logits = model(model.preprocess(load_photo("chelsea"))).detach()[0]
    order = logits.argsort(descending=True).tolist()
    assert app.classes == order[:3] + order[-1:]
    probabilities = torch.softmax(logits.double(), 0)
    assert app.summary()["probability"].tolist() == pytest.approx(probabilities[app.classes].tolist(), rel=1e-5)
    assert len(app._var_images) == 4 and all(bytes(image.value).startswith(b"\x89PNG") for image in app._var_images)
    assert app.last_error is None


@pytest.mark.parametrize(
    ("control", "value", "setting"),
    [
        ("tau_slider", 0.1, {"tau": 0.1}),
        ("temperature_slider", 0.5, {"temperature": 0.5}),
        ("normalize_picker", "joint", {"normalize": "joint"}),
        ("use_abs_box", False, {"use_abs": False}),
    ],
)
def test_refinement_controls_reuse_the_base_maps(app, control, value, setting):
    computed, base, before = app.session.base_maps_computed, app.base, [bytes(image.value) for image in app._var_images]
    getattr(app, control).value = value
    assert app.session.base_maps_computed == computed and app.base is base
    expected = refine_all(base, **setting)
    assert torch.equal(app._view.var, expected)
    assert app.summary()["kept_share"].tolist() == pytest.approx(kept_share(base, expected).tolist(), nan_ok=True)
    assert [bytes(image.value) for image in app._var_images] != before


def test_method_setting_and_class_changes_recompute(app):
    app.method_picker.value = "integrated_gradients"
    assert app.setting_slider.description == "IG steps" and app.setting_slider.layout.display == "flex"
    expected = var_utils.attribute_classes(
        app.session.model("efficientnet_lite0"), app.prepared.inputs, app.classes, "integrated_gradients", n_steps=32
    )[0]
    assert torch.allclose(app.base, expected, atol=1e-6)
    app.method_picker.value = "gradcam"
    assert app.setting_slider.layout.display == "none"
    app.top_k_slider.value = 2
    assert len(app.classes) == 3
    app.class_mode.value = "chosen"
    app.class_search.value = "lynx"
    app.add_button.click()
    assert app.classes[-1] == 287 and len(app._var_images) == 4 and app.last_error is None
    assert app.class_search.value == ""
    app.chosen_list.value = (287,)
    app.remove_button.click()
    assert 287 not in app.classes


def test_explicit_classes_by_name_and_other_models(session):
    app = explore(
        model="fashion_mnist_cnn", image="coffee", method="saliency", classes=["Bag", 0, "Sneaker"], session=session
    )
    assert app.classes == [8, 0, 7] and app.class_mode.value == "chosen"
    assert app.base.shape == (3, 1, 28, 28)
    app.model_picker.value = "fashion_mnist_vit"
    assert app.base.shape[-1] == 56 and app.last_error is None


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda app: (setattr(app.class_search, "value", "not a class"), app.add_button.click()), "not a class name"),
        (lambda app: (setattr(app.class_search, "value", "tiger cat"), app.add_button.click()), "already in"),
        (lambda app: (setattr(app.class_search, "value", ""), app.add_button.click()), "Type a class name"),
        (lambda app: setattr(app.method_picker, "value", "attention_rollout"), "needs a vision transformer"),
        (lambda app: setattr(app.upload, "value", _upload("notes.png", b"not an image")), "not a readable image"),
        (lambda app: (setattr(app.path_text, "value", "/no/such/file.png"), app.path_button.click()), "does not exist"),
    ],
)
def test_bad_input_shows_a_message_and_keeps_the_state(app, action, message):
    state = _state(app)
    method = app.method_picker.value
    action(app)
    assert message in app.last_error
    assert "var-explore-error" in app.status.value and message in app.status.value
    assert app.method_picker.value == method
    _assert_same_state(app, state)


def test_removing_down_to_one_class_is_refused(app):
    state = _state(app)
    app.chosen_list.value = tuple(app.classes[:-1])
    app.remove_button.click()
    assert "at least two classes" in app.last_error
    _assert_same_state(app, state)
    app.chosen_list.value = ()
    app.remove_button.click()
    assert "Select the classes" in app.last_error


def test_removing_from_the_automatic_set_starts_a_chosen_set(app):
    automatic = list(app.classes)
    app.chosen_list.value = (automatic[-1],)
    app.remove_button.click()
    assert app.last_error is None and app.classes == automatic[:-1] and app.class_mode.value == "chosen"


def test_a_failure_restores_the_method_setting_as_it_was(app):
    app.method_picker.value = "integrated_gradients"
    app.setting_slider.value = 16
    state = _state(app)
    app.method_picker.value = "attention_gradcam"
    assert "needs a vision transformer" in app.last_error
    assert (app.method_picker.value, app.setting_slider.description, app.setting_slider.value) == (
        "integrated_gradients",
        "IG steps",
        16,
    )
    _assert_same_state(app, state)


def test_a_failed_image_keeps_the_previous_image_and_its_message(app, monkeypatch):
    app.image_picker.value = "coffee"
    state = _state(app)

    def unreadable(*_):
        raise ValueError("cannot prepare this image")

    monkeypatch.setattr(app.session, "prepare", unreadable)
    app.upload.value = _upload("rocket.png", _png_bytes(load_photo("rocket")))
    assert "cannot prepare this image" in app.last_error and "var-explore-error" in app.status.value
    _assert_same_state(app, state)


def test_a_failure_after_new_base_maps_restores_the_panels(app, monkeypatch):
    state = _state(app)
    labels = [label.value for label in app._labels]

    def broken(*_):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr("var_utils.apps.explore.app.winner_panel", broken)
    app.top_k_slider.value = 5
    assert "drawing failed" in app.last_error
    monkeypatch.undo()
    assert app.top_k_slider.value == 3 and len(app.rows_box.children) == 5  # header + the 4 old rows
    assert [label.value for label in app._labels] == labels
    classes, base, _, image = state
    assert app.classes == classes and torch.equal(app.base, base) and app.image_picker.value == image


def test_occlusion_window_fits_the_model_input(session):
    app = explore(model="fashion_mnist_cnn", image="coffee", method="occlusion", session=session, top_k=1)
    assert (app.setting_slider.max, app.setting_slider.value) == (28, 8) and app.last_error is None
    app.model_picker.value = "efficientnet_lite0"
    assert (app.setting_slider.max, app.setting_slider.value) == (224, 56)


def test_loading_a_model_shows_progress_and_hides_it_after(session):
    seen = []

    def loader(name):
        if name == "fashion_mnist_cnn":  # loaded by the app, once it exists
            seen.append((name, app.progress.layout.display, app.status.value))
        return session.model(name)

    app = explore(session=ExplorerSession(loader=loader))
    app.model_picker.value = "fashion_mnist_cnn"
    assert seen[-1][0] == "fashion_mnist_cnn" and seen[-1][1] == "flex" and "loading fashion_mnist_cnn" in seen[-1][2]
    assert app.progress.layout.display == "none" and app.status.value == "" and app.last_error is None


def test_a_failed_model_download_keeps_the_model(session, monkeypatch):
    def offline(name):
        raise RuntimeError(f"Could not download the weights of {name!r}")

    app = explore(
        session=ExplorerSession(loader=lambda name: offline(name) if name == "resnet50" else session.model(name))
    )
    app.model_picker.value = "resnet50"
    assert "Could not download" in app.last_error
    assert app.model_picker.value == "efficientnet_lite0" and app.progress.layout.display == "none"


def test_uploads_and_files_become_images(app, tmp_path):
    photo = load_photo("rocket")
    app.upload.value = _upload("rocket.png", _png_bytes(photo))
    assert app.image_picker.value == "upload: rocket.png" and app.last_error is None
    assert torch.equal(app.prepared.inputs, app.session.model("efficientnet_lite0").preprocess(photo))
    grey = tmp_path / "grey.png"
    Image.fromarray(load_photo("camera")).save(grey)
    app.path_text.value = str(grey)
    app.path_button.click()
    assert app.image_picker.value == "file: grey.png" and app.last_error is None
    app.image_picker.value = "chelsea"
    assert app.last_error is None


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="Unknown `model`"):
        explore(model="alexnet")
    with pytest.raises(ValueError, match="Unknown `method`"):
        explore(method="magic")
    with pytest.raises(ValueError, match="not a class name"):
        explore(classes=["tabby", "not a class"])
    with pytest.raises(ValueError, match="`top_k` must be an int in 1..9"):
        explore(top_k=0)
    with pytest.raises(ValueError, match=r"`tau` must lie in \[0.0001, 0.5\]"):
        explore(tau=0.9)
    with pytest.raises(ValueError, match="`temperature`"):
        explore(temperature=0.0)
    with pytest.raises(TypeError, match="`tau` must be a real number"):
        explore(tau="0.1")
    with pytest.raises(TypeError, match="`use_abs`"):
        explore(use_abs=1)
    with pytest.raises(ValueError, match="`cache_size`"):
        ExplorerSession(cache_size=0)
    with pytest.raises(TypeError, match="`loader`"):
        ExplorerSession(loader="resnet50")


def test_adding_to_the_automatic_set_keeps_it(app):
    automatic = list(app.classes)
    app.class_search.value = "lynx"
    app.add_button.click()
    assert app.classes == [*automatic, 287] and app.class_mode.value == "chosen"
