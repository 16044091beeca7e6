"""Tests of the wrappers with the original project's interface.

Independent references: Captum's Saliency / InputXGradient run one class at a
time for the base maps, ``torch.topk`` / ``argmin`` for the automatic class set,
and eval-mode copies of models with dropout and batch norm.
"""

from __future__ import annotations

import copy

import captum.attr as ca
import pytest
import torch
from torch import nn

from var_utils.refine import refine_all
from var_utils.wrappers import ClassSpecificAttributionWrapper, ContrastiveAttributionWrapper

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CLASS_SET = [0, 2, 4]


@pytest.fixture
def cnn(plain_cnn) -> nn.Module:
    """The small CNN with a scaled last layer: gradients of order 0.1, so t = 0.1 separates the classes."""
    with torch.no_grad():
        plain_cnn.fc.weight.mul_(300.0)
    return plain_cnn


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(3, 10, 10, generator=torch.Generator().manual_seed(11))


def captum_base_maps(model: nn.Module, image: torch.Tensor, classes, method: str = "saliency") -> torch.Tensor:
    """(K, C, H, W) base maps, one Captum call per class."""
    attribution = ca.Saliency(model) if method == "saliency" else ca.InputXGradient(model)
    return torch.cat([attribution.attribute(image[None], target=c) for c in classes])


class DropoutBatchNormCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.5))
        self.fc = nn.Linear(6, 5)
        with torch.no_grad():
            self.fc.weight.mul_(300.0)
            self.features[1].running_mean.uniform_(-0.5, 0.5)
            self.features[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


# ---------------------------------------------------------------- ClassSpecificAttributionWrapper
SETTINGS = [
    dict(),
    dict(tau=0.0, temperature=0.5),
    dict(tau=0.05, use_abs=False),
    dict(tau=0.01, normalize="joint"),
]


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient"])
@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("target", CLASS_SET)
def test_attribute_equals_refined_captum_maps(cnn, image, method, settings, target):
    wrapper = ClassSpecificAttributionWrapper(method, cnn, class_indices=CLASS_SET, **settings)
    refine_settings = dict(tau=settings.get("tau", 0.01)) | {k: v for k, v in settings.items() if k != "tau"}
    expected = refine_all(captum_base_maps(cnn, image, CLASS_SET, method), **refine_settings)
    expected = expected[CLASS_SET.index(target)][None]
    for img in (image, image[None]):
        result = wrapper.attribute(img, target)
        assert result.shape == (1, 3, 10, 10)
        torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-7)
    assert 0.05 < (expected != 0).float().mean() < 0.95


def test_default_tau_is_positional_and_0_01(cnn, image):
    base = captum_base_maps(cnn, image, CLASS_SET)
    positional = ClassSpecificAttributionWrapper("saliency", cnn, CLASS_SET, 0.2)
    torch.testing.assert_close(positional.attribute_all(image), refine_all(base, tau=0.2), rtol=1e-5, atol=1e-7)
    default = ClassSpecificAttributionWrapper("saliency", cnn, CLASS_SET)
    torch.testing.assert_close(default.attribute_all(image), refine_all(base, tau=0.01), rtol=1e-5, atol=1e-7)
    assert not torch.equal(positional.attribute_all(image), default.attribute_all(image))


@pytest.mark.parametrize("method, settings, channels", [("saliency", {}, 3), ("gradcam", {"layer": "conv2"}, 1)])
def test_attribute_all_and_base_maps_shapes(cnn, image, method, settings, channels):
    wrapper = ClassSpecificAttributionWrapper(method, cnn, CLASS_SET, **settings)
    assert wrapper.attribute_all(image).shape == (3, channels, 10, 10)
    assert wrapper.base_maps(image[None]).shape == (3, channels, 10, 10)
    for k, target in enumerate(CLASS_SET):
        torch.testing.assert_close(wrapper.attribute(image, target)[0], wrapper.attribute_all(image)[k])


def test_base_maps_equal_captum(cnn, image):
    wrapper = ClassSpecificAttributionWrapper("saliency", cnn, CLASS_SET)
    torch.testing.assert_close(wrapper.base_maps(image), captum_base_maps(cnn, image, CLASS_SET))


def test_model_in_training_mode_is_explained_in_eval_mode_and_restored(image):
    model = DropoutBatchNormCNN().train()
    frozen = copy.deepcopy(model).eval()
    running_mean = model.features[1].running_mean.clone()
    wrapper = ClassSpecificAttributionWrapper("saliency", model, CLASS_SET)
    first, second = wrapper.attribute(image, 2), wrapper.attribute(image, 2)
    assert model.training and model.features[3].training
    assert torch.equal(model.features[1].running_mean, running_mean)
    assert torch.equal(first, second)  # no dropout noise
    expected = refine_all(captum_base_maps(frozen, image, CLASS_SET))[1][None]
    assert (expected != 0).any()
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-7)
    # The training-mode model would give other maps: the test can tell the modes apart.
    with torch.no_grad():
        assert not torch.allclose(model(image[None]), frozen(image[None]))
    model.train()


def test_accepts_other_base_methods(cnn, image):
    captum_object = ClassSpecificAttributionWrapper(ca.InputXGradient(cnn), cnn, CLASS_SET)
    callable_method = ClassSpecificAttributionWrapper(
        lambda x, t: ca.InputXGradient(cnn).attribute(x, target=t), cnn, CLASS_SET
    )
    expected = refine_all(captum_base_maps(cnn, image, CLASS_SET, "input_x_gradient"))
    torch.testing.assert_close(captum_object.attribute_all(image), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(callable_method.attribute_all(image), expected, rtol=1e-5, atol=1e-7)


BAD_WRAPPERS = [
    (dict(class_indices=[1]), ValueError, "`class_indices`"),
    (dict(class_indices=[1, 1]), ValueError, "`class_indices`"),
    (dict(class_indices=[0, -2]), ValueError, "`class_indices`"),
    (dict(class_indices=3), TypeError, "`class_indices`"),
    (dict(model="cnn"), TypeError, "`model`"),
    (dict(base_method="grad"), ValueError, "`method`"),
    (dict(tau=float("nan")), (TypeError, ValueError), "`tau`"),
    (dict(temperature=0.0), ValueError, "`temperature`"),
    (dict(normalize="sum"), ValueError, "`normalize`"),
    (dict(n_steps=4), TypeError, "saliency"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_WRAPPERS)
def test_bad_wrapper_settings(cnn, kwargs, error, match):
    arguments = dict(base_method="saliency", model=cnn, class_indices=CLASS_SET) | kwargs
    with pytest.raises(error, match=match):
        ClassSpecificAttributionWrapper(**arguments)


BAD_CALLS = [
    (lambda image: (image, 1), ValueError, "`target`"),
    (lambda image: (image, 7), ValueError, "`target`"),
    (lambda image: (image.repeat(2, 1, 1, 1), 0), ValueError, "`img`"),
    (lambda image: (image[0], 0), ValueError, "`img`"),
    (lambda image: (image.numpy(), 0), TypeError, "`img`"),
    (lambda image: (image[:2], 0), ValueError, "`inputs`"),
    (lambda image: (image.long(), 0), TypeError, "`inputs`"),
]


@pytest.mark.parametrize("make_call, error, match", BAD_CALLS)
def test_bad_attribute_calls(cnn, image, make_call, error, match):
    wrapper = ClassSpecificAttributionWrapper("saliency", cnn, CLASS_SET)
    img, target = make_call(image)
    with pytest.raises(error, match=match):
        wrapper.attribute(img, target)


# ---------------------------------------------------------------- ContrastiveAttributionWrapper
def expected_contrastive_set(model: nn.Module, image: torch.Tensor, num_classes: int, target=None) -> list[int]:
    with torch.no_grad():
        logits = model(image[None])[0]
    classes = torch.topk(logits, num_classes).indices.tolist() + [int(logits.argmin())]
    if target is not None and target not in classes:
        classes = [target] + classes
    return classes


@pytest.mark.parametrize("num_classes", [1, 2, 3])
def test_contrastive_default_target_is_top_prediction(cnn, image, num_classes):
    wrapper = ContrastiveAttributionWrapper("saliency", cnn, top_k=num_classes)
    result = wrapper.attribute(image)
    classes = expected_contrastive_set(cnn, image, num_classes)
    assert wrapper.last_classes == classes and len(classes) == num_classes + 1
    expected = refine_all(captum_base_maps(cnn, image, classes))[0][None]
    assert (expected != 0).any()
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-7)


def test_contrastive_target_outside_the_set_is_put_first(cnn, image):
    wrapper = ContrastiveAttributionWrapper("saliency", cnn, tau=0.0, top_k=2)
    automatic = expected_contrastive_set(cnn, image, 2)
    outside = next(c for c in range(5) if c not in automatic)
    result = wrapper.attribute(image[None], target=outside)
    assert wrapper.last_classes == [outside] + automatic
    expected = refine_all(captum_base_maps(cnn, image, [outside] + automatic), tau=0.0)[0][None]
    assert (expected != 0).any()
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-7)


def test_contrastive_target_inside_the_set_keeps_it(cnn, image):
    wrapper = ContrastiveAttributionWrapper("saliency", cnn, top_k=2)
    automatic = expected_contrastive_set(cnn, image, 2)
    least_probable = automatic[-1]
    result = wrapper.attribute(image, target=least_probable)
    assert wrapper.last_classes == automatic
    expected = refine_all(captum_base_maps(cnn, image, automatic))[2][None]
    assert (expected != 0).any()
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-7)


def test_contrastive_restores_training_mode(image):
    model = DropoutBatchNormCNN().train()
    frozen = copy.deepcopy(model).eval()
    wrapper = ContrastiveAttributionWrapper("saliency", model, top_k=2)
    result = wrapper.attribute(image)
    assert model.training
    classes = expected_contrastive_set(frozen, image, 2)
    assert wrapper.last_classes == classes
    expected = refine_all(captum_base_maps(frozen, image, classes))[0][None]
    assert (expected != 0).any()
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "num_classes, target, error, match",
    [
        (2, 5, ValueError, "`target`"),
        (2, -1, ValueError, "`target`"),
        (2, 1.0, ValueError, "`target`"),
        (5, None, ValueError, "`top_k`"),
    ],
)
def test_contrastive_bad_calls(cnn, image, num_classes, target, error, match):
    wrapper = ContrastiveAttributionWrapper("saliency", cnn, top_k=num_classes)
    with pytest.raises(error, match=match):
        wrapper.attribute(image, target)


@pytest.mark.parametrize("num_classes, error", [(0, ValueError), (1.5, TypeError)])
def test_contrastive_bad_num_classes(cnn, num_classes, error):
    with pytest.raises(error, match="`top_k`"):
        ContrastiveAttributionWrapper("saliency", cnn, top_k=num_classes)


def test_contrastive_accepts_the_original_keyword_num_classes(cnn, image):
    with pytest.warns(FutureWarning, match="`top_k`"):
        old = ContrastiveAttributionWrapper("saliency", cnn, num_classes=2)
    new = ContrastiveAttributionWrapper("saliency", cnn, top_k=2)
    torch.testing.assert_close(old.attribute(image), new.attribute(image))
    assert old.last_classes == new.last_classes
