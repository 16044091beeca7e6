"""Tests of the multi-class engine and its base methods.

Independent references: Captum 0.9 run one class at a time (Saliency,
InputXGradient, IntegratedGradients, LayerGradCam + LayerAttribution.interpolate,
GuidedBackprop, GuidedGradCam, DeepLift, Occlusion), plain ``torch.autograd.grad``,
closed forms (IG of a linear model, IG completeness, the LRP-ε formula written
out in numpy, the guided-backprop rule of a one-hidden-layer network) and hand
loops over the documented SmoothGrad noise.
"""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import pytest
import torch
from torch import nn
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon

from var_utils.datasets.photos import center_square, load_photo, unit_tensor
from var_utils.engine import attribute_classes, class_matrix, expected_channels
from var_utils.methods import (
    METHODS,
    CallableMethod,
    CaptumMethod,
    GradCAM,
    GuidedBackprop,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    attribution_mode,
    get_method,
)

CLASSES = [0, 2, 4]
PER_IMAGE_CLASSES = torch.tensor([[0, 3], [4, 1]])
REL_TOL = 1e-5

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = REL_TOL) -> None:
    """``max |actual - expected| <= rel * max |expected|`` (and the reference is not all zero)."""
    assert actual.shape == expected.shape
    scale = expected.detach().abs().max().item()
    assert scale > 0
    error = (actual.detach() - expected.detach()).abs().max().item()
    assert error <= rel * scale, f"relative error {error / scale:.2e} > {rel:.0e}"


def autograd_gradient(model: nn.Module, inputs: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """d logit[n, targets[n]] / d inputs[n], by plain autograd."""
    inputs = inputs.detach().clone().requires_grad_(True)
    logits = model(inputs)
    selected = logits[torch.arange(len(targets)), torch.tensor(targets)]
    return torch.autograd.grad(selected.sum(), inputs)[0]


def upsampled_layer_gradcam(model, x, target, relu):
    cam = ca.LayerGradCam(model, model.conv2).attribute(x, target=target, relu_attributions=relu)
    return ca.LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")


# (method name, settings, Captum reference for one target per image)
CAPTUM_TABLE = [
    ("saliency", {}, lambda m, x, t: ca.Saliency(m).attribute(x, target=t)),
    ("saliency", {"abs": False}, lambda m, x, t: ca.Saliency(m).attribute(x, target=t, abs=False)),
    ("input_x_gradient", {}, lambda m, x, t: ca.InputXGradient(m).attribute(x, target=t)),
    (
        "integrated_gradients",
        {"n_steps": 7},
        lambda m, x, t: ca.IntegratedGradients(m).attribute(x, target=t, n_steps=7, method="gausslegendre"),
    ),
    (
        "integrated_gradients",
        {"n_steps": 6, "rule": "riemann_middle", "baseline": 0.3, "internal_batch_size": 5},
        lambda m, x, t: ca.IntegratedGradients(m).attribute(
            x, target=t, n_steps=6, method="riemann_middle", baselines=0.3
        ),
    ),
    (
        "integrated_gradients",
        {"n_steps": 5, "rule": "riemann_left"},
        lambda m, x, t: ca.IntegratedGradients(m).attribute(x, target=t, n_steps=5, method="riemann_left"),
    ),
    (
        "integrated_gradients",
        {"n_steps": 5, "rule": "riemann_right"},
        lambda m, x, t: ca.IntegratedGradients(m).attribute(x, target=t, n_steps=5, method="riemann_right"),
    ),
    ("gradcam", {"layer": "conv2"}, lambda m, x, t: upsampled_layer_gradcam(m, x, t, relu=False)),
    ("gradcam", {"layer": "conv2", "relu": True}, lambda m, x, t: upsampled_layer_gradcam(m, x, t, relu=True)),
    ("guided_backprop", {}, lambda m, x, t: ca.GuidedBackprop(m).attribute(x, target=t)),
    (
        "guided_gradcam",
        {"layer": "conv2"},
        lambda m, x, t: ca.GuidedGradCam(m, m.conv2).attribute(x, target=t, interpolate_mode="bilinear"),
    ),
    ("deeplift", {}, lambda m, x, t: ca.DeepLift(m).attribute(x, target=t)),
    ("deeplift", {"baseline": 0.2}, lambda m, x, t: ca.DeepLift(m).attribute(x, target=t, baselines=0.2)),
    (
        "occlusion",
        {"window": 3, "stride": 2},
        lambda m, x, t: ca.Occlusion(m).attribute(
            x, target=t, sliding_window_shapes=(3, 3, 3), strides=(3, 2, 2), baselines=0.0
        ),
    ),
]
CAPTUM_IDS = [f"{name}-{'-'.join(map(str, settings.values())) or 'default'}" for name, settings, _ in CAPTUM_TABLE]


# ---------------------------------------------------------------- small CNN vs Captum
@pytest.mark.parametrize("model_name", ["plain_cnn", "inplace_cnn"])
@pytest.mark.parametrize("method, settings, reference", CAPTUM_TABLE, ids=CAPTUM_IDS)
def test_matches_captum_one_class_at_a_time(request, plain_cnn, small_images, model_name, method, settings, reference):
    model = request.getfixturevalue(model_name)
    maps = attribute_classes(model, small_images, CLASSES, method, **settings)
    channels = 1 if method == "gradcam" else 3
    assert maps.shape == (2, len(CLASSES), channels, 10, 10)
    for k, target in enumerate(CLASSES):
        # Captum always runs on the plain twin (same weights): it cannot handle in-place ReLUs.
        assert_rel_close(maps[:, k], reference(plain_cnn, small_images, target))
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU)) == (model_name == "inplace_cnn")


@pytest.mark.parametrize("method, settings, reference", CAPTUM_TABLE, ids=CAPTUM_IDS)
def test_per_image_class_sets_match_captum(plain_cnn, small_images, method, settings, reference):
    maps = attribute_classes(plain_cnn, small_images, PER_IMAGE_CLASSES, method, **settings)
    assert maps.shape[:2] == PER_IMAGE_CLASSES.shape
    for k in range(PER_IMAGE_CLASSES.shape[1]):
        assert_rel_close(maps[:, k], reference(plain_cnn, small_images, PER_IMAGE_CLASSES[:, k].tolist()))


def test_occlusion_defaults_match_captum(plain_cnn, small_images):
    # Default window max(1, H // 14) = 1 and stride 1 on these 5 × 5 crops.
    crops = small_images[:, :, :5, :5]
    maps = attribute_classes(plain_cnn, crops, CLASSES, "occlusion", perturbations_per_eval=7)
    for k, target in enumerate(CLASSES):
        expected = ca.Occlusion(plain_cnn).attribute(
            crops, target=target, sliding_window_shapes=(3, 1, 1), strides=(3, 1, 1), baselines=0.0
        )
        assert_rel_close(maps[:, k], expected)


@pytest.mark.parametrize("internal_batch_size", [1, 3, 5, 7, 14, 32])
def test_integrated_gradients_chunking_matches_captum(plain_cnn, small_images, internal_batch_size):
    # N * n_steps = 14 interpolated images: 3 and 5 split them into uneven chunks.
    maps = attribute_classes(
        plain_cnn, small_images, CLASSES, "integrated_gradients", n_steps=7, internal_batch_size=internal_batch_size
    )
    for k, target in enumerate(CLASSES):
        expected = ca.IntegratedGradients(plain_cnn).attribute(
            small_images, target=target, n_steps=7, method="gausslegendre", internal_batch_size=4
        )
        assert_rel_close(maps[:, k], expected)


# ---------------------------------------------------------------- EfficientNet-Lite0 vs Captum
LITE_CLASSES = [285, 967]


@pytest.fixture(scope="module")
def lite0_small(lite0) -> torch.Tensor:
    """chelsea at 64 × 64 (Lite0 is fully convolutional; small inputs keep the tests fast)."""
    return lite0.preprocess.normalize(unit_tensor(center_square(load_photo("chelsea"), 64))).unsqueeze(0)


def lite0_gradcam(model, x, target):
    cam = ca.LayerGradCam(model, model._conv_head).attribute(x, target=target, relu_attributions=False)
    return ca.LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")


LITE_TABLE = [
    ("saliency", {}, lambda m, x, t: ca.Saliency(m).attribute(x, target=t)),
    ("input_x_gradient", {}, lambda m, x, t: ca.InputXGradient(m).attribute(x, target=t)),
    ("gradcam", {}, lite0_gradcam),
    (
        "integrated_gradients",
        {"n_steps": 8},
        lambda m, x, t: ca.IntegratedGradients(m).attribute(x, target=t, n_steps=8, method="gausslegendre"),
    ),
]


@pytest.mark.parametrize("method, settings, reference", LITE_TABLE, ids=[row[0] for row in LITE_TABLE])
def test_lite0_matches_captum(lite0, lite0_small, method, settings, reference):
    maps = attribute_classes(lite0, lite0_small, LITE_CLASSES, method, **settings)
    for k, target in enumerate(LITE_CLASSES):
        assert_rel_close(maps[:, k], reference(lite0, lite0_small, target))


def test_lite0_guided_backprop(lite0, lite0_small):
    together = attribute_classes(lite0, lite0_small, LITE_CLASSES, "guided_backprop")
    gradient = attribute_classes(lite0, lite0_small, LITE_CLASSES, "saliency", abs=False)
    with attribution_mode(lite0):
        for k, target in enumerate(LITE_CLASSES):
            alone = GuidedBackprop().attribute(lite0, lite0_small, torch.tensor([[target]]))
            assert_rel_close(together[:, k], alone[:, 0])
    # Lite0's ReLU6 modules (one reused at several call sites) are guided here...
    for k in range(len(LITE_CLASSES)):
        difference = (together[:, k] - gradient[:, k]).abs().max() / gradient[:, k].abs().max()
        assert difference > 0.1
    # ...whereas Captum only rewrites nn.ReLU modules and silently returns the plain gradient.
    captum_guided = ca.GuidedBackprop(lite0).attribute(lite0_small, target=LITE_CLASSES[0])
    assert_rel_close(captum_guided, gradient[:, 0])


def test_lite0_default_gradcam_layer_is_conv_head(lite0):
    from var_utils.methods import default_gradcam_layer

    assert default_gradcam_layer(lite0) is lite0._conv_head


# ---------------------------------------------------------------- closed forms
def test_gradient_methods_equal_autograd(plain_cnn, small_images):
    gradients = torch.stack([autograd_gradient(plain_cnn, small_images, [c, c]) for c in CLASSES], dim=1)
    torch.testing.assert_close(attribute_classes(plain_cnn, small_images, CLASSES, "saliency", abs=False), gradients)
    torch.testing.assert_close(attribute_classes(plain_cnn, small_images, CLASSES, "saliency"), gradients.abs())
    torch.testing.assert_close(
        attribute_classes(plain_cnn, small_images, CLASSES, "input_x_gradient"), small_images.unsqueeze(1) * gradients
    )
    # A Captum object goes through CaptumMethod, its settings through to ``attribute``.
    captum_maps = attribute_classes(plain_cnn, small_images, CLASSES, ca.Saliency(plain_cnn), abs=False)
    torch.testing.assert_close(captum_maps, gradients)


def linear_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()


@pytest.mark.parametrize("baseline", [None, 0.5, torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)])
@pytest.mark.parametrize(
    "rule, n_steps",
    [
        ("gausslegendre", 3),
        ("riemann_left", 4),
        ("riemann_right", 2),
        ("riemann_middle", 5),
        ("riemann_trapezoid", 2),
        ("riemann_trapezoid", 9),
    ],
)
def test_integrated_gradients_of_linear_model_is_exact(rule, n_steps, baseline):
    model = linear_model()
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = model.double()
    maps = attribute_classes(model, x, CLASSES, "integrated_gradients", n_steps=n_steps, rule=rule, baseline=baseline)
    b = torch.zeros(()) if baseline is None else torch.as_tensor(baseline, dtype=torch.float64)
    weights = model[1].weight.view(5, 3, 4, 4)
    for k, target in enumerate(CLASSES):
        torch.testing.assert_close(maps[:, k], (x - b) * weights[target], rtol=1e-10, atol=1e-12)


def relu_mlp() -> nn.Sequential:
    """A one-hidden-layer ReLU network with unit-variance weights: logit differences of order 10."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle"])
@pytest.mark.parametrize("baseline", [None, 0.3])
def test_integrated_gradients_completeness(baseline, rule):
    model = relu_mlp()
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    maps = attribute_classes(model, x, [0, 1, 2], "integrated_gradients", n_steps=128, baseline=baseline, rule=rule)
    reference = torch.full_like(x, 0.0 if baseline is None else baseline)
    with torch.no_grad():
        difference = model(x) - model(reference)
    total = maps.sum(dim=(2, 3, 4))
    assert difference.abs().min() > 1.0
    assert torch.all((total - difference).abs() <= 0.01 * difference.abs())


def two_layer_net(bias: bool) -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6, bias=bias), nn.ReLU(), nn.Linear(6, 4, bias=bias)).eval()


def lrp_epsilon_by_hand(model: nn.Sequential, x: torch.Tensor, target: int, epsilon: float) -> np.ndarray:
    """LRP-ε (Bach et al. 2015) written out: R_out = e_c f_c(x); R_i = Σ_j x_i w_ji R_j / (z_j + ε sign z_j)."""
    w1, w2 = model[1].weight.detach().double().numpy(), model[3].weight.detach().double().numpy()
    b1 = model[1].bias.detach().double().numpy() if model[1].bias is not None else 0.0
    b2 = model[3].bias.detach().double().numpy() if model[3].bias is not None else 0.0

    def stabilise(z):
        return z + epsilon * np.where(z >= 0, 1.0, -1.0)

    results = []
    for sample in x.double().numpy().reshape(len(x), -1):
        z = w1 @ sample + b1
        h = np.maximum(z, 0)
        y = w2 @ h + b2
        relevance_out = np.zeros_like(y)
        relevance_out[target] = y[target]
        relevance_h = h * (w2.T @ (relevance_out / stabilise(y)))
        relevance_z = relevance_h  # ReLU passes relevance through (h = 0 where it is off)
        results.append(sample * (w1.T @ (relevance_z / stabilise(z))))
    return np.stack(results).reshape(x.shape)


@pytest.mark.parametrize("epsilon", [1e-6, 0.25])
@pytest.mark.parametrize("bias", [True, False])
def test_lrp_epsilon_matches_formula(bias, epsilon):
    model = two_layer_net(bias)
    x = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    composite = LayerMapComposite(layer_map=[(nn.Linear, Epsilon(epsilon=epsilon))])
    maps = attribute_classes(model, x, [0, 1, 3], "lrp", composite=composite)
    for k, target in enumerate([0, 1, 3]):
        np.testing.assert_allclose(
            maps[:, k].numpy(), lrp_epsilon_by_hand(model, x, target, epsilon), rtol=1e-4, atol=1e-6
        )


def test_lrp_relevance_sums_to_the_logit_without_bias():
    model = two_layer_net(bias=False)
    x = torch.randn(3, 3, 2, 2, generator=torch.Generator().manual_seed(5))
    composite = LayerMapComposite(layer_map=[(nn.Linear, Epsilon(epsilon=1e-9))])
    maps = attribute_classes(model, x, [0, 1, 2, 3], "lrp", composite=composite)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(maps.sum(dim=(2, 3, 4)), logits, rtol=1e-4, atol=1e-6)


def test_smoothgrad_without_noise_is_saliency(plain_cnn, small_images):
    for use_abs in (True, False):
        smooth = attribute_classes(
            plain_cnn, small_images, CLASSES, "smoothgrad", noise_level=0.0, n_samples=3, abs=use_abs
        )
        plain = attribute_classes(plain_cnn, small_images, CLASSES, "saliency", abs=use_abs)
        torch.testing.assert_close(smooth, plain)


def test_smoothgrad_is_seeded(plain_cnn, small_images):
    first = attribute_classes(plain_cnn, small_images, CLASSES, "smoothgrad", seed=7)
    again = attribute_classes(plain_cnn, small_images, CLASSES, "smoothgrad", seed=7)
    other = attribute_classes(plain_cnn, small_images, CLASSES, "smoothgrad", seed=8)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("use_abs", [True, False])
def test_smoothgrad_equals_hand_loop_over_its_noise(plain_cnn, small_images, use_abs):
    n_samples, noise_level, seed = 4, 0.2, 3
    maps = attribute_classes(
        plain_cnn,
        small_images,
        CLASSES,
        "smoothgrad",
        n_samples=n_samples,
        noise_level=noise_level,
        abs=use_abs,
        seed=seed,
    )
    # Documented noise: torch.randn((n_samples, N, C, H, W)) from a CPU generator seeded with ``seed``,
    # scaled by noise_level × (max − min) of each image.
    noise = torch.randn((n_samples, *small_images.shape), generator=torch.Generator().manual_seed(seed))
    for n, image in enumerate(small_images):
        spread = image.max() - image.min()
        for k, target in enumerate(CLASSES):
            total = torch.zeros_like(image)
            for s in range(n_samples):
                gradient = autograd_gradient(plain_cnn, (image + noise[s, n] * noise_level * spread)[None], [target])[0]
                total += gradient.abs() if use_abs else gradient
            torch.testing.assert_close(maps[n, k], total / n_samples, rtol=1e-5, atol=1e-7)


class OneHiddenLayer(nn.Module):
    """Flatten → Linear → activation → Linear, the activation as a module or a function."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.hidden, self.out = nn.Linear(12, 8), nn.Linear(8, 3)
        with torch.no_grad():
            self.hidden.weight.mul_(8.0)  # push some units above 6, where ReLU6 is flat
        self.activation = activation
        self.relu6 = nn.ReLU6()

    def forward(self, x):
        z = self.hidden(x.flatten(1))
        activations = {"module": self.relu6, "function": torch.relu, "method": torch.Tensor.relu}
        return self.out(activations[self.activation](z))


@pytest.mark.parametrize("activation", ["module", "function", "method"])
def test_guided_backprop_rule_by_hand(activation):
    model = OneHiddenLayer(activation).eval()
    x = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(7))
    maps = attribute_classes(model, x, [0, 2], "guided_backprop")
    upper = 6.0 if activation == "module" else float("inf")
    with torch.no_grad():
        z = model.hidden(x.flatten(1))
    active = ((z > 0) & (z < upper)).double()
    if activation == "module":
        assert (z > upper).any()
    w1, w2 = model.hidden.weight.double(), model.out.weight.double()
    for k, target in enumerate([0, 2]):
        # grad_h = w2[c]; guided: only its positive part passes, then the activation's 0/1 derivative.
        expected = (w2[target].clamp(min=0) * active) @ w1
        torch.testing.assert_close(maps[:, k].double().reshape(2, -1), expected.detach(), rtol=1e-5, atol=1e-7)


def test_callable_method_sees_each_image_repeated_per_class(small_images, plain_cnn):
    maps = attribute_classes(plain_cnn, small_images, PER_IMAGE_CLASSES, lambda x, t: x * t.view(-1, 1, 1, 1))
    for n in range(2):
        for k in range(2):
            torch.testing.assert_close(maps[n, k], small_images[n] * PER_IMAGE_CLASSES[n, k])


def test_callable_method_low_resolution_maps_are_upsampled_bilinearly(small_images, plain_cnn):
    coarse = torch.tensor([[1.0, 3.0], [5.0, 7.0]]).view(1, 1, 2, 2)
    maps = attribute_classes(plain_cnn, small_images, CLASSES, lambda x, t: coarse.expand(len(x), 1, 2, 2))
    assert maps.shape == (2, 3, 1, 10, 10)
    # Bilinear, half-pixel centres: corners keep the coarse values, the centre is their mean.
    torch.testing.assert_close(maps[0, 0, 0, 0, 0], torch.tensor(1.0))
    torch.testing.assert_close(maps[1, 2, 0, -1, -1], torch.tensor(7.0))
    torch.testing.assert_close(maps[0, 0, 0, 4:6, 4:6].mean(), torch.tensor(4.0))
    # Output pixel i samples the coarse row at (i + 0.5) / 5 - 0.5, clamped to [0, 1]: 1 → 3 linearly.
    top_row = torch.tensor([1.0, 1.0, 1.0, 1.4, 1.8, 2.2, 2.6, 3.0, 3.0, 3.0])
    torch.testing.assert_close(maps[0, 1, 0, 0], top_row)


# ---------------------------------------------------------------- model state and hooks
STATE_METHODS = [
    ("saliency", {}),
    ("input_x_gradient", {}),
    ("smoothgrad", {"n_samples": 2}),
    ("integrated_gradients", {"n_steps": 3}),
    ("gradcam", {"layer": "conv2"}),
    ("guided_backprop", {}),
    ("guided_gradcam", {"layer": "conv2"}),
    ("deeplift", {}),
    ("occlusion", {"window": 5, "stride": 5}),
    ("lrp", {}),
    ("softmax_gradient", {}),
    ("contrastive_gradcam", {"layer": "conv2"}),
    ("clrp", {}),
    ("sglrp", {}),
]
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def assert_model_restored(model: nn.Module, grad_flags: list[bool]) -> None:
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == grad_flags
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    for module in model.modules():
        for hooks in HOOK_DICTS:
            assert not getattr(module, hooks), f"{hooks} left on {type(module).__name__}"
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method, settings", STATE_METHODS, ids=[row[0] for row in STATE_METHODS])
def test_model_state_is_restored(inplace_cnn, small_images, method, settings):
    model = inplace_cnn.train()
    model.conv1.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    assert flags.count(False) == 1
    maps = attribute_classes(model, small_images, CLASSES, method, **settings)
    assert torch.isfinite(maps).all()
    assert_model_restored(model, flags)
    # The same after an error raised mid-way (class 7 of a 5-output model).
    with pytest.raises(ValueError, match="outputs"):
        attribute_classes(model, small_images, [0, 7], method, **settings)
    assert_model_restored(model, flags)


def test_model_state_is_restored_after_error_in_a_hook(inplace_cnn, small_images):
    model = inplace_cnn.train()
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(ValueError, match="Grad-CAM layer"):
        attribute_classes(model, small_images, CLASSES, "gradcam", layer="flatten")
    assert_model_restored(model, flags)


# ---------------------------------------------------------------- refusals
class ReusedReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_deeplift_refuses_reused_activation_module(small_images):
    with pytest.raises(ValueError, match="DeepLift.*ReLU"):
        attribute_classes(ReusedReLU(), small_images, [0, 1], "deeplift")


def test_guided_backprop_refuses_model_without_relu():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    x = torch.randn(2, 3, 2, 2)
    for method in ("guided_backprop", "guided_gradcam"):
        with pytest.raises(ValueError, match="ReLU"):
            attribute_classes(model, x, [0, 1], method, **({"layer": "1"} if method == "guided_gradcam" else {}))


# ---------------------------------------------------------------- bad input
class SpatialOutput(nn.Module):
    """Returns (N, C, H, W) instead of logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return self.conv(x)


NO_LAYER_MODEL = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
IMAGES = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))

BAD_CALLS = [
    ("fewer than two classes", dict(classes=[1]), ValueError, "`classes`"),
    ("duplicate classes", dict(classes=[1, 1]), ValueError, "`classes`"),
    ("negative class", dict(classes=[-1, 2]), ValueError, "`classes`"),
    ("float class", dict(classes=[1.0, 2]), TypeError, "`classes`"),
    ("string classes", dict(classes="01"), TypeError, "`classes`"),
    ("float class matrix", dict(classes=torch.tensor([[0.0, 1.0], [1.0, 2.0]])), TypeError, "`classes`"),
    ("class matrix rows", dict(classes=torch.tensor([[0, 1]])), ValueError, "`classes`"),
    ("duplicate in a row", dict(classes=torch.tensor([[0, 1], [2, 2]])), ValueError, "`classes`"),
    ("class out of range", dict(classes=[0, 5]), ValueError, "5 outputs"),
    ("class out of range, repeated method", dict(classes=[0, 5], method="occlusion"), ValueError, "5 outputs"),
    ("image rank 3", dict(inputs=IMAGES[0]), ValueError, "`inputs`"),
    ("image rank 5", dict(inputs=IMAGES[None]), ValueError, "`inputs`"),
    ("wrong channels", dict(inputs=IMAGES[:, :1]), ValueError, "`inputs`.*3 channel"),
    ("integer image", dict(inputs=IMAGES.long()), TypeError, "`inputs`"),
    ("NaN image", dict(inputs=IMAGES.masked_fill(IMAGES > 2, float("nan"))), ValueError, "`inputs`"),
    ("image not a tensor", dict(inputs=IMAGES.numpy()), TypeError, "`inputs`"),
    ("model not a module", dict(model=lambda x: x), TypeError, "`model`"),
    ("unknown method", dict(method="gradient_shap"), ValueError, "`method`"),
    ("bad method type", dict(method=3), TypeError, "`method`"),
    ("bad method setting", dict(method="saliency", settings=dict(n_steps=3)), TypeError, "saliency"),
    ("settings for an instance", dict(method=Saliency(), settings=dict(abs=False)), TypeError, "AttributionMethod"),
    ("spatial model output", dict(model=SpatialOutput()), ValueError, "`model`.*logits"),
    ("spatial model output, repeated", dict(model=SpatialOutput(), method="deeplift"), ValueError, "`model`"),
    ("callable wrong channels", dict(method=lambda x, t: x[:, :2]), ValueError, "base method"),
    ("callable wrong rank", dict(method=lambda x, t: x[:, 0]), ValueError, "base method"),
    ("callable wrong count", dict(method=lambda x, t: x[:1]), ValueError, "base method"),
    ("callable not a tensor", dict(method=lambda x, t: x.numpy()), TypeError, "base method"),
    ("IG n_steps 0", dict(method="integrated_gradients", settings=dict(n_steps=0)), ValueError, "`n_steps`"),
    ("IG n_steps float", dict(method="integrated_gradients", settings=dict(n_steps=2.0)), TypeError, "`n_steps`"),
    ("IG unknown rule", dict(method="integrated_gradients", settings=dict(rule="simpson")), ValueError, "`rule`"),
    (
        "IG trapezoid 1 step",
        dict(method="integrated_gradients", settings=dict(n_steps=1, rule="riemann_trapezoid")),
        ValueError,
        "`n_steps`",
    ),
    (
        "IG baseline shape",
        dict(method="integrated_gradients", settings=dict(baseline=torch.zeros(2, 2))),
        ValueError,
        "`baseline`",
    ),
    ("IG baseline type", dict(method="integrated_gradients", settings=dict(baseline="zeros")), TypeError, "`baseline`"),
    (
        "IG batch size",
        dict(method="integrated_gradients", settings=dict(internal_batch_size=0)),
        ValueError,
        "`internal_batch_size`",
    ),
    ("SmoothGrad noise", dict(method="smoothgrad", settings=dict(noise_level=-0.1)), ValueError, "`noise_level`"),
    ("SmoothGrad samples", dict(method="smoothgrad", settings=dict(n_samples=0)), ValueError, "`n_samples`"),
    ("occlusion window", dict(method="occlusion", settings=dict(window=0)), ValueError, "`window`"),
    ("unknown Grad-CAM layer", dict(method="gradcam", settings=dict(layer="conv9")), ValueError, "`layer`"),
    ("foreign Grad-CAM layer", dict(method="gradcam", settings=dict(layer=nn.Conv2d(6, 8, 3))), ValueError, "`layer`"),
    ("Grad-CAM layer type", dict(method="gradcam", settings=dict(layer=3)), TypeError, "`layer`"),
    ("no known Grad-CAM layer", dict(model=NO_LAYER_MODEL, method="gradcam"), ValueError, "`layer=`"),
    ("no known guided Grad-CAM layer", dict(model=NO_LAYER_MODEL, method="guided_gradcam"), ValueError, "`layer=`"),
]


@pytest.mark.parametrize("call, error, match", [row[1:] for row in BAD_CALLS], ids=[row[0] for row in BAD_CALLS])
def test_bad_input_raises_naming_the_argument(plain_cnn, call, error, match):
    arguments = dict(model=plain_cnn, inputs=IMAGES, classes=[0, 1], method="saliency") | call
    settings = arguments.pop("settings", {})
    with pytest.raises(error, match=match):
        attribute_classes(**arguments, **settings)


# ---------------------------------------------------------------- helpers of the engine
def test_class_matrix():
    assert torch.equal(class_matrix([3, 1, 2], 2), torch.tensor([[3, 1, 2], [3, 1, 2]]))
    assert torch.equal(class_matrix(torch.tensor([4, 0]), 3), torch.tensor([[4, 0]] * 3))
    per_image = torch.tensor([[0, 1], [1, 2]], dtype=torch.int32)
    result = class_matrix(per_image, 2)
    assert result.dtype == torch.long and torch.equal(result, per_image.long())


def test_expected_channels():
    assert expected_channels(nn.Sequential(nn.Flatten(), nn.Conv2d(7, 2, 1), nn.Conv2d(2, 3, 1))) == 7
    assert expected_channels(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))) is None


def test_get_method_wraps_every_kind():
    assert set(METHODS) == {
        "saliency",
        "input_x_gradient",
        "integrated_gradients",
        "guided_backprop",
        "gradcam",
        "guided_gradcam",
        "lrp",
        "deeplift",
        "smoothgrad",
        "occlusion",
        "attention_gradcam",
        "attention_rollout",
        "gradient_rollout",
        "attnlrp",
        "bcos",
        "softmax_gradient",
        "contrastive_gradcam",
        "clrp",
        "sglrp",
    }
    configured = get_method("integrated_gradients", n_steps=16, rule="riemann_left")
    assert isinstance(configured, IntegratedGradients) and configured.n_steps == 16
    instance = SmoothGrad(n_samples=2)
    assert get_method(instance) is instance
    assert isinstance(get_method(ca.Saliency(nn.Linear(2, 2))), CaptumMethod)
    assert isinstance(get_method(lambda x, t: x), CallableMethod)
    assert isinstance(get_method("gradcam", layer="x"), GradCAM)


def test_base_and_var_maps_rejects_bad_modes_and_class_counts(plain_cnn, small_images):
    from var_utils.engine import base_and_var_maps, var_from_base
    from var_utils.refine import refine_all

    with pytest.raises(TypeError, match="`modes`"):
        base_and_var_maps(plain_cnn, small_images, [0, 1], "saliency", modes="var")
    with pytest.raises(ValueError, match="`modes`"):
        base_and_var_maps(plain_cnn, small_images, [0, 1], "saliency", modes=("var", "both"))
    base = torch.rand(2, 3, 1, 4, 4)
    with pytest.raises(ValueError, match="`n_classes`"):
        var_from_base(base, n_classes=torch.tensor([2, 4]))
    with pytest.raises(ValueError, match="`n_classes`"):
        var_from_base(base, n_classes=torch.tensor([2]))
    with pytest.raises(TypeError, match="`n_classes`"):
        var_from_base(base, n_classes=torch.tensor([2.0, 3.0]))
    # Rows refine among their own first n classes only: independent of the padding column.
    refined = var_from_base(base, n_classes=torch.tensor([2, 3]))
    torch.testing.assert_close(refined[0, :2], refine_all(base[0, :2]))
    torch.testing.assert_close(refined[0, 2], base[0, 2])
    torch.testing.assert_close(refined[1], refine_all(base[1]))
