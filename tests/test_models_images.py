"""Tests of the model loader, the preprocessing and the offline images.

Independent references: ImageNet class indices of the photos' content, numpy
crops and PIL resizes written out in the tests, hand-computed normalisations,
and docs/method.md#3-base-methods for the Grad-CAM layers of the paper's architectures.
"""

from __future__ import annotations

import io
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from var_utils.datasets.photos import (
    PHOTOS,
    center_square,
    decode_image,
    half_and_half,
    load_image,
    load_photo,
    to_rgb,
    unit_tensor,
)
from var_utils.methods import default_gradcam_layer
from var_utils.models import IMAGENET_MEAN, IMAGENET_STD, MODELS, TORCHVISION_MODELS, Preprocessing, load_model


# ---------------------------------------------------------------- EfficientNet-Lite0
@pytest.mark.parametrize(
    "photo, plausible",
    [
        ("chelsea", {285, 281, 282}),  # Egyptian cat, tabby, tiger cat
        ("coffee", {967, 968, 504}),  # espresso, cup, coffee mug
    ],
)
def test_lite0_recognises_the_photos(lite0, photo, plausible):
    with torch.no_grad():
        logits = lite0(lite0.preprocess(load_photo(photo)))
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) in plausible


def test_lite0_attributes(lite0):
    assert not lite0.training
    assert lite0.input_size == 224
    assert len(lite0.class_names) == 1000
    assert lite0.class_names[285] == "Egyptian cat" and lite0.class_names[967] == "espresso"
    assert lite0.preprocess == Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# ---------------------------------------------------------------- torchvision models
@pytest.mark.parametrize(
    "name, layer_path",
    [
        ("resnet50", "layer4.2"),
        ("resnext50_32x4d", "layer4.2"),
        ("wide_resnet50_2", "layer4.2"),
        ("vgg16", "features.28"),
        ("densenet121", "features.denseblock4.denselayer16"),
        ("convnext_base", "features.7.2"),
        ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1"),
    ],
)
def test_torchvision_models_and_their_gradcam_layers(name, layer_path):
    # Built on the meta device: the architecture without allocating (or downloading) weights.
    with torch.device("meta"):
        model = load_model(name, weights=None)
    assert not model.training
    assert default_gradcam_layer(model) is model.get_submodule(layer_path)
    assert model.preprocess == Preprocessing(256, 224, IMAGENET_MEAN, IMAGENET_STD)
    assert len(model.class_names) == 1000 and model.input_size == 224


def test_resnet50_without_weights_runs_offline():
    torch.manual_seed(0)
    model = load_model("resnet50", weights=None)
    assert default_gradcam_layer(model) is model.layer4[-1]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize(
    "failure", [urllib.error.URLError("network is unreachable"), OSError("no route to host"), RuntimeError("hash")]
)
def test_failed_download_names_the_offline_fix(monkeypatch, failure):
    def refuse(name, weights=None):
        raise failure

    monkeypatch.setattr(torchvision.models, "get_model", refuse)
    with pytest.raises(RuntimeError, match=r"weights=None"):
        load_model("resnet50")


def test_bcos_resnet50_without_weights_runs_offline_on_unit_pixels():
    with torch.device("meta"):
        model = load_model("bcos_resnet50", weights=None)
    assert model.preprocess == Preprocessing(256, 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert model.input_channels == 3 and model.logit_bias == pytest.approx(-np.log(999))
    assert default_gradcam_layer(model) is model.network.layer4[-1]


def test_failed_bcos_download_names_the_offline_fix(monkeypatch):
    import bcos.models.pretrained

    build = bcos.models.pretrained.resnet50

    def refuse(pretrained=False, **kwargs):
        if pretrained:
            raise urllib.error.URLError("network is unreachable")
        return build(pretrained=False, **kwargs)

    monkeypatch.setattr(bcos.models.pretrained, "resnet50", refuse)
    with pytest.raises(RuntimeError, match=r"bcos_resnet50.*weights="):
        load_model("bcos_resnet50")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_from_a_local_file(tmp_path, suffix):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = load_model("fashion_mnist_vit", weights=None)
    state = {name: tensor.clone() for name, tensor in source.state_dict().items()}
    path = tmp_path / f"vit{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    loaded = load_model("fashion_mnist_vit", weights=path)
    assert all(torch.equal(loaded.state_dict()[name], state[name]) for name in state)
    assert loaded.name == "fashion_mnist_vit" and not loaded.training


def test_bcos_resnet50_loads_a_local_state_dict_saved_by_torch(tmp_path):
    torch.manual_seed(1)
    state = load_model("bcos_resnet50", weights=None).network.state_dict()
    torch.save(state, tmp_path / "bcos_resnet50.pth")
    loaded = load_model("bcos_resnet50", weights=tmp_path / "bcos_resnet50.pth")
    assert all(torch.equal(loaded.network.state_dict()[name], state[name]) for name in state)


def test_bcos_resnet50_also_loads_a_file_of_the_whole_classifier(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(2)
    model = load_model("bcos_resnet50", weights=None)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    assert all(name.startswith("network.") for name in state)
    save_file(state, str(tmp_path / "classifier.safetensors"))
    loaded = load_model("bcos_resnet50", weights=tmp_path / "classifier.safetensors")
    assert all(torch.equal(loaded.state_dict()[name], state[name]) for name in state)


def test_unknown_torchvision_weights_keyword_is_a_value_error_listing_the_choices():
    with pytest.raises(ValueError, match="IMAGENET1K_V9.*IMAGENET1K_SWAG_E2E_V1"):
        load_model("vit_b_16", weights="IMAGENET1K_V9")


def test_a_vits_input_size_and_preprocessing_follow_its_image_size(monkeypatch):
    from torchvision.models import VisionTransformer

    def tiny(name, weights=None):
        return VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8)

    monkeypatch.setattr(torchvision.models, "get_model", tiny)
    model = load_model("vit_b_16")
    assert model.input_size == 32 and model.preprocess.crop == 32 and model.preprocess.resize == 37


def test_a_corrupt_safetensors_file_is_a_value_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="broken.safetensors"):
        load_model("fashion_mnist_bcos", weights=path)


def test_a_weights_file_of_another_architecture_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "cnn.safetensors"
    save_file(load_model("fashion_mnist_cnn").state_dict(), str(path))
    with pytest.raises(ValueError, match="do not fit VisionTransformer"):
        load_model("fashion_mnist_vit", weights=str(path))


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "hook": print}, path)
    with pytest.raises(ValueError, match="safely"):
        load_model("fashion_mnist_cnn", weights=path)


def test_a_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model("vit_b_16", weights=str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(name="resnet18"), ValueError, "`name`"),
        (dict(name="EfficientNet_Lite0"), ValueError, "`name`"),
        (dict(name="efficientnet_lite0", weights=1), TypeError, "`weights`"),
        (dict(name="efficientnet_lite0", weights="IMAGENET1K_V1"), ValueError, "`weights`"),
    ],
)
def test_load_model_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_model(**kwargs)


def test_model_names():
    assert set(TORCHVISION_MODELS) <= set(MODELS)
    assert "efficientnet_lite0" in MODELS


# ---------------------------------------------------------------- Preprocessing
def test_preprocessing_constant_image_by_hand():
    image = np.full((30, 50, 3), (51, 102, 204), dtype=np.uint8)
    preprocess = Preprocessing(resize=20, crop=16, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    result = preprocess(image)
    assert result.shape == (1, 3, 16, 16) and result.dtype == torch.float32
    expected = [(0.2 - 0.5) / 0.5, (0.4 - 0.25) / 0.25, (0.8 - 0.0) / 2.0]
    for channel, value in enumerate(expected):
        torch.testing.assert_close(result[0, channel], torch.full((16, 16), value))


@pytest.mark.parametrize("shape", [(300, 451), (451, 300), (10, 20), (224, 224)])
def test_preprocessing_shape_and_range(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    preprocess = Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    result = preprocess(image)
    assert result.shape == (1, 3, 224, 224)
    assert result.min() >= -1.0 and result.max() <= 1.0
    assert result.max() - result.min() > 1.0
    torch.testing.assert_close(preprocess(Image.fromarray(image)), result)


def test_preprocessing_resizes_the_short_side_and_crops_the_centre():
    # 40 × 80 → 20 × 40, whose centred 20 × 20 crop holds original columns 20..60: all inside the white band
    # (10..70), away from the antialiasing blur at its edges; a left or right crop would show black.
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 10:70] = 255
    preprocess = Preprocessing(resize=20, crop=20, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    result = preprocess(image)
    assert result.shape == (1, 3, 20, 20)
    torch.testing.assert_close(result, torch.ones(1, 3, 20, 20))


def test_preprocessing_to_unit_inverts_normalize():
    preprocess = Preprocessing(256, 224, IMAGENET_MEAN, IMAGENET_STD)
    unit = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    normalized = preprocess.normalize(unit)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(normalized, (unit - mean) / std)
    torch.testing.assert_close(preprocess.to_unit(normalized), unit)
    assert preprocess.to_unit(torch.full((3, 2, 2), 100.0)).max() == 1.0


# ---------------------------------------------------------------- photos and files
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_every_photo_loads_as_rgb_uint8(name):
    photo = load_photo(name)
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert min(photo.shape[:2]) >= 224
    assert photo.std() > 10  # a real picture, not a blank


def test_chelsea_shape():
    assert load_photo("chelsea").shape == (300, 451, 3)


def test_unknown_photo():
    with pytest.raises(ValueError, match="`name`"):
        load_photo("dog")


def test_load_image_round_trip(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full((7, 9), 128, np.uint8)])).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.png"), rgb)
    np.testing.assert_array_equal(load_image(str(tmp_path / "grey.png")), np.repeat(rgb[:, :, :1], 3, axis=2))
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgb)


def test_load_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="`path`"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="`path`"):
        load_image(tmp_path)


def test_load_image_corrupt_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (tmp_path / "text.jpg").write_text("hello")
    for name in ("broken.png", "text.jpg"):
        with pytest.raises(ValueError, match="`path`"):
            load_image(tmp_path / name)


def hand_center_square(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return np.asarray(Image.fromarray(image[top : top + side, left : left + side]).resize((size, size), Image.BILINEAR))


def test_center_square_crops_the_middle():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    np.testing.assert_array_equal(center_square(image, 4), image[:, 1:5])
    np.testing.assert_array_equal(center_square(image.transpose(1, 0, 2), 4), image.transpose(1, 0, 2)[1:5])


@pytest.mark.parametrize("size", [224, 9])
def test_half_and_half_halves_are_the_centre_squared_photos(size):
    mixed = half_and_half(size=size)
    assert mixed.shape == (size, size, 3) and mixed.dtype == np.uint8
    middle = size // 2
    np.testing.assert_array_equal(mixed[:, :middle], hand_center_square(load_photo("chelsea"), size)[:, :middle])
    np.testing.assert_array_equal(mixed[:, middle:], hand_center_square(load_photo("coffee"), size)[:, middle:])


def test_half_and_half_accepts_arrays():
    black, white = np.zeros((5, 8, 3), np.uint8), np.full((8, 5, 3), 255, np.uint8)
    mixed = half_and_half(black, white, size=6)
    assert (mixed[:, :3] == 0).all() and (mixed[:, 3:] == 255).all()
    with pytest.raises(ValueError, match="`size`"):
        half_and_half(black, white, size=1)


def test_to_rgb_and_unit_tensor():
    grey = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb(grey), np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8))
    torch.testing.assert_close(unit_tensor(grey), torch.tensor([[[0.0, 1.0]]] * 3))
    with pytest.raises(TypeError, match="`image`"):
        to_rgb(grey.astype(np.float32))
    with pytest.raises(ValueError, match="`image`"):
        to_rgb(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(TypeError, match="`image`"):
        to_rgb(torch.zeros(2, 2, 3, dtype=torch.uint8))


def test_gradcam_layer_hook_for_custom_models():
    class WithLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 3, 1)

        def gradcam_layer(self):
            return self.body

    model = WithLayer()
    assert default_gradcam_layer(model) is model.body
    with pytest.raises(ValueError, match="layer="):
        default_gradcam_layer(nn.Sequential(nn.Conv2d(3, 3, 1)))


def _encoded(image: Image.Image, file_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def test_decode_image_scales_sixteen_bit_images_instead_of_clipping():
    wide = Image.new("I;16", (3, 1))
    wide.putdata([0, 257 * 100, 65535])
    decoded = decode_image(_encoded(wide))
    assert decoded[0, :, 0].tolist() == [0, 100, 255] and decoded.shape == (1, 3, 3)


def test_decode_image_applies_exif_orientation_and_converts_modes():
    tall = np.zeros((4, 2, 3), np.uint8)
    tall[0, 0] = 255  # top-left red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    decoded = decode_image(_encoded(Image.fromarray(tall), "JPEG", exif=exif, quality=100))
    assert decoded.shape == (2, 4, 3)
    assert decode_image(_encoded(Image.new("CMYK", (2, 2), (0, 0, 0, 0)), "JPEG")).shape == (2, 2, 3)
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert decode_image(_encoded(palette))[0, 0].tolist() == [10, 20, 30]


def test_decode_image_refuses_bombs_and_garbage_with_a_named_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match="upload.png is not a readable image file"):
        decode_image(_encoded(Image.new("RGB", (30, 30))), "upload.png")
    with pytest.raises(ValueError, match="not a readable image"):
        decode_image(b"plain text")


@pytest.mark.parametrize("shape", [(1, 20000, 3), (20000, 1, 3), (37, 1001, 3)])
def test_preprocessing_of_very_elongated_images_is_cheap_and_keeps_the_centre(shape):
    preprocess = Preprocessing(256, 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    image = np.zeros(shape, np.uint8)
    short, long_axis = min(shape[:2]), int(shape[1] > shape[0])
    middle = shape[long_axis] // 2
    bright = [slice(None), slice(None)]
    bright[1 - long_axis] = slice(None)
    bright[long_axis] = slice(middle - short, middle + short + 1)  # a bright band twice as wide as the crop
    image[tuple(bright)] = 255
    out = preprocess(image)
    assert out.shape == (1, 3, 224, 224)
    assert out[0, :, 112, 112].tolist() == [1.0, 1.0, 1.0]  # the centre survives the trimming
