"""Every method, VAR mode and localisation score follows its inputs' dtype and device.

Each method runs on a float64 model and float64 inputs: its maps must come back
in float64, on the inputs' device, finite, and equal to the same method's maps
computed independently in float32 (to float32's precision). A tensor hard-coded
in float32 on the path shows as float32 maps, a dtype-mismatch error or, for
random draws, maps that differ between the precisions. The derived maps are
checked against numpy float64 re-implementations of ``docs/method.md`` (section
13) and the localisation scores against exact fractions that float32 would
round. The device is every one available: the CPU, and CUDA when there is a GPU.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer

from var_utils import METHODS, MODES, attribute_classes, derive_maps
from var_utils.evaluation.metrics import localisation_scores, localisation_table
from var_utils.models.bcos_networks import fashion_mnist_bcos

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CLASSES = [0, 2, 4]
NUM_OUTPUTS = 5
#: Largest error of the float64 maps against the float32 maps, relative to the largest float64 value.
FLOAT32_REL_TOL = 1e-4

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def small_cnn() -> nn.Sequential:
    """conv-relu-conv-relu-GAP-linear in float32, one ReLU module per call site (as DeepLift needs)."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(4, 6, 3, stride=2, padding=1),
            relu2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(6, NUM_OUTPUTS),
        )
    ).eval()


def small_vit() -> VisionTransformer:
    """A two-block ViT on 8x8 images with 4x4 patches; every weight random (torchvision zeroes the head)."""
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=8, patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=NUM_OUTPUTS
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    return model.eval()


def small_bcos() -> nn.Module:
    """The (untrained) Fashion-MNIST B-cos CNN with five outputs."""
    torch.manual_seed(0)
    return fashion_mnist_bcos(NUM_OUTPUTS).eval()


#: Model family -> (float32 model builder, channels of its 8x8 images).
FAMILIES = {"cnn": (small_cnn, 3), "vit": (small_vit, 3), "bcos": (small_bcos, 1)}

#: Every method of ``METHODS`` -> (model family, settings that keep it small).
METHOD_TABLE = {
    "saliency": ("cnn", {}),
    "input_x_gradient": ("cnn", {}),
    "integrated_gradients": ("cnn", {"n_steps": 5, "internal_batch_size": 4}),
    "guided_backprop": ("cnn", {}),
    "gradcam": ("cnn", {"layer": "conv2"}),
    "guided_gradcam": ("cnn", {"layer": "conv2"}),
    "lrp": ("cnn", {}),
    "deeplift": ("cnn", {}),
    "smoothgrad": ("cnn", {"n_samples": 3}),
    "occlusion": ("cnn", {"window": 3, "stride": 2}),
    "softmax_gradient": ("cnn", {}),
    "contrastive_gradcam": ("cnn", {"layer": "conv2"}),
    "clrp": ("cnn", {}),
    "sglrp": ("cnn", {}),
    "attention_gradcam": ("vit", {}),
    "attention_rollout": ("vit", {}),
    "gradient_rollout": ("vit", {}),
    "attnlrp": ("vit", {}),
    "bcos": ("bcos", {}),
}


def test_the_table_covers_every_method():
    assert set(METHOD_TABLE) == set(METHODS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_float64_maps_stay_float64_on_the_inputs_device(name, device):
    family, settings = METHOD_TABLE[name]
    build, channels = FAMILIES[family]
    model32 = build().to(device)
    model64 = copy.deepcopy(model32).double()
    inputs = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inputs = inputs.to(device)

    maps = attribute_classes(model64, inputs, CLASSES, name, **settings)
    reference = attribute_classes(model32, inputs.float(), CLASSES, name, **settings)

    assert maps.dtype == torch.float64 and reference.dtype == torch.float32
    assert maps.device == inputs.device
    assert maps.shape == reference.shape and maps.shape[:2] == (2, len(CLASSES))
    assert torch.isfinite(maps).all()
    scale = maps.abs().max().item()
    assert scale > 0
    error = (maps - reference.double()).abs().max().item()
    assert error <= FLOAT32_REL_TOL * scale, f"float64 vs float32 maps: relative error {error / scale:.1e}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_inputs_made_under_inference_mode_are_explained(name):
    family, settings = METHOD_TABLE[name]
    build, channels = FAMILIES[family]
    model = build()
    inputs = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        frozen = inputs.clone()
    assert frozen.is_inference()
    maps = attribute_classes(model, frozen, CLASSES, name, **settings)
    torch.testing.assert_close(maps, attribute_classes(model, inputs, CLASSES, name, **settings))


def numpy_mode(base: np.ndarray, mode: str, tau: float = 0.01, temperature: float = 0.1) -> np.ndarray:
    """One of ``MODES`` for base maps (M, K, ...) with the defaults of ``refine_all``, in numpy float64."""
    count = base.shape[1]
    if mode == "base":
        return base
    if mode in ("var", "var_joint"):
        scores = np.abs(base)
        if mode == "var_joint":
            scores = scores / np.abs(base).reshape(len(base), -1).max(axis=1).reshape(-1, *[1] * (base.ndim - 1))
        exponentials = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
        distribution = exponentials / exponentials.sum(axis=1, keepdims=True)
        return np.where(distribution - 1 / count > tau, base * distribution, 0.0)
    if mode == "cgi":
        largest = (base > 0) & (base == base.max(axis=1, keepdims=True))
        smallest = (base < 0) & (base == base.min(axis=1, keepdims=True))
        return np.where(largest | smallest, base, 0.0)
    assert mode == "contrast_mean"
    return base - (base.sum(axis=1, keepdims=True) - base) / (count - 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_classes", [None, [3, 2]], ids=["all_compete", "padded_row"])
@pytest.mark.parametrize("mode", MODES)
def test_derived_maps_stay_float64_on_the_device(mode, n_classes, device):
    base = torch.randn(2, 3, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # The counts stay on the CPU, as a caller builds them, whatever the maps' device.
    counts = None if n_classes is None else torch.tensor(n_classes)

    derived = derive_maps(base.to(device), mode, n_classes=counts)

    expected = base.numpy().copy()
    for row, count in enumerate(n_classes or [3, 3]):
        expected[row, :count] = numpy_mode(base.numpy()[row : row + 1, :count], mode)[0]
    assert derived.dtype == torch.float64 and derived.device.type == device
    np.testing.assert_allclose(derived.cpu().numpy(), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("device", DEVICES)
def test_localisation_scores_in_float64_on_the_device(device):
    # Cell 0 holds 1.0 per pixel, every other pixel 1e-9: float32 would round the share in cell 0 up to 1.
    maps = torch.full((1, 1, 4, 4), 1e-9, dtype=torch.float64)
    maps[..., :2, :2] = 1.0
    maps = maps.to(device)

    table = localisation_table(maps, [0])
    scores = localisation_scores(maps[0], cell=0)

    share = 4 / (4 + 12e-9)
    expected = {"precision": 4 / 16, "recall": 1.0, "f1": 8 / 20, "iou": 4 / 16, "region_attribution": share}
    expected["pointing"] = 1.0
    assert share != 1.0
    for name, value in expected.items():
        assert table[name].dtype == torch.float64 and table[name].device.type == device
        assert table[name].item() == pytest.approx(value, rel=1e-13, abs=0)
        assert scores[name] == pytest.approx(value, rel=1e-13, abs=0)
