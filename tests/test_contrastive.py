"""Class-discriminative alternatives to VAR against their definitions: numpy re-implementations and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from var_utils import attribute_classes, competition_for_pixels, contrast_to_mean, refine_all
from var_utils.methods.contrastive_gradcam import pairwise_contrast_gradients
from var_utils.methods.softmax_gradient import SoftmaxGradient, softmax_gradients


def _numpy_cgi(maps: np.ndarray) -> np.ndarray:
    """CGI by loops over the classes: positive and the largest, or negative and the smallest, of the set."""
    kept = np.zeros_like(maps)
    for target in range(maps.shape[0]):
        positive_winner = (maps[target] > 0) & (maps[target] == maps.max(axis=0))
        negative_winner = (maps[target] < 0) & (maps[target] == maps.min(axis=0))
        kept[target] = np.where(positive_winner | negative_winner, maps[target], 0.0)
    return kept


@pytest.mark.parametrize("class_dim", [0, 1])
def test_competition_for_pixels_against_numpy_with_ties(class_dim):
    generator = torch.Generator().manual_seed(0)
    maps = torch.randint(-3, 4, (4, 2, 5, 5), generator=generator).double()  # small integers: many ties
    expected = _numpy_cgi(maps.numpy())
    stacked = maps if class_dim == 0 else maps.unsqueeze(0)
    result = competition_for_pixels(stacked, class_dim=class_dim)
    np.testing.assert_array_equal((result if class_dim == 0 else result[0]).numpy(), expected)


def test_competition_for_pixels_is_var_with_a_hard_argmax_on_non_negative_maps():
    # Non-negative maps without ties: the softmax at a tiny temperature is the arg-max, and τ = 0 keeps the winner.
    maps = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hard_var = refine_all(maps, temperature=1e-6, tau=0.0)
    torch.testing.assert_close(competition_for_pixels(maps), hard_var)
    # At the paper's temperature the competition is soft: with K = 3 a runner-up can also pass 1/K + τ.
    soft_keeps = refine_all(maps) != 0
    assert (soft_keeps.sum(dim=0) > 1).any() and not ((competition_for_pixels(maps) != 0).sum(dim=0) > 1).any()


def test_competition_keeps_a_negative_value_where_it_is_the_smallest():
    maps = torch.tensor([[-2.0], [0.5], [-1.0]])
    assert competition_for_pixels(maps).flatten().tolist() == [-2.0, 0.5, 0.0]


def test_contrast_to_mean_against_numpy():
    maps = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = np.stack([maps[t].numpy() - np.delete(maps.numpy(), t, axis=0).mean(axis=0) for t in range(4)])
    np.testing.assert_allclose(contrast_to_mean(maps).numpy(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(contrast_to_mean(maps.unsqueeze(0), class_dim=1)[0], contrast_to_mean(maps))


@pytest.mark.parametrize("function", [competition_for_pixels, contrast_to_mean])
def test_a_set_needs_two_classes(function):
    with pytest.raises(ValueError, match="at least two classes"):
        function(torch.rand(1, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        function(torch.ones(2, 4, 4, dtype=torch.long))


# ----- softmax gradient ---------------------------------------------------------------------------------------


def test_softmax_gradient_of_a_linear_model_in_closed_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).double()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    classes = [4, 1, 2]
    maps = attribute_classes(model, x, classes, "softmax_gradient")
    weights = model[1].weight.detach().numpy()[classes]  # ∇y_k = W_k
    for n in range(2):
        logits = model(x[n : n + 1]).detach().numpy()[0, classes]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        gradient = p[:, None] * (weights - p @ weights)
        expected = gradient.reshape(3, 3, 2, 2) * x[n].numpy()
        np.testing.assert_allclose(maps[n].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_softmax_gradient_equals_autograd_of_the_set_softmax(plain_cnn, small_images):
    classes = torch.tensor([[0, 3, 1], [2, 4, 0]])
    maps = attribute_classes(plain_cnn, small_images, classes, SoftmaxGradient(multiply_by_inputs=False))
    for n in range(small_images.shape[0]):
        for k in range(classes.shape[1]):
            x = small_images[n : n + 1].clone().requires_grad_(True)
            probability = torch.softmax(plain_cnn(x)[0, classes[n]], dim=0)[k]
            (expected,) = torch.autograd.grad(probability, x)
            torch.testing.assert_close(maps[n, k], expected[0], rtol=1e-4, atol=1e-7)


def test_softmax_gradients_sum_to_zero_over_the_set():
    gradients = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    logits = torch.randn(2, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    # Σ_k p_k = 1 for every input, so Σ_k ∇p_k = 0.
    torch.testing.assert_close(softmax_gradients(gradients, logits).sum(dim=1), torch.zeros(2, 3, dtype=torch.float64))


def test_softmax_gradient_refuses_a_single_class_and_bad_settings(plain_cnn, small_images):
    with pytest.raises(ValueError, match="at least two"):
        attribute_classes(plain_cnn, small_images, [1], "softmax_gradient")
    with pytest.raises(TypeError, match="multiply_by_inputs"):
        SoftmaxGradient(multiply_by_inputs="yes")


# ----- contrastive Grad-CAM ------------------------------------------------------------------------------------


def _hand_contrastive_gradcam(model: nn.Module, image: torch.Tensor, classes: list[int], target: int) -> torch.Tensor:
    """Autograd of the explicit loss mean_Q CE({y_t, y_Q}, Q), then Grad-CAM written out."""
    captured = {}
    handle = model.relu2.register_forward_hook(lambda _m, _i, output: captured.update(a=output))
    logits = model(image.unsqueeze(0))[0]
    handle.remove()
    losses = [
        F.cross_entropy(torch.stack([logits[target], logits[q]]).unsqueeze(0), torch.tensor([1]))
        for q in classes
        if q != target
    ]
    (gradient,) = torch.autograd.grad(torch.stack(losses).mean(), captured["a"])
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (weights * captured["a"]).sum(dim=1, keepdim=True).clamp(min=0)
    return F.interpolate(cam, size=image.shape[1:], mode="bilinear")[0].detach()


def test_contrastive_gradcam_equals_grad_cam_of_the_pairwise_contrast_loss(plain_cnn, small_images):
    classes = [3, 0, 4]
    maps = attribute_classes(plain_cnn, small_images, classes, "contrastive_gradcam", layer="relu2")
    assert maps.shape == (2, 3, 1, 10, 10)
    for n in range(2):
        for k, target in enumerate(classes):
            expected = _hand_contrastive_gradcam(plain_cnn, small_images[n], classes, target)
            torch.testing.assert_close(maps[n, k], expected, rtol=1e-4, atol=1e-6)


def test_pairwise_contrast_of_two_classes_is_the_logit_difference_gradient():
    gradients = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    logits = torch.randn(3, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    contrast = pairwise_contrast_gradients(gradients, logits)
    weight = torch.sigmoid(logits[:, 0] - logits[:, 1]).view(3, 1)
    torch.testing.assert_close(contrast[:, 0], weight * (gradients[:, 0] - gradients[:, 1]))
    torch.testing.assert_close(contrast[:, 1], (1 - weight) * (gradients[:, 1] - gradients[:, 0]))


# ----- CLRP and SGLRP --------------------------------------------------------------------------------------------


def _zennit_relevance(model: nn.Module, image: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """One zennit LRP pass (the package's default rules) from a hand-built initial relevance vector."""
    from zennit.attribution import Gradient

    from var_utils.methods.batched import default_lrp_composite

    with Gradient(model=model, composite=default_lrp_composite(model)) as attributor:
        _, relevance = attributor(image.unsqueeze(0).clone().requires_grad_(True), initial.unsqueeze(0))
    return relevance[0].detach().double()


@pytest.mark.parametrize("method", ["clrp", "sglrp"])
def test_contrastive_lrp_against_a_manual_zennit_computation(plain_cnn, small_images, method):
    classes = [1, 4, 2]
    maps = attribute_classes(plain_cnn, small_images, classes, method)
    assert maps.shape == (2, 3, 3, 10, 10)
    for n in range(2):
        logits = plain_cnn(small_images[n : n + 1]).detach()[0]
        p = torch.softmax(logits[classes], dim=0)
        for k, target in enumerate(classes):
            others = [c for c in classes if c != target]
            first, second = torch.zeros(5), torch.zeros(5)
            if method == "clrp":
                first[target] = logits[target]
                second[others] = logits[others]
            else:
                first[target] = p[k] * (1 - p[k])
                second[others] = p[k] * p[[classes.index(c) for c in others]]
            r_first = _zennit_relevance(plain_cnn, small_images[n], first).numpy()
            r_second = _zennit_relevance(plain_cnn, small_images[n], second).numpy()
            if method == "clrp":
                expected = np.maximum(0, r_first / abs(r_first.sum()) - r_second / abs(r_second.sum()))
            else:
                expected = r_first - r_second * r_first.sum() / r_second.sum()
            np.testing.assert_allclose(maps[n, k].double().numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["contrastive_gradcam", "clrp", "sglrp"])
def test_set_methods_give_k_maps_and_refuse_single_classes(plain_cnn, small_images, method):
    settings = {"layer": "relu2"} if method == "contrastive_gradcam" else {}
    assert attribute_classes(plain_cnn, small_images, [0, 1, 2, 3], method, **settings).shape[1] == 4
    with pytest.raises(ValueError, match="at least two"):
        attribute_classes(plain_cnn, small_images, [2], method, **settings)
