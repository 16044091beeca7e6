"""B-cos contribution maps against independent references.

References: completeness (the map sums to the logit minus the logit layer's
bias, a property of dynamic-linear networks in explanation mode), the
``bcos`` package's own ``explain()`` (batch 1, six channels) on one of its
ResNets, and the same maps computed one image at a time.
"""

from __future__ import annotations

import pytest
import torch

from var_utils import attribute_classes, load_model
from var_utils.models import BcosClassifier

CLASSES = [0, 3, 5, 9]


@pytest.fixture(scope="module")
def model() -> BcosClassifier:
    return load_model("fashion_mnist_bcos")


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    from var_utils.datasets.fashion_mnist import load_fashion_mnist

    images, _ = load_fashion_mnist(train=False)
    return images[:8]


def contribution_without_explanation_mode(model: BcosClassifier, inputs: torch.Tensor, classes: list[int]):
    """``x_enc * dy/dx_enc`` with the dynamic weights left in the graph (what explanation mode prevents)."""
    encoded = model.encode(inputs).detach().requires_grad_(True)
    logits = model.network(encoded)
    maps = []
    for c in classes:
        (gradient,) = torch.autograd.grad(logits[:, c].sum(), encoded, retain_graph=True)
        maps.append((encoded * gradient).sum(dim=1))
    return torch.stack(maps, dim=1)


def test_contributions_sum_to_the_logit_minus_the_logit_bias(model, batch):
    maps = attribute_classes(model, batch, CLASSES, "bcos")
    with torch.no_grad():
        logits = model(batch)[:, CLASSES]
    assert maps.shape == (8, 4, 1, 28, 28)
    assert model.logit_bias == pytest.approx(-torch.log(torch.tensor(9.0)).item())
    assert (maps.sum(dim=(2, 3, 4)) - (logits - model.logit_bias)).abs().max().item() <= 1e-4


def test_without_explanation_mode_the_map_is_not_the_contribution_map(model, batch):
    ours = attribute_classes(model, batch, CLASSES, "bcos")[:, :, 0]
    plain = contribution_without_explanation_mode(model, batch, CLASSES)
    relative_l1 = (plain - ours).abs().sum() / ours.abs().sum()
    assert relative_l1 > 0.5
    # Both sum to the logit minus the bias (the network is homogeneous of degree 1 in its encoded input, so
    # Euler's theorem holds either way): only the distribution over the pixels tells them apart.
    torch.testing.assert_close(plain.sum(dim=(2, 3)), ours.sum(dim=(2, 3)), rtol=1e-4, atol=1e-4)
    # Explanation mode is switched off again afterwards.
    assert not any(getattr(module, "detach", False) for module in model.modules())


def test_a_batch_equals_one_image_at_a_time(model, batch):
    together = attribute_classes(model, batch, CLASSES, "bcos")
    for n in range(3):
        alone = attribute_classes(model, batch[n : n + 1], CLASSES, "bcos")
        torch.testing.assert_close(together[n : n + 1], alone, rtol=1e-5, atol=1e-6)


def test_rgb_maps_equal_the_packages_explain_summed_over_channels():
    from bcos.models.resnet import resnet18

    torch.manual_seed(0)
    network = resnet18(num_classes=10, small_inputs=True).eval()
    model = BcosClassifier(network, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours = attribute_classes(model, images, [1, 7], "bcos")
    assert ours.shape == (2, 2, 3, 32, 32)
    for n in range(2):
        for k, c in enumerate([1, 7]):
            encoded = torch.cat([images[n : n + 1], 1 - images[n : n + 1]], dim=1).requires_grad_(True)
            reference = network.explain(encoded, idx=c)["contribution_map"]
            torch.testing.assert_close(ours[n, k].sum(dim=0, keepdim=True), reference, rtol=1e-4, atol=1e-5)


def test_the_encoding_appends_the_inverse_of_the_unnormalised_pixels(model):
    pixels = torch.rand(2, 1, 28, 28)
    from var_utils.datasets.fashion_mnist import normalize_fashion_mnist

    encoded = model.encode(normalize_fashion_mnist(pixels))
    torch.testing.assert_close(encoded, torch.cat([pixels, 1 - pixels], dim=1))
    assert model.input_channels == 1


@pytest.mark.parametrize("method", ["guided_backprop", "attention_gradcam"])
def test_methods_that_cannot_run_on_a_bcos_network_say_so(model, batch, method):
    with pytest.raises(ValueError, match="BcosClassifier"):
        attribute_classes(model, batch[:1], CLASSES, method)


def test_bcos_method_on_another_model_raises_naming_it():
    with pytest.raises(ValueError, match="'bcos' needs a B-cos network.*FashionMNISTCNN"):
        attribute_classes(load_model("fashion_mnist_cnn"), torch.randn(1, 1, 28, 28), [0, 1], "bcos")


def test_gradcam_runs_on_the_bcos_network(model, batch):
    maps = attribute_classes(model, batch[:2], CLASSES, "gradcam")
    assert maps.shape == (2, 4, 1, 28, 28) and torch.isfinite(maps).all()


def test_bcos_resnet50_contributions_are_complete_offline():
    torch.manual_seed(0)
    model = load_model("bcos_resnet50", weights=None)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    maps = attribute_classes(model, images, [3, 500], "bcos")
    with torch.no_grad():
        logits = model(images)[:, [3, 500]]
    assert maps.shape == (2, 2, 3, 64, 64)
    torch.testing.assert_close(maps.sum(dim=(2, 3, 4)), logits - model.logit_bias, rtol=1e-4, atol=1e-4)
