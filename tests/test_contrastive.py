"""Class-discriminative alternatives to VAR against their definitions: numpy re-implementations and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from var_utils import attribute_classes, competition_for_pixels, contrast_to_mean, refine_all
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
